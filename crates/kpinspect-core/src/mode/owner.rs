//! Whose a chain, a jump rule or an ipset is: which of kube-proxy's modes
//! create it (from their [`Profile`](super::Profile)s), kubelet, or someone
//! else. Cleanup and apply touch only what kube-proxy owns; kubelet's chains
//! (`KUBE-FIREWALL`, `KUBE-KUBELET-CANARY`, `KUBE-MARK-DROP`,
//! `KUBE-IPTABLES-HINT`) and everything else are never theirs.

use super::ProxyMode;
use crate::netfilter::{BUILTIN_CHAINS, Rule, Ruleset};

/// Chains kubelet creates (or shares with kube-proxy), in any table: never
/// removed.
pub const KUBELET_CHAINS: [&str; 4] = [
    "KUBE-FIREWALL",
    "KUBE-KUBELET-CANARY",
    "KUBE-MARK-DROP",
    "KUBE-IPTABLES-HINT",
];

/// A set of proxy modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Modes(u8);

impl Modes {
    fn bit(mode: ProxyMode) -> u8 {
        match mode {
            ProxyMode::Iptables => 1,
            ProxyMode::Ipvs => 2,
            ProxyMode::Nftables => 4,
        }
    }

    /// The modes of `modes`.
    pub fn of(modes: &[ProxyMode]) -> Modes {
        Modes(modes.iter().fold(0, |b, m| b | Modes::bit(*m)))
    }

    /// Whether `mode` is one of them.
    pub fn contains(self, mode: ProxyMode) -> bool {
        self.0 & Modes::bit(mode) != 0
    }

    /// Whether there is none.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many there are.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    fn with(self, mode: ProxyMode) -> Modes {
        Modes(self.0 | Modes::bit(mode))
    }
}

/// Who something belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// kube-proxy, in these modes (each creates and rewrites it).
    KubeProxy(Modes),
    /// Shared with or created by kubelet: never removed.
    Kubelet,
    /// Not kube-proxy's.
    Foreign,
}

impl Owner {
    /// Whether kube-proxy running in `mode` creates it.
    pub fn created_by(self, mode: ProxyMode) -> bool {
        matches!(self, Owner::KubeProxy(m) if m.contains(mode))
    }

    /// Whether kube-proxy (some mode) owns it.
    pub fn is_kube_proxy(self) -> bool {
        matches!(self, Owner::KubeProxy(_))
    }

    /// Whether more than one mode creates it (`KUBE-SERVICES`,
    /// `KUBE-POSTROUTING`, ... in the nat table).
    pub fn is_shared(self) -> bool {
        matches!(self, Owner::KubeProxy(m) if m.len() > 1)
    }

    fn of(modes: Modes) -> Owner {
        if modes.is_empty() {
            Owner::Foreign
        } else {
            Owner::KubeProxy(modes)
        }
    }
}

/// The modes whose profile says `yes`.
fn modes_where(yes: impl Fn(&super::Profile) -> bool) -> Modes {
    ProxyMode::ALL
        .into_iter()
        .filter(|m| yes(m.profile()))
        .fold(Modes::default(), Modes::with)
}

/// The owner of `chain` in `table`.
///
/// ```
/// use kpinspect_core::mode::{Modes, Owner, ProxyMode, chain_owner};
/// let iptables = Owner::KubeProxy(Modes::of(&[ProxyMode::Iptables]));
/// assert_eq!(chain_owner("nat", "KUBE-SEP-ABCDEF"), iptables);
/// assert_eq!(chain_owner("nat", "KUBE-LOAD-BALANCER"), Owner::KubeProxy(Modes::of(&[ProxyMode::Ipvs])));
/// assert!(chain_owner("nat", "KUBE-SERVICES").is_shared());
/// assert_eq!(chain_owner("filter", "KUBE-FIREWALL"), Owner::Kubelet);
/// assert_eq!(chain_owner("filter", "DOCKER"), Owner::Foreign);
/// ```
pub fn chain_owner(table: &str, chain: &str) -> Owner {
    if KUBELET_CHAINS.contains(&chain) {
        return Owner::Kubelet;
    }
    Owner::of(modes_where(|p| p.owns_chain(table, chain)))
}

/// The owner of a jump rule in a built-in chain, if it is exactly one of
/// kube-proxy's (same chain, same matches, same comment, same target) and
/// not shared with kubelet.
pub fn jump_owner(rule: &Rule) -> Option<Owner> {
    let modes = modes_where(|p| {
        p.jump_rules
            .iter()
            .any(|j| !j.shared_with_kubelet && j.chain == rule.chain && j.rule().same_as(rule))
    });
    (!modes.is_empty()).then_some(Owner::KubeProxy(modes))
}

