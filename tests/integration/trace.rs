//! `kpinspect_core::trace` against kube-proxy's packet-flow tests: every
//! flow of the ported fixtures (TestClusterIPGeneral, TestLoadBalancer,
//! TestNodePorts, TestExternalTrafficPolicyLocal/Cluster,
//! TestInternalTrafficPolicy, TestTerminatingEndpoints*, TestNoEndpointsReject,
//! TestInternalExternalMasquerade, ...) is walked through the compiled rules
//! and summarised the way kube-proxy's test tracer reports it.

use std::net::IpAddr;

use kpinspect_core::model::Protocol;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_core::trace::{Action, Packet, Trace, TraceOptions, trace};
use serde::Deserialize;

use crate::util::{Fixture, compile_fixtures, fixture, yaml};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flow {
    name: String,
    #[serde(rename = "sourceIP")]
    source_ip: String,
    protocol: Option<String>,
    #[serde(rename = "destIP")]
    dest_ip: String,
    dest_port: u16,
    output: String,
    masq: bool,
}

/// kube-proxy's tracer output: DNAT targets in rule order, the verdicts of
/// kube-proxy's own rules, `ACCEPT` only when a rule accepted (not a policy).
/// Outcomes that need session-affinity history or other conditions are left
/// out, as kube-proxy's tracer assumes a new client.
fn summary(t: &Trace) -> (String, bool) {
    let mut out: Vec<String> = Vec::new();
    let mut masq = false;
    for o in t.outcomes.iter().filter(|o| o.conditions.is_empty()) {
        let item = match o.action {
            Action::Dnat => o.to.map(|a| a.to_string()),
            Action::Drop => Some("DROP".into()),
            Action::Reject => Some("REJECT".into()),
            Action::Accept => o
                .path
                .iter()
                .any(|s| s.text.ends_with("-j ACCEPT"))
                .then(|| "ACCEPT".to_string()),
        };
        if let Some(item) = item.filter(|i| !out.contains(i)) {
            out.push(item);
        }
        masq |= o.masquerade;
    }
    (out.join(", "), masq)
}

fn check_flows(fx: &Fixture, rules: &str) -> usize {
    let rules = Ruleset::parse(rules).expect("rules parse");
    let flows: Vec<Flow> = yaml(&fx.read("flows.yaml"));
    let opts = TraceOptions {
        local_ips: fx
            .node_ips()
            .iter()
            .map(|s| s.parse().expect("node ip"))
            .collect(),
        ..Default::default()
    };
    for f in &flows {
        let protocol = match f
            .protocol
            .as_deref()
            .unwrap_or("tcp")
            .to_lowercase()
            .as_str()
        {
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        let ip = |s: &str| s.parse::<IpAddr>().expect("flow address");
        let packet = Packet::new(ip(&f.source_ip), ip(&f.dest_ip), f.dest_port, protocol);
        let t = trace(&rules, &packet, &opts);
        let (output, masq) = summary(&t);
        assert_eq!(
            (output.as_str(), masq),
            (f.output.as_str(), f.masq),
            "{}: flow {:?} ({} -> {}:{}/{protocol}); trace:\n{t:#?}",
            fx.name,
            f.name,
            f.source_ip,
            f.dest_ip,
            f.dest_port,
        );
    }
    flows.len()
}

/// kube-proxy's packet-flow tests, run over kpinspect's compiled rules.
#[test]
fn packet_flows_match_kube_proxy() {
    let mut flows = 0;
    for fx in compile_fixtures() {
        if fx.has("flows.yaml") {
            flows += check_flows(&fx, &fx.compile());
        }
    }
    assert!(flows > 200, "only {flows} flows checked");
}

/// TestTracePacket's own static dump.
#[test]
fn trace_matches_kube_proxy_on_its_tracer_fixture() {
    let fx = fixture("trace_packet");
    assert!(check_flows(&fx, &fx.read("rules.txt")) >= 5);
}
