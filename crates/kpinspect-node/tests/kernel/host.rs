//! Host facts detected inside a namespace with a default route over a veth
//! (and a UTS namespace of its own, so the test can set the hostname).

use std::net::IpAddr;

use kpinspect_node::{
    GivenFacts, HostFactsError, SystemHost, TCP_BE_LIBERAL_SYSCTL, detect_host_facts,
};

use crate::{Pair, available, in_child, rerun_in, run_ok};

/// `hostnameOverride` given.
fn named(hostname: &str) -> GivenFacts<'_> {
    GivenFacts {
        hostname_override: Some(hostname),
        ..GivenFacts::default()
    }
}

const TEST: &str = "host::host_facts_of_a_namespace_with_a_default_route";

#[test]
fn host_facts_of_a_namespace_with_a_default_route() {
    if in_child(TEST) {
        return in_namespace();
    }
    if !available() {
        return;
    }
    let pair = Pair::routed();
    let a = pair.a.clone();
    rerun_in(&["ip", "netns", "exec", &a, "unshare", "--uts", "--"], TEST);
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// The source address the kernel picks for a packet to `dst`.
fn route_source(dst: &str) -> IpAddr {
    let out = run_ok(&["ip", "-o", "route", "get", dst]);
    let words: Vec<&str> = out.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "src")
        .expect("src in ip route get");
    ip(words[at + 1])
}

fn in_namespace() {
    std::fs::write("/proc/sys/kernel/hostname", "KPI-Node.Example").expect("set the hostname");
    let host = SystemHost::default();
    let facts = detect_host_facts(&host, GivenFacts::default()).expect("facts");

    assert_eq!(facts.node_name, "kpi-node.example");
    assert_eq!(
        detect_host_facts(&host, named(" Override "))
            .expect("facts")
            .node_name,
        "override"
    );
    assert_eq!(
        detect_host_facts(&host, named("  ")),
        Err(HostFactsError::EmptyHostname)
    );

    // The default route's source address is the primary node IP; IPv4
    // comes first, the IPv6 node IP is the one of the IPv6 default route.
    assert_eq!(facts.node_ips.v4, Some(route_source("198.51.100.1")));
    assert_eq!(facts.node_ips.v4, Some(ip("10.0.0.1")));
    assert_eq!(facts.node_ips.v6, Some(ip("fd00::1")));
    assert_eq!(facts.node_ips.primary(), Some(ip("10.0.0.1")));

    // A fresh namespace has the sysctl at its default; kube-proxy then
    // installs its INVALID drop rule.
    assert_eq!(facts.tcp_be_liberal, Some(false));
    std::fs::write(format!("/proc/sys/{TCP_BE_LIBERAL_SYSCTL}"), "1").expect("set the sysctl");
    assert_eq!(
        detect_host_facts(&host, GivenFacts::default())
            .expect("facts")
            .tcp_be_liberal,
        Some(true)
    );

    let iptables = facts.iptables.clone().expect("iptables is installed");
    assert!(
        matches!(iptables.variant.as_deref(), Some("nf_tables" | "legacy")),
        "{iptables:?}"
    );
    assert_eq!(facts.random_fully(), iptables.supports_random_fully());
    assert!(
        facts.random_fully(),
        "the CI's iptables is newer than 1.6.2"
    );

    // kubelet's rule takes the interface's first global address, not an
    // explicit `src` of the default route (which kube-proxy never sees).
    run_ok(&["ip", "addr", "add", "10.0.0.5/24", "dev", "eth0"]);
    run_ok(&[
        "ip", "route", "replace", "default", "via", "10.0.0.2", "src", "10.0.0.5",
    ]);
    assert_eq!(route_source("198.51.100.1"), ip("10.0.0.5"));
    let facts = detect_host_facts(&host, GivenFacts::default()).expect("facts");
    assert_eq!(facts.node_ips.v4, Some(ip("10.0.0.1")));

    // Without default routes there is no node IP (kube-proxy assumes
    // loopback then).
    run_ok(&["ip", "route", "del", "default"]);
    run_ok(&["ip", "-6", "route", "del", "default"]);
    let facts = detect_host_facts(&host, GivenFacts::default()).expect("facts");
    assert_eq!(facts.node_ips.primary(), None);
}
