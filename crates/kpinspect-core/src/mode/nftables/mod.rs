//! kube-proxy's nftables mode (`pkg/proxy/nftables`). It writes no
//! iptables chains, jump rules or ipsets (its `ip`/`ip6 kube-proxy` tables
//! arrive with the nftables issue), so on a node running it every iptables
//! or IPVS state kube-proxy left is stale.

use super::{Profile, ProxyMode};

/// What nftables mode creates in iptables and ipset: nothing.
pub const PROFILE: Profile = Profile {
    mode: ProxyMode::Nftables,
    chains: &[],
    service_chain: |_, _| false,
    service_port_chain: |_, _| false,
    jump_rules: &[],
    ipsets: &[],
};
