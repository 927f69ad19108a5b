//! Ground truth for the tracer: `fixtures/routed` is compiled, loaded into a
//! routed [`TestNode`] (plus kube-proxy's jump rules), and real TCP
//! connections are checked against what `kpinspect_core::trace` says about
//! the rules read back with `iptables-save`: every connection lands on a DNAT
//! outcome of the trace, every endpoint the trace gives a chance is reached,
//! and the server sees the node's address exactly when the trace says the
//! connection is masqueraded. On both iptables backends; needs root (see
//! `node`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use kpinspect_core::model::Protocol;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_core::trace::{Action, Packet, TraceOptions, trace};

use crate::node::{Backend, CLIENT_IP, Layout, NODE_IP, TestNode, available, pod_ip};
use crate::util::fixture_at;

/// Connections per flow. With 3 equiprobable endpoints, the chance that one
/// of them is never reached is at most 3 · (2/3)^40 ≈ 3e-7 (2 endpoints:
/// 2 · (1/2)^40 ≈ 2e-12), so "every endpoint reached" does not flake.
const CONNECTIONS: usize = 40;

/// Where a flow starts.
#[derive(Debug, Clone, Copy)]
enum From {
    Client,
    Pod(usize),
    /// The node itself (the trace starts at nat OUTPUT).
    Node,
}

/// A connection to make, and the endpoints (with whether kube-proxy
/// masquerades them) the fixture leads us to expect from the trace.
struct Flow {
    name: &'static str,
    from: From,
    dst: IpAddr,
    port: u16,
    expect: &'static [(&'static str, bool)],
}

fn flows() -> Vec<Flow> {
    let cluster_ip: IpAddr = "172.30.0.10".parse().unwrap();
    let node_ip = IpAddr::V4(NODE_IP);
    vec![
        Flow {
            name: "pod -> ClusterIP (hairpin to itself masqueraded, others not)",
            from: From::Pod(0),
            dst: cluster_ip,
            port: 80,
            expect: &[
                ("10.244.0.11:8080", true),
                ("10.244.0.12:8080", false),
                ("10.244.0.13:8080", false),
            ],
        },
        Flow {
            name: "client -> NodePort (eTP Cluster: masqueraded)",
            from: From::Client,
            dst: node_ip,
            port: 30080,
            expect: &[("10.244.0.12:8081", true), ("10.244.0.13:8081", true)],
        },
        Flow {
            name: "client -> ClusterIP (from outside clusterCIDR: masqueraded)",
            from: From::Client,
            dst: cluster_ip,
            port: 80,
            expect: &[
                ("10.244.0.11:8080", true),
                ("10.244.0.12:8080", true),
                ("10.244.0.13:8080", true),
            ],
        },
        Flow {
            name: "node -> ClusterIP (from outside clusterCIDR: masqueraded)",
            from: From::Node,
            dst: cluster_ip,
            port: 80,
            expect: &[
                ("10.244.0.11:8080", true),
                ("10.244.0.12:8080", true),
                ("10.244.0.13:8080", true),
            ],
        },
        Flow {
            name: "pod -> NodePort (masqueraded)",
            from: From::Pod(0),
            dst: node_ip,
            port: 30080,
            expect: &[("10.244.0.12:8081", true), ("10.244.0.13:8081", true)],
        },
    ]
}

#[test]
fn routed_traffic_matches_the_trace_nft() {
    check_backend(Backend::Nft);
}

#[test]
fn routed_traffic_matches_the_trace_legacy() {
    check_backend(Backend::Legacy);
}

