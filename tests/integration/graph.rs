//! `dump -o dot|svg` and `trace -o dot|svg`: the path of a service's
//! traffic as a Graphviz graph, in every mode. The SVG is rendered by
//! Debian's graphviz (`.ci/run` installs it); without `dot` locally these
//! tests say so and skip the SVG part (never under CI).

use std::process::Output;

use crate::util::{kpinspect, run, stderr, stdout};

/// Whether `dot` runs here; under CI it must.
fn graphviz() -> bool {
    let found = std::process::Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "graphviz's dot is not installed under CI"
        );
        eprintln!("skipped: graphviz's dot is not installed (apt-get install graphviz)");
    }
    found
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", stderr(out));
    stdout(out)
}

/// Every endpoint (`ip:port`, `[ip]:port`) of a dump's JSON.
fn endpoints(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("dump JSON");
    let mut out = Vec::new();
    for s in v["services"].as_array().expect("services") {
        let lists = [&s["endpoints"], &s["external_endpoints"]];
        for e in lists.into_iter().filter_map(|l| l.as_array()).flatten() {
            let ip = e["ip"].as_str().expect("ip");
            let port = e["port"].as_u64().expect("port");
            out.push(if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            });
        }
    }
    out
}

/// The dumps of the fixtures of the three modes.
fn dumps() -> Vec<Vec<&'static str>> {
    vec![
        vec![
            "dump",
            "--iptables-save",
            "fixtures/iptables-save/example.nft.txt",
        ],
        vec![
            "dump",
            "--iptables-save",
            "fixtures/iptables-save/overall.nft.txt",
        ],
        vec![
            "dump",
            "--iptables-save",
            "fixtures/iptables-save/etp-local-lb.txt",
            "--cluster",
            "fixtures/iptables-save/etp-local-lb.cluster.yaml",
        ],
        vec![
            "dump",
            "--mode",
            "nftables",
            "--nft",
            "fixtures/nftables-save/overall.nft",
        ],
        vec![
            "dump",
            "--mode",
            "nftables",
            "--nft",
            "fixtures/nftables-save/overall.json",
        ],
        vec![
            "dump",
            "--ipvsadm",
            "fixtures/ipvs-save/e2e.ipvsadm-ln.txt",
            "--ipset",
            "fixtures/ipvs-save/e2e.ipset-list.txt",
        ],
        vec![
            "dump",
            "--ipvsadm",
            "fixtures/ipvs-save/ipv6.ipvsadm-sn.txt",
        ],
    ]
}

#[test]
fn dump_graphs_name_every_endpoint_in_every_mode() {
    let svg = graphviz();
    for argv in dumps() {
        let json = ok(&run(&[&argv[..], &["-o", "json"]].concat()), "json");
        let eps = endpoints(&json);
        assert!(!eps.is_empty(), "{argv:?}: no endpoints to draw");
        let dot = ok(&run(&[&argv[..], &["-o", "dot"]].concat()), "dot");
        assert!(dot.starts_with("digraph kpinspect {"), "{argv:?}: {dot}");
        for e in &eps {
            assert!(dot.contains(e.as_str()), "{argv:?}: {e} not in\n{dot}");
        }
        if svg {
            let picture = ok(&run(&[&argv[..], &["-o", "svg"]].concat()), "svg");
            assert!(picture.contains("<svg"), "{argv:?}");
            for e in &eps {
                assert!(picture.contains(e.as_str()), "{argv:?}: {e} not in the SVG");
            }
        }
    }
}

#[test]
fn a_services_graph_has_its_chains_probabilities_and_marks() {
    let dot = ok(
        &run(&[
            "dump",
            "--iptables-save",
            "fixtures/iptables-save/example.nft.txt",
            "--service",
            "default/web-svc-lb",
            "-o",
            "dot",
        ]),
        "dot",
    );
    assert_eq!(dot.matches("subgraph cluster_").count(), 1, "{dot}");
    assert!(dot.contains("label=\"default/web-svc-lb (tcp)\""), "{dot}");
    // Entry → KUBE-SERVICES → SVC / EXT → SEP → endpoints.
    for needle in [
        "\"nat PREROUTING / OUTPUT\" -> \"nat KUBE-SERVICES\"",
        "\"nat KUBE-SERVICES\" -> \"KUBE-SVC-",
        "[label=\"dst 10.108.27.52:80/tcp\"]",
        "\"nat KUBE-NODEPORTS\" -> \"KUBE-EXT-",
        "[label=\"dport 31234/tcp\"]",
        "[label=\"mark for masquerade\", color=orange]",
        "[label=\"p=1/2\"]",
        "[label=\"DNAT\"]",
    ] {
        assert!(dot.contains(needle), "{needle}: {dot}");
    }
    // The node's missing jumps are marked on the chains concerned.
    assert!(
        dot.contains(
            "\"nat KUBE-SERVICES\" [label=\"nat KUBE-SERVICES\\n(missing-jump)\", color=red"
        ),
        "{dot}"
    );
    // Local endpoints are filled (the cluster says which).
    let local = ok(
        &run(&[
            "dump",
            "--iptables-save",
            "fixtures/iptables-save/etp-local-lb.txt",
            "--cluster",
            "fixtures/iptables-save/etp-local-lb.cluster.yaml",
            "--hostname",
            "worker-2",
            "-o",
            "dot",
        ]),
        "dot",
    );
    assert!(
        local.contains("(local)\", shape=ellipse, style=filled"),
        "{local}"
    );
    assert!(local.contains("externalTrafficPolicy Local"), "{local}");
}

#[test]
fn trace_graphs_follow_each_outcome() {
    let argv = [
        "trace",
        "--src",
        "10.0.0.5",
        "--dst",
        "172.30.0.41:80",
        "--iptables-save",
        "fixtures/iptables-save/overall.restore",
    ];
    let json = ok(&run(&[&argv[..], &["-o", "json"]].concat()), "json");
    let t: serde_json::Value = serde_json::from_str(&json).expect("trace JSON");
    let dot = ok(&run(&[&argv[..], &["-o", "dot"]].concat()), "dot");
    let outcomes = t["outcomes"].as_array().expect("outcomes");
    assert!(!outcomes.is_empty());
    for (i, o) in outcomes.iter().enumerate() {
        assert!(dot.contains(&format!("\"outcome {}\"", i + 1)), "{dot}");
        if let Some(to) = o["to"].as_str() {
            assert!(dot.contains(&format!("DNAT to {to}")), "{to}: {dot}");
        }
        for step in o["path"].as_array().expect("path") {
            let chain = format!(
                "\"{} {}\"",
                step["table"].as_str().unwrap_or(""),
                step["chain"].as_str().unwrap_or("")
            );
            assert!(dot.contains(&chain), "{chain}: {dot}");
        }
    }
    assert!(
        dot.contains("\"nat KUBE-SERVICES\" -> \"nat KUBE-SVC-"),
        "{dot}"
    );
    if graphviz() {
        let svg = ok(&run(&[&argv[..], &["-o", "svg"]].concat()), "svg");
        assert!(svg.contains("DNAT to 10.180.0.1:80"), "{svg}");
    }
}

#[test]
fn svg_without_graphviz_says_so() {
    let empty = std::env::temp_dir().join(format!("kpinspect-no-dot-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("dir");
    let out = kpinspect()
        .args([
            "dump",
            "--iptables-save",
            "fixtures/iptables-save/example.nft.txt",
            "-o",
            "svg",
        ])
        .env("PATH", &empty)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("graphviz's dot is not installed"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}
