//! The live node, through kpinspect-node: which iptables backend holds
//! kube-proxy's rules, saves and restores, ipsets, addresses, processes.

use anyhow::Result;
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_node::{
    Backend, IpSets as _, Iptables as _, NodeError, SystemIpSets, SystemIptables,
};

use crate::UsageError;
use crate::rules::Source;

/// Bad privileges and missing tools are the user's to fix: exit status 2.
fn usage(e: NodeError) -> anyhow::Error {
    UsageError::msg(e.to_string()).into()
}

/// The node's iptables through the backend that holds kube-proxy's rules,
/// detected once per command (a cleanup that empties one backend must not
/// switch to the other halfway).
#[derive(Debug, Clone, Copy)]
pub struct LiveIptables {
    backend: Backend,
    /// Whether both backends hold kube-proxy's chains.
    pub both_backends: bool,
}

/// Detects the backend; warns when both hold kube-proxy's chains.
pub fn iptables() -> Result<LiveIptables> {
    let d = kpinspect_node::detect_backend().map_err(usage)?;
    if let Some(w) = d.warning() {
        eprintln!("kpinspect: warning: {w}");
    }
    Ok(LiveIptables {
        backend: d.backend,
        both_backends: d.legacy_has_kube && d.nft_has_kube,
    })
}

impl LiveIptables {
    /// The restore program for `family` (`iptables-nft-restore`, ...).
    pub fn restore_program(self, family: IpFamily) -> String {
        self.backend.restore_program(family)
    }

    /// Whether the tools for `family` are installed.
    pub fn has_tools(self, family: IpFamily) -> bool {
        kpinspect_node::find_program(&self.backend.save_program(family)).is_some()
    }

    /// Saves `family`'s rules.
    pub fn read(self, family: IpFamily) -> Result<Source> {
        let text = SystemIptables::new(self.backend)
            .save(family)
            .map_err(usage)?;
        let name = format!("the live node ({})", self.backend.save_program(family));
        let rules = Ruleset::parse(&text).map_err(|e| UsageError::msg(format!("{name}: {e}")))?;
        Ok(Source { name, rules })
    }

    /// Restores `payload` (`--noflush`) into `family`'s tables.
    pub fn restore(self, family: IpFamily, payload: &str) -> Result<(), NodeError> {
        SystemIptables::new(self.backend).restore(family, payload)
    }
}

/// The names of the node's ipsets (none when the ipset tool is missing).
pub fn ipset_names() -> Result<Vec<String>> {
    match SystemIpSets.save() {
        Ok(text) => {
            let state = kpinspect_node::IpSetState::parse(&text)
                .map_err(|e| UsageError::msg(format!("ipset save: {e}")))?;
            Ok(state.sets.into_iter().map(|s| s.name).collect())
        }
        Err(NodeError::Missing { .. }) => Ok(vec![]),
        Err(e) => Err(usage(e)),
    }
}

/// Runs `ipset restore` with `payload`.
pub fn restore_ipsets(payload: &str) -> Result<(), NodeError> {
    SystemIpSets.restore(payload)
}

/// The node's own addresses.
pub fn local_ips() -> Result<Vec<std::net::IpAddr>> {
    kpinspect_node::local_addresses().map_err(usage)
}

/// The pid of a running kube-proxy.
pub fn kube_proxy_running() -> Option<u32> {
    kpinspect_node::kube_proxy_running()
}

/// The lock that serialises kpinspect's read-plan-write cycles.
pub fn lock() -> Result<kpinspect_node::RulesLock> {
    kpinspect_node::lock_rules().map_err(usage)
}
