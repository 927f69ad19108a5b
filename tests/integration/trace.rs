//! `kpinspect_core::trace` against kube-proxy's packet-flow tests: every
//! flow of the ported fixtures (TestClusterIPGeneral, TestLoadBalancer,
//! TestNodePorts, TestExternalTrafficPolicyLocal/Cluster,
//! TestInternalTrafficPolicy, TestTerminatingEndpoints*, TestNoEndpointsReject,
//! TestInternalExternalMasquerade, ...) is walked through the compiled rules
//! and summarised the way kube-proxy's test tracer reports it; captures of
//! real-node shapes (`fixtures/iptables-save/weave-1.11.txt`) keep the
//! trace small and free of contradictions.

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
    let opts = TraceOptions::new()
        .with_local_ips(fx.node_ips().iter().map(|s| s.parse().expect("node ip")));
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
        assert_consistent(&t, &format!("{}: flow {:?}", fx.name, f.name));
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

/// What one condition says, as far as the checker needs: a yes/no fact,
/// or which names an interface may have.
#[derive(Debug)]
enum Lit {
    Fact(String, bool),
    /// `subject` (`the packet arrives`, `a packet to 10.0.0.1 leaves`, ...)
    /// is on one of these interfaces / none of them / one matching a prefix.
    OneOf(String, Vec<String>),
    NoneOf(String, Vec<String>),
    Matching(String, String, Vec<String>),
}

/// `a, b or c` (iptables patterns).
fn names(list: &str) -> Vec<String> {
    list.split(", ")
        .flat_map(|p| p.split(" or "))
        .map(str::to_string)
        .collect()
}

fn iface_pattern_matches(spec: &str, name: &str) -> bool {
    match spec.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => spec == name,
    }
}

/// Reads a condition, in the trace's current wording and in the wording of
/// earlier versions (`` `! -o docker0` matches ``), so that the checker
/// would have caught their contradictions. `None` for a disjunction.
fn parse_condition(c: &str) -> Option<Lit> {
    if c.starts_with("either ") {
        return None;
    }
    let iface = |opt: &str, positive: bool| -> Option<Lit> {
        let (subject, pattern) = if let Some(p) = opt.strip_prefix("-o ") {
            ("the packet leaves", p)
        } else {
            ("the packet arrives", opt.strip_prefix("-i ")?)
        };
        Some(match (positive, pattern.strip_suffix('+')) {
            (true, Some(prefix)) => Lit::Matching(subject.into(), prefix.into(), vec![]),
            (true, None) => Lit::OneOf(subject.into(), vec![pattern.into()]),
            (false, _) => Lit::NoneOf(subject.into(), vec![pattern.into()]),
        })
    };
    if let Some(x) = c
        .strip_prefix("`! ")
        .and_then(|r| r.strip_suffix("` matches"))
    {
        return iface(x, false).or(Some(Lit::Fact(x.into(), false)));
    }
    if let Some(x) = c
        .strip_prefix('`')
        .and_then(|r| r.strip_suffix("` matches"))
    {
        return iface(x, true).or(Some(Lit::Fact(x.into(), true)));
    }
    if let Some(x) = c
        .strip_prefix('`')
        .and_then(|r| r.strip_suffix("` does not match"))
    {
        return iface(x, false).or(Some(Lit::Fact(x.into(), false)));
    }
    if let Some(x) = c.strip_prefix("not: ") {
        return Some(Lit::Fact(x.into(), false));
    }
    if let Some(x) = c.strip_prefix("ipset ") {
        if let Some((set, what)) = x.split_once(" does not hold ") {
            return Some(Lit::Fact(format!("{set} {what}"), false));
        }
        if let Some((set, what)) = x.split_once(" holds ") {
            return Some(Lit::Fact(format!("{set} {what}"), true));
        }
    }
    if let Some(x) = c.strip_prefix("the client was not sent to ") {
        return Some(Lit::Fact(x.into(), false));
    }
    if let Some(x) = c.strip_prefix("the client was sent to ") {
        return Some(Lit::Fact(
            x.trim_end_matches(" (session affinity)").into(),
            true,
        ));
    }
    if let Some(x) = c.strip_prefix("the source port is not ") {
        return Some(Lit::Fact(format!("sport {x}"), false));
    }
    if let Some(x) = c.strip_prefix("the source port is ") {
        return Some(Lit::Fact(format!("sport {x}"), true));
    }
    for (verb, subject_verb) in [("arrive", "arrives"), ("leave", "leaves")] {
        for subject in ["the packet", "a packet to "] {
            let Some(rest) = c.strip_prefix(subject) else {
                continue;
            };
            // "a packet to 10.0.0.1 leaves on ...": the address is part of the subject.
            let (who, rest) = if subject == "the packet" {
                (subject.to_string(), rest)
            } else {
                let (ip, rest) = rest.split_once(' ')?;
                (format!("a packet to {ip}"), rest)
            };
            let key = format!("{who} {subject_verb}");
            if let Some(list) = rest.strip_prefix(&format!(" does not {verb} on ")) {
                return Some(Lit::NoneOf(key, names(list)));
            }
            if let Some(list) = rest.strip_prefix(&format!(" {subject_verb} on interface ")) {
                return Some(Lit::OneOf(key, names(list)));
            }
            if let Some(m) =
                rest.strip_prefix(&format!(" {subject_verb} on an interface matching "))
            {
                let (prefix, not) = match m.split_once(" but not ") {
                    Some((p, n)) => (p, names(n)),
                    None => (m, vec![]),
                };
                let prefix = prefix.strip_suffix('+').unwrap_or(prefix);
                return Some(Lit::Matching(key, prefix.into(), not));
            }
        }
    }
    Some(Lit::Fact(c.into(), true))
}

