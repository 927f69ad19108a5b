//! # kpinspect-node
//!
//! kpinspect's edge to a live Linux node — the only crate of the workspace
//! that runs programs or reads `/proc`. It holds
//!
//! * the [`Iptables`] and [`IpSets`] traits: read (`save`) and change
//!   (`restore`) the node's rules and sets as text;
//! * [`SystemIptables`] and [`SystemIpSets`]: the real tools
//!   (`iptables-legacy-save`, `ip6tables-nft-restore -w 5 --noflush`,
//!   `ipset save`, ...), run without a shell, their failures sorted into
//!   [`NodeError`]s (missing tool, missing privileges, refused restore with
//!   its line, other);
//! * [`detect_backend`]: which of iptables-legacy and iptables-nft the node
//!   uses, decided as Kubernetes' iptables-wrapper decides it, with a
//!   [`Detection::warning`] when both hold `KUBE-*` chains;
//! * the [`Ipvs`] trait: IPVS services and destinations, read and changed
//!   over generic netlink by [`SystemIpvs`] (the codec is
//!   [`kpinspect_ipvs`]);
//! * the [`Nftables`] trait: list a table or the ruleset (`nft -j list`)
//!   and apply `nft -f` scripts atomically, by [`SystemNftables`] (the
//!   `nft` binary) and [`MemoryNode`] (knftables' fake per table);
//! * [`LiveNode`]: this node, through the detected backend's tools;
//! * [`render_svg`]: Graphviz's `dot -Tsvg` for the CLI's `-o svg`;
//! * [`kube_proxy_running`]: whether a kube-proxy process runs;
//!   [`hostname`]: the node name kube-proxy would take;
//! * [`lock_rules`]: the lock that serialises read → plan → write cycles
//!   on one network namespace;
//! * the read → plan → write cycles, generic over the traits: [`apply`]
//!   (read one family's rules, plan with kpinspect-core's `plan`, write,
//!   report) and [`cleanup`] (the same with `cleanup_plan`, ipsets
//!   included), with typed [`SyncError`]s that name a refused line's chain
//!   and Service;
//! * [`MemoryNode`]: an in-memory node that restores exactly as the kernel
//!   does (per-table atomic iptables restores via
//!   [`kpinspect_core::netfilter::Ruleset::restore`], line-by-line ipset
//!   restores), records the payloads it receives and fails on demand, so
//!   that the cycles run in plain `cargo test`.
//!
//! Runnable programs (`crates/kpinspect-node/examples/`): `cargo run -p
//! kpinspect-node --example plan_apply` compiles the repository's example
//! cluster and applies it twice to a [`MemoryNode`] (no root);
//! `sudo cargo run -p kpinspect-node --example live` reads this node's
//! rules through [`LiveNode`] and lists its Services with their endpoints'
//! shares.
//!
//! ```
//! use kpinspect_core::net::IpFamily;
//! use kpinspect_node::{Iptables, MemoryNode};
//!
//! let node = MemoryNode::new();
//! node.restore(
//!     IpFamily::V4,
//!     "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n",
//! )
//! .unwrap();
//! assert_eq!(
//!     node.save(IpFamily::V4).unwrap(),
//!     "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
//!      :POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n\
//!      -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n"
//! );
//! // A jump to a chain that does not exist fails on its line, changing nothing.
//! let err = node
//!     .restore(IpFamily::V4, "*nat\n-A KUBE-SERVICES -j KUBE-SVC-X\nCOMMIT\n")
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("restore failed at line 2:"));
//! assert_eq!(node.writes().len(), 2);
//! ```

#![deny(missing_docs)]

use kpinspect_core::net::IpFamily;

mod conntrack;
mod detect;
mod error;
mod graphviz;
mod host;
mod ipset;
mod ipvs;
mod live;
mod lock;
mod memory;
mod netlink;
mod nfacct;
mod nft;
mod procs;
mod sync;
mod system;
mod times;

