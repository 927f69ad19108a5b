//! A routed test node made of network namespaces, for tests that send real
//! traffic through kube-proxy's rules.
//!
//! **Needs root**: it creates namespaces with `ip netns`, veth pairs, and
//! runs iptables, nfacct, conntrack and python3 inside them. Everything
//! (interfaces, routes, rules, traffic) stays in the namespaces it creates;
//! the machine's own namespace is never touched. Tests call [`available`]
//! first: without root they fail, unless `KPINSPECT_SKIP_NETNS=1` says to
//! skip them.
//!
//! ```text
//!  client ns                 node ns (ip_forward=1,              pod ns i
//!                            default via the client)
//!  eth0 192.168.0.9/24 ── eth0 192.168.0.2/24 (NODE_IP)
//!  default via node           vethI 169.254.1.1/32 scope link ── eth0 10.244.0.(11+i)/32
//!                             10.244.0.(11+i)/32 dev vethI        default via 169.254.1.1
//! ```
//!
//! The pod-facing veths carry only a link-scope gateway address (as with
//! Calico), so traffic the node masquerades leaves with [`NODE_IP`].
//!
//! With [`Layout::ipv6`] the same links carry IPv6 as well (dual-stack):
//! the uplink `fd00:50::/64` (node [`NODE_IP6`], client [`CLIENT_IP6`], each
//! the other's default route), every pod `fd00:244::(11+i)/128`
//! ([`pod_ip6`]) with its default route via the link-local [`GATEWAY6`] on
//! its veth, and IPv6 forwarding on the node. Duplicate address detection
//! is off in these namespaces, so the addresses work at once. The
//! namespaces are named `kpi-<pid>-<n>-…`, so parallel tests do not collide;
//! [`Drop`] kills the servers and deletes the namespaces, also on panic.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use kpinspect_core::mode::iptables::JUMP_RULES;
use kpinspect_core::mode::{chain_owner, foreign_state, rule_owner};
use kpinspect_core::netfilter::{Rule, Ruleset};

/// The node's address toward the client.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
/// The client's address (outside the node and the cluster).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 9);
/// The pods' default gateway: a link-scope address on every pod veth.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The node's IPv6 address toward the client ([`Layout::ipv6`]).
pub const NODE_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x50, 0, 0, 0, 0, 0, 2);
/// The client's IPv6 address ([`Layout::ipv6`]).
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x50, 0, 0, 0, 0, 0, 9);
/// The pods' IPv6 default gateway: a link-local address on every pod veth.
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The address of pod `i`: 10.244.0.11, 10.244.0.12, ...
pub fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 0, 11 + u8::try_from(i).expect("pod index"))
}

/// The IPv6 address of pod `i` ([`Layout::ipv6`]): fd00:244::11,
/// fd00:244::12, ... (the last group is 0x11 + i, in hex).
pub fn pod_ip6(i: usize) -> Ipv6Addr {
    let n = 0x11 + u16::try_from(i).expect("pod index");
    Ipv6Addr::new(0xfd00, 0x244, 0, 0, 0, 0, 0, n)
}

/// Whether the namespace tests can run here; panics when they should but cannot.
pub fn available() -> bool {
    if std::env::var_os("KPINSPECT_SKIP_NETNS").is_some() {
        eprintln!("KPINSPECT_SKIP_NETNS is set: skipping network-namespace tests");
        return false;
    }
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "network-namespace tests need root (set KPINSPECT_SKIP_NETNS=1 to skip them)"
    );
    for tool in ["ip", "python3", "nfacct", "conntrack"]
        .into_iter()
        .map(String::from)
        .chain(
            Backend::ALL
                .iter()
                .flat_map(|b| [b.iptables(), b.restore(), b.save()]),
        )
    {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .expect("sh");
        assert!(found.status.success(), "{tool} is missing (see .ci/run)");
    }
    true
}

/// The iptables backend the node's rules are loaded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-nft`.
    Nft,
    /// `iptables-legacy`.
    Legacy,
}

impl Backend {
    /// Both backends.
    pub const ALL: [Backend; 2] = [Backend::Nft, Backend::Legacy];

    /// `nft` or `legacy`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }

    /// `iptables-nft` or `iptables-legacy`.
    pub fn iptables(self) -> String {
        format!("iptables-{}", self.name())
    }

    /// `iptables-nft-restore` or `iptables-legacy-restore`.
    pub fn restore(self) -> String {
        format!("iptables-{}-restore", self.name())
    }

