//! Selective cleanup of kube-proxy's state: all of one mode's chains, jump
//! rules and ipsets (`kube-proxy --cleanup`, per mode), or only the
//! leftovers of the mode a node no longer runs. Only what
//! [`chain_owner`], [`jump_owner`] and [`ipset_owner`] say is kube-proxy's is
//! touched; a chain that someone else's rule still jumps to is kept (with
//! everything it reaches) and reported.
//!
//! The payload is safe by construction and atomic per table: removed chains
//! are flushed (declared), then every rule that jumps to them is deleted
//! (a chain that stays but loses a rule whose saved spelling `-D` may not
//! match, like one with `-m recent`, is flushed and its other rules written
//! again), then the chains are deleted (`-X`). ipsets are destroyed after that, only
//! when no remaining rule matches on them.
//!
//! ```
//! use kpinspect_core::mode::ProxyMode;
//! use kpinspect_core::netfilter::Ruleset;
//! use kpinspect_core::plan::{CleanupScope, cleanup_plan};
//! let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:DOCKER - [0:0]\n\
//!     -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
//!     -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
//!     -A KUBE-SERVICES -d 172.30.0.41/32 -j KUBE-SVC-A\nCOMMIT\n";
//! let rs = Ruleset::parse(save).unwrap();
//! let p = cleanup_plan(&[&rs], &[], CleanupScope::StaleFor(ProxyMode::Ipvs));
//! // Running IPVS mode: the iptables-mode service chain goes, KUBE-SERVICES stays.
//! assert_eq!(p.removed_chains, [("nat".to_string(), "KUBE-SVC-A".to_string())]);
//! assert!(p.payloads[0].contains("-D KUBE-SERVICES -d 172.30.0.41/32 -j KUBE-SVC-A\n"));
//! assert!(!p.payloads[0].contains("DOCKER"));
//! ```

use std::collections::HashSet;

use serde::Serialize;

use crate::mode::{Owner, ProxyMode, chain_owner, ipset_owner, jump_owner};
use crate::netfilter::{BUILTIN_CHAINS, Rule, Ruleset, deletable_by_spec, render_rule};

/// What to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupScope {
    /// Everything the mode creates, including what it shares with another
    /// mode (like `kube-proxy --cleanup`).
    Mode(ProxyMode),
    /// Everything kube-proxy owns, every mode.
    All,
    /// What *other* modes left on a node running this one: keeps this
    /// mode's chains (shared ones included, referenced or not), removes the
    /// rest, and deletes rules in shared chains that point at what is
    /// removed. In a built-in chain that loses another mode's jump rule,
    /// this mode's jump rules are put back in the order a fresh apply
    /// gives when they are not (a jump both modes install, like FORWARD's
    /// to `KUBE-FORWARD`, stays where the old mode inserted it when the new
    /// mode's apply finds it): what kube-proxy's start-up cleanup of the
    /// other mode and its first sync left. Only when they sit together
    /// (no one else's rule among them); the block stays where its first
    /// rule is.
    StaleFor(ProxyMode),
}

impl CleanupScope {
    fn removes(self, owner: Owner) -> bool {
        match self {
            CleanupScope::All => owner.is_kube_proxy(),
            CleanupScope::Mode(mode) => owner.created_by(mode),
            CleanupScope::StaleFor(mode) => owner.is_kube_proxy() && !owner.created_by(mode),
        }
    }
}

/// What a cleanup will do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupPlan {
    /// One `iptables-restore --noflush` payload per input ruleset (same
    /// order); empty when nothing is removed there.
    pub payloads: Vec<String>,
    /// `ipset restore` input destroying the removed sets.
    pub ipset_payload: String,
    /// (table, chain) removed.
    pub removed_chains: Vec<(String, String)>,
    /// (table, rule) deleted from chains that stay (jump rules and
    /// references in shared chains).
    pub removed_rules: Vec<(String, String)>,
    /// (table, rule) of the configured mode's jump rules moved back to
    /// where a fresh apply puts them (`StaleFor` only; see
    /// [`CleanupScope::StaleFor`]).
    pub moved_rules: Vec<(String, String)>,
    /// ipsets destroyed.
    pub removed_ipsets: Vec<String>,
    /// (what, why) kept although in scope.
    pub kept: Vec<(String, String)>,
}