pub use conntrack::{
    Conntrack, ConntrackEntry, ConntrackError, ConntrackFilter, ConntrackTuple, ServingEndpoints,
    SystemConntrack, TupleMatch, protocol_number, stale_entry_filters,
};
pub use detect::{
    Detection, DetectionSaves, KUBELET_HINT_CHAINS, decide_backend, detect_backend,
    detect_backend_hinted, detect_backend_keeping_saves, detect_backend_with,
};
pub use error::{NodeError, classify_failure, restore_error_line};
pub use graphviz::{GraphvizError, render_svg, render_svg_with};
pub use host::{
    DefaultRoute, GivenFacts, HostFacts, HostFactsError, HostInputs, HostProbe, Interface,
    IptablesVersion, NodeIps, RANDOM_FULLY_MIN_VERSION, SystemHost, TCP_BE_LIBERAL_SYSCTL,
    choose_node_ips, detect_host_facts, is_global_unicast, node_name, parse_ip_link_and_addr,
    parse_proc_net_ipv6_route, parse_proc_net_route, parse_sysctl_bool,
};
pub use ipset::{IpSet, IpSetError, IpSetState};
pub use ipvs::{
    Ipvs, IpvsError, IpvsWrite, SystemIpvs, destination_name, read_virtual_servers, service_name,
};
/// The IPVS codec ([`Ipvs`]'s values: `Service`, `Destination`, `Timeouts`).
pub use kpinspect_ipvs;
pub use live::LiveNode;
pub use lock::{RulesLock, lock_path, lock_rules, lock_rules_at};
pub use memory::{MemoryNode, Write, WriteTarget};
pub use netlink::NetlinkError;
pub use nfacct::{
    CounterCleanup, Ensured, KUBE_PROXY_NFACCT_COUNTERS, NFACCT_NAME_MAX_LEN, NfAcct,
    NfAcctCounter, NfAcctError, SystemNfAcct, cleanup_kube_proxy_counters,
    ensure_counters_for_rules, ensure_kube_proxy_counters, validate_nfacct_name,
};
pub use nft::{NFT, NftError, Nftables, SystemNftables};
pub use procs::{
    KUBE_PROXY_COMM, find_kube_proxy, hostname, hostname_in, kube_proxy_running,
    kube_proxy_running_in, process_names, require_net_admin, status_has_net_admin,
};
pub use sync::{
    ApplyReport, CleanupReport, ConntrackReport, Desired, NodeRules, PlannedApply, PlannedCleanup,
    RefusedLine, SyncError, apply, apply_failure, cleanup, clear_stale_conntrack, committed_before,
    ipset_names, plan_apply, plan_cleanup, plan_read, read_families, read_rules, serving_endpoints,
};
pub use system::{
    Backend, SystemIpSets, SystemIptables, find_program, local_addresses, parse_ip_addr_show,
};
pub use times::{PhaseTimer, TRACE_TIMES};

/// A node's iptables, as text: what `iptables-save` prints and what
/// `iptables-restore --noflush` accepts, per IP family.
pub trait Iptables {
    /// All tables of `family`, as `iptables-save` / `ip6tables-save` prints
    /// them.
    fn save(&self, family: IpFamily) -> Result<String, NodeError>;

    /// Applies restore input to `family`'s tables without flushing the
    /// tables it names (`--noflush`). Each table is applied atomically;
    /// tables before a failing one stay applied.
    fn restore(&self, family: IpFamily, payload: &str) -> Result<(), NodeError>;

    /// The program [`save`](Iptables::save) runs for `family`, as messages
    /// name it: `iptables-save` or `ip6tables-save` unless the node knows
    /// its backend (`iptables-nft-save`, ...).
    fn save_program(&self, family: IpFamily) -> String {
        format!("{}-save", family_prefix(family))
    }

    /// The program [`restore`](Iptables::restore) runs for `family`, as
    /// messages name it: `iptables-restore` or `ip6tables-restore` unless
    /// the node knows its backend (`iptables-legacy-restore`, ...).
    fn restore_program(&self, family: IpFamily) -> String {
        format!("{}-restore", family_prefix(family))
    }

    /// How many lines of new or stale chains one restore should carry at
    /// most, when the restore tool's cost grows with the square of a
    /// transaction (`iptables-nft-restore --noflush`): an apply then builds
    /// the chains the node lacks in pieces, links them in (and the stale
    /// ones out) with one restore, and deletes the stale chains in pieces
    /// ([`Plan::pieces`](kpinspect_core::plan::Plan::pieces)).
    /// `None` (the default): every payload is one restore.
    fn restore_batch_lines(&self) -> Option<usize> {
        None
    }
}

