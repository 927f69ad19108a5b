//! Desired state (kube-proxy's restore input, as compiled) against a node's
//! actual state (`iptables-save`): a semantic [`diff`] per table and chain,
//! the minimal `iptables-restore --noflush` payload that makes the node
//! match ([`plan`]), and selective removal of what kube-proxy owns
//! ([`cleanup_plan`]). What belongs to the mode (its jump rules, its
//! per-service chains) comes from the mode's [`Profile`].
//!
//! Compared with what kube-proxy writes on a sync, the payload is small:
//! chains that are already right are not touched; large chains whose rules
//! mostly stay (`KUBE-SERVICES`, `KUBE-NODEPORTS`, ...) are edited rule by
//! rule (`-D CHAIN rule`, `-I CHAIN n`); other changed chains are rewritten
//! whole (a declaration flushes them), and so is a chain with a rule to
//! delete whose saved spelling the kernel may not match to the rule as
//! written (`-m recent`, of session affinity); stale service chains are
//! flushed and deleted (`-X`) in the same transaction, after every rule
//! that jumped to them is gone; kube-proxy's jump rules from the built-in
//! chains are inserted only when missing, never reordering anyone else's
//! rules.
//!
//! ```
//! use kpinspect_core::mode::ProxyMode;
//! use kpinspect_core::netfilter::Ruleset;
//! use kpinspect_core::plan::plan;
//! let desired = Ruleset::parse("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n\
//!     -A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n\
//!     -A KUBE-SVC-A -j DNAT --to-destination 10.0.0.2:80\nCOMMIT\n").unwrap();
//! let actual = Ruleset::parse("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n\
//!     -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
//!     -A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n\
//!     -A KUBE-SVC-A -j DNAT --to-destination 10.0.0.1:80\nCOMMIT\n").unwrap();
//! let p = plan(&desired, &actual, ProxyMode::Iptables.profile());
//! assert!(p.payload.contains(":KUBE-SVC-A - [0:0]\n"));
//! assert!(p.payload.contains("\n-A KUBE-SVC-A -j DNAT --to-destination 10.0.0.2:80\n"));
//! assert!(!p.payload.contains("KUBE-SERVICES -d")); // KUBE-SERVICES is already right
//! ```

use std::collections::HashMap;

use serde::Serialize;

mod cleanup;
mod guard;

pub use cleanup::{CleanupPlan, CleanupScope, cleanup_plan};
pub use guard::{Refusal, check_input, check_plan};

use crate::fasthash::FastSet;
use crate::mode::Profile;
use crate::netfilter::{
    BUILTIN_CHAINS, ChainIndex, Rule, Ruleset, Table, deletable_by_spec, render_rule,
    save_text_into,
};

/// How a chain differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainChange {
    /// Desired, absent on the node.
    Missing,
    /// Present with other rules.
    Changed,
    /// A kube-proxy service chain on the node that is not desired.
    Stale,
}

/// One chain that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainDiff {
    /// Table.
    pub table: String,
    /// Chain.
    pub chain: String,
    /// How it differs.
    pub change: ChainChange,
    /// Desired rules the node lacks (as iptables-save prints them).
    pub missing: Vec<String>,
    /// Rules on the node that are not desired.
    pub extra: Vec<String>,
}

/// Desired against actual, per table and chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RulesDiff {
    /// Chains that differ, desired chains first in declaration order, then
    /// stale chains.
    pub chains: Vec<ChainDiff>,
    /// kube-proxy's jump rules missing from the built-in chains.
    pub missing_jumps: Vec<String>,
}

impl RulesDiff {
    /// Whether the node matches.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.missing_jumps.is_empty()
    }
}

/// The payload that brings a node to the desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `iptables-restore --noflush` input; empty when nothing differs.
    pub payload: String,
    /// For each payload line (0-based), the chain it writes (`table NAME`
    /// for the `*NAME` and `COMMIT` lines).
    line_chains: Vec<Option<String>>,
    /// Chains declared (new or rewritten whole).
    pub chains_written: usize,
    /// Rules appended or inserted.
    pub rules_added: usize,
    /// Rules deleted one by one.
    pub rules_deleted: usize,
    /// Stale chains flushed and deleted.
    pub chains_deleted: Vec<String>,
    /// Stale chains kept because a rule kube-proxy does not own jumps to
    /// them, with that rule.
    pub chains_kept: Vec<(String, String)>,
    /// The chains the payload creates (the node has none of that name),
    /// by table: nothing on the node jumps to them before the payload's
    /// other lines do.
    new_chains: Vec<(String, String)>,
    /// The stale chains the payload flushes and deletes, by table: nothing
    /// on the node jumps to them once the payload's other lines are in.
    stale_chains: Vec<(String, String)>,
}

impl Plan {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// The chain that 1-based payload line `line` writes, or `table NAME`
    /// for a table's first and `COMMIT` lines (the legacy backend blames a
    /// table's `COMMIT` for what the kernel refuses).
    pub fn chain_at(&self, line: usize) -> Option<&str> {
        self.line_chains
            .get(line.checked_sub(1)?)
            .and_then(|c| c.as_deref())
    }

    fn line(&mut self, chain: Option<&str>, text: &str) {
        self.payload.push_str(text);
        self.payload.push('\n');
        self.line_chains.push(chain.map(String::from));
    }