fn check_backend(backend: Backend) {
    if !available() {
        return;
    }
    let fx = fixture_at("fixtures/routed");
    assert_eq!(fx.node_ips(), [NODE_IP.to_string()], "fixture's --node-ip");
    let restore = fx.compile();

    let mut node = TestNode::new(Layout {
        pods: 3,
        backend,
        ipv6: false,
    });
    node.restore(&restore)
        .unwrap_or_else(|e| panic!("{}: restore refused: {e}", backend.name()));
    node.install_jump_rules();
    node.start_servers(&[8080, 8081]);
    // The node routes: the client reaches each pod directly, unmasqueraded.
    for pod in &node.pods {
        let reply = node
            .connect(&node.client, IpAddr::V4(pod.ip), 8080)
            .unwrap_or_else(|e| panic!("client -> {}: {e}", pod.ip));
        assert_eq!(reply.server, SocketAddr::from((pod.ip, 8080)));
        assert_eq!(reply.peer.ip(), IpAddr::V4(CLIENT_IP));
    }

    let saved = node.save();
    let rules = Ruleset::parse(&saved).expect("iptables-save output parses");
    let opts = TraceOptions::new().with_local_ips(node.local_ips());
    for flow in flows() {
        check_flow(&node, &rules, &opts, &flow);
    }
}

fn check_flow(node: &TestNode, rules: &Ruleset, opts: &TraceOptions, flow: &Flow) {
    let ctx = format!("{} ({})", flow.name, node.backend.name());
    let (ns, src) = match flow.from {
        From::Client => (node.client.as_str(), IpAddr::V4(CLIENT_IP)),
        From::Pod(i) => (node.pods[i].ns.as_str(), IpAddr::V4(pod_ip(i))),
        From::Node => (node.node.as_str(), IpAddr::V4(NODE_IP)),
    };

    // What the tracer says: DNAT targets of a new client, with their chance
    // and whether they are masqueraded.
    let t = trace(
        rules,
        &Packet::new(src, flow.dst, flow.port, Protocol::Tcp),
        opts,
    );
    crate::trace::assert_consistent(&t, &ctx);
    let mut targets: BTreeMap<SocketAddr, (f64, bool)> = BTreeMap::new();
    for o in t.outcomes.iter().filter(|o| o.conditions.is_empty()) {
        assert_eq!(o.action, Action::Dnat, "{ctx}: trace: {o:?}");
        let to =
            o.to.unwrap_or_else(|| panic!("{ctx}: DNAT without target: {o:?}"));
        let entry = targets.entry(to).or_insert((0.0, o.masquerade));
        assert_eq!(entry.1, o.masquerade, "{ctx}: {to}: masquerade differs");
        entry.0 += o.probability;
    }
    let total: f64 = targets.values().map(|(p, _)| p).sum();
    assert!(
        (total - 1.0).abs() < 1e-6,
        "{ctx}: probabilities add to {total}"
    );
    // The trace agrees with what the fixture was written to do.
    let expected: BTreeMap<SocketAddr, bool> = flow
        .expect
        .iter()
        .map(|(a, m)| (a.parse().unwrap(), *m))
        .collect();
    let traced: BTreeMap<SocketAddr, bool> = targets.iter().map(|(a, (_, m))| (*a, *m)).collect();
    assert_eq!(traced, expected, "{ctx}: trace's DNAT targets (masquerade)");

    // What the kernel does.
    let mut reached: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for reply in node.connect_many(ns, flow.dst, flow.port, CONNECTIONS) {
        let reply = reply.unwrap_or_else(|e| panic!("{ctx}: connection failed: {e}"));
        let (_, masquerade) = targets.get(&reply.server).unwrap_or_else(|| {
            panic!(
                "{ctx}: reached {}, not a DNAT outcome of the trace {targets:?}",
                reply.server
            )
        });
        let peer = if *masquerade {
            IpAddr::V4(NODE_IP)
        } else {
            src
        };
        assert_eq!(
            reply.peer.ip(),
            peer,
            "{ctx}: {} saw peer {} (trace: masquerade={masquerade})",
            reply.server,
            reply.peer
        );
        *reached.entry(reply.server).or_default() += 1;
    }
    eprintln!("{ctx}: reached {reached:?}");
    for (to, (p, _)) in &targets {
        assert!(
            *p == 0.0 || reached.contains_key(to),
            "{ctx}: {to} (p={p}) never reached in {CONNECTIONS} connections: {reached:?}"
        );
    }
}
