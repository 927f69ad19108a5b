//! IPVS mode end to end in the VM's kernel: real TCP and UDP traffic
//! through what `kpinspect apply --mode ipvs` programs, graceful
//! termination of a real server with a live connection, a mode switch both
//! ways, and a capture of the tools' text (`fixtures/ipvs-save/e2e.*`)
//! proven against the live kernel.
//!
//! The traffic checks build the routed node of `crate::node` (client
//! 192.168.0.9 → node 192.168.0.2 → pods 10.244.0.11-13) inside the check's
//! VM, and apply [`cluster`] to the node's namespace.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use kpinspect_core::mode::ipvs::{RealServer, VirtualServer, parse_ipvsadm};
use kpinspect_core::model::Protocol;

use crate::node::{Backend, CLIENT_IP, Layout, NODE_IP, Reply, TestNode, kp, pod_ip};
use crate::util::{root, stderr};

/// The Services' cluster IPs.
const WEB_IP: &str = "10.96.0.80";
const LOCAL_IP: &str = "10.96.0.81";
const DNS_IP: &str = "10.96.0.53";
/// `drain`'s cluster IP and node port: the Service whose endpoint goes
/// while a connection to it is open.
const DRAIN_IP: &str = "10.96.0.90";
const DRAIN_NODE_PORT: u16 = 30090;
/// `web`'s node port (externalTrafficPolicy Cluster: masqueraded).
const WEB_NODE_PORT: u16 = 30080;
/// `local`'s node port (externalTrafficPolicy Local: the client's address
/// reaches the pod).
const LOCAL_NODE_PORT: u16 = 30081;
/// The pods' TCP and UDP ports.
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
/// Connections per flow: rr gives each of 3 real servers 2, in turn.
const CONNECTIONS: usize = 6;

const CONFIG: &str = "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
clusterCIDR: 10.244.0.0/16
hostnameOverride: test-node
";

/// The cluster: `web` (TCP 80 → 8080, node port 30080, eTP Cluster) and
/// `local` (TCP 81 → 8080, node port 30081, eTP Local) on all three pods;
/// `drain` (TCP 90 → 8080, node port 30090) and `dns` (UDP 53 → 5353) on
/// the pods `serving` (indices); every pod runs on this node.
pub(super) fn cluster(serving: &[usize]) -> String {
    let service = |name: &str, ip: &str, port: &str| {
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: e2e}}
spec:
  clusterIP: {ip}
  clusterIPs: [{ip}]
{port}"
        )
    };
    let slice = |name: &str, pods: &[usize], port: &str| {
        let endpoints: Vec<String> = pods
            .iter()
            .map(|&i| {
                format!(
                    "- {{addresses: [\"{}\"], conditions: {{ready: true}}, nodeName: test-node}}\n",
                    pod_ip(i)
                )
            })
            .collect();
        format!(
            "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: e2e
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
endpoints:
{}ports: [{port}]
",
            if endpoints.is_empty() {
                "[]\n".to_string()
            } else {
                endpoints.concat()
            }
        )
    };
    [
        service(
            "web",
            WEB_IP,
            &format!(
                "  type: NodePort\n  externalTrafficPolicy: Cluster\n  ports: [{{name: http, port: 80, protocol: TCP, targetPort: {TCP_PORT}, nodePort: {WEB_NODE_PORT}}}]\n"
            ),
        ),
        service(
            "local",
            LOCAL_IP,
            &format!(
                "  type: NodePort\n  externalTrafficPolicy: Local\n  ports: [{{name: http, port: 81, protocol: TCP, targetPort: {TCP_PORT}, nodePort: {LOCAL_NODE_PORT}}}]\n"
            ),
        ),
        service(
            "drain",
            DRAIN_IP,
            &format!(
                "  type: NodePort\n  externalTrafficPolicy: Cluster\n  ports: [{{name: http, port: 90, protocol: TCP, targetPort: {TCP_PORT}, nodePort: {DRAIN_NODE_PORT}}}]\n"
            ),
        ),
        service(
            "dns",
            DNS_IP,
            &format!("  ports: [{{name: dns, port: 53, protocol: UDP, targetPort: {UDP_PORT}}}]\n"),
        ),
        slice(
            "web",
            &[0, 1, 2],
            &format!("{{name: http, port: {TCP_PORT}, protocol: TCP}}"),
        ),
        slice(
            "local",
            &[0, 1, 2],
            &format!("{{name: http, port: {TCP_PORT}, protocol: TCP}}"),
        ),
        slice(
            "drain",
            serving,
            &format!("{{name: http, port: {TCP_PORT}, protocol: TCP}}"),
        ),
        slice(
            "dns",
            serving,
            &format!("{{name: dns, port: {UDP_PORT}, protocol: UDP}}"),
        ),
    ]
    .join("---\n")
}

