//! The JSON forms of `apply`'s and `cleanup`'s reports (`--format json`):
//! the same information as their text, with stable field names (see
//! `--help` and the README). Built from the node crate's report values;
//! nothing here reads the node.

use kpinspect_core::mode::ipvs::{IpvsOp, IpvsPlan};
use kpinspect_core::mode::nftables::{ElementChange, NftPlan};
use kpinspect_core::net::IpFamily;
use kpinspect_core::plan::{CleanupPlan, Plan};
use kpinspect_node::{
    ConntrackError, ConntrackReport, CounterCleanup, DrainReport, IpvsCleanup, NftCleanup,
    SysctlDiff,
};
use serde_json::{Value, json};

/// An iptables plan: its payload and what it changes.
pub fn iptables_plan(p: &Plan) -> Value {
    json!({
        "payload": p.payload,
        "chains_written": p.chains_written,
        "rules_added": p.rules_added,
        "rules_deleted": p.rules_deleted,
        "chains_deleted": p.chains_deleted,
        "chains_kept": p
            .chains_kept
            .iter()
            .map(|(chain, rule)| json!({"chain": chain, "jumped_to_by": rule}))
            .collect::<Vec<_>>(),
    })
}

/// How many writes of each kind an IPVS plan has (the numbers of the text
/// report's line).
fn ipvs_counts(p: &IpvsPlan) -> Value {
    let n = |pred: fn(&IpvsOp) -> bool| p.ops.iter().filter(|o| pred(o)).count();
    json!({
        "virtual_servers_added": n(|o| matches!(o, IpvsOp::AddService(_))),
        "virtual_servers_updated": n(|o| matches!(o, IpvsOp::UpdateService(_))),
        "virtual_servers_deleted": n(|o| matches!(o, IpvsOp::DelService(_))),
        "real_servers_added": n(|o| matches!(o, IpvsOp::AddRealServer { .. })),
        "real_servers_reweighted": n(|o| matches!(o, IpvsOp::SetWeight { .. })),
        "real_servers_deleted": n(|o| matches!(o, IpvsOp::DelRealServer { .. })),
        "set_members_changed": n(|o| matches!(o, IpvsOp::AddMember { .. } | IpvsOp::DelMember { .. })),
        "addresses_bound": n(|o| matches!(o, IpvsOp::Bind(_))),
        "addresses_unbound": n(|o| matches!(o, IpvsOp::Unbind(_))),
    })
}

/// One family of an IPVS-mode apply (written, or planned in a dry run).
pub fn ipvs_family(ipvs: &IpvsPlan, rules: &Plan, from: &str, warnings: Vec<String>) -> Value {
    json!({
        "family": ipvs.family,
        "read_from": from,
        "in_sync": ipvs.is_empty() && rules.is_empty(),
        "counts": ipvs_counts(ipvs),
        "ipvs": ipvs,
        "commands": ipvs.ops.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "iptables": iptables_plan(rules),
        "warnings": warnings,
    })
}

/// One family of an iptables-mode apply (written, or planned in a dry
/// run).
pub fn iptables_family(family: IpFamily, rules: &Plan, from: &str, warnings: Vec<String>) -> Value {
    json!({
        "family": family,
        "read_from": from,
        "in_sync": rules.is_empty(),
        "iptables": iptables_plan(rules),
        "warnings": warnings,
    })
}

/// An nftables plan: its `nft -f` transaction and what it changes (the
/// numbers of the text report's line, then the names).
pub fn nft_plan(p: &NftPlan) -> Value {
    let added = p
        .elements
        .iter()
        .filter(|e| e.change != ElementChange::Stale)
        .count();
    let deleted = p
        .elements
        .iter()
        .filter(|e| e.change != ElementChange::Missing)
        .count();
    json!({
        "transaction": p.transaction.render(),
        "operations": p.transaction.len(),
        "chains_written": p.chains_written,
        "chains_deleted": p.chains_deleted,
        "elements_added": added,
        "elements_deleted": deleted,
        "sets": p.containers,
        "elements": p.elements,
    })
}

/// One family of an nftables-mode apply (written, or planned in a dry
/// run), in the shape of the other modes' families.
pub fn nft_family(p: &NftPlan, from: &str) -> Value {
    json!({
        "family": p.family,
        "read_from": from,
        "in_sync": p.is_empty(),
        "nftables": nft_plan(p),
        "warnings": Vec::<String>::new(),
    })
}

/// The `kube-proxy` nftables tables a cleanup removes (`removed` once
/// written).
pub fn nft_cleanup(c: &NftCleanup) -> Value {
    json!({
        "removed": c.written,
        "tables": c
            .tables
            .iter()
            .map(|f| json!({"family": f.to_string(), "table": "kube-proxy"}))
            .collect::<Vec<_>>(),
    })
}

