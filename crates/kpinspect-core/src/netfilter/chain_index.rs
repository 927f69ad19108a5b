//! The rules of each chain of a table, indexed once: what the dump, the
//! plan and the anomaly checks walk instead of filtering the table's rules
//! for every chain they look at.

use super::{Rule, Table};
use crate::fasthash::FastMap;

/// The rules of each chain of a table, declared or not (a chain with rules
/// but no declaration is listed too), each rule with the chain it jumps to
/// and its position in the table; built once per table ([`Table::chain_index`]).
///
/// iptables-save prints the rules of one chain together, so each chain's
/// rules are one run of the table's rules: the index is a map from chain
/// name to that run's range in one list of the rules, in their order.
/// Text whose chains' rules are interleaved (edited, or concatenated) is
/// grouped by chain first, each chain's rules in order.
///
/// ```
/// use kpinspect_core::netfilter::{ChainIndex, Ruleset};
///
/// let rs = Ruleset::parse(
///     "*nat\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j RETURN\n-A A -j ACCEPT\nCOMMIT\n",
/// )
/// .unwrap();
/// let index = rs.table("nat").unwrap().chain_index();
/// let a = index.id("A").unwrap();
/// assert_eq!(index.rules(a).len(), 2);
/// assert_eq!(index.positions(a), [0, 2]);
/// assert_eq!(index.targets(a), [index.id("B").unwrap() as u32, ChainIndex::NO_CHAIN]);
/// ```
#[derive(Debug, Clone)]
pub struct ChainIndex<'a> {
    /// Chain name → its index in `chains`.
    ids: FastMap<&'a str, u32>,
    /// Each chain: its name, whether it is declared, and the range of its
    /// rules in `order`; declared chains first, in their order.
    chains: Vec<(&'a str, bool, usize, usize)>,
    /// The rules, grouped by chain.
    order: Vec<&'a Rule>,
    /// Each rule of `order`: its index in the table's rules.
    positions: Vec<u32>,
    /// The chain each rule of `order` jumps to ([`ChainIndex::NO_CHAIN`]:
    /// none, an extension target, or a chain that does not exist).
    targets: Vec<u32>,
    /// Whether `order` is the table's rules in their order (each chain's
    /// rules together in the text).
    in_table_order: bool,
}

impl<'a> ChainIndex<'a> {
    /// In [`targets`](Self::targets): a rule that jumps to no chain of the
    /// table.
    pub const NO_CHAIN: u32 = u32::MAX;

