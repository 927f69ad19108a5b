//! The live node, through kpinspect-node: the detected backend (with its
//! warning), the lock, addresses, processes. Node errors are the user's to
//! fix (bad privileges, missing tools): exit status 2.

use anyhow::Result;
use kpinspect_node::{Backend, LiveNode, NodeError};

use crate::UsageError;

fn usage(e: NodeError) -> anyhow::Error {
    UsageError::msg(e.to_string()).into()
}

/// The live node, its backend detected once per command; warns when both
/// backends hold kube-proxy's chains.
pub fn node() -> Result<LiveNode> {
    node_with(None)
}

/// The live node through `backend`, or the detected one.
pub fn node_with(backend: Option<Backend>) -> Result<LiveNode> {
    let mut detection = kpinspect_node::detect_backend().map_err(usage)?;
    match backend {
        Some(b) if b != detection.backend => {
            detection.reason = format!("--backend {b}");
            detection.backend = b;
        }
        _ => {
            if let Some(w) = detection.warning() {
                note!("kpinspect: warning: {w}");
            }
        }
    }
    Ok(LiveNode::with_detection(detection))
}

/// [`node`], keeping the full saves detection ran so that the first read
/// of each family reuses them ([`LiveNode::detect_keeping_saves`]): only
/// under [`lock`], taken before this.
pub fn node_keeping_saves() -> Result<LiveNode> {
    let node = LiveNode::detect_keeping_saves().map_err(usage)?;
    if let Some(w) = node.detection.warning() {
        note!("kpinspect: warning: {w}");
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