    /// `iptables-nft-save` or `iptables-legacy-save`.
    pub fn save(self) -> String {
        format!("iptables-{}-save", self.name())
    }
}

/// The shape of a [`TestNode`].
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// How many pod namespaces (at most 200).
    pub pods: usize,
    /// The iptables backend of the node.
    pub backend: Backend,
    /// Whether the node, the client and the pods have IPv6 addresses too.
    pub ipv6: bool,
}

/// One pod: a namespace with one address.
#[derive(Debug)]
pub struct Pod {
    /// The namespace's name.
    pub ns: String,
    /// The pod's address ([`pod_ip`]).
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address ([`pod_ip6`]), with [`Layout::ipv6`].
    pub ip6: Option<Ipv6Addr>,
}

/// What a pod server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The address the connection reached (the pod's IP and port).
    pub server: SocketAddr,
    /// The client as the server saw it (after any SNAT).
    pub peer: SocketAddr,
}

/// A routed node with pods and a client; see the module documentation.
pub struct TestNode {
    /// The node's namespace.
    pub node: String,
    /// The client's namespace.
    pub client: String,
    /// The pods.
    pub pods: Vec<Pod>,
    /// The backend [`TestNode::restore`], [`TestNode::save`] and
    /// [`TestNode::install_jump_rules`] use.
    pub backend: Backend,
    /// Namespaces created so far, deleted on drop.
    created: Vec<String>,
    /// Running servers, killed on drop.
    servers: Vec<Child>,
}