    /// No chains at all (a table the save lacks).
    pub fn empty() -> ChainIndex<'a> {
        ChainIndex {
            ids: FastMap::default(),
            chains: Vec::new(),
            order: Vec::new(),
            positions: Vec::new(),
            targets: Vec::new(),
            in_table_order: true,
        }
    }

    /// Indexes `table`'s chains.
    pub fn new(table: &'a Table) -> ChainIndex<'a> {
        let mut out = ChainIndex::empty();
        out.ids.reserve(table.chains.len());
        out.chains.reserve(table.chains.len());
        for c in &table.chains {
            out.id_of(c.name.as_str(), true);
        }
        let rules = &table.rules;
        let mut i = 0;
        while i < rules.len() {
            let chain = rules[i].chain.as_str();
            let end = i + rules[i..].iter().take_while(|r| r.chain == chain).count();
            let id = out.id_of(chain, false);
            let span = &mut out.chains[id];
            if span.2 == span.3 {
                (span.2, span.3) = (i, end);
            } else {
                out.in_table_order = false;
            }
            i = end;
        }
        if out.in_table_order {
            out.order = rules.iter().collect();
            out.positions = (0..rules.len() as u32).collect();
        } else {
            // Interleaved: each chain's rules together, chains in the
            // order their first rule comes.
            let mut groups: Vec<Vec<u32>> = vec![Vec::new(); out.chains.len()];
            let mut first_seen: Vec<usize> = Vec::new();
            for (i, r) in rules.iter().enumerate() {
                let id = out.ids[r.chain.as_str()] as usize;
                if groups[id].is_empty() {
                    first_seen.push(id);
                }
                groups[id].push(i as u32);
            }
            out.positions.reserve(rules.len());
            for id in first_seen {
                let start = out.positions.len();
                out.positions.append(&mut groups[id]);
                (out.chains[id].2, out.chains[id].3) = (start, out.positions.len());
            }
            out.order = out.positions.iter().map(|&i| &rules[i as usize]).collect();
        }
        out.targets = out
            .order
            .iter()
            .map(|r| {
                r.target_name()
                    .and_then(|t| out.ids.get(t))
                    .map_or(ChainIndex::NO_CHAIN, |&id| id)
            })
            .collect();
        out
    }

    /// The index of `chain`, added (undeclared, without rules) if new;
    /// marked declared when `declared`.
    fn id_of(&mut self, chain: &'a str, declared: bool) -> usize {
        let next = self.chains.len() as u32;
        let id = *self.ids.entry(chain).or_insert(next) as usize;
        if id == self.chains.len() {
            self.chains.push((chain, declared, 0, 0));
        } else if declared {
            self.chains[id].1 = true;
        }
        id
    }

    /// The rules of `chain`, in order; `None` when the chain is neither
    /// declared nor has rules.
    pub fn get(&self, chain: &str) -> Option<&[&'a Rule]> {
        self.id(chain).map(|id| self.rules(id))
    }

    /// The index of `chain` (below [`len`](Self::len)), if it exists.
    pub fn id(&self, chain: &str) -> Option<usize> {
        self.ids.get(chain).map(|&id| id as usize)
    }

    /// How many chains there are.
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    /// Whether the table has no chain at all.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// The name of chain `id`.
    pub fn name(&self, id: usize) -> &'a str {
        self.chains[id].0
    }

    /// Where each rule of chain `id` is in the table's rules.
    pub fn positions(&self, id: usize) -> &[u32] {
        let (_, _, start, end) = self.chains[id];
        &self.positions[start..end]
    }

    /// The rules of chain `id`, in order.
    pub fn rules(&self, id: usize) -> &[&'a Rule] {
        let (_, _, start, end) = self.chains[id];
        &self.order[start..end]
    }

    /// The chain each rule of chain `id` jumps to ([`ChainIndex::NO_CHAIN`]: none).
    pub fn targets(&self, id: usize) -> &[u32] {
        let (_, _, start, end) = self.chains[id];
        &self.targets[start..end]
    }

    /// The table's rules in their order, each with the chain it jumps to
    /// ([`ChainIndex::NO_CHAIN`]: none); `None` when the text interleaves chains'
    /// rules (then the index holds them in another order).
    pub fn in_table_order(&self) -> Option<impl Iterator<Item = (&'a Rule, u32)> + '_> {
        self.in_table_order
            .then(|| self.order.iter().copied().zip(self.targets.iter().copied()))
    }

    /// Whether `chain` exists as far as the text goes: declared, or with
    /// rules.
    pub fn contains_key(&self, chain: &str) -> bool {
        self.ids.contains_key(chain)
    }

    /// Whether `chain` is declared (a `:chain` line).
    pub fn is_declared(&self, chain: &str) -> bool {
        self.id(chain).is_some_and(|id| self.chains[id].1)
    }

    /// Every chain with its rules: the declared ones in their order, then
    /// the others.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &[&'a Rule])> + '_ {
        (0..self.chains.len()).map(|id| (self.chains[id].0, self.rules(id)))
    }

    /// Every chain's name, in the order of [`iter`](Self::iter).
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.chains.iter().map(|c| c.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::Ruleset;

    /// Each chain's rules are those `Table::rules_of` finds, in order,
    /// whether the text prints a chain's rules together or not.
    #[test]
    fn every_chain_has_its_rules_in_order() {
        for text in [
            "*nat\n:A - [0:0]\n:B - [0:0]\n:E - [0:0]\n-A A -j B\n-A A -j E\n-A B -j RETURN\n-A C -j A\nCOMMIT\n",
            "*nat\n:A - [0:0]\n:B - [0:0]\n:E - [0:0]\n-A A -j B\n-A B -j RETURN\n-A A -j E\n-A C -j A\n-A B -j A\n-A A -j C\nCOMMIT\n",
        ] {
            let rs = Ruleset::parse(text).expect("parses");
            let table = rs.table("nat").expect("nat");
            let chains = table.chain_index();
            let mut names: Vec<&str> = chains.keys().collect();
            names.sort_unstable();
            assert_eq!(names, ["A", "B", "C", "E"], "{text}");
            for name in names {
                let got: Vec<*const Rule> = chains
                    .get(name)
                    .expect("listed")
                    .iter()
                    .map(|r| *r as *const Rule)
                    .collect();
                let want: Vec<*const Rule> =
                    table.rules_of(name).map(|r| r as *const Rule).collect();
                assert_eq!(got, want, "{name} in {text}");
                assert_eq!(chains.is_declared(name), name != "C", "{name}");
            }
            assert!(chains.get("D").is_none());
            assert!(!chains.contains_key("D"));
        }
    }
}
