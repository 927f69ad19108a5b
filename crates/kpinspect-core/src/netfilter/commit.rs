//! What `iptables-restore` does to the kernel's tables, done on a
//! [`Ruleset`] value, so that an in-memory node behaves like a kernel.
//!
//! (The semantics are documented on [`Ruleset::restore`].)

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

use super::ext::kernel_form;
use super::rule::{Rule, split_args};
use super::ruleset::{Chain, Ruleset, Table};

/// Whether a restore flushes the tables it names first
/// (`iptables-restore`'s default) or not (`--noflush`, what kube-proxy uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestoreFlush {
    /// `--noflush`: only what the input says changes.
    NoFlush,
    /// No `--noflush`: every table in the input is flushed before its lines
    /// are applied.
    Flush,
}

/// A restore input that the kernel would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct RestoreError {
    /// 1-based line of the input that failed (the line after the last one
    /// for a missing `COMMIT`).
    pub line: usize,
    /// The table being restored, if one was open. That table is unchanged.
    pub table: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// The built-in chains of `table`, in the order the kernel lists them, or
/// `None` for a table the kernel does not have.
pub fn builtin_chains(table: &str) -> Option<&'static [&'static str]> {
    Some(match table {
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        "security" => &["INPUT", "FORWARD", "OUTPUT"],
        _ => return None,
    })
}

/// The built-in chains of every table (a name that is never a user chain).
pub const BUILTIN_CHAINS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Whether `name` is a verdict or a target extension shipped with iptables
/// (not a chain).
pub fn is_target(name: &str) -> bool {
    TARGETS.contains(&name)
}

/// Verdicts and the target extensions shipped with iptables: a jump to any
/// other name must be a chain of the table.
pub const TARGETS: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "QUEUE",
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNAT",
    "DNPT",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "LOG",
    "MARK",
    "MASQUERADE",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "RATEEST",
    "REDIRECT",
    "REJECT",
    "SECMARK",
    "SET",
    "SNAT",
    "SNPT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
];

/// The longest chain name the kernel accepts.
const MAX_CHAIN_NAME: usize = 28;

impl Ruleset {
    /// Applies `payload` (iptables-restore input) the way `iptables-restore`
    /// applies it to the kernel. On error, the table being restored is left
    /// unchanged and tables committed before it in `payload` stay committed.
    ///
    /// The semantics follow iptables 1.8 (checked against `iptables-legacy-restore`
    /// and `iptables-nft-restore` 1.8.9 in a network namespace):
    ///
    /// * each table between `*table` and `COMMIT` is applied atomically: any error
    ///   leaves that table as it was; tables committed earlier in the same input
    ///   stay committed;
    /// * with `--noflush` ([`RestoreFlush::NoFlush`]), declaring an existing user
    ///   chain (`:NAME - [0:0]`) flushes it, declaring a new one creates it, and
    ///   declaring a built-in chain sets its policy without flushing it; without
    ///   it ([`RestoreFlush::Flush`]) the whole table is flushed first (rules and
    ///   user chains removed; built-in policies are kept, as iptables-legacy does
    ///   — iptables-nft resets undeclared built-in policies to `ACCEPT`);
    /// * `-A`, `-I CHAIN [n]`, `-D CHAIN rule` / `-D CHAIN n`, `-R CHAIN n`, `-N`,
    ///   `-F [CHAIN]`, `-X [CHAIN]`, `-P`, `-Z` (a no-op: counters are not
    ///   modelled) and `#` comments are understood; `-D` finds its rule with
    ///   [`Rule::same_as`];
    /// * errors: a chain that does not exist, a chain declared or created twice
    ///   with `-N`, deleting a built-in chain or one that still has rules or is
    ///   still jumped to, deleting or replacing a rule that does not exist, an
    ///   index out of range, a policy on a user chain, a jump (`-j`/`-g`) to
    ///   something that is neither a chain of the table at its `COMMIT` nor a
    ///   known target extension, a malformed line, a missing `COMMIT`.
    ///
    /// Not modelled: counters, which targets are valid in which table or chain,
    /// jump loops, extension option validation.
    ///
    /// After a restore, [`render`](Ruleset::render) prints the tables the way
    /// `iptables-save` does (without its `#` comment lines): `*table`, the
    /// built-in chains in the kernel's order, then user chains **sorted by name**
    /// (what iptables-legacy-save prints, and what iptables-nft-save 1.8.9
    /// prints too), then each chain's rules in the kernel's printing form, then
    /// `COMMIT`. Rules are stored in that form: `-s 10.0.0.1` becomes
    /// `-s 10.0.0.1/32`, `MARK --or-mark` becomes `--set-xmark`, `REJECT` gets
    /// its default `--reject-with`, `statistic` probabilities are printed with
    /// 11 decimals of the kernel's fixed-point value, `recent` options are
    /// reordered and completed.
    ///
    /// ```
    /// use kpinspect_core::netfilter::{RestoreFlush, Ruleset};
    /// let mut rs = Ruleset::default();
    /// rs.restore(
    ///     "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n\
    ///      -A KUBE-SERVICES -d 172.30.0.41 -p tcp --dport 80 -j KUBE-SVC-X\nCOMMIT\n",
    ///     RestoreFlush::NoFlush,
    /// )
    /// .unwrap_err(); // KUBE-SVC-X does not exist
    /// assert!(rs.tables().is_empty());
    /// rs.restore("*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n",
    ///     RestoreFlush::NoFlush).unwrap();
    /// assert_eq!(
    ///     rs.render(),
    ///     "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    ///      :POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n"
    /// );
    /// ```
    pub fn restore(&mut self, payload: &str, flush: RestoreFlush) -> Result<(), RestoreError> {
        let mut changed = false;
        let result = self.restore_tables(payload, flush, &mut changed);
        if changed {
            self.rerender();
        }
        result
    }