/// A TCP server that answers like `traffic.py serve` (`LOCAL from PEER`)
/// and then keeps the connection until the client closes it, so that IPVS
/// counts it active while it is open.
const HOLDING_SERVER: &str = r#"
import socket, sys, threading
def handle(c, peer):
    with c:
        l = c.getsockname()
        c.sendall(("%s:%d from %s:%d\n" % (l[0], l[1], peer[0], peer[1])).encode())
        try:
            while c.recv(256):
                pass
        except OSError:
            pass
def loop(s):
    while True:
        c, peer = s.accept()
        threading.Thread(target=handle, args=(c, peer), daemon=True).start()
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(p)))
    s.listen(128)
    threading.Thread(target=loop, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// A client that opens one TCP connection, prints `ok ANSWER`, holds the
/// connection until its stdin closes, then resets it (RST: IPVS keeps a
/// closed connection 10 s, where a FIN's TIME_WAIT is 2 minutes) and
/// prints `closed`.
const HOLDING_CLIENT: &str = r#"
import socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(256)
    if not chunk:
        break
    data += chunk
print("ok " + data.decode().strip(), flush=True)
sys.stdin.read()
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("closed", flush=True)
"#;

/// Processes started in the test node's namespaces, killed on drop (before
/// the node's namespaces go: declare it after the [`TestNode`]).
#[derive(Default)]
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `python3 -c script args` in namespace `ns`, stdout piped.
fn python(ns: &str, script: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 in {ns}: {e}"))
}

fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).expect("read a line");
    line.trim().to_string()
}

/// `LOCAL from PEER` (after `ok `), as `traffic.py` answers.
fn parse_answer(line: &str) -> Reply {
    let answer = line
        .strip_prefix("ok ")
        .unwrap_or_else(|| panic!("no answer (the connection failed): {line:?}"));
    let (server, peer) = answer.split_once(" from ").expect("LOCAL from PEER");
    Reply {
        server: server.parse().expect("server address"),
        peer: peer.parse().expect("peer address"),
    }
}

/// Starts [`HOLDING_SERVER`] on [`TCP_PORT`] in every pod.
fn start_holding_servers(node: &TestNode, procs: &mut Procs) {
    for pod in &node.pods {
        let mut child = python(&pod.ns, HOLDING_SERVER, &[&TCP_PORT.to_string()]);
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        procs.0.push(child);
        assert_eq!(read_line(&mut out), "ready", "{}: server", pod.ns);
    }
}

/// A connection held open by [`HOLDING_CLIENT`].
struct Held {
    reply: Reply,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Held {
    fn open(node: &TestNode, procs: &mut Procs, ip: &str, port: u16) -> Held {
        let mut child = python(&node.client, HOLDING_CLIENT, &[ip, &port.to_string()]);
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        procs.0.push(child);
        let reply = parse_answer(&read_line(&mut out));
        Held { reply, stdin, out }
    }

    /// Resets the connection and waits until the client says so.
    fn close(mut self) {
        drop(self.stdin.take());
        assert_eq!(read_line(&mut self.out), "closed");
    }
}

/// The routed node with the files of the cluster serving `serving` in `dir`.
struct E2e {
    node: TestNode,
    config: PathBuf,
    dir: PathBuf,
}

impl E2e {
    fn new(dir: &Path) -> E2e {
        // The backend only matters for TestNode's own restore/save; apply
        // detects the one to use.
        let node = TestNode::new(Layout {
            pods: 3,
            backend: Backend::Nft,
            ipv6: false,
        });
        let config = dir.join("config.yaml");
        std::fs::write(&config, CONFIG).expect("write config");
        E2e {
            node,
            config,
            dir: dir.to_path_buf(),
        }
    }

