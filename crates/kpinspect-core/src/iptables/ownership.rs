//! What kube-proxy owns on a node, per mode and generation: chains, jump
//! rules in the built-in chains, and (IPVS mode) ipsets. Cleanup and apply
//! touch only what this module says kube-proxy owns; kubelet's chains
//! (`KUBE-FIREWALL`, `KUBE-KUBELET-CANARY`, `KUBE-MARK-DROP`,
//! `KUBE-IPTABLES-HINT`) and everything else are never theirs.

use super::jumps::{JUMP_RULES, JumpRule};

/// Who a chain belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// kube-proxy in iptables mode only.
    Iptables,
    /// kube-proxy in IPVS mode only.
    Ipvs,
    /// kube-proxy in either mode (same name, rewritten by each).
    Both,
    /// Shared with or created by kubelet: never removed.
    Kubelet,
    /// Not kube-proxy's.
    Foreign,
}

impl Owner {
    /// Whether kube-proxy running in iptables mode (`ipvs == false`) or IPVS
    /// mode would create this chain.
    pub fn created_by(self, ipvs: bool) -> bool {
        match self {
            Owner::Both => true,
            Owner::Iptables => !ipvs,
            Owner::Ipvs => ipvs,
            Owner::Kubelet | Owner::Foreign => false,
        }
    }

    /// Whether kube-proxy (some mode) owns it.
    pub fn is_kube_proxy(self) -> bool {
        matches!(self, Owner::Iptables | Owner::Ipvs | Owner::Both)
    }
}

/// Per-service chain prefixes of iptables mode (`KUBE-XLB-` is pre-1.24).
pub const IPTABLES_SERVICE_PREFIXES: [&str; 6] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-SEP-",
    "KUBE-XLB-",
];

/// The owner of `chain` in `table`.
///
/// ```
/// use kpinspect_core::iptables::{Owner, chain_owner};
/// assert_eq!(chain_owner("nat", "KUBE-SEP-ABCDEF"), Owner::Iptables);
/// assert_eq!(chain_owner("nat", "KUBE-LOAD-BALANCER"), Owner::Ipvs);
/// assert_eq!(chain_owner("nat", "KUBE-SERVICES"), Owner::Both);
/// assert_eq!(chain_owner("filter", "KUBE-FIREWALL"), Owner::Kubelet);
/// assert_eq!(chain_owner("filter", "DOCKER"), Owner::Foreign);
/// ```
pub fn chain_owner(table: &str, chain: &str) -> Owner {
    match (table, chain) {
        (_, "KUBE-FIREWALL" | "KUBE-KUBELET-CANARY" | "KUBE-MARK-DROP" | "KUBE-IPTABLES-HINT") => {
            Owner::Kubelet
        }
        ("mangle" | "nat" | "filter", "KUBE-PROXY-CANARY") => Owner::Iptables,
        ("nat", "KUBE-SERVICES" | "KUBE-POSTROUTING" | "KUBE-MARK-MASQ") => Owner::Both,
        ("nat", "KUBE-NODEPORTS") => Owner::Iptables,
        ("nat", "KUBE-NODE-PORT" | "KUBE-LOAD-BALANCER") => Owner::Ipvs,
        ("nat", c) if IPTABLES_SERVICE_PREFIXES.iter().any(|p| c.starts_with(p)) => Owner::Iptables,
        ("filter", "KUBE-FORWARD" | "KUBE-PROXY-FIREWALL") => Owner::Both,
        ("filter", "KUBE-SERVICES" | "KUBE-EXTERNAL-SERVICES" | "KUBE-NODEPORTS") => {
            Owner::Iptables
        }
        (
            "filter",
            "KUBE-NODE-PORT"
            | "KUBE-SOURCE-RANGES-FIREWALL"
            | "KUBE-IPVS-FILTER"
            | "KUBE-IPVS-OUT-FILTER",
        ) => Owner::Ipvs,
        _ => Owner::Foreign,
    }
}

const fn ipvs_jump(
    table: &'static str,
    chain: &'static str,
    comment: &'static str,
    target: &'static str,
) -> JumpRule {
    super::jumps::jump(table, chain, &[], comment, target)
}

/// The jump rules of IPVS mode, in the order kube-proxy ensures them.
pub const IPVS_JUMP_RULES: [JumpRule; 9] = [
    ipvs_jump(
        "nat",
        "OUTPUT",
        "kubernetes service portals",
        "KUBE-SERVICES",
    ),
    ipvs_jump(
        "nat",
        "PREROUTING",
        "kubernetes service portals",
        "KUBE-SERVICES",
    ),
    ipvs_jump(
        "nat",
        "POSTROUTING",
        "kubernetes postrouting rules",
        "KUBE-POSTROUTING",
    ),
    ipvs_jump(
        "filter",
        "FORWARD",
        "kubernetes forwarding rules",
        "KUBE-FORWARD",
    ),
    ipvs_jump(
        "filter",
        "INPUT",
        "kubernetes health check rules",
        "KUBE-NODE-PORT",
    ),
    ipvs_jump(
        "filter",
        "INPUT",
        "kube-proxy firewall rules",
        "KUBE-PROXY-FIREWALL",
    ),
    ipvs_jump(
        "filter",
        "FORWARD",
        "kube-proxy firewall rules",
        "KUBE-PROXY-FIREWALL",
    ),
    ipvs_jump(
        "filter",
        "INPUT",
        "kubernetes ipvs access filter",
        "KUBE-IPVS-FILTER",
    ),
    ipvs_jump(
        "filter",
        "OUTPUT",
        "kubernetes ipvs access filter",
        "KUBE-IPVS-OUT-FILTER",
    ),
];