    fn restore_tables(
        &mut self,
        payload: &str,
        flush: RestoreFlush,
        changed: &mut bool,
    ) -> Result<(), RestoreError> {
        let mut open: Option<Work> = None;
        let mut count = 0;
        for (i, raw) in payload.lines().enumerate() {
            let n = i + 1;
            count = n;
            let t = raw.trim();
            let err = |work: &Option<Work>, message: String| RestoreError {
                line: n,
                table: work.as_ref().map(|w| w.name.clone()),
                message,
            };
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if let Some(name) = t.strip_prefix('*') {
                if open.is_some() {
                    return Err(err(&open, "COMMIT expected before a new table".into()));
                }
                let name = name.trim();
                let Some(builtins) = builtin_chains(name) else {
                    return Err(err(&open, format!("table name {name:?} invalid")));
                };
                let mut work = match self.table(name) {
                    Some(table) => Work::from_table(table, builtins),
                    None => Work::new(name, builtins),
                };
                if flush == RestoreFlush::Flush {
                    work.flush_table();
                }
                open = Some(work);
                continue;
            }
            let Some(work) = open.as_mut() else {
                return Err(err(
                    &open,
                    format!("{} outside of a table", crate::excerpt::excerpt(t)),
                ));
            };
            if t == "COMMIT" {
                let work = open.take().expect("open table");
                if let Err((line, message)) = work.check_jumps() {
                    return Err(RestoreError {
                        line,
                        table: Some(work.name),
                        message,
                    });
                }
                let table = work.into_table();
                match self.tables.iter_mut().find(|t| t.name == table.name) {
                    Some(slot) => *slot = table,
                    None => self.tables.push(table),
                }
                *changed = true;
                continue;
            }
            if let Err(message) = work.apply(t, n) {
                return Err(err(&open, message));
            }
        }
        if let Some(work) = open {
            return Err(RestoreError {
                line: count + 1,
                table: Some(work.name),
                message: "COMMIT expected".into(),
            });
        }
        Ok(())
    }
}

/// A chain being restored: its policy and its rules, each with the input
/// line that added it (`None` for rules that were already there).
#[derive(Debug, Clone, Default)]
struct WorkChain {
    policy: Option<String>,
    counters: Option<(u64, u64)>,
    rules: Vec<(Rule, Option<usize>)>,
}

/// The copy of a table a restore works on until its `COMMIT`.
#[derive(Debug, Clone)]
struct Work {
    name: String,
    builtins: &'static [&'static str],
    chains: BTreeMap<String, WorkChain>,
    /// How many rules jump (or go) to each name.
    refs: HashMap<String, usize>,
}

