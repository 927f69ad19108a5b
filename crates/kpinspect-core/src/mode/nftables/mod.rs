//! kube-proxy's nftables mode (`pkg/proxy/nftables`): its names, the
//! compiler of a first full sync to the `nft -f` transaction kube-proxy
//! writes into its `ip`/`ip6 kube-proxy` tables ([`compile`] →
//! [`Compiled`], rendered with [`crate::nft`]), and kube-proxy's test
//! normaliser ([`sort_nftables_transaction`]), a node's listing read
//! back into that form ([`read_listing`] → [`NftNode`]), and the planner
//! of a minimal transaction from a node's table to the compiled one
//! ([`plan`]), and kube-proxy's own syncs one after another, partial ones
//! included ([`Proxier`]). It writes no iptables chains,
//! jump rules or ipsets, so on a node running it every iptables or IPVS
//! state kube-proxy left is stale.

mod compile;
mod dump;
pub mod names;
mod normalize;
mod plan;
#[cfg(test)]
mod plan_tests;
mod read;
mod sync;

pub use compile::{BASE_CHAINS, Compiled, JUMP_CHAINS, TABLE, compile, masquerade_mark};
pub use dump::dump;
pub use normalize::sort_nftables_transaction;
pub use plan::{ContainerDiff, ElementChange, ElementDiff, NftPlan, comparable_rule, plan};
pub use read::{
    KubeProxyTable, NftNode, Unrecognised, canonical_rule, canonical_state, from_ruleset,
    is_kube_proxy_table, is_recognised, read_listing,
};
pub use sync::{ChangedServices, FULL_SYNC_PERIOD, Proxier, STALE_CHAIN_DELAY, SyncError, Synced};

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