/// The owner of a jump rule in a built-in chain, if it is exactly one of
/// kube-proxy's (same chain, same matches, same comment, same target).
pub fn jump_owner(rule: &super::Rule) -> Option<Owner> {
    let same = |j: &JumpRule| j.chain == rule.chain && j.rule().same_as(rule);
    let iptables = JUMP_RULES.iter().any(|j| !j.shared_with_kubelet && same(j));
    let ipvs = IPVS_JUMP_RULES.iter().any(same);
    match (iptables, ipvs) {
        (true, true) => Some(Owner::Both),
        (true, false) => Some(Owner::Iptables),
        (false, true) => Some(Owner::Ipvs),
        (false, false) => None,
    }
}

/// The 17 ipsets of IPVS mode (IPv4 names).
pub const IPVS_IPSETS: [&str; 17] = [
    "KUBE-LOOP-BACK",
    "KUBE-CLUSTER-IP",
    "KUBE-EXTERNAL-IP",
    "KUBE-EXTERNAL-IP-LOCAL",
    "KUBE-LOAD-BALANCER",
    "KUBE-LOAD-BALANCER-FW",
    "KUBE-LOAD-BALANCER-LOCAL",
    "KUBE-LOAD-BALANCER-SOURCE-IP",
    "KUBE-LOAD-BALANCER-SOURCE-CIDR",
    "KUBE-NODE-PORT-TCP",
    "KUBE-NODE-PORT-LOCAL-TCP",
    "KUBE-NODE-PORT-UDP",
    "KUBE-NODE-PORT-LOCAL-UDP",
    "KUBE-NODE-PORT-SCTP-HASH",
    "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
    "KUBE-HEALTH-CHECK-NODE-PORT",
    "KUBE-IPVS-IPS",
];

/// Old `bitmap:port` SCTP sets that upgraded nodes may still have.
pub const OBSOLETE_IPVS_IPSETS: [&str; 2] = ["KUBE-NODE-PORT-SCTP", "KUBE-NODE-PORT-LOCAL-SCTP"];

/// The IPv6 name of an IPVS-mode ipset: `KUBE-` → `KUBE-6-`, truncated to
/// 31 characters.
pub fn ipv6_ipset_name(name: &str) -> String {
    let mut n = match name.strip_prefix("KUBE-") {
        Some(rest) => format!("KUBE-6-{rest}"),
        None => name.to_string(),
    };
    n.truncate(31);
    n
}

/// Whether `name` is an ipset of kube-proxy's IPVS mode (either family).
pub fn is_ipvs_ipset(name: &str) -> bool {
    IPVS_IPSETS
        .iter()
        .chain(OBSOLETE_IPVS_IPSETS.iter())
        .any(|s| *s == name || ipv6_ipset_name(s) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_names_truncate_like_kube_proxy() {
        assert_eq!(
            ipv6_ipset_name("KUBE-LOAD-BALANCER-SOURCE-CIDR"),
            "KUBE-6-LOAD-BALANCER-SOURCE-CID"
        );
        assert_eq!(
            ipv6_ipset_name("KUBE-NODE-PORT-LOCAL-SCTP-HASH"),
            "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS"
        );
        assert!(is_ipvs_ipset("KUBE-6-CLUSTER-IP"));
        assert!(!is_ipvs_ipset("KUBE-CLUSTER-IPS"));
    }

    #[test]
    fn jumps_are_recognised_exactly() {
        let r = super::super::Rule::parse(
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        )
        .unwrap();
        assert_eq!(jump_owner(&r), Some(Owner::Both));
        let r = super::super::Rule::parse(
            "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
        )
        .unwrap();
        assert_eq!(jump_owner(&r), Some(Owner::Iptables));
        let r = super::super::Rule::parse(
            "-A INPUT -m comment --comment \"kubernetes health check rules\" -j KUBE-NODE-PORT",
        )
        .unwrap();
        assert_eq!(jump_owner(&r), Some(Owner::Ipvs));
        // kubelet's and users' jumps are not kube-proxy's.
        for text in [
            "-A INPUT -j KUBE-FIREWALL",
            "-A INPUT -j KUBE-SERVICES",
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j DOCKER",
        ] {
            assert_eq!(
                jump_owner(&super::super::Rule::parse(text).unwrap()),
                None,
                "{text}"
            );
        }
    }
}