impl Work {
    fn new(name: &str, builtins: &'static [&'static str]) -> Work {
        let chains = builtins
            .iter()
            .map(|b| {
                (
                    b.to_string(),
                    WorkChain {
                        policy: Some("ACCEPT".into()),
                        ..WorkChain::default()
                    },
                )
            })
            .collect();
        Work {
            name: name.into(),
            builtins,
            chains,
            refs: HashMap::new(),
        }
    }

    fn from_table(table: &Table, builtins: &'static [&'static str]) -> Work {
        let mut work = Work::new(&table.name, builtins);
        for c in &table.chains {
            let wc = work.chains.entry(c.name.clone()).or_default();
            if c.policy.is_some() {
                wc.policy.clone_from(&c.policy);
            }
            wc.counters = c.counters;
        }
        for r in &table.rules {
            work.add_ref(r, 1);
            work.chains
                .entry(r.chain.clone())
                .or_default()
                .rules
                .push((r.clone(), None));
        }
        work
    }

    fn is_builtin(&self, chain: &str) -> bool {
        self.builtins.contains(&chain)
    }

    fn add_ref(&mut self, rule: &Rule, delta: isize) {
        if let Some(t) = &rule.target {
            let n = self.refs.entry(t.name.clone()).or_default();
            *n = n.saturating_add_signed(delta);
        }
    }

    fn chain_mut(&mut self, name: &str) -> Result<&mut WorkChain, String> {
        self.chains
            .get_mut(name)
            .ok_or_else(|| format!("chain {name} does not exist"))
    }

    /// Removes every rule and user chain (`iptables-restore` without
    /// `--noflush`).
    fn flush_table(&mut self) {
        let builtins = self.builtins;
        self.chains
            .retain(|name, _| builtins.contains(&name.as_str()));
        for c in self.chains.values_mut() {
            c.rules.clear();
        }
        self.refs.clear();
    }

    fn flush_chain(&mut self, name: &str) -> Result<(), String> {
        let rules = std::mem::take(&mut self.chain_mut(name)?.rules);
        for (r, _) in &rules {
            self.add_ref(r, -1);
        }
        Ok(())
    }

    fn check_new_chain_name(&self, name: &str) -> Result<(), String> {
        if name.is_empty() || name.starts_with(['-', '!']) || name.contains(char::is_whitespace) {
            return Err(format!("invalid chain name {name:?}"));
        }
        if name.len() > MAX_CHAIN_NAME {
            return Err(format!(
                "chain name {name:?} is longer than {MAX_CHAIN_NAME} characters"
            ));
        }
        if TARGETS.contains(&name) {
            return Err(format!("chain name {name:?} is a target name"));
        }
        Ok(())
    }

    /// Applies one line that is not `*table`, `COMMIT` or a comment.
    fn apply(&mut self, line: &str, n: usize) -> Result<(), String> {
        if let Some(decl) = line.strip_prefix(':') {
            return self.declare(decl);
        }
        // `[packets:bytes]` before a rule (`iptables-restore -c` input).
        let mut line = line;
        if line.starts_with('[') {
            let end = line.find(']').ok_or("unterminated counters")?;
            line = line[end + 1..].trim_start();
        }
        let args = split_args(line).map_err(|e| e.0)?;
        let (cmd, args) = args.split_first().ok_or("empty line")?;
        let chain = args.first().map(String::as_str);
        let need_chain = || chain.ok_or_else(|| format!("{cmd} needs a chain"));
        match cmd.as_str() {
            "-A" | "--append" => {
                let rule = parse_rule(args)?;
                self.insert(rule, None, n)
            }
            "-I" | "--insert" => {
                let chain = need_chain()?;
                let (pos, spec) = match args.get(1).and_then(|a| a.parse::<usize>().ok()) {
                    Some(pos) => (pos, &args[2..]),
                    None => (1, &args[1..]),
                };
                let rule = parse_rule(&with_chain(chain, spec))?;
                self.insert(rule, Some(pos), n)
            }
            "-D" | "--delete" => {
                let chain = need_chain()?;
                match args {
                    [_, num] if num.parse::<usize>().is_ok() => {
                        let num = num.parse::<usize>().expect("checked");
                        self.remove_nth(chain, num, "deletion").map(|_| ())
                    }
                    _ => {
                        let rule = parse_rule(args)?;
                        self.delete_rule(&rule)
                    }
                }
            }
            "-R" | "--replace" => {
                let chain = need_chain()?;
                let num = args
                    .get(1)
                    .and_then(|a| a.parse::<usize>().ok())
                    .ok_or("-R needs a rule number")?;
                let rule = parse_rule(&with_chain(chain, &args[2..]))?;
                self.remove_nth(chain, num, "replacement")?;
                self.insert(rule, Some(num), n)
            }
            "-N" | "--new-chain" | "--new" => {
                let chain = need_chain()?;
                if args.len() > 1 {
                    return Err(format!("unexpected argument {:?}", args[1]));
                }
                if self.chains.contains_key(chain) {
                    return Err(format!("chain {chain} already exists"));
                }
                self.check_new_chain_name(chain)?;
                self.chains.insert(chain.into(), WorkChain::default());
                Ok(())
            }
            "-F" | "--flush" => match chain {
                Some(chain) => self.flush_chain(chain),
                None => {
                    for c in self.chains.values_mut() {
                        c.rules.clear();
                    }
                    self.refs.clear();
                    Ok(())
                }
            },
            "-X" | "--delete-chain" => match chain {
                Some(chain) => self.delete_chain(chain),
                None => {
                    let user: Vec<String> = self
                        .chains
                        .keys()
                        .filter(|c| !self.is_builtin(c))
                        .cloned()
                        .collect();
                    for c in &user {
                        self.check_deletable(c)?;
                    }
                    for c in &user {
                        self.chains.remove(c);
                    }
                    Ok(())
                }
            },
            "-P" | "--policy" => {
                let (chain, policy) = match args {
                    [chain, policy] => (chain, policy),
                    _ => return Err("-P needs a chain and a policy".into()),
                };
                self.set_policy(chain, policy)
            }
            "-Z" | "--zero" => {
                if let Some(chain) = chain {
                    self.chain_mut(chain)?;
                }
                Ok(())
            }
            other => Err(format!("unexpected command {other:?}")),
        }
    }

    /// `:NAME POLICY [packets:bytes]`.
    fn declare(&mut self, decl: &str) -> Result<(), String> {
        let parts: Vec<&str> = decl.split_whitespace().collect();
        let (name, policy) = match parts.as_slice() {
            [name, policy] | [name, policy, _] => (*name, *policy),
            _ => return Err(format!("bad chain declaration \":{decl}\"")),
        };
        if let [_, _, counters] = parts.as_slice() {
            super::rule::parse_counters(counters)
                .ok_or_else(|| format!("bad counters {counters:?}"))?;
        }
        if self.is_builtin(name) {
            return self.set_policy(name, policy);
        }
        if policy != "-" {
            return Err(format!(
                "can't set policy {policy:?} on {name}: not a built-in chain of table {}",
                self.name
            ));
        }
        if self.chains.contains_key(name) {
            self.flush_chain(name)
        } else {
            self.check_new_chain_name(name)?;
            self.chains.insert(name.into(), WorkChain::default());
            Ok(())
        }
    }

    fn set_policy(&mut self, chain: &str, policy: &str) -> Result<(), String> {
        if !self.is_builtin(chain) {
            return Err(format!(
                "can't set policy {policy:?} on {chain}: not a built-in chain of table {}",
                self.name
            ));
        }
        if policy != "ACCEPT" && policy != "DROP" {
            return Err(format!("bad policy {policy:?} for {chain}"));
        }
        let c = self.chain_mut(chain)?;
        c.policy = Some(policy.into());
        Ok(())
    }

    /// Inserts `rule` at 1-based `pos` of its chain, or appends it.
    fn insert(&mut self, rule: Rule, pos: Option<usize>, n: usize) -> Result<(), String> {
        let rule = kernel_form(rule);
        let c = self.chain_mut(&rule.chain)?;
        let idx = match pos {
            None => c.rules.len(),
            Some(p) if p >= 1 && p <= c.rules.len() + 1 => p - 1,
            Some(p) => {
                return Err(format!(
                    "index of insertion {p} out of range (chain {} has {} rules)",
                    rule.chain,
                    c.rules.len()
                ));
            }
        };
        c.rules.insert(idx, (rule.clone(), Some(n)));
        self.add_ref(&rule, 1);
        Ok(())
    }

    /// Removes the 1-based `num`th rule of `chain`.
    fn remove_nth(&mut self, chain: &str, num: usize, what: &str) -> Result<Rule, String> {
        let c = self.chain_mut(chain)?;
        if num == 0 || num > c.rules.len() {
            return Err(format!(
                "index of {what} {num} out of range (chain {chain} has {} rules)",
                c.rules.len()
            ));
        }
        let (rule, _) = c.rules.remove(num - 1);
        self.add_ref(&rule, -1);
        Ok(rule)
    }

    /// Deletes the first rule of the chain that is [`Rule::same_as`] `rule`.
    fn delete_rule(&mut self, rule: &Rule) -> Result<(), String> {
        let want = rule.canonical();
        let c = self.chain_mut(&rule.chain)?;
        let idx = c
            .rules
            .iter()
            .position(|(r, _)| r.canonical() == want)
            .ok_or_else(|| format!("bad rule: no matching rule exists in chain {}", rule.chain))?;
        let (removed, _) = c.rules.remove(idx);
        self.add_ref(&removed, -1);
        Ok(())
    }

    fn check_deletable(&self, chain: &str) -> Result<(), String> {
        if self.is_builtin(chain) {
            return Err(format!("can't delete built-in chain {chain}"));
        }
        let c = self
            .chains
            .get(chain)
            .ok_or_else(|| format!("chain {chain} does not exist"))?;
        // The kernel checks references first (EBUSY), then rules (ENOTEMPTY).
        if let Some(&refs) = self.refs.get(chain).filter(|r| **r > 0) {
            return Err(format!(
                "can't delete chain {chain}: still jumped to by {refs} rule(s)"
            ));
        }
        if !c.rules.is_empty() {
            return Err(format!(
                "can't delete chain {chain}: it still has {} rule(s)",
                c.rules.len()
            ));
        }
        Ok(())
    }

    fn delete_chain(&mut self, chain: &str) -> Result<(), String> {
        self.check_deletable(chain)?;
        self.chains.remove(chain);
        Ok(())
    }

    /// Every rule this restore added jumps to a chain of the table or to a
    /// target extension; the error is the line of the first one that does
    /// not.
    fn check_jumps(&self) -> Result<(), (usize, String)> {
        let mut bad: Option<(usize, String)> = None;
        for c in self.chains.values() {
            for (r, line) in &c.rules {
                let (Some(t), Some(line)) = (&r.target, line) else {
                    continue;
                };
                let is_chain = self.chains.contains_key(&t.name);
                let ok = if t.goto {
                    is_chain && !self.is_builtin(&t.name)
                } else {
                    is_chain || TARGETS.contains(&t.name.as_str())
                };
                if !ok && bad.as_ref().is_none_or(|(l, _)| line < l) {
                    let what = if t.goto { "goto" } else { "jump" };
                    bad = Some((
                        *line,
                        format!(
                            "{what} to {:?}, which is neither a chain of table {} nor a target",
                            t.name, self.name
                        ),
                    ));
                }
            }
        }
        bad.map_or(Ok(()), Err)
    }

    /// The table as `iptables-save` lists it: built-in chains in the
    /// kernel's order, user chains sorted by name, rules chain by chain.
    fn into_table(self) -> Table {
        let mut chains = Vec::with_capacity(self.chains.len());
        let mut rules = Vec::new();
        let mut chains_map = self.chains;
        let mut push = |name: String, c: WorkChain| {
            chains.push(Chain {
                name,
                policy: c.policy,
                counters: Some(c.counters.unwrap_or((0, 0))),
            });
            rules.extend(c.rules.into_iter().map(|(r, _)| r));
        };
        for b in self.builtins {
            if let Some(c) = chains_map.remove(*b) {
                push(b.to_string(), c);
            }
        }
        for (name, c) in chains_map {
            push(name, c);
        }
        Table {
            name: self.name,
            chains,
            rules,
            deleted: Vec::new(),
        }
    }
}

