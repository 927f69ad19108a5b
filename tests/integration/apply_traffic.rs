//! `kpinspect apply` proved with real traffic through the routed test node
//! (see `node.rs`), both iptables backends: stale UDP conntrack entries are
//! deleted after an endpoint goes (and are what pins a flow to it when they
//! are not), and one apply programs a dual-stack node's two families.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Output;

use crate::node::{
    Backend, CLIENT_IP, Layout, NODE_IP, NODE_IP6, TestNode, add_foreign_state, available, kp,
    pod_ip, pod_ip6,
};
use crate::util::{ok, stderr, stdout};

const ROUTED_CONFIG: &str = "fixtures/routed/config.yaml";
const UDP_CLUSTER: &str = "fixtures/apply/cluster-udp.yaml";
const DUAL_CONFIG: &str = "fixtures/apply/config-dual.yaml";
const DUAL_CLUSTER: &str = "fixtures/apply/cluster-dual.yaml";
/// routed/dns: UDP ClusterIP 172.30.0.53:53 and NodePort 30053, to port
/// 5353 of pods 0 and 1.
const DNS: (Ipv4Addr, u16) = (Ipv4Addr::new(172, 30, 0, 53), 53);
const DNS_NODE_PORT: u16 = 30053;
const DNS_TARGET: u16 = 5353;

/// `rel` under the repository root, as an argument.
fn root(rel: &str) -> String {
    crate::util::root().join(rel).display().to_string()
}

/// Runs `kpinspect COMMAND [extra] --config CONFIG [--node-ip IP]... CLUSTER`
/// in the node's namespace.
fn run(
    node: &TestNode,
    command: &str,
    extra: &[&str],
    config: &str,
    node_ips: &[IpAddr],
    cluster: &str,
) -> Output {
    let ips: Vec<String> = node_ips.iter().map(ToString::to_string).collect();
    let config = root(config);
    let mut argv = vec![command];
    argv.extend_from_slice(extra);
    argv.extend(["--config", &config]);
    for ip in &ips {
        argv.extend(["--node-ip", ip]);
    }
    argv.push(cluster);
    kp(node, &argv)
}

/// `diff`'s exit code and everything it printed.
fn diff(node: &TestNode, config: &str, node_ips: &[IpAddr], cluster: &str) -> (i32, String) {
    let out = run(node, "diff", &[], config, node_ips, cluster);
    let code = out.status.code().expect("diff exited");
    (code, stdout(&out) + &stderr(&out))
}

/// A scratch directory for generated cluster files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kpinspect-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `UDP_CLUSTER` without the endpoint `ip`.
fn udp_cluster_without(ip: IpAddr) -> String {
    let text = std::fs::read_to_string(root(UDP_CLUSTER)).expect("cluster");
    let entry = format!(
        "- addresses:\n  - \"{ip}\"\n  conditions:\n    ready: true\n  nodeName: test-node\n"
    );
    assert!(text.contains(&entry), "{UDP_CLUSTER} has no endpoint {ip}");
    text.replace(&entry, "")
}

/// The pod that answered each of `replies`; panics on a datagram that was
/// not answered, or answered from anything but a pod's `DNS_TARGET`.
fn answered_by(replies: Vec<Result<crate::node::Reply, String>>, what: &str) -> Vec<IpAddr> {
    replies
        .into_iter()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
            assert_eq!(r.server.port(), DNS_TARGET, "{what}: {r:?}");
            r.server.ip()
        })
        .collect()
}

