//! Conntrack listing and cleanup over ctnetlink, on UDP flows a namespace
//! sends to "Services" that a small DNAT rule set sends on to "endpoints"
//! in the peer namespace.
//!
//! ```text
//!  a: eth0 10.0.0.1/24 fd00::1/64 ── b: eth0 10.0.0.2/24 10.0.0.3/24 fd00::2/64
//!     default via 10.0.0.2
//!     nat OUTPUT: 10.96.0.10:53 → 10.0.0.2:5353 (from port 40002: 10.0.0.3:5353)
//!                 10.96.0.10:54 → 10.0.0.2:5354
//!                 10.0.0.1:30053 (node port) → 10.0.0.2:5353 (from 40004: 10.0.0.3:5353)
//!                 [fd00:96::10]:53 → [fd00::2]:5353
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};

use kpinspect_core::model::Protocol;
use kpinspect_core::net::IpFamily;
use kpinspect_node::{
    Conntrack, ConntrackEntry, ConntrackFilter, ServingEndpoints, SystemConntrack,
    stale_entry_filters,
};

use crate::{Pair, available, has_tool, in_child, rerun_in, run_ok};

const TEST: &str = "conntrack::udp_entries_are_listed_and_deleted_by_kube_proxys_filters";

#[test]
fn udp_entries_are_listed_and_deleted_by_kube_proxys_filters() {
    if in_child(TEST) {
        return in_namespace();
    }
    if !available() {
        return;
    }
    let pair = Pair::routed();
    let (a, b) = (pair.a.clone(), pair.b.clone());
    pair.ip(&b, &["addr", "add", "10.0.0.3/24", "dev", "eth0"]);
    rerun_in(&["ip", "netns", "exec", &a], TEST);
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

const SERVICE: &str = "10.96.0.10";
const NODE_PORT: u16 = 30053;

/// One UDP datagram from `from` (the flow's source port names the flow).
fn send(from: &str, to: &str) {
    let socket = UdpSocket::bind(from).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket
        .send_to(b"q", to)
        .unwrap_or_else(|e| panic!("{from} → {to}: {e}"));
}

/// The flows, by source port.
const FLOWS: [(&str, &str); 6] = [
    ("10.0.0.1:40001", "10.96.0.10:53"),
    ("10.0.0.1:40002", "10.96.0.10:53"),
    ("10.0.0.1:40003", "10.0.0.1:30053"),
    ("10.0.0.1:40004", "10.0.0.1:30053"),
    ("10.0.0.1:40005", "10.0.0.2:9999"),
    ("10.0.0.1:40006", "10.96.0.10:54"),
];

fn send_flow(port: u16) {
    let (from, to) = FLOWS[usize::from(port - 40001)];
    send(from, to);
}

/// The source ports of our UDP flows in the table of `family`.
fn flows(ct: &SystemConntrack, family: IpFamily) -> BTreeSet<u16> {
    ct.list(family)
        .expect("list")
        .iter()
        .filter(|e| e.protocol == 17 && e.original.src_port.is_some_and(|p| p > 40000))
        .filter_map(|e| e.original.src_port)
        .collect()
}

/// The source ports of our flows as `conntrack -L` shows them, when the
/// tool is installed.
fn tool_flows(family: &str) -> Option<BTreeSet<u16>> {
    if !has_tool("conntrack") {
        eprintln!("conntrack is not installed: no cross-check with `conntrack -L`");
        return None;
    }
    let out = run_ok(&["conntrack", "-L", "-f", family, "-p", "udp"]);
    Some(
        out.lines()
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("sport=")))
            .filter_map(|p| p.parse().ok())
            .filter(|p| *p > 40000)
            .collect(),
    )
}

fn check_tool(family: &str, expected: &BTreeSet<u16>) {
    if let Some(tool) = tool_flows(family) {
        assert_eq!(&tool, expected, "conntrack -L -f {family}");
    }
}

fn ports<const N: usize>(p: [u16; N]) -> BTreeSet<u16> {
    p.into_iter().collect()
}

