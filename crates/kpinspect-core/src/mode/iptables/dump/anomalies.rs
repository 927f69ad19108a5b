//! What is wrong or stale in a save's kube-proxy rules, judged against the
//! mode and generation they show ([`Generation`]): one anomaly per chain
//! concerned, whatever the number of rules that show it.

use std::collections::{BTreeMap, HashMap};

use super::super::names::{is_old_service_chain, is_service_chain, service_chain_suffix};
use super::generation::{Generation, RulesMode, Version};
use super::{Anomaly, AnomalyKind, Indexed};
use crate::fasthash::{FastBuild, FastSet};
use crate::mode::ipvs;
use crate::net::parse_ip_sloppy;
use crate::netfilter::ChainIndex;
use crate::netfilter::{BUILTIN_CHAINS, Rule, Table, Target, is_target, render_rule};

/// (table, built-in chain, kube-proxy chain, first kube-proxy version that
/// installs it) of the iptables-mode jumps whose absence the dump reports:
/// those kube-proxy installs together with their target chain, plus filter
/// FORWARD → KUBE-SERVICES, which only 1.15 and newer install (the chain
/// is older). Newer jumps whose target is as new as they are (to
/// `KUBE-PROXY-FIREWALL`, ...) are not listed. A subset of
/// [`JUMP_RULES`](super::super::JUMP_RULES).
pub(super) const ENTRY_CHAINS: [(&str, &str, &str, Option<Version>); 7] = [
    ("nat", "PREROUTING", "KUBE-SERVICES", None),
    ("nat", "OUTPUT", "KUBE-SERVICES", None),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", None),
    ("filter", "FORWARD", "KUBE-FORWARD", None),
    ("filter", "INPUT", "KUBE-NODEPORTS", None),
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", None),
    ("filter", "FORWARD", "KUBE-SERVICES", Some(Version::v1(15))),
];

/// The jumps every mode installs: all an unknown mode is held to.
const SHARED_JUMPS: [(&str, &str, &str, Option<Version>); 4] = [
    ("nat", "PREROUTING", "KUBE-SERVICES", None),
    ("nat", "OUTPUT", "KUBE-SERVICES", None),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", None),
    ("filter", "FORWARD", "KUBE-FORWARD", None),
];

/// The jumps expected of `mode`'s rules (each only where its target chain
/// exists, and `since` the generation shown).
fn expected_jumps(
    mode: RulesMode,
) -> Vec<(&'static str, &'static str, &'static str, Option<Version>)> {
    match mode {
        RulesMode::None | RulesMode::Nftables => vec![],
        RulesMode::Iptables => ENTRY_CHAINS.to_vec(),
        RulesMode::Unknown => SHARED_JUMPS.to_vec(),
        RulesMode::Ipvs => {
            let mut out: Vec<(&str, &str, &str, Option<Version>)> = Vec::new();
            for j in &ipvs::JUMP_RULES {
                let k = (j.table, j.chain, j.target, None);
                if !out.contains(&k) {
                    out.push(k);
                }
            }
            out
        }
    }
}