/// Panics unless `conds` are listed once each and can all hold at once.
fn check_conjunction(conds: &[String], ctx: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for c in conds {
        assert!(seen.insert(c), "{ctx}: condition listed twice: {c}");
    }
    let lits: Vec<Lit> = conds.iter().filter_map(|c| parse_condition(c)).collect();
    let mut facts: std::collections::BTreeMap<&str, bool> = Default::default();
    for l in &lits {
        if let Lit::Fact(k, v) = l
            && let Some(prev) = facts.insert(k, *v)
        {
            assert_eq!(
                prev, *v,
                "{ctx}: contradictory conditions on {k:?}: {conds:#?}"
            );
        }
    }
    // Interfaces: some name satisfies every constraint on the same subject.
    let subject = |l: &Lit| match l {
        Lit::OneOf(s, _) | Lit::NoneOf(s, _) | Lit::Matching(s, _, _) => Some(s.clone()),
        Lit::Fact(..) => None,
    };
    let subjects: std::collections::BTreeSet<String> = lits.iter().filter_map(subject).collect();
    for s in subjects {
        let on: Vec<&Lit> = lits
            .iter()
            .filter(|l| subject(l).as_ref() == Some(&s))
            .collect();
        let mut candidates = vec!["zz-other".to_string()];
        for l in &on {
            match l {
                Lit::OneOf(_, n) | Lit::NoneOf(_, n) => {
                    candidates.extend(n.iter().map(|x| x.trim_end_matches('+').to_string() + "x"));
                    candidates.extend(n.iter().cloned());
                }
                Lit::Matching(_, p, n) => {
                    candidates.push(format!("{p}zz9"));
                    candidates.extend(n.iter().cloned());
                }
                Lit::Fact(..) => {}
            }
        }
        let fits = |name: &str| {
            on.iter().all(|l| match l {
                Lit::OneOf(_, n) => n.iter().any(|p| iface_pattern_matches(p, name)),
                Lit::NoneOf(_, n) => !n.iter().any(|p| iface_pattern_matches(p, name)),
                Lit::Matching(_, p, n) => {
                    name.starts_with(p.as_str())
                        && !n.iter().any(|x| iface_pattern_matches(x, name))
                }
                Lit::Fact(..) => true,
            })
        };
        assert!(
            candidates.iter().any(|c| fits(c)),
            "{ctx}: no interface satisfies every condition on {s:?}: {conds:#?}"
        );
    }
}