/// A conntrack clearing of `family`: the stale UDP entries deleted (or
/// that a dry run would delete), or why it failed.
pub fn conntrack(family: IpFamily, result: &Result<ConntrackReport, ConntrackError>) -> Value {
    match result {
        Ok(r) => json!({
            "family": family,
            "deleted": r.deleted,
            "stale": r
                .stale
                .iter()
                .map(|e| json!({
                    "src": e.original.src,
                    "src_port": e.original.src_port,
                    "dst": e.original.dst,
                    "dst_port": e.original.dst_port,
                    "endpoint": e.reply.src,
                    "endpoint_port": e.reply.src_port,
                }))
                .collect::<Vec<_>>(),
            "error": null,
        }),
        Err(e) => json!({
            "family": family,
            "deleted": false,
            "stale": [],
            "error": e.to_string(),
        }),
    }
}

/// A sysctl apply sets (or a dry run would set).
pub fn sysctl(d: &SysctlDiff) -> Value {
    json!({"name": d.name, "want": d.want, "have": d.have})
}

/// The wait for draining real servers.
pub fn drain(r: &DrainReport) -> Value {
    json!({
        "timeout_seconds": r.timeout.as_secs_f64(),
        "waited_seconds": r.waited.as_secs_f64(),
        "real_servers": r
            .servers
            .iter()
            .map(|s| json!({
                "service": s.service,
                "address": s.server.address,
                "port": s.server.port,
                "end": s.end.as_str(),
                "after_seconds": s.after.as_secs_f64(),
                "active_connections": s.server.active_connections,
                "inactive_connections": s.server.inactive_connections,
            }))
            .collect::<Vec<_>>(),
    })
}

/// IPVS mode's state a cleanup removes (`removed` once written) and keeps.
pub fn ipvs_cleanup(c: &IpvsCleanup) -> Value {
    json!({
        "removed": c.written,
        "virtual_servers": c.services,
        "addresses": c.addresses,
        "link": c.delete_link.then_some(kpinspect_node::KUBE_IPVS0),
        "kept_virtual_servers": c
            .kept_services
            .iter()
            .map(|k| json!({"service": k, "why": "not provably kube-proxy's"}))
            .collect::<Vec<_>>(),
        "kept_link": c.kept_link.as_ref().map(|why| json!({"link": kpinspect_node::KUBE_IPVS0, "why": why})),
    })
}

/// The rules and ipsets a cleanup removes (`removed` once written) and
/// keeps, with the payloads per family's restore program.
pub fn cleanup_plan(families: &[(IpFamily, String)], plan: &CleanupPlan, removed: bool) -> Value {
    json!({
        "removed": removed,
        "payloads": families
            .iter()
            .zip(&plan.payloads)
            .map(|((family, program), payload)| json!({
                "family": family,
                "program": program,
                "payload": payload,
            }))
            .collect::<Vec<_>>(),
        "ipset_payload": plan.ipset_payload,
        "chains": plan
            .removed_chains
            .iter()
            .map(|(table, chain)| json!({"table": table, "chain": chain}))
            .collect::<Vec<_>>(),
        "rules": plan
            .removed_rules
            .iter()
            .map(|(table, rule)| json!({"table": table, "rule": rule}))
            .collect::<Vec<_>>(),
        "ipsets": plan.removed_ipsets,
        "kept": plan
            .kept
            .iter()
            .map(|(what, why)| json!({"what": what, "why": why}))
            .collect::<Vec<_>>(),
    })
}