/// The UDP entries of the node's conntrack table to `dst`, as
/// `conntrack -L` lists them, without the seconds each has left (the third
/// column counts down while the test runs).
fn conntrack_udp_to(node: &TestNode, dst: IpAddr) -> Vec<String> {
    let dst = dst.to_string();
    node.node_exec_ok(&["conntrack", "-L", "-p", "udp", "--orig-dst", &dst])
        .lines()
        .map(|l| {
            l.split_whitespace()
                .enumerate()
                .filter(|(i, _)| *i != 2)
                .map(|(_, w)| w)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Whether apply's stderr says it deleted `n` stale IPv4 UDP conntrack
/// entries.
fn says_deleted(stderr: &str, n: usize) -> bool {
    stderr
        .to_ascii_lowercase()
        .contains(&format!("ipv4: deleted {n} stale udp conntrack entries"))
}

/// A UDP flow to the ClusterIP and one to the NodePort, both answered by
/// the same endpoint A; A is removed by `apply` (with
/// `--no-conntrack-cleanup` unless `cleanup`). The flows' next datagrams
/// are answered by the remaining endpoint B when the stale conntrack
/// entries are deleted, else still by A; then a plain apply deletes them.
fn udp_endpoint_removed(backend: Backend, cleanup: bool) {
    let mut node = TestNode::new(Layout {
        pods: 2,
        backend,
        ipv6: false,
    });
    // Other programs' state, kubelet's hint among it: the backend to use.
    add_foreign_state(&node);
    node.start_udp_servers(&[DNS_TARGET]);
    let client = node.client.clone();
    let cluster = root(UDP_CLUSTER);
    let node_ips = [IpAddr::V4(NODE_IP)];
    ok(
        &run(&node, "apply", &[], ROUTED_CONFIG, &node_ips, &cluster),
        "apply",
    );
    let (code, report) = diff(&node, ROUTED_CONFIG, &node_ips, &cluster);
    assert_eq!(code, 0, "not in sync after apply:\n{report}");
    let save = node.save();
    assert!(
        save.contains("routed/dns:dns"),
        "{backend:?}: not applied:\n{save}"
    );

    // One flow to the ClusterIP, from one source port: every datagram goes
    // to the endpoint its first one was DNATed to (A).
    let cluster_ip = IpAddr::V4(DNS.0);
    const CLUSTER_FLOW: u16 = 40053;
    let first = answered_by(
        node.udp(&client, cluster_ip, DNS.1, CLUSTER_FLOW, 3),
        "ClusterIP flow",
    );
    let a = first[0];
    assert_eq!(first, vec![a; 3], "one flow, one endpoint");
    let pods = [IpAddr::V4(pod_ip(0)), IpAddr::V4(pod_ip(1))];
    assert!(
        pods.contains(&a),
        "answered by {a}, not by a pod of routed/dns"
    );
    let b = pods[usize::from(a == pods[0])];
    // A flow to the NodePort that A answers too: new source ports until one
    // lands on A (each 1/2; 24 all miss with probability 6e-8).
    let node_ip = IpAddr::V4(NODE_IP);
    let node_port_flow = (40100..40124)
        .find(|sport| {
            answered_by(
                node.udp(&client, node_ip, DNS_NODE_PORT, *sport, 1),
                "NodePort flow",
            ) == [a]
        })
        .expect("no NodePort flow landed on A");
    assert_eq!(
        answered_by(
            node.udp(&client, node_ip, DNS_NODE_PORT, node_port_flow, 2),
            "NodePort flow"
        ),
        vec![a; 2]
    );

    // Remove A. A dry run lists exactly the two stale entries (the flows
    // to B are not stale) and deletes nothing.
    let scratch = Scratch::new("udp");
    let without_a = scratch.file("cluster-without-a.yaml", &udp_cluster_without(a));
    let tracked = conntrack_udp_to(&node, cluster_ip);
    assert_eq!(tracked.len(), 1, "{tracked:?}");
    let out = run(
        &node,
        "apply",
        &["--dry-run"],
        ROUTED_CONFIG,
        &node_ips,
        &without_a,
    );
    ok(&out, "dry run");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.to_ascii_lowercase()
                .contains("ipv4: would delete 2 stale udp conntrack entries")
        })
        .unwrap_or_else(|| panic!("the dry run lists no stale entries:\n{err}"));
    let mut listed: Vec<String> = lines[at + 1..at + 3]
        .iter()
        .map(|l| l.trim().to_string())
        .collect();
    listed.sort();
    let mut want = vec![
        format!("{CLIENT_IP} -> {cluster_ip} (answered by {a})"),
        format!("{CLIENT_IP} -> {node_ip} (answered by {a})"),
    ];
    want.sort();
    assert_eq!(listed, want, "{err}");
    assert!(!err.contains(&format!("answered by {b}")), "{err}");
    assert_eq!(
        conntrack_udp_to(&node, cluster_ip),
        tracked,
        "the dry run changed the conntrack table"
    );

    let extra: &[&str] = if cleanup {
        &[]
    } else {
        &["--no-conntrack-cleanup"]
    };
    let out = run(&node, "apply", extra, ROUTED_CONFIG, &node_ips, &without_a);
    ok(&out, "apply without A");
    let err = stderr(&out);
    assert_eq!(says_deleted(&err, 2), cleanup, "{err}");
    let (code, report) = diff(&node, ROUTED_CONFIG, &node_ips, &without_a);
    assert_eq!(code, 0, "not in sync after removing A:\n{report}");

    // The same flows' next datagrams.
    let after = (
        answered_by(
            node.udp(&client, cluster_ip, DNS.1, CLUSTER_FLOW, 2),
            "ClusterIP flow after the apply",
        ),
        answered_by(
            node.udp(&client, node_ip, DNS_NODE_PORT, node_port_flow, 2),
            "NodePort flow after the apply",
        ),
    );
    if cleanup {
        assert_eq!(after, (vec![b; 2], vec![b; 2]), "{backend:?}: A removed");
        return;
    }
    // Kept: conntrack still sends both flows to A, which is no endpoint.
    assert_eq!(
        after,
        (vec![a; 2], vec![a; 2]),
        "{backend:?}: --no-conntrack-cleanup"
    );
    // The next apply with the cleanup (no rule to write) deletes them.
    let out = run(&node, "apply", &[], ROUTED_CONFIG, &node_ips, &without_a);
    let err = stderr(&out);
    ok(&out, "apply again");
    assert!(err.contains("nothing written"), "{err}");
    assert!(says_deleted(&err, 2), "{err}");
    let again = (
        answered_by(
            node.udp(&client, cluster_ip, DNS.1, CLUSTER_FLOW, 1),
            "ClusterIP flow after the cleanup",
        ),
        answered_by(
            node.udp(&client, node_ip, DNS_NODE_PORT, node_port_flow, 1),
            "NodePort flow after the cleanup",
        ),
    );
    assert_eq!(again, (vec![b], vec![b]), "{backend:?}: cleaned up later");
}

#[test]
fn udp_stale_conntrack_deleted_nft() {
    if available() {
        udp_endpoint_removed(Backend::Nft, true);
    }
}

#[test]
fn udp_stale_conntrack_deleted_legacy() {
    if available() {
        udp_endpoint_removed(Backend::Legacy, true);
    }
}

#[test]
fn udp_stale_conntrack_kept_pins_flows_nft() {
    if available() {
        udp_endpoint_removed(Backend::Nft, false);
    }
}

#[test]
fn udp_stale_conntrack_kept_pins_flows_legacy() {
    if available() {
        udp_endpoint_removed(Backend::Legacy, false);
    }
}

/// Which addresses `n` TCP connections from `from` to `ip:port` reached,
/// and who the servers saw as the client.
fn reached(
    node: &TestNode,
    from: &str,
    ip: IpAddr,
    port: u16,
    n: usize,
) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let (mut servers, mut peers): (Vec<IpAddr>, Vec<IpAddr>) = node
        .connect_many(from, ip, port, n)
        .into_iter()
        .map(|r| {
            let to = std::net::SocketAddr::new(ip, port);
            let r = r.unwrap_or_else(|e| panic!("connection to {to} failed: {e}"));
            (r.server.ip(), r.peer.ip())
        })
        .unzip();
    for v in [&mut servers, &mut peers] {
        v.sort();
        v.dedup();
    }
    (servers, peers)
}