/// What a fixed chain must hold.
#[derive(Clone, Copy)]
enum Need {
    /// Any rule.
    Rules,
    /// A rule with this target.
    Target(&'static str),
}

/// A fixed chain kube-proxy rewrites on every sync, and what is lost when
/// its rules are.
struct Fixed {
    table: &'static str,
    chain: &'static str,
    need: Need,
    /// Checked only when the chain is declared (not every generation of
    /// the mode creates it).
    if_declared: bool,
    lost: &'static str,
}

const SERVICES: Fixed = Fixed {
    table: "nat",
    chain: "KUBE-SERVICES",
    need: Need::Rules,
    if_declared: false,
    lost: "no Service traffic is handled there",
};
const POSTROUTING: Fixed = Fixed {
    table: "nat",
    chain: "KUBE-POSTROUTING",
    need: Need::Target("MASQUERADE"),
    if_declared: false,
    lost: "Service traffic marked for masquerade is not masqueraded",
};
const MARK_MASQ: Fixed = Fixed {
    table: "nat",
    chain: "KUBE-MARK-MASQ",
    need: Need::Target("MARK"),
    if_declared: false,
    lost: "nothing marks Service traffic for masquerade",
};
const FORWARD: Fixed = Fixed {
    table: "filter",
    chain: "KUBE-FORWARD",
    need: Need::Rules,
    if_declared: false,
    lost: "forwarded Service traffic is not accepted where FORWARD's policy drops it",
};

/// The fixed chains of `mode` that must hold rules.
fn fixed_chains(mode: RulesMode) -> Vec<Fixed> {
    match mode {
        RulesMode::None | RulesMode::Nftables => vec![],
        RulesMode::Iptables => vec![SERVICES, POSTROUTING, MARK_MASQ, FORWARD],
        RulesMode::Ipvs => vec![
            SERVICES,
            POSTROUTING,
            MARK_MASQ,
            Fixed {
                table: "nat",
                chain: "KUBE-LOAD-BALANCER",
                need: Need::Rules,
                if_declared: false,
                lost: "load-balancer traffic is not marked for masquerade",
            },
            Fixed {
                if_declared: true,
                ..FORWARD
            },
        ],
        RulesMode::Unknown => vec![SERVICES, POSTROUTING, MARK_MASQ],
    }
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// `a, b and c`, at most `max` named.
fn list(items: &[&str], max: usize) -> String {
    let mut v: Vec<&str> = Vec::new();
    for i in items {
        if !v.contains(i) {
            v.push(i);
        }
    }
    let more = v.len().saturating_sub(max);
    v.truncate(max);
    let mut s = v.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// The anomalies of `rs` (filter, then nat), each table's sorted by kind
/// and chain.
pub(super) fn anomalies(
    indexed: &Indexed<'_>,
    names: &HashMap<String, String>,
    generation: &Generation,
) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (table, rules) in &indexed.tables {
        out.extend(table_anomalies(table, rules, names, generation));
    }
    out
}

fn table_anomalies<'t>(
    table: &'t Table,
    rules: &ChainIndex<'t>,
    names: &HashMap<String, String>,
    generation: &Generation,
) -> Vec<Anomaly> {
    let tn = table.name.as_str();
    let mut out = Vec::new();
    let mut push = |kind, chain: &str, message: String| {
        out.push(Anomaly {
            kind,
            chain: chain.to_string(),
            message,
        })
    };
    let declared = |chain: &str| rules.is_declared(chain);
    // Chains that exist as far as the text goes: declared, or with rules.
    let known = |chain: &str| rules.contains_key(chain);
    let jumpers = |chain: &str| -> Vec<&Rule> {
        table
            .rules
            .iter()
            .filter(|r| r.target_name() == Some(chain))
            .collect()
    };

    // Rules of a chain that is never declared: the text was edited.
    let mut undeclared = false;
    for (chain, list) in rules.iter() {
        if declared(chain)
            || list.is_empty()
            || BUILTIN_CHAINS.contains(&chain)
            || !chain.starts_with("KUBE-")
        {
            continue;
        }
        undeclared = true;
        let from = jumpers(chain);
        let jumped = match from.len() {
            0 => String::new(),
            1 => " (1 rule jumps to it)".to_string(),
            n => format!(" ({n} rules jump to it)"),
        };
        push(
            AnomalyKind::UndeclaredChain,
            chain,
            format!(
                "{tn} table: {chain} has {}{jumped} but no declaration (no `:{chain}` line): the text was edited or filtered (e.g. with grep); iptables-save declares every chain it prints",
                plural(list.len(), "rule")
            ),
        );
    }

    // Jumps to chains that do not exist, once per chain. Other unknown
    // names may be extension targets (CT, NFLOG, ...); kube-proxy's own
    // chains all start with KUBE-.
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut note_missing = |r: &'t Rule, exists: bool| {
        if let Some(t) = r.target_name()
            && !exists
            && t.starts_with("KUBE-")
            && !is_target(t)
        {
            missing.entry(t).or_default().push(r.chain.as_str());
        }
    };
    match rules.in_table_order() {
        // The index knows where each rule jumps.
        Some(indexed) => indexed.for_each(|(r, to)| note_missing(r, to != ChainIndex::NO_CHAIN)),
        None => {
            for r in &table.rules {
                note_missing(r, r.target_name().is_some_and(known));
            }
        }
    }
    for (t, from) in &missing {
        let hint = if undeclared {
            " (or its declaration was filtered out of the text)"
        } else {
            ""
        };
        let message = if from.len() == 1 {
            format!(
                "{tn} table: rule in {} jumps to {t}, which does not exist{hint}",
                from[0]
            )
        } else {
            format!(
                "{tn} table: {} (in {}) jump to {t}, which does not exist{hint}",
                plural(from.len(), "rule"),
                list(from, 3)
            )
        };
        push(AnomalyKind::MissingChain, t, message);
    }

