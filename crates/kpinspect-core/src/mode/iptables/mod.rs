//! kube-proxy's iptables mode (`pkg/proxy/iptables`): chain names, the
//! compiler to the exact restore input of a full sync, the jump rules it
//! inserts into the built-in chains, what it owns, its view of a node's
//! rules ([`dump()`]), and the helpers kube-proxy's own tests use to compare
//! and check dumps.

mod check;
mod compile;
pub mod dump;
mod jumps;
pub mod names;
mod normalize;

pub use check::{JumpError, check_rule_jumps};
pub(crate) use compile::detector_matches;
pub use compile::{compile, compile_sync, masquerade_mark, probability};
pub use dump::{
    Anomaly, AnomalyKind, EndpointDump, Generation, NodeDump, RulesMode, ServiceDump, SourceDump,
    Version, dump,
};
pub use jumps::JUMP_RULES;
pub use normalize::{NormalizeError, sort_iptables_rules, sort_iptables_rules_by_service};

use super::{Profile, ProxyMode};

/// The fixed chains of iptables mode.
pub const CHAINS: [(&str, &str); 12] = [
    ("mangle", "KUBE-PROXY-CANARY"),
    ("nat", "KUBE-PROXY-CANARY"),
    ("filter", "KUBE-PROXY-CANARY"),
    ("nat", "KUBE-SERVICES"),
    ("nat", "KUBE-POSTROUTING"),
    ("nat", "KUBE-MARK-MASQ"),
    ("nat", "KUBE-NODEPORTS"),
    ("filter", "KUBE-FORWARD"),
    ("filter", "KUBE-PROXY-FIREWALL"),
    ("filter", "KUBE-SERVICES"),
    ("filter", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "KUBE-NODEPORTS"),
];

/// What iptables mode creates.
pub const PROFILE: Profile = Profile {
    mode: ProxyMode::Iptables,
    chains: &CHAINS,
    service_chain: |table, chain| {
        table == "nat" && (names::is_service_chain(chain) || names::is_old_service_chain(chain))
    },
    service_port_chain: |table, chain| table == "nat" && chain.starts_with("KUBE-SVC-"),
    jump_rules: &JUMP_RULES,
    ipsets: &[],
};
