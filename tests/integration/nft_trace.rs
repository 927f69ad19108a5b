//! `kpinspect_core::trace::trace_nftables` against kube-proxy's nftables
//! packet-flow tests: every fixture of `fixtures/nftables` with a
//! `flows.yaml` (TestClusterIPGeneral, TestLoadBalancer, TestNodePorts,
//! TestExternalTrafficPolicyLocal/Cluster, TestInternalTrafficPolicy,
//! TestTerminatingEndpoints*, TestNoEndpointsReject,
//! TestInternalExternalMasquerade) is compiled with the library, applied to
//! an in-memory table, and each flow walked through it and summarised the
//! way kube-proxy's test tracer reports it.

use std::net::IpAddr;

use kpinspect_core::config::ProxyConfig;
use kpinspect_core::mode::nftables;
use kpinspect_core::model::Protocol;
use kpinspect_core::net::IpFamily;
use kpinspect_core::nft::Fake;
use kpinspect_core::proxy::ProxyState;
use kpinspect_core::trace::{Action, Packet, Trace, TraceOptions, trace_nftables};
use serde::Deserialize;

use crate::util::{Fixture, kpinspect, ok, root, stderr, yaml};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    pub name: String,
    #[serde(rename = "sourceIP")]
    pub source_ip: String,
    pub protocol: Option<String>,
    #[serde(rename = "destIP")]
    pub dest_ip: String,
    pub dest_port: u16,
    pub output: String,
    pub masq: bool,
}