    // Reachability from the built-in chains. kube-proxy's top-level chains
    // count as reached even when the jumps into them are missing (reported
    // as `missing-jump` instead).
    let entries = ENTRY_CHAINS
        .iter()
        .map(|(_, _, c, _)| *c)
        .chain(ipvs::JUMP_RULES.iter().map(|j| j.target));
    let mut reached_id = vec![false; rules.len()];
    let mut todo: Vec<usize> = BUILTIN_CHAINS
        .iter()
        .copied()
        .chain(entries)
        .filter_map(|c| rules.id(c))
        .collect();
    while let Some(c) = todo.pop() {
        if std::mem::replace(&mut reached_id[c], true) {
            continue;
        }
        todo.extend(
            rules
                .targets(c)
                .iter()
                .filter(|&&t| t != ChainIndex::NO_CHAIN)
                .map(|&t| t as usize),
        );
    }
    let reached = |chain: &str| rules.id(chain).is_some_and(|id| reached_id[id]);

    // Jumps from the built-in chains, as the mode and generation install them.
    for (tname, from, to, since) in expected_jumps(generation.mode) {
        if tn != tname || !known(to) || !declared(from) {
            continue;
        }
        if since.is_some_and(|v| !generation.at_least(v)) {
            continue;
        }
        let jumps = rules
            .get(from)
            .into_iter()
            .flatten()
            .any(|r| r.target_name() == Some(to));
        if !jumps {
            push(
                AnomalyKind::MissingJump,
                to,
                format!(
                    "{tn} table: {from} does not jump to {to}, so kube-proxy's rules there are never used"
                ),
            );
        }
    }

    // kube-proxy's fixed rules, rewritten on every sync: missing means lost.
    for f in fixed_chains(generation.mode) {
        if f.table != tn || (f.if_declared && !known(f.chain)) {
            continue;
        }
        let list = rules.get(f.chain).unwrap_or_default();
        let what = match f.need {
            Need::Rules => "its rules".to_string(),
            Need::Target(t) => format!("a {t} rule"),
        };
        let state = if !known(f.chain) {
            if !jumpers(f.chain).is_empty() {
                continue; // reported as missing-chain
            }
            "does not exist".to_string()
        } else if list.is_empty() {
            "is empty".to_string()
        } else {
            match f.need {
                Need::Rules => continue,
                Need::Target(t) if list.iter().any(|r| r.target_name() == Some(t)) => continue,
                Need::Target(t) => format!("has no {t} rule"),
            }
        };
        push(
            AnomalyKind::MissingRules,
            f.chain,
            format!(
                "{tn} table: {} {state}, though kube-proxy ({} mode) writes {what} there on every sync: {} (flushed since, or kube-proxy's iptables-restore fails: see its log)",
                f.chain,
                generation.mode.as_str(),
                f.lost
            ),
        );
    }

    // Chains of an older generation than the rules show: leftovers (on a
    // node whose rules are that old, they are its own).
    for name in rules.keys() {
        let old = (is_old_service_chain(name) && generation.at_least(Version::v1(24)))
            || (name == "KUBE-MARK-DROP" && generation.at_least(Version::v1(25)));
        if old {
            push(
                AnomalyKind::OldGeneration,
                name,
                format!(
                    "{tn} table: {name} is only created by kube-proxy/kubelet older than 1.24/1.28"
                ),
            );
        }
    }
    let has_builtins = BUILTIN_CHAINS.iter().any(|c| declared(c));
    for name in rules.keys() {
        let service_chain = service_chain_suffix(name).is_some();
        if has_builtins && service_chain && !reached(name) {
            let who = service_chain_suffix(name)
                .and_then(|s| names.get(s))
                .map(|s| format!(" (was {s})"))
                .unwrap_or_default();
            push(
                AnomalyKind::StaleChain,
                name,
                format!("{tn} table: nothing reaches {name}{who}; kube-proxy left it behind"),
            );
        }
    }