impl TestNode {
    /// Creates the namespaces, links, addresses and routes, and the nfacct
    /// counters kube-proxy creates at start-up (its rules reference them).
    pub fn new(layout: Layout) -> TestNode {
        static N: AtomicUsize = AtomicUsize::new(0);
        assert!(layout.pods <= 200, "too many pods");
        let prefix = format!(
            "kpi-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut tn = TestNode {
            node: format!("{prefix}-node"),
            client: format!("{prefix}-client"),
            pods: (0..layout.pods)
                .map(|i| Pod {
                    ns: format!("{prefix}-pod{i}"),
                    ip: pod_ip(i),
                    ip6: layout.ipv6.then(|| pod_ip6(i)),
                })
                .collect(),
            backend: layout.backend,
            created: Vec::new(),
            servers: Vec::new(),
        };
        let names: Vec<String> = [tn.node.clone(), tn.client.clone()]
            .into_iter()
            .chain(tn.pods.iter().map(|p| p.ns.clone()))
            .collect();
        for ns in names {
            run_ok(Command::new("ip").args(["netns", "add", &ns]));
            tn.created.push(ns.clone());
            if layout.ipv6 {
                // Before any link exists, so that every one inherits it.
                for sysctl in [
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ] {
                    tn.exec_ok(&ns, &["sysctl", "-q", "-w", sysctl]);
                }
            }
            tn.exec_ok(&ns, &["ip", "link", "set", "lo", "up"]);
        }

        let node = tn.node.clone();
        for sysctl in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.default.send_redirects=0",
        ] {
            tn.exec_ok(&node, &["sysctl", "-q", "-w", sysctl]);
        }
        if layout.ipv6 {
            tn.exec_ok(
                &node,
                &["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"],
            );
        }
        // Uplink to the client.
        let (node_ip, client_ip) = (format!("{NODE_IP}/24"), format!("{CLIENT_IP}/24"));
        let client = tn.client.clone();
        tn.exec_ok(
            &node,
            &[
                "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
                &client,
            ],
        );
        tn.exec_ok(&node, &["ip", "addr", "add", &node_ip, "dev", "eth0"]);
        tn.exec_ok(&node, &["ip", "link", "set", "eth0", "up"]);
        tn.exec_ok(&client, &["ip", "addr", "add", &client_ip, "dev", "eth0"]);
        tn.exec_ok(&client, &["ip", "link", "set", "eth0", "up"]);
        let gw = NODE_IP.to_string();
        tn.exec_ok(&client, &["ip", "route", "add", "default", "via", &gw]);
        // Like a real node, a default route (here toward the client), so
        // that the node's own connections to a ClusterIP are routable
        // before nat OUTPUT rewrites them.
        let up = CLIENT_IP.to_string();
        tn.exec_ok(&node, &["ip", "route", "add", "default", "via", &up]);
        if layout.ipv6 {
            let (node_ip6, client_ip6) = (format!("{NODE_IP6}/64"), format!("{CLIENT_IP6}/64"));
            tn.exec_ok(
                &node,
                &["ip", "-6", "addr", "add", &node_ip6, "dev", "eth0", "nodad"],
            );
            tn.exec_ok(
                &client,
                &[
                    "ip",
                    "-6",
                    "addr",
                    "add",
                    &client_ip6,
                    "dev",
                    "eth0",
                    "nodad",
                ],
            );
            let (gw, up) = (NODE_IP6.to_string(), CLIENT_IP6.to_string());
            tn.exec_ok(
                &client,
                &["ip", "-6", "route", "add", "default", "via", &gw],
            );
            tn.exec_ok(&node, &["ip", "-6", "route", "add", "default", "via", &up]);
        }
        // One veth per pod.
        let gw = GATEWAY.to_string();
        let gw32 = format!("{GATEWAY}/32");
        for i in 0..tn.pods.len() {
            let (ns, ip) = (tn.pods[i].ns.clone(), tn.pods[i].ip);
            let (veth, ip32) = (format!("veth{i}"), format!("{ip}/32"));
            tn.exec_ok(
                &node,
                &[
                    "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                    &ns,
                ],
            );
            tn.exec_ok(
                &node,
                &["ip", "addr", "add", &gw32, "dev", &veth, "scope", "link"],
            );
            tn.exec_ok(&node, &["ip", "link", "set", &veth, "up"]);
            tn.exec_ok(&node, &["ip", "route", "add", &ip32, "dev", &veth]);
            tn.exec_ok(&ns, &["ip", "addr", "add", &ip32, "dev", "eth0"]);
            tn.exec_ok(&ns, &["ip", "link", "set", "eth0", "up"]);
            tn.exec_ok(
                &ns,
                &["ip", "route", "add", &gw, "dev", "eth0", "scope", "link"],
            );
            tn.exec_ok(
                &ns,
                &["ip", "route", "add", "default", "via", &gw, "dev", "eth0"],
            );
            if let Some(ip6) = tn.pods[i].ip6 {
                let (gw6, ip128) = (format!("{GATEWAY6}/64"), format!("{ip6}/128"));
                tn.exec_ok(
                    &node,
                    &["ip", "-6", "addr", "add", &gw6, "dev", &veth, "nodad"],
                );
                tn.exec_ok(&node, &["ip", "-6", "route", "add", &ip128, "dev", &veth]);
                tn.exec_ok(
                    &ns,
                    &["ip", "-6", "addr", "add", &ip128, "dev", "eth0", "nodad"],
                );
                let gw6 = GATEWAY6.to_string();
                tn.exec_ok(
                    &ns,
                    &[
                        "ip", "-6", "route", "add", "default", "via", &gw6, "dev", "eth0",
                    ],
                );
            }
        }
        for counter in [
            "ct_state_invalid_dropped_pkts",
            "localhost_nps_accepted_pkts",
        ] {
            tn.node_exec_ok(&["nfacct", "add", counter]);
        }
        tn
    }

    /// Runs `argv` in namespace `ns`.
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {ns} {argv:?}: {e}"))
    }

    /// Runs `argv` in namespace `ns`, panics unless it succeeds; its stdout.
    pub fn exec_ok(&self, ns: &str, argv: &[&str]) -> String {
        let out = self.exec(ns, argv);
        assert!(
            out.status.success(),
            "{ns}: {argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `argv` in the node's namespace.
    pub fn node_exec(&self, argv: &[&str]) -> Output {
        self.exec(&self.node, argv)
    }

    /// Runs `argv` in the node's namespace, panics unless it succeeds; its stdout.
    pub fn node_exec_ok(&self, argv: &[&str]) -> String {
        self.exec_ok(&self.node, argv)
    }

    /// The node's IPv4 addresses, as the kernel lists them (loopback included).
    pub fn local_ips(&self) -> Vec<IpAddr> {
        self.node_exec_ok(&["ip", "-o", "-4", "addr", "show"])
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace().skip_while(|w| *w != "inet");
                let cidr = words.nth(1)?;
                cidr.split('/').next()?.parse().ok()
            })
            .collect()
    }

    /// Loads `text` into the node with `iptables-restore --noflush`, as
    /// kube-proxy does; the restore's error text if it is refused.
    pub fn restore(&self, text: &str) -> Result<(), String> {
        self.restore_with(text, &["--noflush"])
    }

    /// Loads `text` with a plain `iptables-restore`: every table in `text`
    /// is flushed and its user chains deleted first, so it ends as `text`
    /// says (tables not in `text` are untouched).
    pub fn restore_tables(&self, text: &str) -> Result<(), String> {
        self.restore_with(text, &[])
    }

    fn restore_with(&self, text: &str, flags: &[&str]) -> Result<(), String> {
        let restore = self.backend.restore();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node, &restore, "-w", "10"])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{restore}: {e}"));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write restore input");
        let out = child.wait_with_output().expect("wait for restore");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Inserts kube-proxy's jump rules into the built-in chains the way it
    /// does (`iptables -t TABLE -I CHAIN ...`, in [`JUMP_RULES`] order). The
    /// jumps to kubelet's `KUBE-FIREWALL` only if that chain exists.
    pub fn install_jump_rules(&self) {
        let iptables = self.backend.iptables();
        for jump in &JUMP_RULES {
            if jump.shared_with_kubelet {
                let exists =
                    self.node_exec(&[&iptables, "-w", "10", "-t", jump.table, "-S", jump.target]);
                if !exists.status.success() {
                    continue;
                }
            }
            let args = jump.args();
            let mut argv = vec![
                iptables.as_str(),
                "-w",
                "10",
                "-t",
                jump.table,
                "-I",
                jump.chain,
            ];
            argv.extend(args.iter().map(String::as_str));
            self.node_exec_ok(&argv);
        }
    }

    /// The node's rules, as `iptables-save` prints them.
    pub fn save(&self) -> String {
        self.node_exec_ok(&[&self.backend.save()])
    }

    /// Starts, in every pod, a server on each of `ports` that answers every
    /// connection with `POD_IP:PORT from PEER_IP:PEER_PORT` (on IPv4, and on
    /// IPv6 with [`Layout::ipv6`]); returns once they all listen.
    pub fn start_servers(&mut self, ports: &[u16]) {
        self.start("serve", ports);
    }

    /// Starts, in every pod, a UDP server on each of `ports` that answers
    /// every datagram with the address it was sent to and its source (on
    /// IPv4, and on IPv6 with [`Layout::ipv6`]); returns once they are all
    /// bound.
    pub fn start_udp_servers(&mut self, ports: &[u16]) {
        self.start("serve-udp", ports);
    }

    fn start(&mut self, command: &str, ports: &[u16]) {
        let script = support_script();
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let first = self.servers.len();
        for pod in &self.pods {
            let child = Command::new("ip")
                .args(["netns", "exec", &pod.ns, "python3"])
                .arg(&script)
                .arg(command)
                .args(&ports)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start server");
            self.servers.push(child);
        }
        for (server, pod) in self.servers[first..].iter_mut().zip(&self.pods) {
            let mut line = String::new();
            BufReader::new(server.stdout.as_mut().expect("server stdout"))
                .read_line(&mut line)
                .expect("read server");
            assert_eq!(line.trim(), "ready", "{}: {command} did not start", pod.ns);
        }
    }

    /// One TCP connection from namespace `from` to `ip:port`: what the
    /// server answered, or why it failed (1 s timeout).
    pub fn connect(&self, from: &str, ip: IpAddr, port: u16) -> Result<Reply, String> {
        self.connect_many(from, ip, port, 1).remove(0)
    }

    /// `count` TCP connections, one after the other (each a new conntrack
    /// entry), from namespace `from` to `ip:port`; see [`TestNode::connect`].
    pub fn connect_many(
        &self,
        from: &str,
        ip: IpAddr,
        port: u16,
        count: usize,
    ) -> Vec<Result<Reply, String>> {
        let script = support_script();
        let (ip, port, n) = (ip.to_string(), port.to_string(), count.to_string());
        let out = self.exec_ok(from, &["python3", &script, "connect", &ip, &port, &n, "1"]);
        let replies: Vec<Result<Reply, String>> = out.lines().map(parse_reply).collect();
        assert_eq!(replies.len(), count, "client output: {out}");
        replies
    }

    /// `count` UDP datagrams from namespace `from` to `ip:port`, one after
    /// the other and all from `source_port` (one conntrack flow, also across
    /// calls): for each, who answered ([`Reply::server`] is the address the
    /// datagram reached), or why not (2 s timeout each).
    pub fn udp(
        &self,
        from: &str,
        ip: IpAddr,
        port: u16,
        source_port: u16,
        count: usize,
    ) -> Vec<Result<Reply, String>> {
        let script = support_script();
        let (ip, port, n) = (ip.to_string(), port.to_string(), count.to_string());
        let sport = source_port.to_string();
        let out = self.exec_ok(
            from,
            &["python3", &script, "udp", &ip, &port, &sport, &n, "2"],
        );
        let replies: Vec<Result<Reply, String>> = out.lines().map(parse_reply).collect();
        assert_eq!(replies.len(), count, "client output: {out}");
        replies
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        for ns in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// `tests/integration/support/traffic.py`.
fn support_script() -> String {
    crate::util::root()
        .join("tests/integration/support/traffic.py")
        .to_string_lossy()
        .into_owned()
}

/// A line of the client: `ok SERVER from PEER` or `err WHY`.
fn parse_reply(line: &str) -> Result<Reply, String> {
    let answer = line
        .strip_prefix("ok ")
        .ok_or_else(|| line.trim_start_matches("err ").to_string())?;
    let (server, peer) = answer
        .split_once(" from ")
        .ok_or_else(|| format!("bad answer {answer:?}"))?;
    let parse = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|e| format!("bad answer {answer:?}: {e}"))
    };
    Ok(Reply {
        server: parse(server)?,
        peer: parse(peer)?,
    })
}