    /// The payload as several restores, for a restore tool whose cost
    /// grows with the square of one transaction's size (iptables-nft-restore
    /// 1.8 with `--noflush`: 176 s for the 95,000 rules of a 2,000-service
    /// node in one transaction, 7 s in pieces of 10,000 lines), each of at
    /// most `max_lines` lines (a table's `*` and `COMMIT` aside) but one:
    ///
    /// 1. [`Phase::Build`]: the chains the node does not have, declared,
    ///    then filled;
    /// 2. [`Phase::Link`]: one restore with everything else — changes to
    ///    existing chains, the jumps from the built-in chains — which links
    ///    the new chains in and unlinks the stale ones;
    /// 3. [`Phase::Demolish`]: the stale chains, flushed, then deleted.
    ///
    /// Nothing on the node jumps to a new chain before the link commits,
    /// nor to a stale one after it, so packets see the old rules or the
    /// new, as with one restore; a writer stopped midway leaves chains
    /// nothing jumps to, which the next apply fills, or deletes when they
    /// are not wanted.
    ///
    /// `None` when the new and the stale chains' lines fit in `max_lines`:
    /// then the payload is best written as it is, in one transaction.
    pub fn pieces(&self, max_lines: usize) -> Option<Vec<Piece>> {
        let max_lines = max_lines.max(1);
        let set = |chains: &[(String, String)]| -> FastSet<(String, String)> {
            chains.iter().cloned().collect()
        };
        let (new, stale) = (set(&self.new_chains), set(&self.stale_chains));
        let mut tables: Vec<Parts<'_>> = Vec::new();
        let mut rest = Piece::new(Phase::Link);
        let mut key = (String::new(), String::new());
        for (i, (line, chain)) in self.payload.lines().zip(&self.line_chains).enumerate() {
            let number = i + 1;
            let chain = chain.as_deref();
            if let Some(name) = line.strip_prefix('*') {
                tables.push(Parts {
                    table: name,
                    head: number,
                    ..Parts::default()
                });
            }
            let (Some(c), Some(parts)) = (chain, tables.last_mut()) else {
                rest.line(chain, line, number);
                continue;
            };
            if line == "COMMIT" {
                parts.commit = number;
            }
            key.0.clear();
            key.0.push_str(parts.table);
            key.1.clear();
            key.1.push_str(c);
            let declaration = line.starts_with(':');
            let to = match (new.contains(&key), stale.contains(&key), declaration) {
                (true, _, true) => &mut parts.declare,
                (true, _, false) => &mut parts.fill,
                (_, true, true) => &mut parts.flush,
                (_, true, false) => &mut parts.delete,
                _ => {
                    rest.line(chain, line, number);
                    continue;
                }
            };
            to.push((c, line, number));
        }
        let moved: usize = tables
            .iter()
            .map(|p| p.declare.len() + p.fill.len() + p.flush.len() + p.delete.len())
            .sum();
        if moved <= max_lines {
            return None;
        }
        let mut out = Vec::new();
        // Declarations first: a new chain's rules may jump to another.
        for p in &tables {
            for lines in [&p.declare, &p.fill] {
                p.push_pieces(&mut out, Phase::Build, lines, max_lines);
            }
        }
        out.push(rest);
        // Flushes first: a stale chain is deleted once nothing jumps to it.
        for p in &tables {
            for lines in [&p.flush, &p.delete] {
                p.push_pieces(&mut out, Phase::Demolish, lines, max_lines);
            }
        }
        Some(out)
    }
}

/// Lines of a payload as (chain, text, 1-based line of the payload).
type PieceLines<'p> = Vec<(&'p str, &'p str, usize)>;

/// One table of a payload split by [`Plan::pieces`]: the new chains'
/// declarations and rules, the stale chains' flushes and deletions.
#[derive(Default)]
struct Parts<'p> {
    table: &'p str,
    /// The payload lines of the table's `*` and `COMMIT`.
    head: usize,
    commit: usize,
    declare: PieceLines<'p>,
    fill: PieceLines<'p>,
    flush: PieceLines<'p>,
    delete: PieceLines<'p>,
}

impl Parts<'_> {
    /// `lines` of this table as restores of at most `max_lines` lines
    /// each, appended to `out`.
    fn push_pieces(
        &self,
        out: &mut Vec<Piece>,
        phase: Phase,
        lines: &PieceLines<'_>,
        max_lines: usize,
    ) {
        let head = format!("table {}", self.table);
        for chunk in lines.chunks(max_lines) {
            let mut piece = Piece::new(phase);
            piece.line(Some(&head), &format!("*{}", self.table), self.head);
            for (chain, line, number) in chunk {
                piece.line(Some(chain), line, *number);
            }
            piece.line(Some(&head), "COMMIT", self.commit);
            out.push(piece);
        }
    }
}

/// Which step of an apply written in pieces ([`Plan::pieces`]) a restore
/// is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Creates and fills chains the node lacks; nothing jumps to them yet.
    Build,
    /// Everything else of the payload: links the new chains in and the
    /// stale ones out.
    Link,
    /// Flushes and deletes stale chains nothing jumps to any more.
    Demolish,
}

/// One restore of an apply written in pieces ([`Plan::pieces`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Its step.
    pub phase: Phase,
    /// Its restore input (`*TABLE` ... `COMMIT`), with each line's chain
    /// for [`Plan::chain_at`]; its counters are not kept (the whole
    /// [`Plan`] has them).
    pub plan: Plan,
    /// Each of its lines' 1-based line in the whole payload (what
    /// `--dry-run` shows).
    pub payload_lines: Vec<usize>,
}

impl Piece {
    fn new(phase: Phase) -> Piece {
        Piece {
            phase,
            plan: Plan::default(),
            payload_lines: Vec::new(),
        }
    }

    fn line(&mut self, chain: Option<&str>, text: &str, payload_line: usize) {
        self.plan.line(chain, text);
        self.payload_lines.push(payload_line);
    }

    /// The whole payload's line of this piece's 1-based line `line`.
    pub fn payload_line(&self, line: usize) -> Option<usize> {
        self.payload_lines.get(line.checked_sub(1)?).copied()
    }
}