    // Chains of the other proxy mode.
    match generation.mode {
        RulesMode::Iptables => {
            let other: Vec<&str> = ipvs::CHAINS
                .iter()
                .filter(|(t, c)| *t == tn && !super::super::PROFILE.owns_chain(t, c))
                .map(|(_, c)| *c)
                .filter(|c| known(c))
                .collect();
            for c in &other {
                push(
                    AnomalyKind::OtherMode,
                    c,
                    format!(
                        "{tn} table holds IPVS-mode chains ({}) next to iptables-mode rules: leftovers of a mode switch",
                        other.join(", ")
                    ),
                );
            }
        }
        RulesMode::Ipvs => {
            // Not the canary: whether IPVS mode creates it varies.
            let other: Vec<&str> = super::super::CHAINS
                .iter()
                .filter(|(t, c)| {
                    *t == tn && *c != "KUBE-PROXY-CANARY" && !ipvs::PROFILE.owns_chain(t, c)
                })
                .map(|(_, c)| *c)
                .filter(|c| known(c))
                .collect();
            let service_chains = rules.keys().filter(|c| is_service_chain(c)).count();
            let mut all: Vec<String> = other.iter().map(|c| c.to_string()).collect();
            if service_chains > 0 {
                all.push(plural(service_chains, "per-Service chain"));
            }
            for c in &other {
                let n = rules.get(c).map_or(0, <[_]>::len);
                let live = if n > 0 && reached(c) {
                    let verb = if n == 1 { "applies" } else { "apply" };
                    format!("; {} in {c} still {verb}", plural(n, "rule"))
                } else {
                    String::new()
                };
                push(
                    AnomalyKind::OtherMode,
                    c,
                    format!(
                        "{tn} table holds iptables-mode chains ({}) next to IPVS-mode rules: leftovers of a mode switch{live}",
                        all.join(", ")
                    ),
                );
            }
        }
        RulesMode::None | RulesMode::Unknown | RulesMode::Nftables => {}
    }

    // Duplicate rules within a chain, once per chain.
    let mut scratch = Vec::new();
    for (chain, list) in rules.iter() {
        let dups = duplicates_with(list, &mut scratch);
        let Some(first) = dups.first() else { continue };
        let message = if dups.len() == 1 {
            format!(
                "{tn} table: {chain} holds the same rule twice: {}",
                render_rule(first)
            )
        } else {
            format!(
                "{tn} table: {chain} holds {} more than once, e.g.: {}",
                plural(dups.len(), "rule"),
                render_rule(first)
            )
        };
        push(AnomalyKind::DuplicateRule, chain, message);
    }

    // Targets an iptables of another version printed wrongly, once per chain.
    let mut garbled: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in &table.rules {
        if let Some(text) = garbled_target(r) {
            garbled.entry(r.chain.as_str()).or_default().push(text);
        }
    }
    for (chain, texts) in &garbled {
        let what = if texts.len() == 1 {
            format!("its {} target", target_kind(&texts[0]))
        } else {
            format!("{} of its targets", texts.len())
        };
        push(
            AnomalyKind::GarbledRule,
            chain,
            format!(
                "{tn} table: {chain}: {what} cannot be read (`{}`): printed by another iptables than the one that wrote it (a version or legacy/nft mismatch, e.g. the host's older iptables-save); read the rules with kube-proxy's own iptables-save (in its container)",
                texts[0]
            ),
        );
    }

    out.sort_by(|a, b| (&a.kind, &a.chain).cmp(&(&b.kind, &b.chain)));
    out
}

/// The rules of `list` (one chain's, in order) the kernel holds as the same
/// rule as an earlier one, in order.
///
/// Putting a rule into its kernel form ([`Rule::canonical`]) costs a copy
/// and a rendering; a chain of distinct rules, what every save holds,
/// needs none. Two rules the kernel holds as one have the same target
/// (and `-g`/`-j`), the same match modules in the same order and the same
/// comments: the kernel form changes none of these (it fills in defaults,
/// folds aliases and spellings of values). So rules are grouped by a hash
/// of those ([`shape`]) first, and only rules that share a group with
/// another are compared in their kernel form. Most chains (an endpoint's,
/// a service's) hold no two rules with the same target at all: a look at
/// the targets alone clears them before any shape is hashed.
#[cfg(test)]
fn duplicates<'a>(list: &[&'a Rule]) -> Vec<&'a Rule> {
    duplicates_with(list, &mut Vec::new())
}

/// [`duplicates`], with `shapes` as scratch space (one allocation for
/// every chain of a table).
fn duplicates_with<'a>(list: &[&'a Rule], shapes: &mut Vec<(u64, usize)>) -> Vec<&'a Rule> {
    if list.len() < 2 || distinct_targets(list, shapes) {
        return Vec::new();
    }
    shapes.clear();
    shapes.extend(list.iter().enumerate().map(|(i, r)| (shape(r), i)));
    shapes.sort_unstable();
    let mut dups: Vec<usize> = Vec::new();
    let mut start = 0;
    while start < shapes.len() {
        let end = start
            + shapes[start..]
                .iter()
                .take_while(|(h, _)| *h == shapes[start].0)
                .count();
        if end - start > 1 {
            // Indices ascend within a group (sorted by hash, then index).
            let mut seen = FastSet::default();
            for (_, i) in &shapes[start..end] {
                if !seen.insert(list[*i].canonical()) {
                    dups.push(*i);
                }
            }
        }
        start = end;
    }
    dups.sort_unstable();
    dups.into_iter().map(|i| list[i]).collect()
}