impl CleanupPlan {
    /// Whether nothing would be removed.
    pub fn is_empty(&self) -> bool {
        self.payloads.iter().all(String::is_empty) && self.ipset_payload.is_empty()
    }
}

/// Plans a cleanup of `rulesets` (one `iptables-save` per family) and
/// `ipsets` (the names of the sets on the node).
pub fn cleanup_plan(rulesets: &[&Ruleset], ipsets: &[String], scope: CleanupScope) -> CleanupPlan {
    let mut out = CleanupPlan::default();
    let removed_sets: HashSet<&str> = ipsets
        .iter()
        .map(String::as_str)
        .filter(|s| scope.removes(ipset_owner(s)))
        .collect();
    let mut still_used: HashSet<String> = HashSet::new();
    for rs in rulesets {
        let mut payload = String::new();
        for table in rs.tables() {
            let t = table.name.as_str();
            let mut removed: Vec<&str> = table
                .chains
                .iter()
                .map(|c| c.name.as_str())
                .filter(|c| !BUILTIN_CHAINS.contains(c) && scope.removes(chain_owner(t, c)))
                .collect();
            // A rule that stays but jumps to a removed chain: kube-proxy's
            // (a jump rule, or in a shared chain) is deleted; anyone else's
            // keeps the chain and what it reaches.
            let mut deletes: Vec<&Rule>;
            loop {
                let set: HashSet<&str> = removed.iter().copied().collect();
                deletes = Vec::new();
                let mut blocked = None;
                for r in &table.rules {
                    if set.contains(r.chain.as_str()) {
                        continue;
                    }
                    let is_jump = BUILTIN_CHAINS.contains(&r.chain.as_str());
                    // Rules deleted from chains that stay: kube-proxy's jump
                    // rules in scope, and references in a shared chain the
                    // configured mode keeps (StaleFor). A rule in any other
                    // chain that stays (another mode's, when one mode is
                    // cleaned, or anyone else's) keeps what it jumps to.
                    let ours = if is_jump {
                        jump_owner(r).is_some_and(|o| scope.removes(o))
                    } else {
                        let owner = chain_owner(t, &r.chain);
                        owner.is_shared() && !scope.removes(owner)
                    };
                    let to_removed = r.target_name().is_some_and(|n| set.contains(n));
                    let to_removed_set = ipset_refs(r).any(|s| removed_sets.contains(s));
                    if ours && (to_removed || to_removed_set || is_jump) {
                        deletes.push(r);
                    } else if to_removed {
                        blocked = Some(r);
                        break;
                    }
                }
                let Some(r) = blocked else { break };
                let target = r.target_name().unwrap_or_default().to_string();
                let mut queue = vec![target.clone()];
                while let Some(c) = queue.pop() {
                    if let Some(i) = removed.iter().position(|s| *s == c) {
                        removed.remove(i);
                        queue.extend(
                            table
                                .rules_of(&c)
                                .filter_map(|r| r.target_name().map(String::from)),
                        );
                    }
                }
                out.kept.push((
                    format!("{t} {target}"),
                    format!("still jumped to by `{}`", render_rule(r)),
                ));
            }
            // Sets still matched by rules that stay.
            let gone: HashSet<&str> = removed.iter().copied().collect();
            for r in &table.rules {
                if !gone.contains(r.chain.as_str()) && !deletes.iter().any(|d| std::ptr::eq(*d, r))
                {
                    still_used.extend(ipset_refs(r).map(String::from));
                }
            }
            // StaleFor: this mode's jump rules back in a fresh apply's order.
            let mut moves: Vec<(usize, Vec<&Rule>)> = Vec::new();
            if let CleanupScope::StaleFor(mode) = scope {
                for chain in BUILTIN_CHAINS {
                    if !deletes.iter().any(|d| d.chain == *chain) {
                        continue;
                    }
                    let staying: Vec<&Rule> = table
                        .rules
                        .iter()
                        .filter(|r| {
                            r.chain == *chain && !deletes.iter().any(|d| std::ptr::eq(*d, *r))
                        })
                        .collect();
                    moves.extend(misplaced_jumps(mode, t, &staying));
                }
            }
            if removed.is_empty() && deletes.is_empty() {
                continue;
            }
            // A chain that stays but loses a rule `-D` may not match by its
            // saved spelling (see the planner) is flushed instead, and the
            // rules that stay are appended again.
            let mut rewritten: Vec<&str> = Vec::new();
            for r in deletes.iter().filter(|r| !deletable_by_spec(r)) {
                let c = r.chain.as_str();
                if !BUILTIN_CHAINS.contains(&c) && !rewritten.contains(&c) {
                    rewritten.push(c);
                }
            }
            payload.push_str(&format!("*{t}\n"));
            for c in removed.iter().chain(&rewritten) {
                payload.push_str(&format!(":{c} - [0:0]\n"));
            }
            for r in &deletes {
                let text = render_rule(r);
                if !rewritten.contains(&r.chain.as_str()) {
                    payload.push_str(&format!("-D{}\n", text.strip_prefix("-A").unwrap_or(&text)));
                }
                out.removed_rules.push((t.to_string(), text));
            }
            for (at, rules) in &moves {
                for r in rules {
                    let text = render_rule(r);
                    payload.push_str(&format!("-D{}\n", text.strip_prefix("-A").unwrap_or(&text)));
                }
                for (i, r) in rules.iter().enumerate() {
                    let text = render_rule(r);
                    let args = text
                        .strip_prefix(&format!("-A {} ", r.chain))
                        .unwrap_or(&text);
                    payload.push_str(&format!("-I {} {} {args}\n", r.chain, at + i));
                    out.moved_rules.push((t.to_string(), text));
                }
            }
            for r in table.rules.iter().filter(|r| {
                rewritten.contains(&r.chain.as_str())
                    && !deletes.iter().any(|d| std::ptr::eq(*d, *r))
            }) {
                payload.push_str(&format!("{}\n", render_rule(r)));
            }
            for c in &removed {
                payload.push_str(&format!("-X {c}\n"));
                out.removed_chains.push((t.to_string(), c.to_string()));
            }
            payload.push_str("COMMIT\n");
        }
        out.payloads.push(payload);
    }
    let mut sets: Vec<&str> = removed_sets.into_iter().collect();
    sets.sort_unstable();
    for s in sets {
        if still_used.contains(s) {
            out.kept.push((
                format!("ipset {s}"),
                "still matched by a rule that stays".into(),
            ));
        } else {
            out.ipset_payload.push_str(&format!("destroy {s}\n"));
            out.removed_ipsets.push(s.to_string());
        }
    }
    out
}