/// Runs `cmd` (outside any namespace: only `ip netns add`), panics unless it succeeds.
fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs kpinspect in the node's namespace.
pub fn kp(node: &TestNode, args: &[&str]) -> Output {
    let mut argv = vec![env!("CARGO_BIN_EXE_kpinspect")];
    argv.extend_from_slice(args);
    node.node_exec(&argv)
}

/// What other programs own in a save (see [`foreign_state`]). These must be
/// byte-identical before and after any kpinspect command.
pub fn foreign(save: &str) -> Vec<String> {
    foreign_state(&Ruleset::parse(save).expect("save parses"))
}

/// The complement of [`foreign`]: per `table chain`, kube-proxy's rules as
/// saved, in order (every chain kube-proxy owns is a key, empty or not; a
/// built-in chain is one when it holds a kube-proxy jump).
pub fn kube_proxy_state(save: &str) -> BTreeMap<String, Vec<String>> {
    let mut table = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if chain_owner(&table, name).is_kube_proxy() {
                out.entry(format!("{table} {name}")).or_default();
            }
        } else if line.starts_with("-A ") {
            let rule = Rule::parse(line).expect("saved rule parses");
            if rule_owner(&table, &rule).is_kube_proxy() {
                out.entry(format!("{table} {}", rule.chain))
                    .or_default()
                    .push(line.to_string());
            }
        }
    }
    out
}