fn with_chain(chain: &str, spec: &[String]) -> Vec<String> {
    let mut v = Vec::with_capacity(spec.len() + 1);
    v.push(chain.to_string());
    v.extend_from_slice(spec);
    v
}

fn parse_rule(args: &[String]) -> Result<Rule, String> {
    if args.is_empty() {
        return Err("a rule needs a chain".into());
    }
    Rule::from_args(args, None).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: &str = "*filter\n\
        :INPUT DROP [0:0]\n\
        :FORWARD ACCEPT [0:0]\n\
        :OUTPUT ACCEPT [0:0]\n\
        :KUBE-A - [0:0]\n\
        :KUBE-B - [0:0]\n\
        :OTHER - [0:0]\n\
        -A INPUT -j KUBE-B\n\
        -A INPUT -j OTHER\n\
        -A KUBE-A -s 10.0.0.1/32 -j ACCEPT\n\
        -A KUBE-B -j KUBE-A\n\
        -A OTHER -j ACCEPT\n\
        COMMIT\n\
        *nat\n\
        :PREROUTING ACCEPT [0:0]\n\
        :INPUT ACCEPT [0:0]\n\
        :OUTPUT ACCEPT [0:0]\n\
        :POSTROUTING ACCEPT [0:0]\n\
        :KUBE-SERVICES - [0:0]\n\
        -A PREROUTING -j KUBE-SERVICES\n\
        COMMIT\n";

    fn init() -> Ruleset {
        Ruleset::parse(INIT).expect("init")
    }

    fn restored(payload: &str) -> Ruleset {
        let mut rs = init();
        rs.restore(payload, RestoreFlush::NoFlush)
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
        rs
    }

    fn failed(payload: &str) -> RestoreError {
        let mut rs = init();
        let e = rs
            .restore(payload, RestoreFlush::NoFlush)
            .expect_err(payload);
        assert_eq!(rs.render(), INIT, "the table changed: {payload}");
        e
    }

    fn rules(rs: &Ruleset, table: &str, chain: &str) -> Vec<String> {
        rs.table(table)
            .expect("table")
            .rules_of(chain)
            .map(crate::netfilter::render_rule)
            .collect()
    }

    #[test]
    fn parsed_text_still_renders_back() {
        assert_eq!(init().render(), INIT);
        // A no-op restore re-renders in iptables-save's layout, which INIT is.
        assert_eq!(restored("*filter\nCOMMIT\n").render(), INIT);
    }

    #[test]
    fn append_declare_and_render_like_iptables_save() {
        let rs = restored(
            "# kube-proxy\n*filter\n:INPUT ACCEPT [0:0]\n:KUBE-A - [0:0]\n:KUBE-NEW - [0:0]\n\
             -A KUBE-A -s 10.0.0.2 -j ACCEPT\n-A OTHER -j DROP\n-A KUBE-NEW -j RETURN\nCOMMIT\n",
        );
        assert_eq!(
            rs.render(),
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :KUBE-A - [0:0]\n:KUBE-B - [0:0]\n:KUBE-NEW - [0:0]\n:OTHER - [0:0]\n\
             -A INPUT -j KUBE-B\n-A INPUT -j OTHER\n-A KUBE-A -s 10.0.0.2/32 -j ACCEPT\n\
             -A KUBE-B -j KUBE-A\n-A KUBE-NEW -j RETURN\n-A OTHER -j ACCEPT\n-A OTHER -j DROP\n\
             COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n\
             COMMIT\n"
        );
        // The rendering parses back to the same tables.
        assert_eq!(
            Ruleset::parse(&rs.render()).expect("parse").tables,
            rs.tables
        );
    }

    #[test]
    fn user_chains_are_listed_by_name_after_the_built_ins() {
        let mut rs = Ruleset::default();
        rs.restore(
            "*mangle\n:KUBE-Z - [0:0]\n:KUBE-A - [0:0]\n-A KUBE-Z -j KUBE-A\nCOMMIT\n",
            RestoreFlush::NoFlush,
        )
        .expect("restore");
        let names: Vec<&str> = rs.tables[0]
            .chains
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "PREROUTING",
                "INPUT",
                "FORWARD",
                "OUTPUT",
                "POSTROUTING",
                "KUBE-A",
                "KUBE-Z"
            ]
        );
    }

    #[test]
    fn insert_at_positions() {
        let rs = restored(
            "*filter\n-I INPUT 2 -j LOG\n-I INPUT -j DROP\n-I INPUT 5 -j ACCEPT\nCOMMIT\n",
        );
        assert_eq!(
            rules(&rs, "filter", "INPUT"),
            [
                "-A INPUT -j DROP",
                "-A INPUT -j KUBE-B",
                "-A INPUT -j LOG",
                "-A INPUT -j OTHER",
                "-A INPUT -j ACCEPT"
            ]
        );
        let e = failed("*filter\n-I INPUT 4 -j ACCEPT\nCOMMIT\n");
        assert_eq!(e.line, 2, "{e}");
        let e = failed("*filter\n-I INPUT 0 -j ACCEPT\nCOMMIT\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn delete_by_spec_and_by_number() {
        // By spec, written differently from the stored form.
        let rs = restored("*filter\n-D KUBE-A --source 10.0.0.1 --jump ACCEPT\nCOMMIT\n");
        assert!(rules(&rs, "filter", "KUBE-A").is_empty());
        let rs = restored("*filter\n-D INPUT 2\nCOMMIT\n");
        assert_eq!(rules(&rs, "filter", "INPUT"), ["-A INPUT -j KUBE-B"]);
        let rs = restored("*filter\n-D INPUT 1\n-D INPUT 1\n-D KUBE-B 1\n-X KUBE-B\nCOMMIT\n");
        assert!(
            rs.table("filter")
                .expect("filter")
                .chain("KUBE-B")
                .is_none()
        );

        let e = failed("*filter\n-D KUBE-A -s 10.0.0.9 -j ACCEPT\nCOMMIT\n");
        assert_eq!((e.line, e.table.as_deref()), (2, Some("filter")), "{e}");
        let e = failed("*filter\n-D INPUT 1\n-D INPUT 9\nCOMMIT\n");
        assert_eq!(e.line, 3, "{e}");
        let e = failed("*filter\n-D NOPE -j ACCEPT\nCOMMIT\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn replace_by_number() {
        let rs = restored("*filter\n-R INPUT 2 -j LOG\nCOMMIT\n");
        assert_eq!(
            rules(&rs, "filter", "INPUT"),
            ["-A INPUT -j KUBE-B", "-A INPUT -j LOG"]
        );
        assert_eq!(failed("*filter\n-R INPUT 3 -j LOG\nCOMMIT\n").line, 2);
    }

    #[test]
    fn declaring_flushes_user_chains_but_not_built_ins() {
        let rs =
            restored("*filter\n:INPUT ACCEPT [0:0]\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\nCOMMIT\n");
        let filter = rs.table("filter").expect("filter");
        assert_eq!(rules(&rs, "filter", "INPUT").len(), 2);
        assert_eq!(
            filter.chain("INPUT").expect("INPUT").policy.as_deref(),
            Some("ACCEPT")
        );
        assert!(rules(&rs, "filter", "KUBE-A").is_empty());
        assert!(rules(&rs, "filter", "KUBE-B").is_empty());
        assert_eq!(rules(&rs, "filter", "OTHER"), ["-A OTHER -j ACCEPT"]);
        // Declared twice: flushed again.
        let rs =
            restored("*filter\n:KUBE-X - [0:0]\n-A KUBE-X -j ACCEPT\n:KUBE-X - [0:0]\nCOMMIT\n");
        assert!(rules(&rs, "filter", "KUBE-X").is_empty());
    }

    #[test]
    fn without_noflush_the_table_is_flushed_first() {
        let mut rs = init();
        rs.restore(
            "*filter\n:KUBE-A - [0:0]\n-A KUBE-A -j ACCEPT\nCOMMIT\n",
            RestoreFlush::Flush,
        )
        .expect("restore");
        let filter = rs.table("filter").expect("filter");
        let names: Vec<&str> = filter.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["INPUT", "FORWARD", "OUTPUT", "KUBE-A"]);
        // Policies survive, as with iptables-legacy.
        assert_eq!(
            filter.chain("INPUT").expect("INPUT").policy.as_deref(),
            Some("DROP")
        );
        assert_eq!(filter.rules.len(), 1);
        // nat was not named, so it is untouched.
        assert_eq!(
            rules(&rs, "nat", "PREROUTING"),
            ["-A PREROUTING -j KUBE-SERVICES"]
        );
        // A flushed table has lost OTHER.
        let mut rs = init();
        let e = rs
            .restore("*filter\n-A OTHER -j DROP\nCOMMIT\n", RestoreFlush::Flush)
            .expect_err("OTHER is gone");
        assert_eq!(e.line, 2);
        assert_eq!(rs.render(), INIT);
    }

    #[test]
    fn deleting_chains() {
        // Referenced: refused, and the whole table stays as it was.
        let e = failed("*filter\n-A OTHER -j DROP\n:KUBE-A - [0:0]\n-X KUBE-A\nCOMMIT\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("jump"), "{e}");
        // Not empty.
        let e = failed("*filter\n-D INPUT -j OTHER\n-X OTHER\nCOMMIT\n");
        assert_eq!(e.line, 3, "{e}");
        // Built-in, missing.
        assert_eq!(failed("*filter\n-X INPUT\nCOMMIT\n").line, 2);
        assert_eq!(failed("*filter\n-X NOPE\nCOMMIT\n").line, 2);
        // kube-proxy's way: flush by declaration, drop the jumps, delete.
        // (Declaring INPUT does not flush it: its jump must be deleted.)
        assert_eq!(
            failed("*filter\n:INPUT DROP [0:0]\n:KUBE-B - [0:0]\n-X KUBE-B\nCOMMIT\n").line,
            4
        );
        let rs = restored(
            "*filter\n:INPUT DROP [0:0]\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-D INPUT -j KUBE-B\n\
             -X KUBE-B\n-X KUBE-A\nCOMMIT\n",
        );
        let filter = rs.table("filter").expect("filter");
        assert!(filter.chain("KUBE-A").is_none() && filter.chain("KUBE-B").is_none());
        // Deleted then jumped to again: caught at COMMIT, on the jump's line.
        let e = failed("*filter\n:KUBE-Z - [0:0]\n-X KUBE-Z\n-A OTHER -j KUBE-Z\nCOMMIT\n");
        assert_eq!(e.line, 4, "{e}");
        // -X without a chain deletes every user chain, if it can.
        let rs = restored("*filter\n-F\n-X\nCOMMIT\n");
        assert_eq!(rs.table("filter").expect("filter").chains.len(), 3);
        assert_eq!(failed("*filter\n-X\nCOMMIT\n").line, 2);
    }

    #[test]
    fn new_flush_policy_zero() {
        let rs =
            restored("*filter\n-N NEW\n-A NEW -j ACCEPT\n-F KUBE-B\n-P INPUT ACCEPT\n-Z\nCOMMIT\n");
        assert_eq!(rules(&rs, "filter", "NEW"), ["-A NEW -j ACCEPT"]);
        assert!(rules(&rs, "filter", "KUBE-B").is_empty());
        let input = rs.table("filter").expect("filter").chain("INPUT").cloned();
        assert_eq!(input.expect("INPUT").policy.as_deref(), Some("ACCEPT"));
        assert_eq!(failed("*filter\n-N OTHER\nCOMMIT\n").line, 2);
        assert_eq!(failed("*filter\n-N NEW\n-N NEW\nCOMMIT\n").line, 3);
        assert_eq!(failed("*filter\n-F NOPE\nCOMMIT\n").line, 2);
        assert_eq!(failed("*filter\n-P OTHER DROP\nCOMMIT\n").line, 2);
        assert_eq!(failed("*filter\n-P INPUT MAYBE\nCOMMIT\n").line, 2);
        assert_eq!(
            failed("*filter\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").line,
            2
        );
        assert_eq!(failed("*filter\n:KUBE-Q ACCEPT [0:0]\nCOMMIT\n").line, 2);
        let long = format!("*filter\n:{} - [0:0]\nCOMMIT\n", "K".repeat(29));
        assert_eq!(failed(&long).line, 2);
    }

    #[test]
    fn errors_name_their_line() {
        let cases = [
            // Appending to a chain that was never declared and does not exist.
            ("*filter\n-A NOPE -j ACCEPT\nCOMMIT\n", 2),
            // A jump to nothing, found at COMMIT but reported on the rule.
            (
                "*filter\n# c\n\n-A OTHER -j KUBE-NOPE\n-A OTHER -j DROP\nCOMMIT\n",
                4,
            ),
            ("*filter\n:KUBE-X - [0:0]\n-A OTHER -g INPUT\nCOMMIT\n", 3),
            ("*filter\n-A OTHER -m comment --comment \"open\nCOMMIT\n", 2),
            ("*filter\n-A OTHER --dport 80 -j ACCEPT\nCOMMIT\n", 2),
            ("*filter\nbogus\nCOMMIT\n", 2),
            ("*filter\n:KUBE-X\nCOMMIT\n", 2),
            ("*filter\n:KUBE-X - [a:b]\nCOMMIT\n", 2),
            ("*filter\n-A OTHER -j DROP\n", 3),
            ("*filter\n*nat\nCOMMIT\n", 2),
            ("*foo\nCOMMIT\n", 1),
            ("-A OTHER -j DROP\n", 1),
            ("*filter\n-R INPUT -j LOG\nCOMMIT\n", 2),
        ];
        for (payload, line) in cases {
            let e = failed(payload);
            assert_eq!(e.line, line, "{payload:?}: {e}");
        }
    }

    #[test]
    fn tables_commit_one_at_a_time() {
        let mut rs = init();
        let e = rs
            .restore(
                "*nat\n:KUBE-NEW - [0:0]\n-A KUBE-SERVICES -j KUBE-NEW\nCOMMIT\n\
                 *filter\n-A OTHER -j DROP\n-X INPUT\nCOMMIT\n",
                RestoreFlush::NoFlush,
            )
            .expect_err("second table fails");
        assert_eq!((e.line, e.table.as_deref()), (7, Some("filter")), "{e}");
        // nat is committed, filter is not.
        assert_eq!(
            rules(&rs, "nat", "KUBE-SERVICES"),
            ["-A KUBE-SERVICES -j KUBE-NEW"]
        );
        assert_eq!(rules(&rs, "filter", "OTHER"), ["-A OTHER -j ACCEPT"]);
        let text = rs.render();
        assert!(text.contains(":KUBE-NEW - [0:0]\n"), "{text}");
        assert_eq!(
            Ruleset::parse(&text).expect("parse").tables,
            rs.tables,
            "{text}"
        );
    }

    #[test]
    fn new_tables_get_their_built_in_chains() {
        let mut rs = init();
        rs.restore(
            "*raw\n-A PREROUTING -j NOTRACK\nCOMMIT\n",
            RestoreFlush::NoFlush,
        )
        .expect("restore");
        let raw = rs.table("raw").expect("raw");
        let names: Vec<&str> = raw.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["PREROUTING", "OUTPUT"]);
        assert_eq!(rs.tables.last().map(|t| t.name.as_str()), Some("raw"));
    }

    #[test]
    fn rules_are_stored_as_iptables_save_prints_them() {
        let mut rs = Ruleset::default();
        let payload = "*nat\n\
            :KUBE-SVC-X - [0:0]\n\
            :KUBE-SEP-X - [0:0]\n\
            :KUBE-MARK-MASQ - [0:0]\n\
            :KUBE-POSTROUTING - [0:0]\n\
            -A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000\n\
            -A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN\n\
            -A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000\n\
            -A KUBE-SVC-X -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n\
            -A KUBE-SVC-X -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m recent --name KUBE-SEP-X --rcheck --seconds 10800 --reap -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-X\n\
            -A KUBE-SEP-X -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-X --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80\n\
            -A KUBE-SEP-X -s 0.0.0.0/0 -d 10.1.2.3/8 -m conntrack --ctstate ESTABLISHED,INVALID -j ACCEPT\n\
            COMMIT\n\
            *filter\n\
            -A INPUT -m comment --comment \"x has no endpoints\" -m tcp -p TCP -d 172.30.0.46 --dport 80 -j REJECT\n\
            COMMIT\n";
        rs.restore(payload, RestoreFlush::NoFlush).expect("restore");
        let text = rs.render();
        for want in [
            "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n",
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n",
            "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n",
            "-A KUBE-SVC-X ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n",
            "-A KUBE-SVC-X -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-X\n",
            "-A KUBE-SEP-X -p tcp -m comment --comment \"ns1/svc1:p80\" -m recent --set --name KUBE-SEP-X --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.180.0.1:80\n",
            "-A KUBE-SEP-X -d 10.0.0.0/8 -m conntrack --ctstate INVALID,ESTABLISHED -j ACCEPT\n",
            "-A INPUT -d 172.30.0.46/32 -p tcp -m comment --comment \"x has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable\n",
        ] {
            assert!(text.contains(want), "missing {want}in\n{text}");
        }
        // Deleting with kube-proxy's spelling finds the stored form.
        rs.restore(
            "*nat\n-D KUBE-MARK-MASQ -j MARK --or-mark 0x4000\nCOMMIT\n",
            RestoreFlush::NoFlush,
        )
        .expect("delete");
        assert!(!rs.render().contains("-A KUBE-MARK-MASQ"));
    }

    #[test]
    fn ipv6_defaults() {
        let mut rs = Ruleset::default();
        rs.restore(
            "*filter\n-A INPUT -d fd00::0001 -p tcp -m tcp --dport 80 -j REJECT\nCOMMIT\n",
            RestoreFlush::NoFlush,
        )
        .expect("restore");
        assert_eq!(
            rules(&rs, "filter", "INPUT"),
            [
                "-A INPUT -d fd00::1/128 -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp6-port-unreachable"
            ]
        );
    }

    #[test]
    fn counters_and_comments_are_accepted() {
        let rs = restored(
            "# Generated\n*filter\n:KUBE-A - [5:100]\n[1:2] -A KUBE-A -j DROP\nCOMMIT\n# Completed\n",
        );
        assert_eq!(rules(&rs, "filter", "KUBE-A"), ["-A KUBE-A -j DROP"]);
        assert!(rs.render().contains(":KUBE-A - [0:0]\n"));
    }
}