impl Flow {
    pub fn protocol(&self) -> Protocol {
        match self
            .protocol
            .as_deref()
            .unwrap_or("tcp")
            .to_lowercase()
            .as_str()
        {
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }

    pub fn packet(&self) -> Packet {
        let ip = |s: &str| s.parse::<IpAddr>().expect("flow address");
        Packet::new(
            ip(&self.source_ip),
            ip(&self.dest_ip),
            self.dest_port,
            self.protocol(),
        )
    }
}

/// The fixtures of `fixtures/nftables` with packet flows.
fn flow_fixtures() -> Vec<Fixture> {
    let base = root().join("fixtures/nftables");
    let mut out: Vec<Fixture> = std::fs::read_dir(&base)
        .expect("fixtures/nftables")
        .map(|e| e.expect("dir entry").path())
        .filter(|dir| dir.join("flows.yaml").exists())
        .map(|dir| Fixture {
            name: dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            dir,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The configuration `kpinspect compile` builds from the fixture's
/// `config.yaml` and `args` (the flags the fixtures use), and its family.
pub fn nft_config(fx: &Fixture) -> (ProxyConfig, IpFamily) {
    let mut config = ProxyConfig::default();
    kpinspect_k8s::parse_kube_proxy_config(&fx.read("config.yaml"), "config.yaml")
        .expect("config.yaml parses")
        .apply_to(&mut config)
        .expect("config.yaml applies");
    let args = fx.args();
    let value = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    config.node.ips = fx
        .node_ips()
        .iter()
        .map(|s| s.parse().expect("node ip"))
        .collect();
    config.nftables.masquerade_mark = value("--masquerade-mark");
    if let Some(c) = value("--service-cidr") {
        config.service_cidrs = c
            .split(',')
            .map(|c| c.parse().expect("service CIDR"))
            .collect();
    }
    let family = match value("--family").as_deref() {
        Some("ipv6") => IpFamily::V6,
        Some(_) => IpFamily::V4,
        None => config.default_family(),
    };
    (config, family)
}

/// The table kube-proxy's first sync leaves for `fx`.
pub fn compiled_table(fx: &Fixture) -> (Fake, Vec<IpAddr>) {
    let (config, family) = nft_config(fx);
    let state = ProxyState::build(&fx.cluster(), &config, family);
    let compiled = nftables::compile(&state, &config);
    let table = compiled.state().expect("the transaction applies");
    (table, config.node.ips.clone())
}

/// kube-proxy's tracer output: the DNAT targets in rule order, or `DROP`
/// / `REJECT`; nothing for a packet that passes unchanged. Outcomes that
/// need session-affinity history (or any other condition) are left out,
/// as kube-proxy's tracer assumes a new client; masqueraded when any is.
pub fn summary(t: &Trace) -> (String, bool) {
    let mut out: Vec<String> = Vec::new();
    let mut masq = false;
    for o in t.outcomes.iter().filter(|o| o.conditions.is_empty()) {
        let item = match o.action {
            Action::Dnat => o.to.map(|a| a.to_string()),
            Action::Drop => Some("DROP".into()),
            Action::Reject => Some("REJECT".into()),
            Action::Accept => None,
        };
        if let Some(item) = item.filter(|i| !out.contains(i)) {
            out.push(item);
        }
        masq |= o.masquerade;
    }
    (out.join(", "), masq)
}

/// Probabilities of the unconditional outcomes add up to 1 (kube-proxy's
/// rules here test no unknown but affinity); every step names the table.
fn assert_consistent(t: &Trace, what: &str) {
    let sum: f64 = t
        .outcomes
        .iter()
        .filter(|o| o.conditions.is_empty())
        .map(|o| o.probability)
        .sum();
    assert!(
        (sum - 1.0).abs() < 1e-9,
        "{what}: probabilities sum to {sum}\n{t:#?}"
    );
    for o in &t.outcomes {
        for s in &o.path {
            assert!(s.table.ends_with(" kube-proxy"), "{what}: {s:?}");
            assert!(s.rule.is_some(), "{what}: {s:?}");
        }
    }
    assert!(
        t.assumptions.iter().all(|a| a.contains("session-affinity")),
        "{what}: {:?}",
        t.assumptions
    );
}

fn check_flows(fx: &Fixture) -> usize {
    let (table, local_ips) = compiled_table(fx);
    let flows: Vec<Flow> = yaml(&fx.read("flows.yaml"));
    let opts = TraceOptions::new().with_local_ips(local_ips);
    for f in &flows {
        let t = trace_nftables(&table, &f.packet(), &opts);
        assert_consistent(&t, &format!("{}: flow {:?}", fx.name, f.name));
        let (output, masq) = summary(&t);
        assert_eq!(
            (output.as_str(), masq),
            (f.output.as_str(), f.masq),
            "{}: flow {:?} ({} -> {}:{}/{}); trace:\n{t:#?}",
            fx.name,
            f.name,
            f.source_ip,
            f.dest_ip,
            f.dest_port,
            f.protocol(),
        );
    }
    flows.len()
}

/// kube-proxy's nftables packet-flow tests, run over kpinspect's compiled
/// tables.
#[test]
fn nft_packet_flows_match_kube_proxy() {
    let mut flows = 0;
    let mut failures = Vec::new();
    let fixtures = flow_fixtures();
    assert!(
        fixtures.len() >= 37,
        "only {} flow fixtures",
        fixtures.len()
    );
    for fx in &fixtures {
        match std::panic::catch_unwind(|| check_flows(fx)) {
            Ok(n) => flows += n,
            Err(e) => failures.push(
                e.downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| fx.name.clone()),
            ),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(flows > 200, "only {flows} flows checked");
}

/// Session affinity (the overall fixture's svc5): a client without
/// history is spread by numgen; one the affinity set holds goes to its
/// endpoint, said as a condition.
#[test]
fn nft_affinity_is_a_condition() {
    let fx = Fixture {
        name: "overall".into(),
        dir: root().join("fixtures/nftables/overall"),
    };
    let (table, local_ips) = compiled_table(&fx);
    let opts = TraceOptions::new().with_local_ips(local_ips);
    let p = Packet::new(
        "10.0.0.2".parse().expect("ip"),
        "172.30.0.45".parse().expect("ip"),
        80,
        Protocol::Tcp,
    );
    let t = trace_nftables(&table, &p, &opts);
    assert_eq!(summary(&t), ("10.180.0.3:80".to_string(), false));
    let sticky: Vec<_> = t
        .outcomes
        .iter()
        .filter(|o| !o.conditions.is_empty())
        .collect();
    assert!(sticky.is_empty() || sticky.iter().all(|o| o.to == t.outcomes[0].to));
    // Joined: one outcome, two ways (with and without history).
    assert_eq!(t.outcomes.len(), 1, "{t:#?}");
    assert_eq!(t.outcomes[0].ways.len(), 2, "{t:#?}");
    assert!(
        t.outcomes[0].ways[0].conditions[0].starts_with(
            "set affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 holds the source 10.0.0.2"
        ),
        "{t:#?}"
    );
    // The firewall: a source outside the LB's ranges is dropped before DNAT.
    let p = Packet::new(
        "203.0.113.200".parse().expect("ip"),
        "5.6.7.8".parse().expect("ip"),
        80,
        Protocol::Tcp,
    );
    let t = trace_nftables(&table, &p, &opts);
    assert_eq!(summary(&t), ("DROP".to_string(), false));
    let last = t.outcomes[0].path.last().expect("a step");
    assert_eq!(
        (last.chain.as_str(), last.text.as_str()),
        (
            "firewall-HVFWP5L3-ns5/svc5/tcp/p80",
            "ip saddr != { 203.0.113.0/25 } drop"
        )
    );
}

/// `kpinspect trace --mode nftables --cluster ...`: the table compiled for
/// the cluster, walked; text and JSON; without `--cluster`, exit 2.
#[test]
fn nft_trace_cli() {
    let dir = root().join("fixtures/nftables/overall");
    let base = |format: &str, dst: &str| {
        let out = kpinspect()
            .args(["trace", "--mode", "nftables", "--cluster"])
            .arg(dir.join("cluster.yaml"))
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .args(["--node-ip", "192.168.0.2", "--masquerade-mark", "0x4000"])
            .args(["--service-cidr", "172.30.0.0/16", "--src", "10.0.0.2"])
            .args(["--dst", dst, "--format", format])
            .output()
            .expect("run kpinspect");
        ok(&out, &format!("trace --mode nftables {dst}"))
    };
    let json: serde_json::Value =
        serde_json::from_str(&base("json", "172.30.0.44:80")).expect("JSON");
    let to: Vec<&str> = json["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| o["to"].as_str().expect("to"))
        .collect();
    assert_eq!(to, ["10.180.0.4:80", "10.180.0.5:80"]);
    assert_eq!(json["outcomes"][0]["probability"], 0.5);
    assert_eq!(json["outcomes"][0]["path"][0]["table"], "ip kube-proxy");
    let text = base("text", "172.30.0.46:80");
    assert!(
        text.starts_with("10.0.0.2 -> 172.30.0.46:80/tcp in ip kube-proxy (compiled from "),
        "{text}"
    );
    assert!(text.contains("enters at the prerouting hook"), "{text}");
    assert!(text.contains("  1. REJECT  (probability 1)\n"), "{text}");
    assert!(
        text.contains("     ip kube-proxy reject-chain #1      reject\n"),
        "{text}"
    );
    // A listing is nftables mode's.
    let out = kpinspect()
        .args(["trace", "--mode", "iptables", "--nft"])
        .arg(root().join("fixtures/nftables-save/overall.nft"))
        .args(["--src", "10.0.0.2", "--dst", "1.2.3.4:80"])
        .output()
        .expect("run kpinspect");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("are for --mode nftables"),
        "{}",
        stderr(&out)
    );
}

/// What a trace's JSON says of each outcome: verdict, target, chance,
/// masquerade, conditions, and the chains and rule numbers of its path.
pub fn outcome_essentials(json: &serde_json::Value) -> Vec<String> {
    json["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| {
            let path: Vec<String> = o["path"]
                .as_array()
                .expect("path")
                .iter()
                .map(|s| format!("{}#{}", s["chain"], s["rule"]))
                .collect();
            format!(
                "{} {} {} masq={} if {} via {}",
                o["action"],
                o["to"],
                o["probability"],
                o["masquerade"],
                o["conditions"],
                path.join(" ")
            )
        })
        .collect()
}

/// `--nft` reads a node's listing (text or JSON, kube-proxy's table next to
/// another program's): the real listing of the overall fixture traces
/// exactly like the table compiled from its cluster.
#[test]
fn nft_trace_cli_reads_listings() {
    let dir = root().join("fixtures/nftables/overall");
    let saved = root().join("fixtures/nftables-save");
    let run = |source: &[&str], src: &str, dst: &str| -> serde_json::Value {
        let out = kpinspect()
            .args(["trace", "--mode", "nftables", "--local-ip", "192.168.0.2"])
            .args(source)
            .args(["--src", src, "--dst", dst, "--format", "json"])
            .output()
            .expect("run kpinspect");
        serde_json::from_str(&ok(&out, &format!("trace {source:?} {src} {dst}"))).expect("JSON")
    };
    let cluster = dir.join("cluster.yaml");
    let config = dir.join("config.yaml");
    let compiled: Vec<&str> = vec![
        "--cluster",
        cluster.to_str().expect("path"),
        "--config",
        config.to_str().expect("path"),
        "--node-ip",
        "192.168.0.2",
        "--masquerade-mark",
        "0x4000",
        "--service-cidr",
        "172.30.0.0/16",
    ];
    let text = saved.join("overall.nft");
    let json = saved.join("overall.json");
    let mut compared = 0;
    for src in ["10.0.0.2", "203.0.113.2", "203.0.113.200", "192.168.0.2"] {
        for dst in [
            "172.30.0.41:80",
            "172.30.0.42:80",
            "172.30.0.44:80",
            "172.30.0.45:80",
            "172.30.0.46:80",
            "172.30.0.50:80",
            "192.168.0.2:3001",
            "192.168.0.2:3002",
            "1.2.3.4:80",
            "5.6.7.8:80",
            "192.168.99.22:80",
            "192.168.99.33:80",
        ] {
            let want = outcome_essentials(&run(&compiled, src, dst));
            assert!(!want.is_empty());
            for listing in [&text, &json] {
                let got = run(&["--nft", listing.to_str().expect("path")], src, dst);
                assert_eq!(
                    outcome_essentials(&got),
                    want,
                    "{src} -> {dst} through {}",
                    listing.display()
                );
                assert!(
                    got["assumptions"]
                        .as_array()
                        .expect("assumptions")
                        .iter()
                        .all(|a| !a
                            .as_str()
                            .unwrap_or("")
                            .contains("not a rule the trace reads")),
                    "{got:#}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 96);
    // The other program's table is named, not walked.
    let got = run(
        &["--nft", json.to_str().expect("path")],
        "10.0.0.2",
        "172.30.0.41:80",
    );
    assert!(
        got["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .any(|n| n.as_str().unwrap_or("").contains(
                "also holds table inet host-firewall, whose chains this trace does not walk"
            )),
        "{got:#}"
    );
    // An IPv6 packet: the listing has no ip6 kube-proxy table.
    let got = run(
        &["--nft", text.to_str().expect("path")],
        "fd00::1",
        "[fd00::2]:80",
    );
    assert!(
        got["notes"][0]
            .as_str()
            .expect("note")
            .starts_with("no kube-proxy rules for IPv6"),
        "{got:#}"
    );
}