/// Other programs' state: a docker-style NAT chain and MASQUERADE, a user
/// INPUT rule, kubelet's canaries and KUBE-FIREWALL (in the mangle table
/// the hint tells kpinspect which backend kubelet uses).
pub fn add_foreign_state(node: &TestNode) {
    let ipt = node.backend.iptables();
    let cmds: [&[&str]; 10] = [
        &["-t", "nat", "-N", "DOCKER"],
        &[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "DOCKER",
        ],
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "172.17.0.0/16",
            "!",
            "-o",
            "docker0",
            "-j",
            "MASQUERADE",
        ],
        &[
            "-t",
            "filter",
            "-A",
            "INPUT",
            "-s",
            "1.2.3.4",
            "-m",
            "comment",
            "--comment",
            "someone else's input rule",
            "-j",
            "DROP",
        ],
        &["-t", "mangle", "-N", "KUBE-KUBELET-CANARY"],
        &["-t", "nat", "-N", "KUBE-KUBELET-CANARY"],
        &["-t", "filter", "-N", "KUBE-FIREWALL"],
        &[
            "-t",
            "filter",
            "-A",
            "KUBE-FIREWALL",
            "-d",
            "127.0.0.0/8",
            "!",
            "-s",
            "127.0.0.0/8",
            "-m",
            "comment",
            "--comment",
            "block incoming localnet connections",
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "RELATED,ESTABLISHED,DNAT",
            "-j",
            "DROP",
        ],
        &["-t", "filter", "-A", "INPUT", "-j", "KUBE-FIREWALL"],
        &["-t", "filter", "-A", "OUTPUT", "-j", "KUBE-FIREWALL"],
    ];
    for c in cmds {
        let mut argv = vec![ipt.as_str()];
        argv.extend_from_slice(c);
        node.node_exec_ok(&argv);
    }
}
