//! kube-proxy's IPVS mode (`pkg/proxy/ipvs`): the compiler of a full sync
//! ([`compile`] → [`Compiled`]: [`VirtualServer`]s with their
//! [`RealServer`]s, the 17 [`IpSet`]s, the iptables restore input and the
//! addresses of `kube-ipvs0`), the tools' text forms of that state
//! ([`ipvsadm_save`], [`ipset_save`], [`address_lines`]) and the reader of
//! `ipvsadm`'s ([`parse_ipvsadm`]), the planner of a node's state
//! ([`plan`] → [`IpvsPlan`]), and what the mode
//! owns in iptables: its chains, jump rules and ipsets.

mod compile;
mod dump;
mod ipset;
mod parse;
mod plan;
mod render;
mod server;

pub use compile::{Compiled, compile};
pub use dump::{IpvsState, dump, shares};
pub use ipset::{IpSet, IpSetEntry, IpSetType};
pub use parse::{IpvsadmError, parse_ipvsadm};
pub use plan::{
    DEFAULT_NODE_PORT_RANGE, Draining, IpvsNode, IpvsOp, IpvsPlan, Kept, KeptReason, Ownership,
    ServiceKey, plan,
};
pub use render::{address_lines, ipset_save, ipvsadm_save};
pub use server::{
    ForwardMethod, RealServer, Scheduler, ServiceFlags, VirtualServer, VirtualServerKind,
    protocol_name,
};

use super::{
    FILTER_FORWARD, JumpRule, NAT_OUTPUT_SERVICES, NAT_POSTROUTING, NAT_PREROUTING_SERVICES,
    Profile, ProxyMode,
};

/// The fixed iptables chains of IPVS mode.
pub const CHAINS: [(&str, &str); 11] = [
    ("nat", "KUBE-SERVICES"),
    ("nat", "KUBE-POSTROUTING"),
    ("nat", "KUBE-MARK-MASQ"),
    ("nat", "KUBE-NODE-PORT"),
    ("nat", "KUBE-LOAD-BALANCER"),
    ("filter", "KUBE-FORWARD"),
    ("filter", "KUBE-NODE-PORT"),
    ("filter", "KUBE-PROXY-FIREWALL"),
    ("filter", "KUBE-SOURCE-RANGES-FIREWALL"),
    ("filter", "KUBE-IPVS-FILTER"),
    ("filter", "KUBE-IPVS-OUT-FILTER"),
];

/// The jump rules of IPVS mode, in the order kube-proxy ensures them.
pub const JUMP_RULES: [JumpRule; 9] = [
    NAT_OUTPUT_SERVICES,
    NAT_PREROUTING_SERVICES,
    NAT_POSTROUTING,
    FILTER_FORWARD,
    JumpRule::new(
        "filter",
        "INPUT",
        &[],
        "kubernetes health check rules",
        "KUBE-NODE-PORT",
    ),
    JumpRule::new(
        "filter",
        "INPUT",
        &[],
        "kube-proxy firewall rules",
        "KUBE-PROXY-FIREWALL",
    ),
    JumpRule::new(
        "filter",
        "FORWARD",
        &[],
        "kube-proxy firewall rules",
        "KUBE-PROXY-FIREWALL",
    ),
    JumpRule::new(
        "filter",
        "INPUT",
        &[],
        "kubernetes ipvs access filter",
        "KUBE-IPVS-FILTER",
    ),
    JumpRule::new(
        "filter",
        "OUTPUT",
        &[],
        "kubernetes ipvs access filter",
        "KUBE-IPVS-OUT-FILTER",
    ),
];

/// The 17 ipsets of IPVS mode (IPv4 names), then the old `bitmap:port`
/// SCTP sets that upgraded nodes may still have.
pub const IPSETS: [&str; 19] = [
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
    // Obsolete.
    "KUBE-NODE-PORT-SCTP",
    "KUBE-NODE-PORT-LOCAL-SCTP",
];

/// What IPVS mode creates.
pub const PROFILE: Profile = Profile {
    mode: ProxyMode::Ipvs,
    chains: &CHAINS,
    service_chain: |_, _| false,
    service_port_chain: |_, _| false,
    jump_rules: &JUMP_RULES,
    ipsets: &IPSETS,
};

/// The IPv6 name of an IPVS-mode ipset: `KUBE-` → `KUBE-6-`, truncated to
/// 31 characters.
///
/// ```
/// use kpinspect_core::mode::ipvs::ipv6_ipset_name;
/// assert_eq!(ipv6_ipset_name("KUBE-CLUSTER-IP"), "KUBE-6-CLUSTER-IP");
/// ```
pub fn ipv6_ipset_name(name: &str) -> String {
    let mut n = match name.strip_prefix("KUBE-") {
        Some(rest) => format!("KUBE-6-{rest}"),
        None => name.to_string(),
    };
    n.truncate(31);
    n
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
    }
}