/// Whether no two rules of `list` have the same target and kind (`-j`/`-g`)
/// — then no two share a [`shape`]. Compares a hash of each target, which
/// equal targets share.
fn distinct_targets(list: &[&Rule], scratch: &mut Vec<(u64, usize)>) -> bool {
    use std::hash::BuildHasher;
    let build = FastBuild::default();
    scratch.clear();
    scratch.extend(list.iter().map(|r| {
        let target = r.target.as_ref().map(|t| (t.name.as_str(), t.goto));
        (build.hash_one(target), 0)
    }));
    scratch.sort_unstable();
    scratch.windows(2).all(|w| w[0].0 != w[1].0)
}

/// A hash of what the kernel form of `rule` keeps as written: its target's
/// name and kind (`-j`/`-g`), its match modules in order, and the options
/// of its `comment` matches (in any order, as the kernel compares them).
fn shape(rule: &Rule) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let build = FastBuild::default();
    let mut h = build.build_hasher();
    rule.target
        .as_ref()
        .map(|t| (t.name.as_str(), t.goto))
        .hash(&mut h);
    for m in &rule.matches {
        m.module.hash(&mut h);
        if m.module == "comment" {
            // Order-independent: a sum of each option's own hash.
            let sum = m.options.iter().fold(0u64, |acc, o| {
                acc.wrapping_add(build.hash_one((&o.name, &o.values, o.negated)))
            });
            sum.hash(&mut h);
        }
    }
    h.finish()
}

fn target_kind(text: &str) -> &str {
    text.split_whitespace().nth(1).unwrap_or("")
}

/// The target of `rule` as text, when it is a DNAT/SNAT whose address
/// cannot be what any program wrote: the address option repeated, without
/// a value, or unspecified (`0.0.0.0`, port 0). That is what an
/// iptables-save prints for rules a different iptables version wrote.
pub(super) fn garbled_target(rule: &Rule) -> Option<String> {
    let t = rule.target.as_ref()?;
    let opt = match t.name.as_str() {
        "DNAT" => "--to-destination",
        "SNAT" => "--to-source",
        _ => return None,
    };
    // Exactly one address option, with one sane value.
    let mut values = t.options.iter().filter(|o| o.name == opt);
    let bad = match (values.next(), values.next()) {
        (Some(o), None) => o.values.len() != 1 || !sane_address(&o.values[0]),
        _ => true,
    };
    bad.then(|| target_text(t))
}

/// Whether `v` is an address a NAT target can hold: `ip`, `ip:port`,
/// `[ip6]:port`, ranges of either, never unspecified or port 0.
fn sane_address(v: &str) -> bool {
    let (host, port) = if v.starts_with('[') || v.matches(':').count() == 1 {
        match v.rsplit_once(':') {
            Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), Some(p)),
            None => (v, None),
        }
    } else {
        (v, None)
    };
    let host_ok = !host.is_empty()
        && host
            .split('-')
            .all(|h| parse_ip_sloppy(h).is_some_and(|ip| !ip.is_unspecified()));
    let port_ok = port.is_none_or(|p| p.split('-').all(|p| p.parse::<u16>().is_ok_and(|p| p != 0)));
    host_ok && port_ok
}