/// What to do with one desired chain.
enum ChainPlan<'a> {
    Same,
    Write(Vec<&'a Rule>),
    /// Deletions by rule (`-D CHAIN spec`: if the chain changed since it
    /// was read, the table fails as a whole instead of deleting another
    /// rule), then insertions at their final positions.
    Edit {
        deletes: Vec<&'a Rule>,
        inserts: Vec<(usize, &'a Rule)>,
    },
}

struct TablePlan<'a> {
    name: &'a str,
    /// (chain, plan, missing rules, extra rules, new chain)
    #[allow(clippy::type_complexity)]
    chains: Vec<(&'a str, ChainPlan<'a>, Vec<&'a Rule>, Vec<&'a Rule>, bool)>,
    jumps: Vec<Rule>,
    /// Jump targets that exist nowhere yet (kube-proxy creates them with
    /// `-N` before inserting the jump, e.g. `KUBE-FIREWALL` on IPv6).
    creates: Vec<String>,
    stale: Vec<String>,
    kept: Vec<(String, String)>,
}

fn plan_table<'a>(
    desired: &'a Table,
    actual: Option<(&'a Table, Vec<Option<&'a str>>)>,
    profile: &Profile,
) -> TablePlan<'a> {
    let (actual, texts) = match actual {
        Some((t, texts)) => (Some(t), texts),
        None => (None, Vec::new()),
    };
    // The node's rules by chain (each with its position, for its text as
    // the node printed it) and the desired rules by chain.
    let index = actual.map_or_else(ChainIndex::empty, Table::chain_index);
    let declared = |c: &str| index.is_declared(c);
    let wanted = desired.chain_index();
    let mut chains = Vec::with_capacity(desired.chains.len());
    // One buffer for every rule's printed form (see `printed_as`).
    let mut buf = String::with_capacity(256);
    for c in &desired.chains {
        let want: &[&Rule] = wanted.get(&c.name).unwrap_or_default();
        let (have, positions): (&[&Rule], &[u32]) = index
            .id(&c.name)
            .map_or((&[], &[]), |id| (index.rules(id), index.positions(id)));
        let (plan, missing, extra) = if !declared(&c.name) {
            (ChainPlan::Write(want.to_vec()), want.to_vec(), vec![])
        } else if printed_as(want, positions, &texts, &mut buf) {
            (ChainPlan::Same, vec![], vec![])
        } else {
            let (deletes, inserts) = edit_script(have, want);
            let missing: Vec<&Rule> = inserts.iter().map(|i| want[*i]).collect();
            let extra: Vec<&Rule> = deletes.iter().map(|i| have[*i]).collect();
            let plan = if deletes.is_empty() && inserts.is_empty() {
                ChainPlan::Same
            } else if (deletes.len() + inserts.len() > want.len()
                || deletes_are_ambiguous(have, &deletes)
                || deletes.iter().any(|d| !deletable_by_spec(have[*d])))
                && !BUILTIN_CHAINS.contains(&c.name.as_str())
            {
                // A declaration and the whole chain is fewer lines (or a
                // delete by spec could hit a kept twin of the rule, or miss
                // the rule it names).
                ChainPlan::Write(want.to_vec())
            } else {
                ChainPlan::Edit {
                    deletes: deletes.iter().map(|i| have[*i]).collect(),
                    inserts: inserts.into_iter().map(|i| (i, want[i])).collect(),
                }
            };
            (plan, missing, extra)
        };
        chains.push((c.name.as_str(), plan, missing, extra, !declared(&c.name)));
    }
    // kube-proxy's jumps from the built-in chains, in the order it ensures them.
    let jumps: Vec<Rule> = profile
        .jump_rules
        .iter()
        .filter(|j| j.table == desired.name)
        .map(|j| j.rule())
        .filter(|j| {
            !index
                .get(&j.chain)
                .is_some_and(|rules| rules.iter().any(|r| r.same_as(j)))
        })
        .collect();
    let desired_declared: FastSet<&str> = desired.chains.iter().map(|c| c.name.as_str()).collect();
    let mut creates: Vec<String> = Vec::new();
    for j in &jumps {
        let t = j.target_name().unwrap_or_default();
        if !desired_declared.contains(t) && !declared(t) && !creates.iter().any(|c| c == t) {
            creates.push(t.to_string());
        }
    }
    // Stale service chains, unless a rule kube-proxy does not own still
    // jumps to them (then they, and what they jump to, stay).
    let desired_names: FastSet<&str> = desired.chains.iter().map(|c| c.name.as_str()).collect();
    let mut stale: Vec<String> = actual
        .map(|a| {
            a.chains
                .iter()
                .map(|c| c.name.as_str())
                .filter(|c| !desired_names.contains(c))
                .filter(|c| profile.is_service_chain(&desired.name, c))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let mut kept = Vec::new();
    if let Some(a) = actual {
        loop {
            let stale_set: FastSet<&str> = stale.iter().map(String::as_str).collect();
            let blocked = a.rules.iter().find(|r| {
                let from_removable = stale_set.contains(r.chain.as_str())
                    || desired_names.contains(r.chain.as_str())
                        && !BUILTIN_CHAINS.contains(&r.chain.as_str());
                !from_removable && r.target_name().is_some_and(|t| stale_set.contains(t))
            });
            let Some(r) = blocked else { break };
            let target = r.target_name().unwrap_or_default().to_string();
            // Keep the chain and everything it reaches.
            let mut queue = vec![target.clone()];
            while let Some(c) = queue.pop() {
                if let Some(i) = stale.iter().position(|s| *s == c) {
                    stale.remove(i);
                    queue.extend(
                        index
                            .get(&c)
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|r| r.target_name().map(String::from)),
                    );
                }
            }
            kept.push((target, render_rule(r)));
        }
    }
    TablePlan {
        name: &desired.name,
        chains,
        jumps,
        creates,
        stale,
        kept,
    }
}