/// One apply programs both families of a dual-stack node; real IPv6 and
/// IPv4 connections reach the pods through them.
fn dual_stack(backend: Backend) {
    let mut node = TestNode::new(Layout {
        pods: 2,
        backend,
        ipv6: true,
    });
    add_foreign_state(&node);
    node.start_servers(&[8080, 8081]);
    let client = node.client.clone();
    let cluster = root(DUAL_CLUSTER);
    let node_ips = [IpAddr::V4(NODE_IP), IpAddr::V6(NODE_IP6)];
    let (code, _) = diff(&node, DUAL_CONFIG, &node_ips, &cluster);
    assert_eq!(code, 1, "an empty node differs");

    // One apply, no --family: both families written.
    let out = run(&node, "apply", &[], DUAL_CONFIG, &node_ips, &cluster);
    let err = stderr(&out);
    ok(&out, "apply");
    for family in ["IPv4", "IPv6"] {
        let applied = format!("kpinspect: {family}: applied ");
        assert!(
            err.lines().any(|l| l.starts_with(&applied)),
            "no {family} report:\n{err}"
        );
    }
    let save4 = node.save();
    let save6 = node.node_exec_ok(&[&format!("ip6tables-{}-save", backend.name())]);
    for (save, vip, np) in [
        (&save4, "-d 172.30.0.40/32", "-d 192.168.0.2/32"),
        (&save6, "-d fd00:30::40/128", "-d fd00:50::2/128"),
    ] {
        assert!(
            save.lines()
                .any(|l| l.starts_with("-A KUBE-SERVICES") && l.contains(vip)),
            "{vip}: no service rule:\n{save}"
        );
        // nodePortAddresses: [primary]: the node IP of the family.
        assert!(
            save.lines().any(|l| l.starts_with("-A KUBE-SERVICES")
                && l.contains(np)
                && l.contains("-j KUBE-NODEPORTS")),
            "{np}: no NodePort jump:\n{save}"
        );
    }
    assert!(
        !save6.contains("172.30.0.") && !save4.contains("fd00:"),
        "a family's rules in the other's tables"
    );
    let (code, report) = diff(&node, DUAL_CONFIG, &node_ips, &cluster);
    assert_eq!(code, 0, "not in sync after apply:\n{report}");
    assert!(
        report.contains("IPv4: in sync") && report.contains("IPv6: in sync"),
        "{report}"
    );

    // The node IPs detected (kubelet's rule: the default route's
    // interface, per family) are the ones given: in sync, nothing to write.
    let (code, report) = diff(&node, DUAL_CONFIG, &[], &cluster);
    assert_eq!(code, 0, "not in sync with detected node IPs:\n{report}");
    assert!(
        report.contains(&format!("node IPs: {NODE_IP}, {NODE_IP6} (detected")),
        "{report}"
    );
    let out = run(&node, "apply", &[], DUAL_CONFIG, &[], &cluster);
    let err = stderr(&out);
    ok(&out, "apply with detected node IPs");
    assert_eq!(err.matches("in sync, nothing written").count(), 2, "{err}");

    // Real connections from the client: IPv6 and IPv4, ClusterIP and
    // NodePort, masqueraded to the node's address of the family (the
    // client is outside the cluster CIDRs). 20 connections over 2
    // endpoints miss one with probability 2·2^-20.
    let pods6: Vec<IpAddr> = (0..2).map(|i| IpAddr::V6(pod_ip6(i))).collect();
    let pods4: Vec<IpAddr> = (0..2).map(|i| IpAddr::V4(pod_ip(i))).collect();
    let vip6: IpAddr = "fd00:30::40".parse().expect("ip");
    let vip4: IpAddr = "172.30.0.40".parse().expect("ip");
    assert_eq!(
        reached(&node, &client, vip6, 80, 20),
        (pods6.clone(), vec![IpAddr::V6(NODE_IP6)]),
        "{backend:?}: IPv6 ClusterIP"
    );
    assert_eq!(
        reached(&node, &client, vip4, 80, 20),
        (pods4.clone(), vec![IpAddr::V4(NODE_IP)]),
        "{backend:?}: IPv4 ClusterIP"
    );
    assert_eq!(
        reached(&node, &client, IpAddr::V6(NODE_IP6), 30081, 3),
        (vec![pods6[1]], vec![IpAddr::V6(NODE_IP6)]),
        "{backend:?}: IPv6 NodePort"
    );
    assert_eq!(
        reached(&node, &client, IpAddr::V4(NODE_IP), 30081, 3),
        (vec![pods4[1]], vec![IpAddr::V4(NODE_IP)]),
        "{backend:?}: IPv4 NodePort"
    );
    // From a pod too, hairpin included (pod 0 reaching itself through the
    // IPv6 ClusterIP is masqueraded, to the node's address).
    let pod0 = node.pods[0].ns.clone();
    assert_eq!(
        reached(&node, &pod0, vip6, 80, 20).0,
        pods6,
        "{backend:?}: IPv6 ClusterIP from a pod"
    );
}

#[test]
fn dual_stack_apply_nft() {
    if available() {
        dual_stack(Backend::Nft);
    }
}

#[test]
fn dual_stack_apply_legacy() {
    if available() {
        dual_stack(Backend::Legacy);
    }
}
