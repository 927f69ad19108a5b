//! Whose a chain, a jump rule or an ipset is: which of kube-proxy's modes
//! create it (from their [`Profile`](super::Profile)s), kubelet, or someone
//! else. Cleanup and apply touch only what kube-proxy owns; kubelet's chains
//! (`KUBE-FIREWALL`, `KUBE-KUBELET-CANARY`, `KUBE-MARK-DROP`,
//! `KUBE-IPTABLES-HINT`) and everything else are never theirs.

use super::ProxyMode;
use crate::netfilter::Rule;

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