fn target_text(t: &Target) -> String {
    let mut s = format!("-j {}", t.name);
    for o in &t.options {
        s.push(' ');
        if o.negated {
            s.push_str("! ");
        }
        s.push_str(&o.name);
        for v in &o.values {
            s.push(' ');
            s.push_str(v);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::Ruleset;
    use std::collections::HashSet;

    #[test]
    fn entry_chains_are_jump_rules() {
        for (table, chain, target, _) in ENTRY_CHAINS {
            assert!(
                super::super::super::JUMP_RULES
                    .iter()
                    .any(|j| (j.table, j.chain, j.target) == (table, chain, target)),
                "{table} {chain} -> {target}"
            );
        }
    }

    fn anomalies_of(text: &str) -> Vec<Anomaly> {
        let rs = Ruleset::parse(text).expect("parses");
        let indexed = super::super::Indexed::new(&rs);
        let generation = super::super::generation::detect(&indexed);
        anomalies(&indexed, &HashMap::new(), &generation)
    }

    /// An IPVS-mode node with an iptables-mode kube-proxy's filter rules
    /// left behind: they still reject, and say so.
    #[test]
    fn iptables_mode_leftovers_on_an_ipvs_node() {
        let got = anomalies_of(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-SERVICES - [0:0]\n\
             -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
             -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
             -A KUBE-SERVICES -d 10.96.7.7/32 -p tcp -m comment --comment \"default/gone has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n\
             *nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-LOAD-BALANCER - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-SERVICES - [0:0]\n\
             -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
             -A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ\n-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
             -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE\n\
             -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT\nCOMMIT\n",
        );
        let kinds: Vec<(AnomalyKind, &str)> =
            got.iter().map(|a| (a.kind, a.chain.as_str())).collect();
        assert_eq!(
            kinds,
            [(AnomalyKind::OtherMode, "KUBE-SERVICES")],
            "{got:#?}"
        );
        assert!(
            got[0]
                .message
                .ends_with("leftovers of a mode switch; 1 rule in KUBE-SERVICES still applies"),
            "{}",
            got[0].message
        );
    }

    /// Duplicates are the rules the kernel holds as one, however they are
    /// spelled; rules that differ only where the kernel form does not
    /// look (comments, modules, targets) are not.
    #[test]
    fn duplicate_rules_are_found_in_any_spelling() {
        let rules: Vec<Rule> = [
            "-A C -d 10.0.0.1/32 -p tcp -m comment --comment \"a\" -m tcp --dport 80 -j X",
            "-A C -m comment --comment b -j X",
            "-A C -m comment --comment a -m tcp -p tcp -d 10.0.0.1 --dport 80 -j X",
            "-A C -m comment --comment \"a\" -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -g X",
            "-A C -j MARK --or-mark 0x4000",
            "-A C -j MARK --set-xmark 0x4000/0x4000",
            "-A C -m comment --comment b -j X",
            "-A C -m comment --comment c -j X",
            "-A C -m comment --comment a -m comment --comment b -j Y",
            "-A C -m comment --comment b -m comment --comment a -j Y",
            "-A C -m comment --comment \"a\" -m comment --comment \"b\" -j Y",
        ]
        .iter()
        .map(|t| Rule::parse(t).expect("parses"))
        .collect();
        let list: Vec<&Rule> = rules.iter().collect();
        let got: Vec<usize> = duplicates(&list)
            .iter()
            .map(|d| {
                rules
                    .iter()
                    .position(|r| std::ptr::eq(r, *d))
                    .expect("in list")
            })
            .collect();
        assert_eq!(got, [2, 5, 6, 10]);
        // The same as comparing every rule's kernel form.
        let mut seen = HashSet::new();
        let all: Vec<usize> = (0..rules.len())
            .filter(|i| !seen.insert(rules[*i].canonical()))
            .collect();
        assert_eq!(got, all);
        assert!(duplicates(&list[..1]).is_empty());
    }

    #[test]
    fn garbled_nat_targets() {
        let rule = |target: &str| {
            Rule::parse(&format!(
                "-A KUBE-SEP-X -p tcp -m comment --comment \"a/b\" -m tcp -j {target}"
            ))
            .expect("parses")
        };
        for bad in [
            "DNAT --to-destination  --random --to-destination  --random --to-destination 0.0.0.0:0",
            "DNAT --to-destination :0 --persistent --to-destination :0 --persistent --to-destination 0.0.0.0 --persistent",
            "DNAT --to-destination  --random --to-destination  --random --to-destination",
            "DNAT --to-destination 10.0.0.1:0",
        ] {
            assert!(garbled_target(&rule(bad)).is_some(), "{bad}");
        }
        for good in [
            "DNAT --to-destination 10.244.0.5:8000",
            "DNAT --to-destination [fd00::5]:80",
            "DNAT --to-destination fd00::5",
            "DNAT --to-destination 10.0.0.1-10.0.0.3:80-81 --random",
            "MARK --set-xmark 0x4000/0x4000",
        ] {
            assert_eq!(garbled_target(&rule(good)), None, "{good}");
        }
        assert_eq!(
            garbled_target(&rule(
                "DNAT --to-destination  --random --to-destination 0.0.0.0:0"
            )),
            Some("-j DNAT --to-destination --random --to-destination 0.0.0.0:0".into())
        );
    }
}