/// `mode`'s jump rules among `staying` (the rules of one built-in chain of
/// `table` that stay, in order) when they are not in the order a fresh
/// apply gives them — kube-proxy inserts each at the top, in its
/// `jump_rules` order, so they end up in reverse — but sit together and
/// can be deleted by their spelling: the 1-based position of the first,
/// and the rules in a fresh apply's order.
fn misplaced_jumps<'a>(
    mode: ProxyMode,
    table: &str,
    staying: &[&'a Rule],
) -> Option<(usize, Vec<&'a Rule>)> {
    let jumps = mode.profile().jump_rules;
    let rank = |r: &Rule| {
        jumps.iter().position(|j| {
            !j.shared_with_kubelet && j.table == table && j.chain == r.chain && j.rule().same_as(r)
        })
    };
    // (position in the chain, rank in jump_rules, rule)
    let ours: Vec<(usize, usize, &Rule)> = staying
        .iter()
        .enumerate()
        .filter_map(|(i, r)| rank(r).map(|k| (i, k, *r)))
        .collect();
    let (first, last) = (ours.first()?.0, ours.last()?.0);
    if last - first + 1 != ours.len()
        || ours.windows(2).all(|w| w[0].1 > w[1].1)
        || !ours.iter().all(|(_, _, r)| deletable_by_spec(r))
    {
        return None;
    }
    let mut fresh: Vec<(usize, &Rule)> = ours.iter().map(|(_, k, r)| (*k, *r)).collect();
    fresh.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
    Some((first + 1, fresh.into_iter().map(|(_, r)| r).collect()))
}