/// Whether `want` is, rule for rule, what the node printed (the texts of
/// its rules at `have`, positions in the node's table): then the chain is
/// as desired, with no rule put into its canonical form. A node's save
/// prints each rule in its
/// kernel form, which is what [`save_text_into`] renders (into `buf`, one
/// buffer for all rules); a chain whose texts differ in any way (another
/// iptables's spelling, a rule more or less) is compared rule by rule in
/// canonical form instead.
fn printed_as(want: &[&Rule], have: &[u32], texts: &[Option<&str>], buf: &mut String) -> bool {
    want.len() == have.len()
        && want.iter().zip(have).all(|(w, &i)| {
            texts.get(i as usize).copied().flatten().is_some_and(|h| {
                save_text_into(w, buf);
                *buf == h
            })
        })
}

/// The actual table `name` of `actual`, with its rules' texts.
fn actual_table<'a>(actual: &'a Ruleset, name: &str) -> Option<(&'a Table, Vec<Option<&'a str>>)> {
    let i = actual.table_index(name)?;
    Some((&actual.tables()[i], actual.rule_texts(i)))
}

/// The semantic difference between `desired` (compiled restore input) and
/// `actual` (an `iptables-save` of the node), for the mode of `profile`.
pub fn diff(desired: &Ruleset, actual: &Ruleset, profile: &Profile) -> RulesDiff {
    let mut out = RulesDiff::default();
    for t in desired.tables() {
        let p = plan_table(t, actual_table(actual, &t.name), profile);
        for (chain, plan, missing, extra, new) in &p.chains {
            let change = match plan {
                ChainPlan::Same => continue,
                _ if *new => ChainChange::Missing,
                _ => ChainChange::Changed,
            };
            out.chains.push(ChainDiff {
                table: t.name.clone(),
                chain: chain.to_string(),
                change,
                // Both sides as iptables-save prints them.
                missing: missing
                    .iter()
                    .map(|r| render_rule(&r.kernel_form()))
                    .collect(),
                extra: extra
                    .iter()
                    .map(|r| render_rule(&r.kernel_form()))
                    .collect(),
            });
        }
        let index = actual.table(&t.name).map(Table::chain_index);
        for s in &p.stale {
            let rules = index
                .as_ref()
                .and_then(|i| i.get(s))
                .map(|rules| rules.iter().copied().map(render_rule).collect())
                .unwrap_or_default();
            out.chains.push(ChainDiff {
                table: t.name.clone(),
                chain: s.clone(),
                change: ChainChange::Stale,
                missing: vec![],
                extra: rules,
            });
        }
        out.missing_jumps.extend(
            p.jumps
                .iter()
                .map(|j| format!("{} {}", t.name, render_rule(&j.kernel_form()))),
        );
    }
    out
}

/// The minimal `iptables-restore --noflush` payload that turns `actual`
/// into `desired` for the mode of `profile`: see the module documentation.
pub fn plan(desired: &Ruleset, actual: &Ruleset, profile: &Profile) -> Plan {
    let mut out = Plan::default();
    for t in desired.tables() {
        let p = plan_table(t, actual_table(actual, &t.name), profile);
        out.chains_kept.extend(p.kept.iter().cloned());
        let changed = p.chains.iter().any(|c| !matches!(c.1, ChainPlan::Same))
            || !p.jumps.is_empty()
            || !p.stale.is_empty();
        if !changed {
            continue;
        }
        let table = format!("table {}", p.name);
        out.line(Some(&table), &format!("*{}", p.name));
        for (chain, plan, _, _, new) in &p.chains {
            if let ChainPlan::Write(_) = plan {
                out.line(Some(chain), &format!(":{chain} - [0:0]"));
                out.chains_written += 1;
                if *new && !BUILTIN_CHAINS.contains(chain) {
                    out.new_chains.push((p.name.to_string(), chain.to_string()));
                }
            }
        }
        for c in &p.creates {
            out.line(Some(c), &format!(":{c} - [0:0]"));
            out.new_chains.push((p.name.to_string(), c.clone()));
        }
        for s in &p.stale {
            out.line(Some(s), &format!(":{s} - [0:0]"));
        }
        for (chain, plan, _, _, _) in &p.chains {
            match plan {
                ChainPlan::Same => {}
                ChainPlan::Write(rules) => {
                    for r in rules {
                        out.line(Some(chain), &render_rule(r));
                        out.rules_added += 1;
                    }
                }
                ChainPlan::Edit { deletes, inserts } => {
                    for d in deletes {
                        let text = render_rule(d);
                        let spec = text.strip_prefix("-A").unwrap_or(&text);
                        out.line(Some(chain), &format!("-D{spec}"));
                        out.rules_deleted += 1;
                    }
                    for (i, r) in inserts {
                        out.line(Some(chain), &insert_text(r, i + 1));
                        out.rules_added += 1;
                    }
                }
            }
        }
        for j in &p.jumps {
            out.line(Some(&j.chain), &insert_text(j, 1));
            out.rules_added += 1;
        }
        for s in &p.stale {
            out.line(Some(s), &format!("-X {s}"));
            out.chains_deleted.push(s.clone());
            out.stale_chains.push((p.name.to_string(), s.clone()));
        }
        out.line(Some(&table), "COMMIT");
    }
    out
}

/// Whether deleting `deletes` (indices into `have`) by rule spec could
/// remove a kept identical rule instead (iptables deletes the first match).
fn deletes_are_ambiguous(have: &[&Rule], deletes: &[usize]) -> bool {
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in have {
        *count.entry(r.canonical()).or_default() += 1;
    }
    deletes.iter().any(|d| count[&have[*d].canonical()] > 1)
}

/// `-I CHAIN pos ...` for `rule`.
fn insert_text(rule: &Rule, pos: usize) -> String {
    let text = render_rule(rule);
    let rest = text
        .strip_prefix(&format!("-A {}", rule.chain))
        .unwrap_or(&text);
    format!("-I {} {pos}{rest}", rule.chain)
}