/// Every outcome and every way to it: conditions listed once, none
/// contradicting another (interfaces in and out, ipsets, affinity, other
/// matches), at most one disjunction, probabilities in (0, 1].
pub fn assert_consistent(t: &Trace, ctx: &str) {
    for (i, o) in t.outcomes.iter().enumerate() {
        let ctx = format!("{ctx}: outcome {}", i + 1);
        check_conjunction(&o.conditions, &ctx);
        assert!(
            o.conditions
                .iter()
                .filter(|c| c.starts_with("either "))
                .count()
                <= 1,
            "{ctx}: {:?}",
            o.conditions
        );
        assert!(
            o.probability > 0.0 && o.probability <= 1.0 + 1e-9,
            "{ctx}: {o:?}"
        );
        assert!(
            o.ways.len() != 1,
            "{ctx}: a single way is the outcome's path"
        );
        for (k, w) in o.ways.iter().enumerate() {
            check_conjunction(&w.conditions, &format!("{ctx}, way {k}"));
            assert!(w.probability > 0.0 && w.probability <= o.probability + 1e-9);
        }
        if let Some(w) = o.ways.first() {
            assert_eq!(o.path, w.path, "{ctx}: the path is the first way's");
        }
    }
}

/// The checker itself: it catches what earlier versions printed.
#[test]
fn the_checker_catches_contradictions() {
    let bad: &[&[&str]] = &[
        &["`-o docker0` matches", "`! -o docker0` matches"],
        &[
            "the packet arrives on interface docker0",
            "the packet arrives on interface weave",
        ],
        &["`-o weave` matches", "the packet does not leave on weave"],
        &[
            "the packet leaves on interface weave",
            "the packet does not leave on docker0 or weave",
        ],
        &[
            "the packet arrives on an interface matching veth+",
            "the packet arrives on interface eth0",
        ],
        &[
            "ipset a holds the destination 10.0.0.1",
            "ipset a does not hold the destination 10.0.0.1",
        ],
        &[
            "`-m physdev --physdev-is-in` matches",
            "`-m physdev --physdev-is-in` does not match",
        ],
        &["x", "x"],
    ];
    for conds in bad {
        let conds: Vec<String> = conds.iter().map(|s| s.to_string()).collect();
        let caught = std::panic::catch_unwind(|| check_conjunction(&conds, "test")).is_err();
        assert!(caught, "not caught: {conds:?}");
    }
    let good: Vec<String> = [
        "the packet leaves on interface docker0",
        "the packet does not arrive on docker0 or weave",
        "a packet to 10.0.0.1 leaves on interface weave",
        "the packet arrives on an interface matching veth+ but not veth1",
        "ipset a holds the destination 10.0.0.2",
        "ipset a does not hold the destination 10.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    check_conjunction(&good, "good");
}

const WEAVE: &str = "fixtures/iptables-save/weave-1.11.txt";

/// The weave node's addresses.
const WEAVE_NODE: [&str; 5] = [
    "192.168.56.11",
    "10.0.2.15",
    "172.17.0.1",
    "172.18.0.1",
    "10.32.0.1",
];

fn weave_trace(src: &str, dst: &str, port: u16, protocol: Protocol, iface: Option<&str>) -> Trace {
    let text = std::fs::read_to_string(crate::util::root().join(WEAVE)).expect("capture");
    let rules = Ruleset::parse(&text).expect("capture parses");
    let mut opts =
        TraceOptions::new().with_local_ips(WEAVE_NODE.iter().map(|s| s.parse().expect("ip")));
    if let Some(iface) = iface {
        opts = opts.with_in_interface(iface);
    }
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    trace(
        &rules,
        &Packet::new(ip(src), ip(dst), port, protocol),
        &opts,
    )
}

/// Issue 10: on a kube-proxy 1.11 node with weave and docker, a pod's DNS
/// query gave 4,097 outcomes ("too many branches"), most with contradicting
/// interface conditions. Each endpoint now has one DNAT and one DROP.
#[test]
fn weave_node_pod_to_kube_dns_has_a_handful_of_outcomes() {
    for iface in [None, Some("weave")] {
        let ctx = format!("pod -> kube-dns, in {iface:?}");
        let t = weave_trace("10.32.0.5", "10.96.0.10", 53, Protocol::Udp, iface);
        assert_consistent(&t, &ctx);
        let got: Vec<(Action, String)> = t
            .outcomes
            .iter()
            .map(|o| (o.action, o.to.map(|a| a.to_string()).unwrap_or_default()))
            .collect();
        let want = [
            (Action::Dnat, "10.32.0.2:53"),
            (Action::Drop, "10.32.0.2:53"),
            (Action::Dnat, "10.32.0.3:53"),
            (Action::Drop, "10.32.0.3:53"),
        ];
        let want: Vec<(Action, String)> = want.iter().map(|(a, s)| (*a, s.to_string())).collect();
        assert_eq!(got, want, "{ctx}: {t:#?}");
        assert!(t.assumptions.is_empty(), "{ctx}: {:?}", t.assumptions);
        for o in &t.outcomes {
            assert!((o.probability - 0.5).abs() < 1e-9, "{ctx}: {o:?}");
            assert!(!o.masquerade);
            let either = o.conditions.last().expect("conditions");
            if o.action == Action::Dnat {
                // Forwarded anywhere but weave, or let through by weave-npc.
                assert!(either.starts_with("either "), "{ctx}: {either}");
                assert!(
                    either.contains("the packet does not leave on weave"),
                    "{ctx}: {either}"
                );
            } else {
                // Only what leaves on weave meets `-o weave -j DROP`.
                for w in &o.ways {
                    let last = &w.path.last().expect("path").text;
                    if last == "-A FORWARD -o weave -j DROP" {
                        assert!(
                            w.conditions
                                .contains(&"the packet leaves on interface weave".to_string()),
                            "{ctx}: {w:?}"
                        );
                    }
                }
            }
            // The weave bypass is never taken on a way that leaves on weave.
            for w in &o.ways {
                if w.path
                    .iter()
                    .any(|s| s.text == "-A FORWARD -i weave ! -o weave -j ACCEPT")
                {
                    assert!(
                        !w.conditions
                            .iter()
                            .any(|c| c == "the packet leaves on interface weave"),
                        "{ctx}: {w:?}"
                    );
                }
            }
        }
    }
    // Known input interface: the DROP needs the packet to leave on weave.
    let t = weave_trace("10.32.0.5", "10.96.0.10", 53, Protocol::Udp, Some("weave"));
    assert_eq!(
        t.outcomes[1].conditions[0],
        "the packet leaves on interface weave"
    );
}

/// Every kind of connection on the weave node: few outcomes, no
/// contradiction, and the unconditional ones of a new client add up to 1.
#[test]
fn weave_node_traces_are_small_and_consistent() {
    type Case<'a> = (&'a str, &'a str, u16, Protocol, Option<&'a str>, usize);
    let cases: &[Case] = &[
        // Pod to a ClusterIP with session affinity (KUBE-SEP with -m recent).
        ("10.32.0.5", "10.103.47.212", 80, Protocol::Tcp, None, 8),
        (
            "10.32.0.5",
            "10.103.47.212",
            80,
            Protocol::Tcp,
            Some("weave"),
            8,
        ),
        // Outside client to the NodePort.
        (
            "192.168.56.1",
            "192.168.56.11",
            30080,
            Protocol::Tcp,
            Some("eth1"),
            4,
        ),
        (
            "192.168.56.1",
            "192.168.56.11",
            30080,
            Protocol::Tcp,
            None,
            4,
        ),
        // A docker container to kube-dns.
        (
            "172.17.0.2",
            "10.96.0.10",
            53,
            Protocol::Udp,
            Some("docker0"),
            2,
        ),
        // The node to the API server, and a pod to a service without endpoints.
        ("192.168.56.11", "10.96.0.1", 443, Protocol::Tcp, None, 1),
        ("10.32.0.5", "10.98.7.31", 5432, Protocol::Tcp, None, 2),
        ("10.32.0.5", "10.96.0.10", 53, Protocol::Tcp, None, 4),
    ];
    for &(src, dst, port, protocol, iface, max) in cases {
        let ctx = format!("{src} -> {dst}:{port}/{protocol} in {iface:?}");
        let t = weave_trace(src, dst, port, protocol, iface);
        assert_consistent(&t, &ctx);
        assert!(
            !t.outcomes.is_empty() && t.outcomes.len() <= max,
            "{ctx}: {} outcomes: {t:#?}",
            t.outcomes.len()
        );
        assert!(
            !t.assumptions.iter().any(|a| a.contains("too many")),
            "{ctx}: {:?}",
            t.assumptions
        );
        // Outcomes of one set of conditions add up to at most 1: here, the
        // unconditional ones (a new client, nothing unknown) to exactly 1
        // when there are any.
        let plain: f64 = t
            .outcomes
            .iter()
            .filter(|o| o.conditions.is_empty())
            .map(|o| o.probability)
            .sum();
        assert!(plain == 0.0 || (plain - 1.0).abs() < 1e-9, "{ctx}: {plain}");
    }
    // The node's own connection to the API server: one DNAT whatever the
    // affinity history, reached two ways.
    let t = weave_trace("192.168.56.11", "10.96.0.1", 443, Protocol::Tcp, None);
    assert_eq!(t.outcomes[0].to.unwrap().to_string(), "192.168.56.10:6443");
    assert!(t.outcomes[0].conditions.is_empty());
    assert_eq!(t.outcomes[0].ways.len(), 2);
}