/// The ipsets a rule matches on (`-m set --match-set NAME ...`).
fn ipset_refs(r: &Rule) -> impl Iterator<Item = &str> {
    r.matches
        .iter()
        .filter(|m| m.module == "set")
        .flat_map(|m| m.options.iter())
        .filter(|o| o.name == "--match-set" || o.name == "--set")
        .filter_map(|o| o.values.first().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that ran iptables mode, then IPVS mode, with other programs'
    /// rules around.
    const MIXED: &str = include_str!("../../../../fixtures/cleanup/mixed-node.save");

    fn sets() -> Vec<String> {
        ["KUBE-CLUSTER-IP", "KUBE-LOAD-BALANCER", "DOCKER-SET"]
            .map(String::from)
            .to_vec()
    }

    fn names(p: &CleanupPlan) -> Vec<String> {
        p.removed_chains
            .iter()
            .map(|(t, c)| format!("{t} {c}"))
            .collect()
    }

    #[test]
    fn stale_only_in_ipvs_mode_removes_the_iptables_leftovers() {
        let rs = Ruleset::parse(MIXED).unwrap();
        let p = cleanup_plan(&[&rs], &sets(), CleanupScope::StaleFor(ProxyMode::Ipvs));
        assert_eq!(
            names(&p),
            [
                "mangle KUBE-PROXY-CANARY",
                "nat KUBE-NODEPORTS",
                "nat KUBE-SVC-A",
                "nat KUBE-SEP-A",
                "filter KUBE-EXTERNAL-SERVICES"
            ]
        );
        let rules: Vec<&str> = p.removed_rules.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            rules,
            [
                "-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A",
                "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
                "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
            ]
        );
        assert!(p.ipset_payload.is_empty());
    }

    #[test]
    fn stale_only_in_iptables_mode_removes_the_ipvs_leftovers_and_sets() {
        let rs = Ruleset::parse(MIXED).unwrap();
        let p = cleanup_plan(&[&rs], &sets(), CleanupScope::StaleFor(ProxyMode::Iptables));
        assert_eq!(
            names(&p),
            [
                "nat KUBE-NODE-PORT",
                "nat KUBE-LOAD-BALANCER",
                "filter KUBE-NODE-PORT",
                "filter KUBE-IPVS-FILTER"
            ]
        );
        // The IPVS rules in the shared KUBE-SERVICES go (one matches a set,
        // one jumps to a removed chain); the iptables-mode ones stay.
        assert!(p.payloads[0].contains(
            "-D KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ\n"
        ));
        assert!(
            p.payloads[0]
                .contains("-D KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT\n")
        );
        assert!(!p.payloads[0].contains("KUBE-SVC-A"));
        assert_eq!(
            p.ipset_payload,
            "destroy KUBE-CLUSTER-IP\ndestroy KUBE-LOAD-BALANCER\n"
        );
    }

    #[test]
    fn mode_all_never_touches_others() {
        let rs = Ruleset::parse(MIXED).unwrap();
        let p = cleanup_plan(&[&rs], &sets(), CleanupScope::All);
        let payload = &p.payloads[0];
        for foreign in [
            "DOCKER",
            "KUBE-FIREWALL",
            "KUBE-KUBELET-CANARY",
            "someone else",
            "MASQUERADE",
        ] {
            assert!(!payload.contains(foreign), "{foreign} touched:\n{payload}");
        }
        assert!(names(&p).contains(&"nat KUBE-SERVICES".to_string()));
        assert!(!p.removed_ipsets.contains(&"DOCKER-SET".to_string()));
        // Order within a table: flush, unlink, delete.
        let nat = payload.split("*nat\n").nth(1).unwrap();
        let first_x = nat.find("-X ").unwrap();
        assert!(nat.find("-D PREROUTING").unwrap() < first_x);
        assert!(nat.find(":KUBE-SERVICES").unwrap() < nat.find("-D PREROUTING").unwrap());
    }

    #[test]
    fn cleaning_one_mode_leaves_the_other_modes_chains_whole() {
        let rs = Ruleset::parse(&MIXED.replace(
            "-A KUBE-SVC-A -j KUBE-SEP-A\n",
            "-A KUBE-SVC-A -j KUBE-MARK-MASQ\n-A KUBE-SVC-A -j KUBE-SEP-A\n",
        ))
        .unwrap();
        let p = cleanup_plan(&[&rs], &sets(), CleanupScope::Mode(ProxyMode::Ipvs));
        // KUBE-SVC-A (iptables mode) still jumps to the shared KUBE-MARK-MASQ:
        // that stays, and no rule of KUBE-SVC-A is deleted.
        assert!(
            !names(&p).contains(&"nat KUBE-MARK-MASQ".to_string()),
            "{:?}",
            names(&p)
        );
        assert!(
            p.removed_rules
                .iter()
                .all(|(_, r)| !r.starts_with("-A KUBE-SVC-A"))
        );
        assert!(p.kept.iter().any(|(what, _)| what == "nat KUBE-MARK-MASQ"));
        assert!(names(&p).contains(&"nat KUBE-LOAD-BALANCER".to_string()));
    }

    #[test]
    fn a_shared_chain_losing_a_recent_rule_is_rewritten() {
        let text = MIXED.replace(
            "-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n",
            "-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n\
             -A KUBE-SERVICES -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A --mask 255.255.255.255 --rsource -j KUBE-SVC-A\n",
        );
        let rs = Ruleset::parse(&text).unwrap();
        let p = cleanup_plan(&[&rs], &[], CleanupScope::StaleFor(ProxyMode::Ipvs));
        let nat = p.payloads[0].split("*nat\n").nth(1).unwrap();
        let nat = &nat[..nat.find("COMMIT").unwrap()];
        // Flushed, the rules that stay appended again, no -D in it.
        assert!(nat.contains(":KUBE-SERVICES - [0:0]\n"), "{nat}");
        assert!(!nat.contains("-D KUBE-SERVICES"), "{nat}");
        let kept: Vec<&str> = nat
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .collect();
        assert_eq!(kept.len(), 2, "{nat}");
        assert!(
            kept.iter()
                .all(|l| !l.contains("KUBE-SVC-A") && !l.contains("KUBE-NODEPORTS"))
        );
        assert_eq!(p.removed_rules.len(), 4);
        let mut node = rs.clone();
        node.restore(&p.payloads[0], crate::netfilter::RestoreFlush::NoFlush)
            .expect("applies");
        let left: Vec<String> = node
            .table("nat")
            .unwrap()
            .rules_of("KUBE-SERVICES")
            .map(|r| r.canonical())
            .collect();
        let want: Vec<String> = rs
            .table("nat")
            .unwrap()
            .rules_of("KUBE-SERVICES")
            .filter(|r| !matches!(r.target_name(), Some("KUBE-SVC-A" | "KUBE-NODEPORTS")))
            .map(|r| r.canonical())
            .collect();
        assert_eq!(left, want);
    }

    #[test]
    fn a_foreign_jump_keeps_the_chain_and_what_it_reaches() {
        let text = MIXED.replace(
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n",
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER -j KUBE-SVC-A\n",
        );
        let rs = Ruleset::parse(&text).unwrap();
        let p = cleanup_plan(&[&rs], &[], CleanupScope::StaleFor(ProxyMode::Ipvs));
        assert!(
            !names(&p)
                .iter()
                .any(|n| n.contains("KUBE-SVC-A") || n.contains("KUBE-SEP-A"))
        );
        assert_eq!(p.kept[0].0, "nat KUBE-SVC-A");
        assert!(p.kept[0].1.contains("-A DOCKER -j KUBE-SVC-A"));
    }

    /// FORWARD after IPVS mode, then iptables mode's apply: the jump to
    /// KUBE-FORWARD both modes install stays below the ones iptables mode
    /// inserted on top.
    const SWITCHED_FORWARD: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        :KUBE-FORWARD - [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n\
        -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
        -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
        -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
        -A FORWARD -m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL\n\
        -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
        -A FORWARD -s 1.2.3.4/32 -j DROP\n\
        COMMIT\n";

    /// FORWARD's rules, canonical, after `payload` is restored on `save`.
    fn forward_after(save: &str, payload: &str) -> Vec<String> {
        let mut rs = Ruleset::parse(save).unwrap();
        rs.restore(payload, crate::netfilter::RestoreFlush::NoFlush)
            .unwrap_or_else(|e| panic!("{e}\n{payload}"));
        rs.table("filter")
            .unwrap()
            .rules_of("FORWARD")
            .map(|r| r.canonical())
            .collect()
    }

    #[test]
    fn stale_only_puts_the_new_modes_jumps_back_in_a_fresh_order() {
        let p = cleanup_plan(
            &[&Ruleset::parse(SWITCHED_FORWARD).unwrap()],
            &[],
            CleanupScope::StaleFor(ProxyMode::Iptables),
        );
        // A fresh apply: iptables mode's FORWARD jumps, each inserted at
        // the top in order, above the rule that was there.
        let mut fresh: Vec<String> = ProxyMode::Iptables
            .profile()
            .jump_rules
            .iter()
            .filter(|j| j.table == "filter" && j.chain == "FORWARD")
            .map(|j| j.rule().canonical())
            .collect();
        fresh.reverse();
        assert_eq!(fresh.len(), 4);
        fresh.push(
            Rule::parse("-A FORWARD -s 1.2.3.4/32 -j DROP")
                .unwrap()
                .canonical(),
        );
        assert_eq!(forward_after(SWITCHED_FORWARD, &p.payloads[0]), fresh);
        assert_eq!(p.removed_rules.len(), 1, "{:?}", p.removed_rules);
        assert!(p.removed_rules[0].1.contains("kube-proxy firewall rules"));
        assert_eq!(p.moved_rules.len(), 4);
        // Then nothing is left to do.
        let mut after = Ruleset::parse(SWITCHED_FORWARD).unwrap();
        after
            .restore(&p.payloads[0], crate::netfilter::RestoreFlush::NoFlush)
            .unwrap();
        let again = cleanup_plan(&[&after], &[], CleanupScope::StaleFor(ProxyMode::Iptables));
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn jumps_are_not_moved_over_someone_elses_rule_nor_without_a_switch() {
        // Someone's rule among them: kept where everything is.
        let between = SWITCHED_FORWARD.replace(
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\"",
            "-A FORWARD -s 5.6.7.8/32 -j ACCEPT\n-A FORWARD -m comment --comment \"kubernetes forwarding rules\"",
        );
        let p = cleanup_plan(
            &[&Ruleset::parse(&between).unwrap()],
            &[],
            CleanupScope::StaleFor(ProxyMode::Iptables),
        );
        assert!(p.moved_rules.is_empty(), "{:?}", p.moved_rules);
        assert_eq!(p.removed_rules.len(), 1);
        // No other mode's jump in the chain: its order is left alone.
        let only_iptables =
            SWITCHED_FORWARD.replace("-A FORWARD -m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL\n", "");
        let p = cleanup_plan(
            &[&Ruleset::parse(&only_iptables).unwrap()],
            &[],
            CleanupScope::StaleFor(ProxyMode::Iptables),
        );
        assert!(p.is_empty(), "{p:?}");
    }
}