    /// `kpinspect apply` of the cluster serving `serving`; its report.
    fn apply(&self, serving: &[usize]) -> String {
        let name = format!(
            "cluster-{}.yaml",
            serving
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("")
        );
        let path = self.dir.join(name);
        std::fs::write(&path, cluster(serving)).expect("write cluster");
        let out = kp(
            &self.node,
            &[
                "apply",
                "--config",
                &self.config.to_string_lossy(),
                "--node-ip",
                &NODE_IP.to_string(),
                "--family",
                "ipv4",
                "--force",
                &path.to_string_lossy(),
            ],
        );
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(out.status.success(), "apply {serving:?}: {report}");
        println!("apply {serving:?}:\n{report}");
        report
    }

    /// `tool args` in the node's namespace.
    fn node_tool(&self, args: &[&str]) -> String {
        self.node.node_exec_ok(args)
    }

    /// The node's virtual servers, from `ipvsadm -Ln`.
    fn virtual_servers(&self) -> Vec<VirtualServer> {
        let text = self.node_tool(&["ipvsadm", "-Ln"]);
        parse_ipvsadm(&text).unwrap_or_else(|e| panic!("ipvsadm -Ln: {e}\n{text}"))
    }

    /// The real servers of virtual server `ip:port/protocol`.
    fn real_servers(&self, ip: &str, port: u16, protocol: Protocol) -> Vec<RealServer> {
        let ip: IpAddr = ip.parse().expect("ip");
        let servers = self.virtual_servers();
        servers
            .into_iter()
            .find(|v| v.address == ip && v.port == port && v.protocol == protocol)
            .unwrap_or_else(|| panic!("no virtual server {ip}:{port}/{protocol:?}"))
            .real_servers
    }