/// `kpinspect compile --mode ipvs` of IPVS fixture `name` in the three
/// forms `trace --mode ipvs` reads, written to a fresh directory.
fn compile_ipvs_fixture(name: &str) -> std::path::PathBuf {
    let fx = Fixture {
        name: name.to_string(),
        dir: crate::util::root().join("fixtures/ipvs").join(name),
    };
    let dir = std::env::temp_dir().join(format!(
        "kpinspect-trace-ipvs-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for format in ["restore", "ipset", "ipvsadm"] {
        std::fs::write(dir.join(format), crate::ipvs::compile(&fx, format)).expect("write");
    }
    dir
}

/// `kpinspect trace --mode ipvs` over the compiled files of `dir`.
fn trace_ipvs(dir: &std::path::Path, src: &str, dst: &str, local_ip: &str, json: bool) -> String {
    let file = |f: &str| dir.join(f).display().to_string();
    let (restore, ipvsadm, ipset) = (file("restore"), file("ipvsadm"), file("ipset"));
    let mut args = vec![
        "trace",
        "--mode",
        "ipvs",
        "--iptables-save",
        &restore,
        "--ipvsadm",
        &ipvsadm,
        "--ipset",
        &ipset,
        "--src",
        src,
        "--dst",
        dst,
        "--local-ip",
        local_ip,
    ];
    if json {
        args.extend(["--format", "json"]);
    }
    let out = crate::util::ok(&crate::util::run(&args), "kpinspect trace --mode ipvs");
    out.replace(&format!("{}/", dir.display()), "")
}

/// IPVS mode's trace on kube-proxy's IPVS fixtures: a ClusterIP (a pod
/// reaching itself is masqueraded by KUBE-LOOP-BACK), a NodePort (external
/// traffic masqueraded by mark), a load balancer with source ranges
/// (allowed and denied), an `externalTrafficPolicy: Local` NodePort (only
/// the local endpoint, not masqueraded). Each outcome's real server,
/// probability and masquerading are checked; the text is snapshotted.
#[test]
fn ipvs_mode_traces_kube_proxy_fixtures() {
    // (fixture, src, dst, node IP, [(real server or verdict, probability, masqueraded)])
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static [(&'static str, f64, bool)],
    );
    let cases: &[Case] = &[
        (
            "only_local_node_ports",
            "10.180.0.1",
            "10.20.30.41:80/tcp",
            "100.101.102.103",
            &[("10.180.0.1:80", 0.5, true), ("10.180.1.1:80", 0.5, false)],
        ),
        (
            "node_port_ipv4_two_endpoints",
            "203.0.113.9",
            "100.101.102.103:3001/tcp",
            "100.101.102.103",
            &[("10.180.0.1:80", 1.0, true)],
        ),
        (
            "load_balancer_source_ranges",
            "10.1.2.3",
            "1.2.3.4:80/tcp",
            "100.101.102.103",
            &[("10.180.0.1:80", 1.0, true)],
        ),
        (
            "load_balancer_source_ranges",
            "203.0.113.7",
            "1.2.3.4:80/tcp",
            "100.101.102.103",
            &[("DROP", 1.0, false)],
        ),
        (
            "only_local_node_ports",
            "203.0.113.9",
            "100.101.102.103:3001/tcp",
            "100.101.102.103",
            &[("10.180.0.1:80", 1.0, false)],
        ),
    ];
    let mut snapshot = String::new();
    for &(name, src, dst, node_ip, want) in cases {
        let dir = compile_ipvs_fixture(name);
        let json: serde_json::Value =
            serde_json::from_str(&trace_ipvs(&dir, src, dst, node_ip, true)).expect("json");
        let got: Vec<(String, f64, bool)> = json["outcomes"]
            .as_array()
            .expect("outcomes")
            .iter()
            .map(|o| {
                assert_eq!(o["conditions"], serde_json::json!([]), "{name}: {o}");
                let what = match o["ipvs"]["real_server"].as_str() {
                    Some(rs) => {
                        assert_eq!(o["to"].as_str(), Some(rs), "{name}");
                        rs.to_string()
                    }
                    None => o["action"].as_str().expect("action").to_string(),
                };
                let p = o["probability"].as_f64().expect("probability");
                (what, p, o["masquerade"].as_bool().expect("masquerade"))
            })
            .collect();
        let want: Vec<(String, f64, bool)> = want
            .iter()
            .map(|(w, p, m)| (w.to_string(), *p, *m))
            .collect();
        assert_eq!(got, want, "{name}: {src} -> {dst}");
        let text = trace_ipvs(&dir, src, dst, node_ip, false);
        snapshot.push_str(&format!("## {name}: {src} -> {dst}\n{text}\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
    insta::assert_snapshot!("trace_ipvs_fixtures", snapshot);
}

/// `--mode ipvs` over saved rules needs the virtual servers; `--ipvsadm`
/// alone needs the rules.
#[test]
fn ipvs_mode_needs_the_virtual_servers_with_saved_rules() {
    let dir = compile_ipvs_fixture("ipv4_proxier_two_services");
    let restore = dir.join("restore").display().to_string();
    let ipvsadm = dir.join("ipvsadm").display().to_string();
    let packet = ["--src", "10.180.0.5", "--dst", "10.20.30.41:80/tcp"];
    let out = crate::util::run(
        &[
            &["trace", "--mode", "ipvs", "--iptables-save", &restore][..],
            &packet,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        crate::util::stderr(&out).contains("needs --ipvsadm"),
        "{}",
        crate::util::stderr(&out)
    );
    let out = crate::util::run(&[&["trace", "--ipvsadm", &ipvsadm][..], &packet].concat());
    assert_eq!(out.status.code(), Some(2));
    // `--ipvsadm` alone means IPVS mode: without the ipsets, `-m set` is a
    // condition, and the virtual server still takes the packet.
    let out = crate::util::run(
        &[
            &["trace", "--iptables-save", &restore, "--ipvsadm", &ipvsadm][..],
            &packet,
        ]
        .concat(),
    );
    let text = crate::util::ok(&out, "trace --ipvsadm");
    assert!(
        text.contains("IPVS 10.20.30.41:80/TCP -> 10.180.0.1:80"),
        "{text}"
    );
    assert!(text.contains("ipset KUBE-CLUSTER-IP holds"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