fn in_namespace() {
    for rule in [
        "-p udp -d 10.96.0.10 --dport 53 -m udp --sport 40002 -j DNAT --to-destination 10.0.0.3:5353",
        "-p udp -d 10.96.0.10 --dport 53 -j DNAT --to-destination 10.0.0.2:5353",
        "-p udp -d 10.96.0.10 --dport 54 -j DNAT --to-destination 10.0.0.2:5354",
        "-p udp -d 10.0.0.1 --dport 30053 -m udp --sport 40004 -j DNAT --to-destination 10.0.0.3:5353",
        "-p udp -d 10.0.0.1 --dport 30053 -j DNAT --to-destination 10.0.0.2:5353",
    ] {
        let mut argv = vec!["iptables", "-w", "5", "-t", "nat", "-A", "OUTPUT"];
        argv.extend(rule.split(' '));
        run_ok(&argv);
    }
    run_ok(&[
        "ip6tables",
        "-w",
        "5",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "-d",
        "fd00:96::10",
        "--dport",
        "53",
        "-j",
        "DNAT",
        "--to-destination",
        "[fd00::2]:5353",
    ]);
    let ct = SystemConntrack;
    for port in 40001..=40006 {
        send_flow(port);
    }
    send("[fd00::1]:40007", "[fd00:96::10]:53");

    // Listing: each flow once, as it was DNATed.
    let v4 = ct.list(IpFamily::V4).expect("list");
    let by_port = |p: u16| -> &ConntrackEntry {
        v4.iter()
            .find(|e| e.original.src_port == Some(p))
            .unwrap_or_else(|| panic!("no entry of port {p} in {v4:#?}"))
    };
    let e = by_port(40001);
    assert_eq!(e.protocol, 17);
    assert_eq!(
        (e.original.dst, e.original.dst_port),
        (ip(SERVICE), Some(53))
    );
    assert_eq!(
        (e.reply.src, e.reply.src_port),
        (ip("10.0.0.2"), Some(5353))
    );
    assert_eq!(
        (e.reply.dst, e.reply.dst_port),
        (ip("10.0.0.1"), Some(40001))
    );
    assert!(
        e.id.is_some() && e.timeout.is_some() && e.zone == 0,
        "{e:?}"
    );
    assert_eq!(by_port(40002).reply.src, ip("10.0.0.3"));
    assert_eq!(by_port(40003).original.dst_port, Some(NODE_PORT));
    assert_eq!(by_port(40005).reply.src_port, Some(9999), "not NATed");
    let all4 = ports([40001, 40002, 40003, 40004, 40005, 40006]);
    assert_eq!(flows(&ct, IpFamily::V4), all4);
    check_tool("ipv4", &all4);
    let v6 = ct.list(IpFamily::V6).expect("list v6");
    let e6 = v6
        .iter()
        .find(|e| e.original.src_port == Some(40007))
        .expect("the IPv6 flow");
    assert_eq!(e6.reply.src, ip("fd00::2"));
    assert_eq!(flows(&ct, IpFamily::V6), ports([40007]));
    check_tool("ipv6", &ports([40007]));

    let udp = Protocol::Udp;
    // By frontend IP:port: both flows to 10.96.0.10:53, not the one to :54.
    let n = ct
        .delete(
            IpFamily::V4,
            &[ConntrackFilter::frontend(udp, ip(SERVICE), 53)],
        )
        .expect("delete frontend");
    assert_eq!(n, 2);
    let left = ports([40003, 40004, 40005, 40006]);
    assert_eq!(flows(&ct, IpFamily::V4), left);
    check_tool("ipv4", &left);

    // By frontend and removed endpoint: only the flow DNATed to 10.0.0.3.
    send_flow(40001);
    send_flow(40002);
    let gone = ConntrackFilter::frontend_endpoint(udp, ip(SERVICE), 53, ip("10.0.0.3"), Some(5353));
    assert_eq!(ct.delete(IpFamily::V4, &[gone]), Ok(1));
    assert_eq!(
        flows(&ct, IpFamily::V4),
        ports([40001, 40003, 40004, 40005, 40006])
    );

    // By node port and removed endpoint: the node-port flow to 10.0.0.2.
    let gone = ConntrackFilter::node_port_endpoint(udp, NODE_PORT, ip("10.0.0.2"), None);
    assert_eq!(ct.delete(IpFamily::V4, &[gone]), Ok(1));
    assert_eq!(
        flows(&ct, IpFamily::V4),
        ports([40001, 40004, 40005, 40006])
    );

    // The protocol counts: SCTP and TCP filters leave UDP entries alone.
    let other = [
        ConntrackFilter::node_port(Protocol::Sctp, NODE_PORT),
        ConntrackFilter::frontend(Protocol::Tcp, ip(SERVICE), 54),
    ];
    assert_eq!(ct.delete(IpFamily::V4, &other), Ok(0));

    // By node port: the remaining node-port flow.
    let n = ct.delete(IpFamily::V4, &[ConntrackFilter::node_port(udp, NODE_PORT)]);
    assert_eq!(n, Ok(1));
    let left = ports([40001, 40005, 40006]);
    assert_eq!(flows(&ct, IpFamily::V4), left);
    check_tool("ipv4", &left);

    // IPv6 entries are deleted in their own family only.
    let v6_filter = ConntrackFilter::frontend(udp, ip("fd00:96::10"), 53);
    assert_eq!(ct.delete(IpFamily::V4, &[v6_filter]), Ok(0));
    assert_eq!(ct.delete(IpFamily::V6, &[v6_filter]), Ok(1));
    assert_eq!(flows(&ct, IpFamily::V6), ports([]));
    check_tool("ipv6", &ports([]));
    assert_eq!(flows(&ct, IpFamily::V4), left);

    // kube-proxy's reconciler: 10.96.0.10:53 is served by 10.0.0.2:5353
    // only, the node port by 10.0.0.3:5353 only, 10.96.0.10:54 by nothing.
    for port in [40002, 40003, 40004] {
        send_flow(port);
    }
    let serving = ServingEndpoints {
        frontends: BTreeMap::from([
            ((ip(SERVICE), 53), BTreeSet::from([addr("10.0.0.2:5353")])),
            ((ip(SERVICE), 54), BTreeSet::new()),
        ]),
        node_ports: BTreeMap::from([(NODE_PORT, BTreeSet::from([addr("10.0.0.3:5353")]))]),
    };
    let filters = stale_entry_filters(&ct.list(IpFamily::V4).expect("list"), &serving);
    assert_eq!(filters.len(), 3, "{filters:#?}");
    assert_eq!(ct.delete(IpFamily::V4, &filters), Ok(3));
    let left = ports([40001, 40004, 40005]);
    assert_eq!(flows(&ct, IpFamily::V4), left);
    check_tool("ipv4", &left);
}