    /// `count` connections from namespace `from`, one after the other,
    /// which must all succeed (`traffic.py connect`, with a timeout for a
    /// busy emulated machine).
    fn connect(&self, from: &str, ip: &str, port: u16, count: usize) -> Vec<Reply> {
        let script = root().join("tests/integration/support/traffic.py");
        let out = self.node.exec_ok(
            from,
            &[
                "python3",
                &script.to_string_lossy(),
                "connect",
                ip,
                &port.to_string(),
                &count.to_string(),
                "5",
            ],
        );
        let replies: Vec<Reply> = out.lines().map(parse_answer).collect();
        assert_eq!(replies.len(), count, "{from} -> {ip}:{port}: {out}");
        replies
    }
}

/// The real server of pod `i`, TCP.
fn pod(i: usize) -> SocketAddr {
    SocketAddr::from((pod_ip(i), TCP_PORT))
}

/// Round robin over `servers`: each gets the same share, in a fixed turn
/// (connection n reaches the server connection n mod k reached).
fn assert_round_robin(ctx: &str, replies: &[Reply], servers: &[SocketAddr]) {
    let k = servers.len();
    let got: Vec<SocketAddr> = replies.iter().map(|r| r.server).collect();
    let first: BTreeSet<SocketAddr> = got.iter().take(k).copied().collect();
    let want: BTreeSet<SocketAddr> = servers.iter().copied().collect();
    assert_eq!(first, want, "{ctx}: the first {k} connections: {got:?}");
    for (n, s) in got.iter().enumerate() {
        assert_eq!(*s, got[n % k], "{ctx}: not in turn: {got:?}");
    }
}

/// Real TCP connections through IPVS land on the real servers in turn,
/// and are masqueraded exactly where kube-proxy's IPVS rules mark them.
/// Then graceful termination: a removed TCP real server with a live
/// connection stays at weight 0 and gets no new connection; it goes once
/// the connection is gone. A UDP real server goes at once. In between, the
/// tools' texts equal the captures of `fixtures/ipvs-save/e2e.*`.
pub(super) fn traffic_and_graceful_termination(dir: &Path) {
    let _ = Command::new("modprobe").arg("ip_vs").status();
    let mut e = E2e::new(dir);
    let mut procs = Procs::default();
    start_holding_servers(&e.node, &mut procs);
    e.node.start_udp_servers(&[UDP_PORT]);
    e.apply(&[0, 1, 2]);
    let all = [pod(0), pod(1), pod(2)];
    let node_ip = IpAddr::V4(NODE_IP);
    let client = e.node.client.clone();
    let node_ip_s = NODE_IP.to_string();
    // (what, from, to, port, the peer every server must see: the node
    // where kube-proxy masquerades, else the client).
    let flows: [(&str, &str, &str, u16, IpAddr); 3] = [
        (
            "client -> ClusterIP (from outside clusterCIDR: masqueraded)",
            &client,
            WEB_IP,
            80,
            node_ip,
        ),
        (
            "client -> NodePort, externalTrafficPolicy Cluster (masqueraded)",
            &client,
            &node_ip_s,
            WEB_NODE_PORT,
            node_ip,
        ),
        (
            "client -> NodePort, externalTrafficPolicy Local (not masqueraded)",
            &client,
            &node_ip_s,
            LOCAL_NODE_PORT,
            IpAddr::V4(CLIENT_IP),
        ),
    ];
    for (what, from, to, port, peer) in flows {
        let replies = e.connect(from, to, port, CONNECTIONS);
        println!(
            "{what}: {:?}",
            replies
                .iter()
                .map(|r| format!("{} from {}", r.server, r.peer))
                .collect::<Vec<_>>()
        );
        assert_round_robin(what, &replies, &all);
        for r in &replies {
            assert_eq!(r.peer.ip(), peer, "{what}: {r:?}");
        }
    }
    // A pod inside clusterCIDR is not masqueraded, except when IPVS sends
    // it to itself (KUBE-LOOP-BACK).
    let from = e.node.pods[0].ns.clone();
    let replies = e.connect(&from, WEB_IP, 80, CONNECTIONS);
    assert_round_robin("pod -> ClusterIP", &replies, &all);
    for r in &replies {
        let want = if r.server == pod(0) {
            node_ip
        } else {
            IpAddr::V4(pod_ip(0))
        };
        assert_eq!(r.peer.ip(), want, "pod -> ClusterIP: {r:?}");
    }
    // UDP: one flow per source port, in turn over the real servers.
    let mut reached = Vec::new();
    for sport in 41001..41004 {
        let r = e
            .node
            .udp(&client, DNS_IP.parse().expect("ip"), 53, sport, 1)
            .remove(0)
            .unwrap_or_else(|err| panic!("udp from {sport}: {err}"));
        assert_eq!(r.peer.ip(), node_ip, "udp: masqueraded: {r:?}");
        reached.push(r.server.ip());
    }
    let reached: BTreeSet<IpAddr> = reached.into_iter().collect();
    assert_eq!(reached.len(), 3, "udp flows reached {reached:?}");
    // Graceful termination, of `drain`: the UDP flows above are counted.
    let udp_before = e.real_servers(DNS_IP, 53, Protocol::Udp);
    let pod2 = pod_ip(2);
    let rs2 = udp_before
        .iter()
        .find(|r| r.address == IpAddr::V4(pod2))
        .expect("pod 2 serves dns");
    assert!(
        rs2.inactive_connections.unwrap_or(0) + rs2.active_connections.unwrap_or(0) >= 1,
        "the UDP flow to pod 2 is counted: {udp_before:?}"
    );
    // Hold a connection to pod 2 (rr: within three tries).
    let mut held = None;
    for _ in 0..3 {
        let h = Held::open(&e.node, &mut procs, DRAIN_IP, 90);
        if h.reply.server == pod(2) {
            held = Some(h);
            break;
        }
        h.close();
    }
    let held = held.expect("a connection to pod 2 in three tries");
    let drain = |e: &E2e| e.real_servers(DRAIN_IP, 90, Protocol::Tcp);
    let draining = |rs: &[RealServer]| rs.iter().find(|r| r.address == IpAddr::V4(pod2)).cloned();

    // Pod 2 leaves drain and dns.
    let assert_draining = |e: &E2e| {
        let rs = drain(e);
        let d = draining(&rs).unwrap_or_else(|| panic!("pod 2 deleted while connected: {rs:?}"));
        assert_eq!(d.weight, 0, "{d:?}");
        assert!(d.active_connections.unwrap_or(0) >= 1, "{d:?}");
        // The node port's real server had no connection: gone at once.
        let np = e.real_servers(&NODE_IP.to_string(), DRAIN_NODE_PORT, Protocol::Tcp);
        assert!(draining(&np).is_none(), "{np:?}");
        // UDP: gone at once, though a flow was counted.
        let dns = e.real_servers(DNS_IP, 53, Protocol::Udp);
        assert!(draining(&dns).is_none(), "{dns:?}");
    };
    e.apply(&[0, 1]);
    assert_draining(&e);
    // Another apply keeps it draining.
    e.apply(&[0, 1]);
    assert_draining(&e);
    assert_captures(&e, dir);
    let replies = e.connect(&client, DRAIN_IP, 90, CONNECTIONS);
    assert_round_robin("while pod 2 drains", &replies, &[pod(0), pod(1)]);

    held.close();
    let started = Instant::now();
    loop {
        let d = draining(&drain(&e)).expect("pod 2 still listed");
        if d.active_connections == Some(0) && d.inactive_connections == Some(0) {
            println!(
                "pod 2's connections ended in IPVS after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "pod 2 still counts connections: {d:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    e.apply(&[0, 1]);
    let rs = drain(&e);
    assert!(draining(&rs).is_none(), "pod 2 not deleted: {rs:?}");
    assert_eq!(rs.len(), 2, "{rs:?}");
    let again = e.apply(&[0, 1]);
    assert!(again.contains("in sync, nothing written"), "{again}");
    let _ = std::io::stdout().flush();
    drop(procs);
}

/// The text of a capture, comparable across runs: real servers'
/// connection counts (`ipvsadm -Ln`), ipset's random `initval`, the size it
/// allocated, and its members' hash order are left out.
pub(super) fn comparable(text: &str) -> String {
    let mut out = Vec::new();
    let mut members: Vec<String> = Vec::new();
    let flush = |members: &mut Vec<String>, out: &mut Vec<String>| {
        members.sort();
        out.append(members);
    };
    let mut in_members = false;
    for line in text.lines() {
        if in_members {
            if line.is_empty() || line.starts_with("Name: ") {
                in_members = false;
                flush(&mut members, &mut out);
            } else {
                members.push(line.to_string());
                continue;
            }
        }
        if line == "Members:" {
            in_members = true;
            out.push(line.to_string());
        } else if let Some(rest) = line.strip_prefix("  -> ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            // `-> ADDR FORWARD WEIGHT ACTIVE INACTIVE`; the headings' line
            // (`-> RemoteAddress:Port ...`) stays.
            if words.len() == 5 && words[3].parse::<u64>().is_ok() {
                out.push(format!("  -> {} {} {} * *", words[0], words[1], words[2]));
            } else {
                out.push(line.to_string());
            }
        } else if line.starts_with("Size in memory: ") {
            out.push("Size in memory: *".into());
        } else if line.starts_with("Header: ") || line.starts_with("create ") {
            let words: Vec<String> = line
                .split(' ')
                .scan(false, |after_initval, w| {
                    let w = if *after_initval { "*" } else { w };
                    *after_initval = w == "initval";
                    Some(w.to_string())
                })
                .collect();
            out.push(words.join(" "));
        } else {
            out.push(line.to_string());
        }
    }
    flush(&mut members, &mut out);
    out.join("\n") + "\n"
}

/// The captures of `fixtures/ipvs-save/`: file name and the command (in
/// the node's namespace) that gives it.
pub(super) const CAPTURES: [(&str, &[&str]); 3] = [
    ("e2e.ipvsadm-ln.txt", &["ipvsadm", "-Ln"]),
    ("e2e.ipvsadm-sn.txt", &["ipvsadm", "-Sn"]),
    ("e2e.ipset-list.txt", &["ipset", "list"]),
];

/// The node's texts equal the checked-in captures (modulo counters, see
/// [`comparable`]); each is written to `dir` too, to refresh them.
fn assert_captures(e: &E2e, dir: &Path) {
    let mut differ = Vec::new();
    for (file, argv) in CAPTURES {
        let live = e.node_tool(argv);
        std::fs::write(dir.join(file), &live).expect("write capture");
        let path = root().join("fixtures/ipvs-save").join(file);
        let saved = std::fs::read_to_string(&path).unwrap_or_default();
        if comparable(&live) != comparable(&saved) {
            differ.push(format!(
                "{}: the live kernel prints\n{live}\n(comparable: {:?} vs {:?})",
                path.display(),
                comparable(&live),
                comparable(&saved)
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "captures differ (KPINSPECT_VM_KEEP=1 keeps the live ones in the check's directory):\n{}",
        differ.join("\n")
    );
}

/// The mode switch both ways: after `apply` in the new mode and `cleanup
/// --stale-only`, the node equals one where only the new mode ran, other
/// programs' rules, sets and virtual servers included.
pub(super) const MODE_SWITCH: &str = r##"
set -E
modprobe ip_vs
fx=fixtures/ipvs/edge_mode_switch_node
sed 's/^mode: .*/mode: iptables/' "$fx/config.yaml" > /tmp/iptables.yaml
sed 's/^mode: .*/mode: ipvs/' "$fx/config.yaml" > /tmp/ipvs.yaml
grep -qx 'mode: iptables' /tmp/iptables.yaml
t0=$(cut -d' ' -f1 /proc/uptime)
mark() { echo "[$(awk -v t0="$t0" '{printf "%.1f", $1 - t0}' /proc/uptime) s] $*"; }
# nsenter, not ip netns exec: no mount namespace and sysfs per command.
on() { local ns=$1; shift; if [ "$ns" = . ]; then "$@"; else nsenter --net="/run/netns/$ns" "$@"; fi; }
kp() { on "$1" "$KPINSPECT" "$2" --force "${@:3}"; }
apply() { mark "apply $*"; kp "$1" apply --config "/tmp/$2.yaml" --node-ip 192.168.0.10 "$fx/cluster.yaml"; }
stale() { mark "cleanup $*"; kp "$1" cleanup --stale-only --config "/tmp/$2.yaml"; }
# A node: its address, other programs' rules (kubelet's too), set and
# virtual server.
node() {
  mark "node $1"
  on "$1" ip link set lo up
  on "$1" ip link add eth9 type dummy
  on "$1" ip addr add 192.168.0.10/24 dev eth9
  on "$1" ip link set eth9 up
  for ipt in "iptables 1.2.3.4" "ip6tables 2001:db8::4"; do
    set -- "$1" $ipt
    on "$1" "$2" -t nat -N DOCKER
    on "$1" "$2" -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
    on "$1" "$2" -t filter -A INPUT -s "$3" -m comment --comment "someone else's input rule" -j DROP
  done
  # kubelet's: its canary and KUBE-FIREWALL (with the localnet rule on
  # IPv4), which kube-proxy's iptables mode jumps to and never removes.
  on "$1" iptables -t mangle -N KUBE-KUBELET-CANARY
  for ipt in iptables ip6tables; do
    on "$1" $ipt -t filter -N KUBE-FIREWALL
    on "$1" $ipt -t filter -A INPUT -j KUBE-FIREWALL
    on "$1" $ipt -t filter -A OUTPUT -j KUBE-FIREWALL
  done
  on "$1" iptables -t filter -A KUBE-FIREWALL -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
  on "$1" ipset create foreign hash:ip
  on "$1" ipset add foreign 192.0.2.7
  on "$1" iptables -t filter -A INPUT -m set --match-set foreign src -j DROP
  on "$1" ipvsadm -A -t 192.0.2.1:443 -s wrr
  on "$1" ipvsadm -a -t 192.0.2.1:443 -r 192.0.2.50:443 -m -w 2
}
# Everything kube-proxy and the others left: iptables (both backends and
# families, without counters and comments), ipsets (without the random
# initval, sorted: members come in hash order), IPVS, kube-ipvs0.
state() {
  mark "state $1" >&2
  for t in iptables-nft ip6tables-nft iptables-legacy ip6tables-legacy; do
    echo "== $t-save"
    on "$1" $t-save | { grep -v '^#' || true; } | sed -E 's/ \[[0-9]+:[0-9]+\]$//'
  done
  echo "== ipset save"
  on "$1" ipset save | sed -E 's/ initval 0x[0-9a-f]+//' | sort
  echo "== ipvsadm -Sn"
  on "$1" ipvsadm -Sn | sort
  echo "== kube-ipvs0"
  if on "$1" ip link show kube-ipvs0 >/dev/null 2>&1; then
    on "$1" ip -d -o link show kube-ipvs0 | grep -o 'dummy'
    on "$1" ip -o addr show dev kube-ipvs0 | awk '{print $3, $4}' | sort
  fi
}
same() {
  if ! diff -u "$1" "$2"; then echo "$3: the node differs from a fresh one (above)"; exit 1; fi
  echo "$3: same as a fresh node ($(wc -l < "$1") lines)"
}
node .
apply . iptables
state . > /tmp/iptables-1
grep -q '^-A KUBE-SERVICES .*KUBE-SVC-' /tmp/iptables-1
# iptables -> IPVS
apply . ipvs
stale . ipvs
ip netns add kpi-fresh-ipvs
node kpi-fresh-ipvs
apply kpi-fresh-ipvs ipvs
state kpi-fresh-ipvs > /tmp/fresh-ipvs
state . > /tmp/switched-ipvs
grep -q -- '-A -t 192\.168\.0\.10:30080 ' /tmp/fresh-ipvs
grep -q '^add KUBE-CLUSTER-IP ' /tmp/fresh-ipvs
grep -q '^inet 10\.96\.5\.5/32$' /tmp/fresh-ipvs
grep -q -- '^-a -t 192\.0\.2\.1:443 -r 192\.0\.2\.50:443 -m -w 2$' /tmp/fresh-ipvs
if grep -q 'KUBE-SVC-' /tmp/fresh-ipvs; then echo "iptables-mode chains in a fresh IPVS node?"; exit 1; fi
same /tmp/fresh-ipvs /tmp/switched-ipvs "iptables -> IPVS"
# IPVS -> iptables, the same cluster. The fresh iptables-only node to
# compare with is this one after its first apply (the same set-up, nothing
# of IPVS mode yet).
apply . iptables
stale . iptables
state . > /tmp/switched-iptables
if grep -q '^add KUBE-\|^create KUBE-\|^inet ' /tmp/iptables-1; then echo "IPVS state in a fresh iptables node?"; exit 1; fi
same /tmp/iptables-1 /tmp/switched-iptables "IPVS -> iptables"
grep -q -- '^-A -t 192\.0\.2\.1:443 -s wrr$' /tmp/switched-iptables
grep -q '^add foreign 192\.0\.2\.7$' /tmp/switched-iptables
ip netns del kpi-fresh-ipvs
"##;