/// The rules of `have` to delete (indices) and of `want` to insert
/// (indices) so that `have` becomes `want`, keeping a longest common
/// subsequence in place. Rules are compared semantically; the LCS is found
/// as a longest increasing subsequence of matched positions (O(n log n)).
fn edit_script(have: &[&Rule], want: &[&Rule]) -> (Vec<usize>, Vec<usize>) {
    let key = |r: &Rule| r.canonical();
    let mut want_pos: HashMap<(String, usize), usize> = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, r) in want.iter().enumerate() {
        let k = key(r);
        let n = seen.entry(k.clone()).or_default();
        want_pos.insert((k, *n), i);
        *n += 1;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mapped: Vec<Option<usize>> = have
        .iter()
        .map(|r| {
            let k = key(r);
            let n = seen.entry(k.clone()).or_default();
            let pos = want_pos.get(&(k, *n)).copied();
            *n += 1;
            pos
        })
        .collect();
    // Longest increasing subsequence over the mapped positions.
    let mut tails: Vec<usize> = Vec::new(); // index into `mapped` of the tail of each length
    let mut prev: Vec<Option<usize>> = vec![None; mapped.len()];
    for (i, p) in mapped.iter().enumerate() {
        let Some(p) = *p else { continue };
        let len = tails.partition_point(|&t| mapped[t].expect("mapped") < p);
        prev[i] = len.checked_sub(1).map(|l| tails[l]);
        if len == tails.len() {
            tails.push(i);
        } else {
            tails[len] = i;
        }
    }
    let mut keep = vec![false; have.len()];
    let mut kept_want = vec![false; want.len()];
    let mut cur = tails.last().copied();
    while let Some(i) = cur {
        keep[i] = true;
        kept_want[mapped[i].expect("mapped")] = true;
        cur = prev[i];
    }
    let deletes = (0..have.len()).filter(|i| !keep[*i]).collect();
    let inserts = (0..want.len()).filter(|i| !kept_want[*i]).collect();
    (deletes, inserts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::ProxyMode;

    const IPTABLES: &Profile = ProxyMode::Iptables.profile();

    /// `+` and `-` lines of a diff are both in iptables-save's form.
    #[test]
    fn diff_lines_are_in_one_form() {
        let desired = Ruleset::parse(
            "*nat\n:KUBE-SEP-X - [0:0]\n-A KUBE-SEP-X -m comment --comment ns/s:p -s 10.244.2.13 -j KUBE-MARK-MASQ\nCOMMIT\n",
        )
        .unwrap();
        let actual = Ruleset::parse(
            "*nat\n:KUBE-SEP-X - [0:0]\n-A KUBE-SEP-X -s 10.244.2.14/32 -m comment --comment \"ns/s:p\" -j KUBE-MARK-MASQ\nCOMMIT\n",
        )
        .unwrap();
        let d = diff(&desired, &actual, IPTABLES);
        assert_eq!(
            d.chains[0].missing,
            ["-A KUBE-SEP-X -s 10.244.2.13/32 -m comment --comment \"ns/s:p\" -j KUBE-MARK-MASQ"]
        );
        assert_eq!(
            d.chains[0].extra,
            ["-A KUBE-SEP-X -s 10.244.2.14/32 -m comment --comment \"ns/s:p\" -j KUBE-MARK-MASQ"]
        );
    }

    fn rules(texts: &[&str]) -> Vec<Rule> {
        texts
            .iter()
            .map(|t| Rule::parse(&format!("-A C {t}")).unwrap())
            .collect()
    }

    /// Applies an edit script the way iptables-restore does.
    fn apply(have: &[Rule], want: &[Rule]) -> Vec<String> {
        let h: Vec<&Rule> = have.iter().collect();
        let w: Vec<&Rule> = want.iter().collect();
        let (deletes, inserts) = edit_script(&h, &w);
        let mut cur: Vec<String> = have.iter().map(Rule::canonical).collect();
        for d in deletes.iter().rev() {
            cur.remove(*d);
        }
        for i in inserts {
            cur.insert(i, want[i].canonical());
        }
        cur
    }

    #[test]
    fn edit_scripts_produce_the_desired_chain() {
        let cases: [(&[&str], &[&str]); 6] = [
            (&["-j A", "-j B", "-j C"], &["-j A", "-j C"]),
            (&["-j A", "-j C"], &["-j A", "-j B", "-j C"]),
            (&["-j C", "-j B", "-j A"], &["-j A", "-j B", "-j C"]),
            (&["-j A", "-j A", "-j B"], &["-j B", "-j A"]),
            (&[], &["-j A", "-j B"]),
            (
                &["-j X", "-j A", "-j Y", "-j B"],
                &["-j A", "-j Z", "-j B", "-j A"],
            ),
        ];
        for (have, want) in cases {
            let (h, w) = (rules(have), rules(want));
            let got = apply(&h, &w);
            let expect: Vec<String> = w.iter().map(Rule::canonical).collect();
            assert_eq!(got, expect, "{have:?} -> {want:?}");
        }
        // One rule added to a long chain is one insert.
        let long: Vec<String> = (0..100).map(|i| format!("-d 10.0.0.{i} -j A")).collect();
        let mut more = long.clone();
        more.insert(50, "-d 10.0.1.1 -j B".into());
        let h = rules(&long.iter().map(String::as_str).collect::<Vec<_>>());
        let w = rules(&more.iter().map(String::as_str).collect::<Vec<_>>());
        let (hr, wr): (Vec<&Rule>, Vec<&Rule>) = (h.iter().collect(), w.iter().collect());
        assert_eq!(edit_script(&hr, &wr), (vec![], vec![50]));
    }

    /// A large payload in pieces (each at most `max_lines` lines between
    /// `*` and `COMMIT`, but the linking one): the new chains built first,
    /// then one restore linking them in and the stale ones out, then the
    /// stale chains flushed and deleted. Before the link no chain the node
    /// had changes; from the link on, every chain of the end state is as
    /// it will be; the end is exactly what one restore leaves.
    #[test]
    fn large_payloads_are_built_linked_then_demolished() {
        let desired = Ruleset::parse(include_str!(
            "../../../../fixtures/iptables/overall/expected.txt"
        ))
        .unwrap();
        // The node: an older kube-proxy state (some chains exist, some go
        // stale) and another program's rules.
        let mut node = Ruleset::default();
        node.restore(DESIRED, crate::netfilter::RestoreFlush::NoFlush)
            .unwrap();
        node.restore(
            "*nat\n:DOCKER - [0:0]\n-A PREROUTING -j DOCKER\n-A DOCKER -i docker0 -j RETURN\nCOMMIT\n",
            crate::netfilter::RestoreFlush::NoFlush,
        )
        .unwrap();
        let p = plan(&desired, &node, IPTABLES);
        assert!(!p.new_chains.is_empty() && !p.stale_chains.is_empty());
        let mut whole = node.clone();
        whole
            .restore(&p.payload, crate::netfilter::RestoreFlush::NoFlush)
            .unwrap();
        assert!(p.pieces(p.payload.lines().count()).is_none());
        let pieces = p.pieces(7).expect("in pieces");
        // Each piece's line is the payload's line it says.
        let whole_lines: Vec<&str> = p.payload.lines().collect();
        for piece in &pieces {
            for (i, line) in piece.plan.payload.lines().enumerate() {
                let at = piece.payload_line(i + 1).unwrap();
                assert_eq!(
                    line,
                    whole_lines[at - 1],
                    "line {} of {:?}",
                    i + 1,
                    piece.phase
                );
            }
        }
        // Which chains a piece writes (its lines but `*` and `COMMIT`).
        let writes = |piece: &Plan| -> Vec<(String, String)> {
            let table = piece.payload.lines().next().unwrap()[1..].to_string();
            (2..piece.payload.lines().count())
                .map(|l| (table.clone(), piece.chain_at(l).unwrap().to_string()))
                .collect()
        };
        let kind = |piece: &Piece| {
            let w = writes(&piece.plan);
            let k = if w.iter().all(|c| p.new_chains.contains(c)) {
                Phase::Build
            } else if w.iter().all(|c| p.stale_chains.contains(c)) {
                Phase::Demolish
            } else {
                Phase::Link
            };
            assert_eq!(k, piece.phase, "{}", piece.plan.payload);
            match k {
                Phase::Build => 'b',
                Phase::Link => 'l',
                Phase::Demolish => 'd',
            }
        };
        let kinds: String = pieces.iter().map(kind).collect();
        let (b, d) = (kinds.find('l').unwrap(), kinds.rfind('l').unwrap());
        assert_eq!(b, d, "one linking restore: {kinds}");
        assert!(kinds[..b].chars().all(|k| k == 'b') && b > 1, "{kinds}");
        assert!(
            kinds[b + 1..].chars().all(|k| k == 'd') && kinds.len() > b + 2,
            "{kinds}"
        );
        let same = |a: &Ruleset, b: &Ruleset, chains_of: &Ruleset| {
            for t in chains_of.tables() {
                for c in &t.chains {
                    let x: Vec<&Rule> = a.table(&t.name).unwrap().rules_of(&c.name).collect();
                    let y: Vec<&Rule> = b.table(&t.name).unwrap().rules_of(&c.name).collect();
                    assert_eq!(x, y, "{} {}", t.name, c.name);
                }
            }
        };
        let mut staged = node.clone();
        for (i, piece) in pieces.iter().map(|p| &p.plan).enumerate() {
            if i != b {
                assert!(piece.payload.lines().count() <= 7 + 2, "{}", piece.payload);
            }
            staged
                .restore(&piece.payload, crate::netfilter::RestoreFlush::NoFlush)
                .unwrap_or_else(|e| panic!("{e}: {}", piece.payload));
            if i < b {
                // Nothing old changes while new chains are built.
                same(&staged, &node, &node);
            } else {
                // From the link on, what packets meet is the end state.
                same(&staged, &whole, &whole);
            }
        }
        assert_eq!(staged.render(), whole.render());
    }

    /// Chains created only as jump targets (`creates`) are built with the
    /// new chains, so a new chain's rule may jump to one; a built-in chain
    /// is never built apart.
    #[test]
    fn pieces_create_jump_targets_first() {
        let desired = Ruleset::parse(
            "*nat\n:KUBE-SVC-A - [0:0]\n:KUBE-SVC-B - [0:0]\n-A KUBE-SVC-A -j KUBE-POSTROUTING\n-A KUBE-SVC-B -j KUBE-SVC-A\nCOMMIT\n",
        )
        .unwrap();
        let node =
            Ruleset::parse("*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n")
                .unwrap();
        let p = plan(&desired, &node, IPTABLES);
        let mut whole = node.clone();
        whole
            .restore(&p.payload, crate::netfilter::RestoreFlush::NoFlush)
            .unwrap();
        let mut staged = node.clone();
        for piece in p.pieces(1).expect("in pieces") {
            assert!(
                piece.phase != Phase::Build || !piece.plan.payload.contains(":POSTROUTING"),
                "{}",
                piece.plan.payload
            );
            staged
                .restore(&piece.plan.payload, crate::netfilter::RestoreFlush::NoFlush)
                .unwrap_or_else(|e| panic!("{e}: {}", piece.plan.payload));
        }
        assert_eq!(staged.render(), whole.render());
    }

    const DESIRED: &str = "*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A1 - [0:0]
-A KUBE-SERVICES -m comment --comment \"ns/a:p cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -j KUBE-SEP-A1
-A KUBE-SEP-A1 -m tcp -p tcp -j DNAT --to-destination 10.1.0.1:80
COMMIT
";

    #[test]
    fn stale_chains_go_unless_someone_else_jumps_to_them() {
        let desired = Ruleset::parse(DESIRED).unwrap();
        let actual = Ruleset::parse(
            "*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A1 - [0:0]
:KUBE-SVC-OLD - [0:0]
:KUBE-SEP-OLD - [0:0]
:KUBE-SVC-PINNED - [0:0]
:KUBE-SEP-PINNED - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A DOCKER -j KUBE-SVC-PINNED
-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment \"ns/a:p cluster IP\" -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SERVICES -d 172.30.0.99/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-OLD
-A KUBE-SVC-A -j KUBE-SEP-A1
-A KUBE-SEP-A1 -p tcp -m tcp -j DNAT --to-destination 10.1.0.1:80
-A KUBE-SVC-OLD -j KUBE-SEP-OLD
-A KUBE-SVC-PINNED -j KUBE-SEP-PINNED
COMMIT
",
        )
        .unwrap();
        let p = plan(&desired, &actual, IPTABLES);
        assert_eq!(p.chains_deleted, ["KUBE-SVC-OLD", "KUBE-SEP-OLD"]);
        assert_eq!(
            p.chains_kept,
            [(
                "KUBE-SVC-PINNED".to_string(),
                "-A DOCKER -j KUBE-SVC-PINNED".to_string()
            )]
        );
        assert_eq!(
            p.payload,
            "*nat
:KUBE-SVC-OLD - [0:0]
:KUBE-SEP-OLD - [0:0]
-D KUBE-SERVICES -d 172.30.0.99/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-OLD
-X KUBE-SVC-OLD
-X KUBE-SEP-OLD
COMMIT
"
        );
        assert_eq!(p.chain_at(4), Some("KUBE-SERVICES"));
        let d = diff(&desired, &actual, IPTABLES);
        let kinds: Vec<(&str, ChainChange)> = d
            .chains
            .iter()
            .map(|c| (c.chain.as_str(), c.change))
            .collect();
        assert_eq!(
            kinds,
            [
                ("KUBE-SERVICES", ChainChange::Changed),
                ("KUBE-SVC-OLD", ChainChange::Stale),
                ("KUBE-SEP-OLD", ChainChange::Stale)
            ]
        );
        assert!(d.missing_jumps.is_empty());
    }

    /// A node whose service has session affinity (rules as iptables-save
    /// prints them: `recent` with `--mask` and `--rsource`).
    const AFFINITY_NODE: &str = "*nat
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A1 - [0:0]
:KUBE-SEP-A2 - [0:0]
-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment \"ns/a:p cluster IP\" -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -m comment --comment \"ns/a:p -> 10.1.0.1:80\" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A1 --mask 255.255.255.255 --rsource -j KUBE-SEP-A1
-A KUBE-SVC-A -m comment --comment \"ns/a:p -> 10.1.0.2:80\" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A2 --mask 255.255.255.255 --rsource -j KUBE-SEP-A2
-A KUBE-SVC-A -m comment --comment \"ns/a:p -> 10.1.0.1:80\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A1
-A KUBE-SVC-A -m comment --comment \"ns/a:p -> 10.1.0.2:80\" -j KUBE-SEP-A2
-A KUBE-SEP-A1 -s 10.1.0.1/32 -m comment --comment \"ns/a:p\" -j KUBE-MARK-MASQ
-A KUBE-SEP-A1 -p tcp -m comment --comment \"ns/a:p\" -m recent --set --name KUBE-SEP-A1 --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.1.0.1:80
-A KUBE-SEP-A2 -s 10.1.0.2/32 -m comment --comment \"ns/a:p\" -j KUBE-MARK-MASQ
-A KUBE-SEP-A2 -p tcp -m comment --comment \"ns/a:p\" -m recent --set --name KUBE-SEP-A2 --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.1.0.2:80
COMMIT
";

    #[test]
    fn recent_rules_are_never_deleted_by_spec() {
        let actual = Ruleset::parse(AFFINITY_NODE).unwrap();
        // Endpoint 1 goes: two rules of KUBE-SVC-A would be deleted, none
        // inserted (an edit, were it not for `recent`).
        let desired = Ruleset::parse(
            "*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A2 - [0:0]
-A KUBE-SERVICES -m comment --comment \"ns/a:p cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -m comment --comment \"ns/a:p -> 10.1.0.2:80\" -m recent --name KUBE-SEP-A2 --rcheck --seconds 10800 --reap -j KUBE-SEP-A2
-A KUBE-SVC-A -m comment --comment \"ns/a:p -> 10.1.0.2:80\" -j KUBE-SEP-A2
-A KUBE-SEP-A2 -m comment --comment ns/a:p -s 10.1.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-A2 -m comment --comment ns/a:p -m recent --name KUBE-SEP-A2 --set -m tcp -p tcp -j DNAT --to-destination 10.1.0.2:80
COMMIT
",
        )
        .unwrap();
        let p = plan(&desired, &actual, IPTABLES);
        assert!(!p.payload.contains("\n-D "), "{}", p.payload);
        assert!(p.payload.contains(":KUBE-SVC-A - [0:0]\n"), "{}", p.payload);
        assert_eq!(p.rules_deleted, 0);
        assert_eq!(p.chains_deleted, ["KUBE-SEP-A1"]);
        // Session affinity off: KUBE-SVC-A loses its `recent` rules, each
        // KUBE-SEP its `recent` DNAT; all are rewritten.
        let text = AFFINITY_NODE
            .lines()
            .filter(|l| !l.contains("--rcheck"))
            .map(|l| {
                l.replace(
                    "-m recent --set --name KUBE-SEP-A1 --mask 255.255.255.255 --rsource ",
                    "",
                )
            })
            .map(|l| {
                l.replace(
                    "-m recent --set --name KUBE-SEP-A2 --mask 255.255.255.255 --rsource ",
                    "",
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        let desired = Ruleset::parse(&text).unwrap();
        let p = plan(&desired, &actual, IPTABLES);
        assert!(!p.payload.contains("\n-D "), "{}", p.payload);
        assert_eq!(p.chains_written, 3, "{}", p.payload);
        let mut node = actual.clone();
        node.restore(&p.payload, crate::netfilter::RestoreFlush::NoFlush)
            .expect("applies");
        assert!(plan(&desired, &node, IPTABLES).is_empty());
    }

    #[test]
    fn only_known_matches_and_targets_are_deleted_by_spec() {
        let rule = |t: &str| Rule::parse(&format!("-A C {t}")).unwrap();
        for ok in [
            "-d 172.30.0.41/32 -p tcp -m comment --comment \"a b\" -m tcp --dport 80 -j KUBE-SVC-A",
            "-p udp -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable",
            "-m comment --comment x -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A",
            "-m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-j MARK --set-xmark 0x4000/0x0",
            "-m comment --comment x -j MASQUERADE --random-fully",
            "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
            "-m conntrack --ctstate INVALID -m nfacct --nfacct-name ct -j DROP",
            "-m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
            "-p sctp -m sctp -j DNAT --to-destination 10.0.0.1:80 --random",
            "-m comment --comment \"other traffic will be dropped\"",
        ] {
            assert!(deletable_by_spec(&rule(ok)), "{ok}");
        }
        for rewrite in [
            "-m recent --set --name KUBE-SEP-A --mask 255.255.255.255 --rsource -j DNAT --to-destination 10.0.0.1:80",
            "-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A --mask 255.255.255.255 --rsource -j KUBE-SEP-A",
            "-p tcp -m multiport --dports 80,443 -j ACCEPT",
            "-j LOG --log-prefix x",
        ] {
            assert!(!deletable_by_spec(&rule(rewrite)), "{rewrite}");
        }
    }

    /// A node that printed every desired rule as `save_text_into` renders it
    /// is found in sync from the texts alone; one printed otherwise (an
    /// iptables that orders options its own way) is in sync all the same,
    /// through the rules' canonical forms, and a real difference is found
    /// either way.
    #[test]
    fn chains_compare_by_text_first_then_canonically() {
        let desired = Ruleset::parse(DESIRED).unwrap();
        let mut node = Ruleset::default();
        node.restore(DESIRED, crate::netfilter::RestoreFlush::NoFlush)
            .expect("applies");
        let nat = desired.table("nat").unwrap();
        let (table, texts) = actual_table(&node, "nat").unwrap();
        for c in &nat.chains {
            let want: Vec<&Rule> = nat.rules_of(&c.name).collect();
            let have: Vec<u32> = (0..table.rules.len() as u32)
                .filter(|&i| table.rules[i as usize].chain == c.name)
                .collect();
            assert!(
                printed_as(&want, &have, &texts, &mut String::new()),
                "{}",
                c.name
            );
        }
        assert!(
            plan(&desired, &node, IPTABLES)
                .payload
                .lines()
                .all(|l| !l.starts_with(":KUBE-S"))
        );
        // The same rules, another order of base options and spelling.
        let respelled = node.render().replace(
            "-p tcp -m tcp -j DNAT --to-destination 10.1.0.1:80",
            "-p tcp -m tcp -j DNAT --to-destination 10.1.0.1:80 ",
        ).replace(
            "-d 172.30.0.41/32 -p tcp -m comment --comment \"ns/a:p cluster IP\" -m tcp --dport 80",
            "-p tcp -d 172.30.0.41 -m comment --comment \"ns/a:p cluster IP\" -m tcp --dport 80",
        );
        let other = Ruleset::parse(&respelled).unwrap();
        assert_ne!(other.render(), node.render());
        assert_eq!(
            plan(&desired, &other, IPTABLES),
            plan(&desired, &node, IPTABLES)
        );
        // A real difference.
        let moved = Ruleset::parse(&node.render().replace("10.1.0.1:80", "10.1.0.9:80")).unwrap();
        let p = plan(&desired, &moved, IPTABLES);
        assert!(
            p.payload.contains(":KUBE-SEP-A1 - [0:0]\n"),
            "{}",
            p.payload
        );
    }

    #[test]
    fn an_empty_node_gets_everything_and_the_jumps() {
        let desired = Ruleset::parse(DESIRED).unwrap();
        let actual = Ruleset::parse("").unwrap();
        let p = plan(&desired, &actual, IPTABLES);
        assert_eq!(p.chains_written, 3);
        assert!(p.payload.contains(
            "-I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
        ));
        assert_eq!(diff(&desired, &actual, IPTABLES).missing_jumps.len(), 3);
        // A jump target neither desired nor on the node is created first.
        let filter = Ruleset::parse("*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n").unwrap();
        let p = plan(&filter, &actual, IPTABLES);
        assert!(
            p.payload.contains(":KUBE-FIREWALL - [0:0]\n"),
            "{}",
            p.payload
        );
        let mut node = Ruleset::default();
        node.restore(&p.payload, crate::netfilter::RestoreFlush::NoFlush)
            .expect("applies");
        // ... and not again (a declaration would flush kubelet's rules).
        assert!(
            !plan(&filter, &node, IPTABLES)
                .payload
                .contains(":KUBE-FIREWALL")
        );
        // Against itself only the jumps (and KUBE-POSTROUTING, the target
        // of one that this desired state lacks) are written.
        let again = plan(&desired, &desired, IPTABLES).payload;
        let declared: Vec<&str> = again.lines().filter(|l| l.starts_with(':')).collect();
        assert_eq!(declared, [":KUBE-POSTROUTING - [0:0]"], "{again}");
    }
}