/// The owner of ipset `name` (either family's name).
pub fn ipset_owner(name: &str) -> Owner {
    Owner::of(modes_where(|p| p.owns_ipset(name)))
}

/// The owner of a rule of `table`: kube-proxy's when it is one of its jump
/// rules in a built-in chain or any rule of a chain kube-proxy owns; the
/// owner of its chain otherwise (kubelet's, or foreign).
pub fn rule_owner(table: &str, rule: &Rule) -> Owner {
    if BUILTIN_CHAINS.contains(&rule.chain.as_str()) {
        jump_owner(rule).unwrap_or(Owner::Foreign)
    } else {
        chain_owner(table, &rule.chain)
    }
}

/// What other programs (kubelet included) own in `save`, line by line:
/// each `*table`, their chains' declarations without counters
/// (`nat :DOCKER`) and their rules as saved (`nat -A DOCKER ...`), with the
/// rules of built-in chains that are not kube-proxy's jumps. Anything that
/// changes only kube-proxy's state leaves this list byte-identical.
///
/// ```
/// use kpinspect_core::mode::foreign_state;
/// use kpinspect_core::netfilter::Ruleset;
/// let save = Ruleset::parse("*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n:KUBE-SERVICES - [0:0]\n\
///     -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
///     -A PREROUTING -j DOCKER\nCOMMIT\n").unwrap();
/// assert_eq!(foreign_state(&save), ["*nat", "nat :PREROUTING", "nat :DOCKER", "nat -A PREROUTING -j DOCKER"]);
/// ```
pub fn foreign_state(save: &Ruleset) -> Vec<String> {
    let mut out = Vec::new();
    for table in save.tables() {
        let t = table.name.as_str();
        out.push(format!("*{t}"));
        for c in &table.chains {
            if !chain_owner(t, &c.name).is_kube_proxy() {
                out.push(format!("{t} :{}", c.name));
            }
        }
        for (_, rule, text) in save
            .rules_with_text()
            .filter(|(tb, _, _)| std::ptr::eq(*tb, table))
        {
            if !rule_owner(t, rule).is_kube_proxy() {
                out.push(format!("{t} {text}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(mode: ProxyMode) -> Owner {
        Owner::KubeProxy(Modes::of(&[mode]))
    }

    #[test]
    fn chains_of_each_mode() {
        assert_eq!(
            chain_owner("mangle", "KUBE-PROXY-CANARY"),
            only(ProxyMode::Iptables)
        );
        assert_eq!(
            chain_owner("nat", "KUBE-XLB-ABC"),
            only(ProxyMode::Iptables)
        );
        assert_eq!(chain_owner("filter", "KUBE-SEP-ABC"), Owner::Foreign);
        assert_eq!(
            chain_owner("filter", "KUBE-IPVS-FILTER"),
            only(ProxyMode::Ipvs)
        );
        let both = Owner::KubeProxy(Modes::of(&[ProxyMode::Iptables, ProxyMode::Ipvs]));
        for (t, c) in [
            ("nat", "KUBE-SERVICES"),
            ("nat", "KUBE-POSTROUTING"),
            ("nat", "KUBE-MARK-MASQ"),
            ("filter", "KUBE-FORWARD"),
            ("filter", "KUBE-PROXY-FIREWALL"),
        ] {
            assert_eq!(chain_owner(t, c), both, "{t} {c}");
        }
        assert!(!chain_owner("filter", "KUBE-SERVICES").is_shared());
    }

    #[test]
    fn ipsets() {
        assert_eq!(ipset_owner("KUBE-6-CLUSTER-IP"), only(ProxyMode::Ipvs));
        assert_eq!(ipset_owner("KUBE-NODE-PORT-SCTP"), only(ProxyMode::Ipvs));
        assert_eq!(ipset_owner("KUBE-CLUSTER-IPS"), Owner::Foreign);
    }

    #[test]
    fn jumps_are_recognised_exactly() {
        let r = Rule::parse(
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        )
        .unwrap();
        assert!(jump_owner(&r).is_some_and(Owner::is_shared));
        let r = Rule::parse(
            "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
        )
        .unwrap();
        assert_eq!(jump_owner(&r), Some(only(ProxyMode::Iptables)));
        let r = Rule::parse(
            "-A INPUT -m comment --comment \"kubernetes health check rules\" -j KUBE-NODE-PORT",
        )
        .unwrap();
        assert_eq!(jump_owner(&r), Some(only(ProxyMode::Ipvs)));
        // kubelet's and users' jumps are not kube-proxy's.
        for text in [
            "-A INPUT -j KUBE-FIREWALL",
            "-A INPUT -j KUBE-SERVICES",
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j DOCKER",
        ] {
            assert_eq!(jump_owner(&Rule::parse(text).unwrap()), None, "{text}");
        }
    }
}