/// nfacct counters a cleanup removed (or a dry run would remove once no
/// rule uses them) and kept.
pub fn counters(c: &[CounterCleanup]) -> Value {
    c.iter()
        .map(|c| match c {
            CounterCleanup::Removed(n) => json!({"name": n, "removed": true}),
            CounterCleanup::InUse(n) => json!({"name": n, "removed": false}),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use kpinspect_core::config::ProxyConfig;
    use kpinspect_core::mode::ipvs::{Ownership, compile};
    use kpinspect_core::model::{Cluster, Protocol};
    use kpinspect_core::proxy::ProxyState;
    use kpinspect_node::{
        ConntrackEntry, ConntrackTuple, DummyLink as _, MemoryNode, apply_ipvs, plan_ipvs_cleanup,
    };

    use super::*;

    fn cluster() -> Cluster {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
        let text = std::fs::read_to_string(format!("{root}examples/cluster.yaml")).unwrap();
        let loaded = kpinspect_k8s::load_objects(&text, "cluster.yaml").unwrap();
        let mut all = kpinspect_k8s::Loaded::default();
        all.extend(loaded);
        all.finish().0
    }

    /// An IPVS apply's JSON counts what its text counts, and lists the
    /// same commands a dry run prints.
    #[test]
    fn ipvs_apply_json_says_what_the_text_says() {
        let config = ProxyConfig::default();
        let cluster = cluster();
        let state = ProxyState::build(&cluster, &config, IpFamily::V4);
        let want = compile(&state, &config);
        let node = MemoryNode::new();
        let report = apply_ipvs(&node, &want, &Ownership::new(&config, &cluster)).unwrap();
        let v = ipvs_family(&report.ipvs, &report.rules, &report.from, report.warnings());
        let text = report.to_string();
        let counts = &v["counts"];
        let added = counts["virtual_servers_added"].as_u64().unwrap();
        assert!(added > 0, "{v}");
        assert!(
            text.contains(&format!("{added} virtual servers added")),
            "{text}"
        );
        let reals = counts["real_servers_added"].as_u64().unwrap();
        assert!(
            text.contains(&format!("{reals} real servers added")),
            "{text}"
        );
        assert_eq!(v["in_sync"], json!(false));
        assert_eq!(v["family"], json!("ipv4"));
        assert_eq!(
            v["commands"].as_array().unwrap().len(),
            report.ipvs.ops.len()
        );
        assert_eq!(
            v["iptables"]["payload"].as_str().unwrap().len(),
            report.rules.payload.len()
        );
        assert!(text.ends_with(&format!("{} iptables bytes", report.rules.payload.len())));
        let again = apply_ipvs(&node, &want, &Ownership::new(&config, &cluster)).unwrap();
        let v = ipvs_family(&again.ipvs, &again.rules, &again.from, again.warnings());
        assert_eq!(v["in_sync"], json!(true), "{v}");
        assert_eq!(v["counts"]["virtual_servers_added"], json!(0));
    }

    #[test]
    fn conntrack_json_lists_the_entries_the_text_lists() {
        let entry = ConntrackEntry::new(
            Protocol::Udp,
            ConntrackTuple::new(
                "10.0.0.1:40002".parse::<SocketAddr>().unwrap(),
                "10.96.0.53:53".parse().unwrap(),
            ),
            ConntrackTuple::new(
                "10.244.0.99:53".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:40002".parse().unwrap(),
            ),
        );
        let report = ConntrackReport {
            family: IpFamily::V4,
            stale: vec![entry],
            deleted: true,
        };
        let text = report.to_string();
        let v = conntrack(IpFamily::V4, &Ok(report));
        assert_eq!(
            v,
            json!({
                "family": "ipv4",
                "deleted": true,
                "stale": [{
                    "src": "10.0.0.1", "src_port": 40002,
                    "dst": "10.96.0.53", "dst_port": 53,
                    "endpoint": "10.244.0.99", "endpoint_port": 53,
                }],
                "error": null,
            })
        );
        assert!(
            text.contains("10.0.0.1 -> 10.96.0.53 (answered by 10.244.0.99)"),
            "{text}"
        );
    }

    /// An IPVS cleanup's JSON names what its text names.
    #[test]
    fn ipvs_cleanup_json_names_what_the_text_names() {
        let config = ProxyConfig::default();
        let cluster = cluster();
        let state = ProxyState::build(&cluster, &config, IpFamily::V4);
        let want = compile(&state, &config);
        let node = MemoryNode::new();
        apply_ipvs(&node, &want, &Ownership::new(&config, &cluster)).unwrap();
        let planned = plan_ipvs_cleanup(
            &node,
            &[],
            kpinspect_core::mode::ipvs::DEFAULT_NODE_PORT_RANGE,
            None,
        )
        .unwrap();
        let v = ipvs_cleanup(&planned);
        assert_eq!(v["removed"], json!(false));
        assert_eq!(v["link"], json!("kube-ipvs0"));
        let servers = v["virtual_servers"].as_array().unwrap();
        assert_eq!(servers.len(), planned.services.len());
        assert!(!servers.is_empty());
        let text = planned.to_string();
        for s in &planned.services {
            assert!(text.contains(&format!("would remove virtual server {s}")));
        }
        assert_eq!(servers[0]["address"], json!(planned.services[0].address));
        let done = planned.write(&node).unwrap();
        assert_eq!(ipvs_cleanup(&done)["removed"], json!(true));
        assert!(node.link(kpinspect_node::KUBE_IPVS0).unwrap().is_none());
    }

    #[test]
    fn drain_json_has_each_real_servers_end() {
        use kpinspect_core::mode::ipvs::{RealServer, ServiceKey};
        use kpinspect_node::{DrainEnd, DrainedServer};
        let report = DrainReport {
            timeout: Duration::from_millis(1500),
            waited: Duration::from_millis(1500),
            servers: vec![DrainedServer {
                service: ServiceKey {
                    address: "10.96.0.10".parse().unwrap(),
                    protocol: Protocol::Tcp,
                    port: 80,
                },
                server: RealServer {
                    active_connections: Some(2),
                    inactive_connections: Some(1),
                    ..RealServer::new("10.244.3.2".parse().unwrap(), 8080)
                },
                end: DrainEnd::TimedOut,
                after: Duration::from_millis(1500),
            }],
        };
        let text = report.to_string();
        assert!(
            text.contains("drain timeout (1.500s) with 2 active, 1 inactive"),
            "{text}"
        );
        assert_eq!(
            drain(&report),
            json!({
                "timeout_seconds": 1.5,
                "waited_seconds": 1.5,
                "real_servers": [{
                    "service": {"address": "10.96.0.10", "protocol": "Tcp", "port": 80},
                    "address": "10.244.3.2",
                    "port": 8080,
                    "end": "timed_out",
                    "after_seconds": 1.5,
                    "active_connections": 2,
                    "inactive_connections": 1,
                }],
            })
        );
    }
}
