//! The live node, through kpinspect-node: the detected backend (with its
//! warning), the lock, addresses, processes. Node errors are the user's to
//! fix (bad privileges, missing tools): exit status 2.

use anyhow::Result;
use kpinspect_node::{LiveNode, NodeError};

use crate::UsageError;

fn usage(e: NodeError) -> anyhow::Error {
    UsageError::msg(e.to_string()).into()
}

/// The live node, its backend detected once per command; warns when both
/// backends hold kube-proxy's chains.
pub fn node() -> Result<LiveNode> {
    let node = LiveNode::detect().map_err(usage)?;
    if let Some(w) = node.detection.warning() {
        eprintln!("kpinspect: warning: {w}");
    }
    Ok(node)
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
