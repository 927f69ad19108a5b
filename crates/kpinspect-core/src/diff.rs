//! What differs between what kube-proxy should have programmed and what a
//! node has, per Service and per chain.
//!
//! ```
//! use kpinspect_core::diff::{ServiceState, node_diff};
//! use kpinspect_core::netfilter::Ruleset;
//! use kpinspect_core::proxy::ProxyState;
//! let desired = Ruleset::parse(include_str!("../../../fixtures/iptables-save/affinity.restore")).unwrap();
//! let actual = Ruleset::parse(include_str!("../../../fixtures/iptables-save/affinity.nft.txt")).unwrap();
//! let d = node_diff(&desired, &actual, None);
//! assert!(d.services.iter().all(|s| s.state == ServiceState::InSync));
//! assert!(d.iptables.chains.is_empty());
//! // That save was taken without kube-proxy's jumps from the built-in chains.
//! assert_eq!(d.iptables.missing_jumps.len(), 14);
//! assert!(!d.in_sync());
//! ```

use std::collections::BTreeMap;

use serde::Serialize;

use crate::mode::ProxyMode;
use crate::mode::iptables::{ServiceDump, dump};
use crate::netfilter::Ruleset;
use crate::plan::{RulesDiff, diff};
use crate::proxy::ProxyState;

/// How one service port stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Its rules are all there, exactly.
    InSync,
    /// Desired but not programmed at all.
    Missing,
    /// Programmed with other endpoints.
    EndpointsDiffer,
    /// Same endpoints, but some of its rules differ.
    RulesDiffer,
    /// Programmed but not desired.
    Stale,
}

/// One service port's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    /// `namespace/name:port` (`namespace/name` for an unnamed port).
    pub service: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Its state.
    pub state: ServiceState,
    /// Endpoints (`ip:port`) desired but not programmed.
    pub endpoints_added: Vec<String>,
    /// Endpoints programmed but not desired.
    pub endpoints_removed: Vec<String>,
}

/// The whole difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeDiff {
    /// Per service port, sorted.
    pub services: Vec<ServiceStatus>,
    /// Per table and chain.
    pub iptables: RulesDiff,
}

impl NodeDiff {
    /// Whether the node is exactly as desired.
    pub fn in_sync(&self) -> bool {
        self.iptables.is_empty()
            && self
                .services
                .iter()
                .all(|s| s.state == ServiceState::InSync)
    }
}

fn key(s: &ServiceDump) -> (String, String) {
    let name = if s.port_name.is_empty() {
        format!("{}/{}", s.namespace, s.name)
    } else {
        format!("{}/{}:{}", s.namespace, s.name, s.port_name)
    };
    (name, s.protocol.clone())
}

fn endpoints(s: &ServiceDump) -> Vec<String> {
    let mut v: Vec<String> = s
        .endpoints
        .iter()
        .map(|e| match crate::net::parse_ip_sloppy(&e.ip) {
            Some(ip) => crate::net::join_host_port(&ip, e.port),
            None => format!("{}:{}", e.ip, e.port),
        })
        .collect();
    v.sort();
    v
}

/// Compares `desired` (compiled restore input) with `actual` (the node's
/// `iptables-save`); `cluster` names chains that carry no comment.
pub fn node_diff(desired: &Ruleset, actual: &Ruleset, cluster: Option<&ProxyState>) -> NodeDiff {
    let iptables = diff(desired, actual, ProxyMode::Iptables.profile());
    let want: BTreeMap<_, _> = dump(desired, cluster)
        .services
        .into_iter()
        .map(|s| (key(&s), s))
        .collect();
    let have: BTreeMap<_, _> = dump(actual, cluster)
        .services
        .into_iter()
        .map(|s| (key(&s), s))
        .collect();
    let mut services = Vec::new();
    for (k, w) in &want {
        let (added, removed, state) = match have.get(k) {
            None => (endpoints(w), vec![], ServiceState::Missing),
            Some(h) => {
                let (we, he) = (endpoints(w), endpoints(h));
                let added: Vec<String> = we.iter().filter(|e| !he.contains(e)).cloned().collect();
                let removed: Vec<String> = he.iter().filter(|e| !we.contains(e)).cloned().collect();
                let comment = k.0.clone();
                let touched = iptables.chains.iter().any(|c| {
                    w.chains.contains(&c.chain)
                        || c.missing
                            .iter()
                            .chain(c.extra.iter())
                            .any(|r| mentions(r, &comment))
                });
                let state = if !added.is_empty() || !removed.is_empty() {
                    ServiceState::EndpointsDiffer
                } else if touched {
                    ServiceState::RulesDiffer
                } else {
                    ServiceState::InSync
                };
                (added, removed, state)
            }
        };
        services.push(ServiceStatus {
            service: k.0.clone(),
            protocol: k.1.clone(),
            state,
            endpoints_added: added,
            endpoints_removed: removed,
        });
    }
    for (k, h) in &have {
        if !want.contains_key(k) {
            services.push(ServiceStatus {
                service: k.0.clone(),
                protocol: k.1.clone(),
                state: ServiceState::Stale,
                endpoints_added: vec![],
                endpoints_removed: endpoints(h),
            });
        }
    }
    services.sort_by(|a, b| (&a.service, &a.protocol).cmp(&(&b.service, &b.protocol)));
    NodeDiff { services, iptables }
}

/// Whether rule text carries a comment about service port `name`
/// (`"ns/svc:p80 cluster IP"`, `ns/svc:p80`).
fn mentions(rule: &str, name: &str) -> bool {
    [
        format!("\"{name} "),
        format!("\"{name}\""),
        format!(" {name} "),
    ]
    .iter()
    .any(|n| rule.contains(n.as_str()))
        || rule.ends_with(&format!(" {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_changes_are_named() {
        let desired = include_str!("../../../fixtures/iptables-save/affinity.restore");
        let actual = Ruleset::parse(include_str!(
            "../../../fixtures/iptables-save/affinity.nft.txt"
        ))
        .unwrap();
        // Take one endpoint away from the desired state.
        let ep = desired
            .lines()
            .find(|l| l.contains("--to-destination"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .to_string();
        let changed = desired.replace(
            &format!("--to-destination {ep}"),
            "--to-destination 10.99.0.1:80",
        );
        let d = node_diff(&Ruleset::parse(&changed).unwrap(), &actual, None);
        assert!(!d.in_sync());
        let s = &d.services[0];
        assert_eq!(s.state, ServiceState::EndpointsDiffer);
        assert_eq!(s.endpoints_added, ["10.99.0.1:80"]);
        assert_eq!(s.endpoints_removed, [ep]);
    }
}
