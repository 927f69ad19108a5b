//! Ground truth for the nftables-mode tracer: `fixtures/routed-nftables` is
//! compiled for nftables mode, its transaction loaded with `nft -f` into a
//! routed [`TestNode`], listed back (`nft list`, `nft -j list`: the listed
//! table traces exactly as the compiled one), and real TCP connections are
//! checked against what `kpinspect_core::trace::trace_nftables` says about
//! the listed table: every connection lands on a DNAT outcome of the
//! trace, every endpoint the trace gives a chance is reached, the server
//! sees the node's address exactly when the trace says the connection is
//! masqueraded, and a connection the trace rejects is refused. Needs root
//! (see `node`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use kpinspect_core::mode::nftables::read_listing;
use kpinspect_core::model::Protocol;
use kpinspect_core::nft::{Fake, Family};
use kpinspect_core::trace::{Action, Packet, TraceOptions, trace_nftables};

use crate::nft_trace::{compiled_table, outcome_essentials};
use crate::node::{Backend, CLIENT_IP, Layout, NODE_IP, TestNode, available, kp, pod_ip};
use crate::util::fixture_at;

/// Connections per flow (see `routed::CONNECTIONS`).
const CONNECTIONS: usize = 40;

/// Where a flow starts.
#[derive(Debug, Clone, Copy)]
enum From {
    Client,
    Pod(usize),
    /// The node itself (the trace starts at the output hook).
    Node,
}

/// What a flow should do, as the fixture was written.
enum Expect {
    /// These endpoints, with whether kube-proxy masquerades them.
    Endpoints(&'static [(&'static str, bool)]),
    /// Rejected.
    Reject,
}

struct Flow {
    name: &'static str,
    from: From,
    dst: IpAddr,
    port: u16,
    expect: Expect,
}

fn flows() -> Vec<Flow> {
    let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
    let node_ip = IpAddr::V4(NODE_IP);
    vec![
        Flow {
            name: "pod -> ClusterIP (hairpin to itself masqueraded, others not)",
            from: From::Pod(0),
            dst: ip("172.30.0.10"),
            port: 80,
            expect: Expect::Endpoints(&[
                ("10.244.0.11:8080", true),
                ("10.244.0.12:8080", false),
                ("10.244.0.13:8080", false),
            ]),
        },
        Flow {
            name: "client -> ClusterIP (from outside clusterCIDR: masqueraded)",
            from: From::Client,
            dst: ip("172.30.0.10"),
            port: 80,
            expect: Expect::Endpoints(&[
                ("10.244.0.11:8080", true),
                ("10.244.0.12:8080", true),
                ("10.244.0.13:8080", true),
            ]),
        },
        Flow {
            name: "node -> ClusterIP (masqueraded)",
            from: From::Node,
            dst: ip("172.30.0.10"),
            port: 80,
            expect: Expect::Endpoints(&[
                ("10.244.0.11:8080", true),
                ("10.244.0.12:8080", true),
                ("10.244.0.13:8080", true),
            ]),
        },
        Flow {
            name: "client -> NodePort (eTP Cluster: masqueraded)",
            from: From::Client,
            dst: node_ip,
            port: 30080,
            expect: Expect::Endpoints(&[("10.244.0.12:8081", true), ("10.244.0.13:8081", true)]),
        },
        Flow {
            name: "pod -> NodePort (eTP Cluster: masqueraded)",
            from: From::Pod(0),
            dst: node_ip,
            port: 30080,
            expect: Expect::Endpoints(&[("10.244.0.12:8081", true), ("10.244.0.13:8081", true)]),
        },
        Flow {
            name: "client -> NodePort (eTP Local: the local endpoint, not masqueraded)",
            from: From::Client,
            dst: node_ip,
            port: 30090,
            expect: Expect::Endpoints(&[("10.244.0.11:8082", false)]),
        },
        Flow {
            name: "pod -> NodePort (eTP Local: short-circuited to every endpoint)",
            from: From::Pod(2),
            dst: node_ip,
            port: 30090,
            expect: Expect::Endpoints(&[("10.244.0.11:8082", false), ("10.244.0.12:8082", false)]),
        },
        Flow {
            name: "node -> NodePort (eTP Local: masqueraded, every endpoint)",
            from: From::Node,
            dst: node_ip,
            port: 30090,
            expect: Expect::Endpoints(&[("10.244.0.11:8082", true), ("10.244.0.12:8082", true)]),
        },
        Flow {
            name: "client -> ClusterIP without endpoints (rejected)",
            from: From::Client,
            dst: ip("172.30.0.40"),
            port: 80,
            expect: Expect::Reject,
        },
        Flow {
            name: "pod -> ClusterIP without endpoints (rejected)",
            from: From::Pod(1),
            dst: ip("172.30.0.40"),
            port: 80,
            expect: Expect::Reject,
        },
        Flow {
            name: "pod -> a ClusterIP's other port (rejected)",
            from: From::Pod(1),
            dst: ip("172.30.0.10"),
            port: 81,
            expect: Expect::Reject,
        },
    ]
}