/// The environment variable that sets [`Iptables::restore_batch_lines`]
/// for the real node: a number of lines, `0` for one restore always.
pub const RESTORE_BATCH_LINES: &str = "KPINSPECT_RESTORE_BATCH_LINES";

/// [`Iptables::restore_batch_lines`] of the nft backend when
/// [`RESTORE_BATCH_LINES`] does not say: a 10,000-line restore takes
/// iptables-nft-restore 1.8.9 about half a second, where 95,000 lines in
/// one take three minutes.
pub const DEFAULT_RESTORE_BATCH_LINES: usize = 10_000;

/// `iptables` or `ip6tables`.
pub(crate) fn family_prefix(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "iptables",
        IpFamily::V6 => "ip6tables",
    }
}

/// A node's ipsets, as text: what `ipset save` prints and `ipset restore`
/// accepts.
pub trait IpSets {
    /// All sets, as `ipset save` prints them.
    fn save(&self) -> Result<String, NodeError>;

    /// Applies `ipset restore` input. Not atomic: the lines before a
    /// failing one stay applied.
    fn restore(&self, payload: &str) -> Result<(), NodeError>;

    /// Starts [`IpSets::restore`] of `payload` for a caller that has other
    /// writes to make meanwhile (that do not touch the sets);
    /// [`PendingRestore::wait`] ends it and says how it went. By default
    /// the restore is made here, before this returns; [`SystemIpSets`]
    /// runs `ipset restore` on a thread of its own.
    fn start_restore(&self, payload: &str) -> PendingRestore {
        PendingRestore::done(self.restore(payload))
    }
}

/// An [`IpSets::restore`] started by [`IpSets::start_restore`].
#[derive(Debug)]
pub struct PendingRestore(PendingState);

#[derive(Debug)]
enum PendingState {
    Done(Result<(), NodeError>),
    Running(std::thread::JoinHandle<Result<(), NodeError>>),
}

impl PendingRestore {
    /// A restore already made, with its result.
    pub fn done(result: Result<(), NodeError>) -> PendingRestore {
        PendingRestore(PendingState::Done(result))
    }

    /// A restore `restore` makes on a thread of its own, started now.
    pub fn spawn(
        restore: impl FnOnce() -> Result<(), NodeError> + Send + 'static,
    ) -> PendingRestore {
        PendingRestore(PendingState::Running(std::thread::spawn(restore)))
    }

    /// Waits for the restore to end: its result.
    pub fn wait(self) -> Result<(), NodeError> {
        match self.0 {
            PendingState::Done(result) => result,
            PendingState::Running(thread) => thread.join().unwrap_or_else(|panic| {
                std::panic::resume_unwind(panic);
            }),
        }
    }
}

mod link;
pub use link::{
    AddressAdded, AddressPlan, DummyLink, KUBE_IPVS0, LINK_NAME_MAX_LEN, Link, LinkEnsured,
    LinkError, SystemLinks, plan_addresses, sync_addresses, validate_link_name,
};

mod ipvs_sync;
pub use ipvs_sync::{
    IpvsApplyReport, IpvsSyncError, NodeParts, PlannedIpvsApply, apply_ipvs, kernel_destination,
    kernel_service, plan_ipvs_apply, plan_ipvs_apply_from, read_ipvs_node, virtual_server,
};

mod ipvs_drain;
pub use ipvs_drain::{
    Clock, DRAIN_POLL, DrainEnd, DrainReport, DrainedServer, SystemClock, drain_real_servers,
    seconds_text,
};

mod ipvs_cleanup;
pub use ipvs_cleanup::{IpvsCleanup, plan_ipvs_cleanup};

mod sysctl;
pub use sysctl::{
    CONN_REUSE_FIXED_KERNEL, CONN_REUSE_MIN_KERNEL, DesiredSysctl, KernelVersion, SysctlDiff,
    SysctlError, SysctlPolicy, Sysctls, SystemSysctls, diff_sysctls, ensure_sysctls, ipvs_sysctls,
};

mod nft_sync;
pub use nft_sync::{
    NftApplyReport, NftCleanup, NftRefusedLine, NftSyncError, PlannedNftApply, apply_nft,
    kube_proxy_state, nft_family, nft_object_comments_supported, plan_nft_apply, plan_nft_cleanup,
    read_kube_proxy_table,
};