#[test]
fn routed_traffic_matches_the_nftables_trace() {
    if !available() {
        return;
    }
    let fx = fixture_at("fixtures/routed-nftables");
    assert_eq!(fx.node_ips(), [NODE_IP.to_string()], "fixture's --node-ip");
    let (compiled, _) = compiled_table(&fx);
    let transaction = compiled_transaction(&fx);

    let mut node = TestNode::new(Layout {
        pods: 3,
        backend: Backend::Nft,
        ipv6: false,
    });
    let path =
        std::env::temp_dir().join(format!("kpinspect-routed-nft-{}.nft", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(transaction.as_bytes()))
        .expect("write transaction");
    let loaded = node.node_exec(&["nft", "-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    assert!(
        loaded.status.success(),
        "nft -f refused the transaction: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    // A rejected connection is refused by the ICMP port-unreachable that
    // `reject` sends; the kernel's per-destination ICMP rate limit
    // (`icmp_ratelimit`) swallowed it for a fresh peer on this test's
    // kernel (6.18), so it is off in the node's namespace.
    node.node_exec_ok(&["sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0"]);
    node.start_servers(&[8080, 8081, 8082]);
    let opts = TraceOptions::new().with_local_ips(node.local_ips());
    // The table as the kernel lists it, read back (text and JSON): it
    // traces as the compiled one does, and it is what the flows walk.
    let mut listed = Vec::new();
    for json in [false, true] {
        let mut argv = vec!["nft"];
        if json {
            argv.push("-j");
        }
        argv.extend(["list", "table", "ip", "kube-proxy"]);
        let text = node.node_exec_ok(&argv);
        let read = read_listing(&text).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let table = read.table(Family::Ip).expect("ip kube-proxy listed");
        assert!(table.unrecognised.is_empty(), "{:?}", table.unrecognised);
        let tx = table.transaction();
        let mut fake = Fake::new(tx.family, &tx.table, tx.object_comments);
        fake.apply(&tx).expect("the listed table applies");
        listed.push(fake);
    }
    for flow in flows() {
        let (_, src) = source(&node, flow.from);
        let p = Packet::new(src, flow.dst, flow.port, Protocol::Tcp);
        let want = essentials(&trace_nftables(&compiled, &p, &opts));
        for table in &listed {
            assert_eq!(
                essentials(&trace_nftables(table, &p, &opts)),
                want,
                "{}",
                flow.name
            );
        }
        // The CLI on the node reads the live table (and addresses) itself.
        let (src_s, dst_s) = (src.to_string(), format!("{}:{}", flow.dst, flow.port));
        let out = kp(
            &node,
            &[
                "trace", "--mode", "nftables", "--src", &src_s, "--dst", &dst_s, "--format", "json",
            ],
        );
        let live: serde_json::Value =
            serde_json::from_str(&crate::util::ok(&out, flow.name)).expect("JSON");
        let library = serde_json::to_value(trace_nftables(&listed[1], &p, &opts)).expect("JSON");
        assert_eq!(
            outcome_essentials(&live),
            outcome_essentials(&library),
            "{}: live trace",
            flow.name
        );
        check_flow(&node, &listed[1], &opts, &flow);
    }
}

/// Each outcome's verdict, target, chance, masquerade and path (chains and
/// rule numbers).
fn essentials(t: &kpinspect_core::trace::Trace) -> Vec<String> {
    t.outcomes
        .iter()
        .map(|o| {
            let path: Vec<String> = o
                .path
                .iter()
                .map(|s| format!("{}#{:?}", s.chain, s.rule))
                .collect();
            format!(
                "{:?} {:?} {} {} {:?} {}",
                o.action,
                o.to,
                o.probability,
                o.masquerade,
                o.conditions,
                path.join(" ")
            )
        })
        .collect()
}

/// The namespace and address a flow starts from.
fn source(node: &TestNode, from: From) -> (&str, IpAddr) {
    match from {
        From::Client => (node.client.as_str(), IpAddr::V4(CLIENT_IP)),
        From::Pod(i) => (node.pods[i].ns.as_str(), IpAddr::V4(pod_ip(i))),
        From::Node => (node.node.as_str(), IpAddr::V4(NODE_IP)),
    }
}

/// The transaction `kpinspect compile --mode nftables` prints for `fx`.
fn compiled_transaction(fx: &crate::util::Fixture) -> String {
    let out = crate::util::kpinspect()
        .args(["compile", "--mode", "nftables", "--config"])
        .arg(fx.path("config.yaml"))
        .args(fx.args())
        .arg(fx.path("cluster.yaml"))
        .output()
        .expect("run kpinspect");
    crate::util::ok(&out, "compile --mode nftables")
}

fn check_flow(node: &TestNode, table: &Fake, opts: &TraceOptions, flow: &Flow) {
    let ctx = flow.name;
    let (ns, src) = source(node, flow.from);
    let t = trace_nftables(
        table,
        &Packet::new(src, flow.dst, flow.port, Protocol::Tcp),
        opts,
    );
    assert!(
        t.outcomes.iter().all(|o| o.conditions.is_empty()),
        "{ctx}: conditional outcomes: {t:#?}"
    );
    let replies = node.connect_many(ns, flow.dst, flow.port, CONNECTIONS);
    if let Expect::Reject = flow.expect {
        let actions: Vec<Action> = t.outcomes.iter().map(|o| o.action).collect();
        assert_eq!(actions, [Action::Reject], "{ctx}: {t:#?}");
        for r in replies {
            let e = r.expect_err(ctx);
            assert!(e.contains("refused"), "{ctx}: {e}");
        }
        return;
    }
    let mut targets: BTreeMap<SocketAddr, (f64, bool)> = BTreeMap::new();
    for o in &t.outcomes {
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
    let Expect::Endpoints(expect) = flow.expect else {
        return;
    };
    let expected: BTreeMap<SocketAddr, bool> = expect
        .iter()
        .map(|(a, m)| (a.parse().expect("endpoint"), *m))
        .collect();
    let traced: BTreeMap<SocketAddr, bool> = targets.iter().map(|(a, (_, m))| (*a, *m)).collect();
    assert_eq!(traced, expected, "{ctx}: trace's DNAT targets (masquerade)");

    // What the kernel does.
    let mut reached: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for reply in replies {
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
