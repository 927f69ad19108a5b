//! The checks the VM runs (see the module above for how they run). To add
//! one, append a [`Check`] to [`CHECKS`]: a bash snippet
//! (`Check::shell(name, script)`) or a function of this test binary
//! (`Check::rust(name, f)`), optionally with `.prepare(g)` run on the host
//! before the boot and `.timeout(seconds)`. Each runs in its own network
//! namespace as root, from the repository root (read-only: write under
//! `/tmp` or `$KPINSPECT_VM_CHECK_DIR`).

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use kpinspect_core::config::IpvsConfig;
use kpinspect_core::net::IpFamily;
use kpinspect_node::{
    AddressAdded, DummyLink, KernelVersion, LinkEnsured, LinkError, SysctlPolicy, Sysctls,
    SystemLinks, SystemSysctls, diff_sysctls, ensure_sysctls, ipvs_sysctls, plan_addresses,
    sync_addresses,
};

use kpinspect_node::kpinspect_ipvs::{
    AF_INET, Destination, ForwardingMethod, Service, ServiceFlags, Timeouts,
};
use kpinspect_node::{Ipvs, IpvsError, SystemIpvs};

use super::Check;
use crate::util::{Fixture, kpinspect, root, stderr};

/// Every check, in the order they run.
pub static CHECKS: &[Check] = &[
    // First: no check has loaded ip_vs yet.
    Check::rust(
        "ipvs client: the IPVS family lookup loads ip_vs on demand",
        ipvs_not_loaded,
    ),
    Check::shell(
        "ipvs: modprobe ip_vs, ipvsadm lists and adds services",
        IPVS,
    ),
    Check::shell("dummy link kube-ipvs0 takes service addresses", KUBE_IPVS0),
    Check::rust(
        "kube-ipvs0 over rtnetlink: ensure, add/list/del IPv4 and IPv6 as ip shows them",
        kube_ipvs0_over_rtnetlink,
    ),
    Check::rust(
        "kube-ipvs0 addresses: the planner converges",
        kube_ipvs0_planner_converges,
    ),
    Check::rust(
        "kube-ipvs0 takes exactly the addresses kpinspect compile binds (dual stack)",
        kube_ipvs0_takes_compiled_addresses,
    ),
    Check::rust(
        "ipvs sysctls: set in the namespace and read back",
        ipvs_sysctls_set_and_read_back,
    ),
    Check::shell(
        "ipset: kube-proxy's hash:ip,port set, matched by iptables",
        IPSET,
    ),
    Check::rust(
        "ipvs client: SystemIpvs creates, lists, changes and deletes IPv4/IPv6 services and destinations (ipvsadm -Sn agrees)",
        ipvs_client,
    ),
    Check::rust(
        "kpinspect dump reads a live IPVS node: the compiled fixture loaded with ipvsadm -R and ipset restore dumps as its saved text does",
        dump_reads_live_ipvs,
    )
    // Three fixtures, each compiled three times and dumped four times
    // (15-30 s under TCG).
    .timeout(240),
    Check::rust(
        "kpinspect compile: same bytes in the VM as on the host",
        compile_in_vm,
    )
    .prepare(compile_on_host),
    Check::shell(
        "kpinspect apply --mode ipvs: ipvsadm -Sn equals compile --format ipvsadm, then in sync; foreign virtual servers stay; trace --mode ipvs of the live node gives the compiled texts' outcomes",
        APPLY_IPVS,
    ),
    Check::shell(
        "kpinspect cleanup --mode ipvs: kube-proxy's virtual servers, kube-ipvs0, KUBE-* sets and chains go; a foreign virtual server stays",
        CLEANUP_IPVS,
    ),
    Check::shell(
        "kpinspect apply --mode ipvs sets IPVS mode's sysctls (dry run lists them); diff --mode ipvs exits 1 while one differs",
        SYSCTLS_IPVS,
    ),
    Check::shell(
        "kpinspect apply --mode ipvs clears stale UDP conntrack entries (--no-conntrack-cleanup keeps them)",
        CONNTRACK_IPVS,
    ),
    Check::shell(
        "kpinspect apply --mode ipvs --format json reports its conntrack clearing; cleanup --mode ipvs --format json what goes and stays",
        super::reports_ipvs::JSON_REPORTS,
    ),
    Check::shell(
        "kpinspect apply --mode ipvs --drain-timeout: a removed real server holding connections is deleted at the timeout",
        super::reports_ipvs::DRAIN_TIMEOUT,
    ),
    Check::rust(
        "kpinspect apply --mode ipvs, one endpoint changed: the writes (one netlink message each) and ipvsadm -Sn touch only that service's real servers",
        super::ipvs_change::one_endpoint_change,
    ),
    Check::rust(
        "kpinspect apply --mode ipvs converges: seeded random cluster changes, each step in sync, foreign state kept, equal to a fresh apply",
        super::converge_ipvs::converge_ipvs,
    )
    .prepare(super::converge_ipvs::prepare)
    // About 80 s by default; room for longer runs asked for on the host.
    .timeout(900),
    Check::rust(
        "kpinspect apply --mode ipvs, faults: kill -9 at seeded random points leaves each iptables table old or new and the foreign virtual server, set and rules byte-identical, and the next apply converges; read-only commands never write; apply of malformed input changes nothing",
        super::faults_ipvs::faults_ipvs,
    )
    .prepare(super::faults_ipvs::prepare)
    // About 90 s by default; room for KPINSPECT_IPVS_FAULT_RUNS=20.
    .timeout(600),
    Check::rust(
        "ipvs e2e: real TCP/UDP traffic through kpinspect apply --mode ipvs (round robin, masqueraded exactly where kube-proxy's rules say), then graceful termination with a live TCP connection (weight 0, no new connections, deleted once it ends; UDP at once); ipvsadm/ipset text equals fixtures/ipvs-save/e2e.*",
        super::ipvs_e2e::traffic_and_graceful_termination,
    )
    // A routed node of five namespaces, six servers, 30 connections, five
    // applies and IPVS's 10 s for a reset connection: 60-90 s under TCG.
    .timeout(300),
    Check::shell(
        "ipvs e2e: mode switch iptables -> IPVS -> iptables with cleanup --stale-only equals a fresh node of the new mode; others' rules, sets and virtual servers stay",
        super::ipvs_e2e::MODE_SWITCH,
    )
    // Two nodes, five applies, two cleanups, four full reads: about 60 s.
    .timeout(300),
    Check::shell(
        "mode switch IPVS -> nftables: cleanup --stale-only (nftables config) removes virtual servers, kube-ipvs0, ipsets and rules, keeps the kube-proxy table",
        super::nft_switch::IPVS_TO_NFTABLES,
    )
    .timeout(240),
    Check::shell(
        "mode switch nftables -> IPVS: cleanup --stale-only (IPVS config) deletes the kube-proxy table, IPVS stays in sync",
        super::nft_switch::NFTABLES_TO_IPVS,
    )
    .timeout(240),
    Check::shell(
        "nftables: a deleted Service's map elements and chains go in one transaction (kernel before 6.2)",
        super::nft_switch::STALE_CHAINS_ONE_TRANSACTION,
    )
    .timeout(240),
];

const CONNTRACK_IPVS: &str = r#"
modprobe ip_vs
modprobe nf_conntrack
cat > /tmp/cfg.yaml <<'YAML'
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
hostnameOverride: test-node
YAML
cat > /tmp/dns.yaml <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: ns1}
spec:
  clusterIP: 10.96.0.53
  clusterIPs: [10.96.0.53]
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 53}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: ns1
  labels: {kubernetes.io/service-name: dns}
addressType: IPv4
endpoints: [{addresses: [10.244.0.11]}]
ports: [{name: dns, port: 53, protocol: UDP}]
YAML
kp() { "$KPINSPECT" "$1" --config /tmp/cfg.yaml --node-ip 192.168.0.10 --family ipv4 --no-random-fully "${@:2}" /tmp/dns.yaml; }
entry() {
  conntrack -I -p udp -s 10.0.0.1 -d 10.96.0.53 --sport "$1" --dport 53 \
    -r "$2" -q 10.0.0.1 --reply-port-src 53 --reply-port-dst "$1" -t 120
}
entry 40001 10.244.0.11
entry 40002 10.244.0.99
kp apply --force --no-conntrack-cleanup
conntrack -L -p udp 2>/dev/null | grep -q 'src=10.244.0.99'
out=$(kp apply --force --dry-run 2>&1)
echo "$out"
grep -q 'would delete 1 stale UDP conntrack entry' <<<"$out"
out=$(kp apply --force 2>&1)
echo "$out"
grep -q 'deleted 1 stale UDP conntrack entry' <<<"$out"
left=$(conntrack -L -p udp 2>/dev/null)
echo "$left"
grep -q 'src=10.244.0.11' <<<"$left"
if grep -q 'src=10.244.0.99' <<<"$left"; then exit 1; fi
"#;

const SYSCTLS_IPVS: &str = r#"
modprobe ip_vs
fx=fixtures/ipvs/node_port_ipv4_two_endpoints
mapfile -t args < "$fx/args"
kp() { "$KPINSPECT" "$1" --config "$fx/config.yaml" "${args[@]}" "${@:2}" "$fx/cluster.yaml"; }
sysctl -w net.ipv4.vs.conntrack=0
sysctl -w net.ipv4.vs.expire_nodest_conn=0
dry=$(kp apply --force --dry-run)
grep -qx 'sysctl -w net.ipv4.vs.conntrack=1' <<<"$dry"
grep -qx 'sysctl -w net.ipv4.vs.expire_nodest_conn=1' <<<"$dry"
[ "$(sysctl -n net.ipv4.vs.conntrack)" = 0 ]
set +e
d=$(kp diff); rc=$?
set -e
echo "$d"
[ "$rc" = 1 ]
grep -q '^sysctl differs: net/ipv4/vs/conntrack: want 1, have 0$' <<<"$d"
out=$(kp apply --force 2>&1)
echo "$out"
grep -q 'sysctl set: net/ipv4/vs/conntrack: want 1, have 0' <<<"$out"
[ "$(sysctl -n net.ipv4.vs.conntrack)" = 1 ]
[ "$(sysctl -n net.ipv4.vs.expire_nodest_conn)" = 1 ]
kp diff
again=$(kp apply --force 2>&1)
if grep -q 'sysctl set' <<<"$again"; then echo "$again"; exit 1; fi
"#;

const CLEANUP_IPVS: &str = r#"
modprobe ip_vs
fx=fixtures/ipvs/edge_mode_switch_node
mapfile -t args < "$fx/args"
kp() { "$KPINSPECT" "$1" --config "$fx/config.yaml" "${args[@]}" "${@:2}" "$fx/cluster.yaml"; }
# The fixture's node IP is the node's: node ports are served on it.
ip link add eth9 type dummy
ip addr add 192.168.0.10/32 dev eth9
kp apply --force
# In sync, the -m ipvs rule too (saved as --vproto 6).
kp diff
ipvsadm -A -t 192.0.2.1:443 -s wrr
ipvsadm -Sn | grep -q -- '-A -t 192\.168\.0\.10:30080 '
dry=$("$KPINSPECT" cleanup --mode ipvs --dry-run --verbose 2>&1)
echo "$dry"
grep -q '^ipvsadm -D -t 192\.168\.0\.10:30080$' <<<"$dry"
grep -q '^ip link del kube-ipvs0$' <<<"$dry"
grep -q '^kept virtual server 192\.0\.2\.1:443/TCP' <<<"$dry"
ip link show kube-ipvs0
out=$("$KPINSPECT" cleanup --mode ipvs --force --verbose)
echo "$out"
grep -q '^removed link kube-ipvs0$' <<<"$out"
grep -q '^removed ipset KUBE-' <<<"$out"
grep -q '^removed chain nat KUBE-SERVICES$' <<<"$out"
left=$(ipvsadm -Sn)
echo "$left"
[ "$left" = "-A -t 192.0.2.1:443 -s wrr" ]
if ip link show kube-ipvs0 2>/dev/null; then echo "kube-ipvs0 is still there"; exit 1; fi
if ipset list -n | grep -q '^KUBE-'; then ipset list -n; exit 1; fi
for backend in nft legacy; do
  if iptables-$backend-save | grep -q 'KUBE-'; then iptables-$backend-save; exit 1; fi
done
again=$("$KPINSPECT" cleanup --mode ipvs --force)
echo "$again"
grep -q '^kept virtual server 192\.0\.2\.1:443/TCP' <<<"$again"
"#;

const APPLY_IPVS: &str = r#"
modprobe ip_vs
fx=fixtures/ipvs/node_port_ipv4_two_endpoints
mapfile -t args < "$fx/args"
kp() { "$KPINSPECT" "$1" --config "$fx/config.yaml" "${args[@]}" "${@:2}" "$fx/cluster.yaml"; }
ipvsadm -A -t 192.0.2.1:443 -s wrr
kp compile --format ipvsadm > /tmp/compiled
kp apply --force
ipvsadm -Sn | grep -v ' 192\.0\.2\.1:443 ' | sort > /tmp/got
sort /tmp/compiled > /tmp/want
diff -u /tmp/want /tmp/got
ipvsadm -Sn | grep -q -- '^-A -t 192\.0\.2\.1:443 -s wrr'
ip -o addr show dev kube-ipvs0
ipset list KUBE-NODE-PORT-TCP
again=$(kp apply --force 2>&1)
echo "$again"
grep -q 'IPVS mode in sync, nothing written' <<<"$again"
kp diff
# trace --mode ipvs on the live node (iptables, IPVS over netlink, ipset
# save, kube-ipvs0's addresses) gives the outcomes it gives over the
# compiled texts.
for f in restore ipset; do kp compile --format "$f" > "/tmp/$f"; done
outcomes() { sed -n '/^outcomes:$/,/^$/p'; }
live=$("$KPINSPECT" trace --mode ipvs --src 10.0.0.5 --dst 10.20.30.41:80/tcp)
echo "$live"
files=$("$KPINSPECT" trace --mode ipvs --iptables-save /tmp/restore --ipset /tmp/ipset \
  --ipvsadm /tmp/compiled --src 10.0.0.5 --dst 10.20.30.41:80/tcp)
grep -q '^  1\. IPVS 10\.20\.30\.41:80/TCP -> 10\.180\.0\.1:80  (probability 1, rr, weight 1' <<<"$live"
outcomes <<<"$files" > /tmp/files.outcomes
outcomes <<<"$live" > /tmp/live.outcomes
diff -u /tmp/files.outcomes /tmp/live.outcomes
"#;

const IPVS: &str = r#"
modprobe ip_vs
listed=$(ipvsadm -Ln)
echo "$listed"
grep -Eq '^IP Virtual Server version [0-9.]+ \(size=[0-9]+\)$' <<<"$listed"
ipvsadm -A -t 10.96.0.10:80 -s rr
ipvsadm -a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m
ipvsadm -A -u 10.96.0.10:53 -s rr
listed=$(ipvsadm -Ln)
echo "$listed"
grep -Eq '^TCP  10\.96\.0\.10:80 rr *$' <<<"$listed"
grep -Eq '^  -> 10\.244\.0\.11:8080 +Masq +1 ' <<<"$listed"
grep -Eq '^UDP  10\.96\.0\.10:53 rr *$' <<<"$listed"
"#;

const KUBE_IPVS0: &str = r#"
ip link add kube-ipvs0 type dummy
ip addr add 10.96.0.10/32 dev kube-ipvs0
ip addr add 10.96.0.11/32 dev kube-ipvs0
ip addr add fd00:96::10/128 dev kube-ipvs0
ip -d link show kube-ipvs0
addrs=$(ip -o addr show dev kube-ipvs0)
echo "$addrs"
grep -q ' inet 10\.96\.0\.10/32 ' <<<"$addrs"
grep -q ' inet 10\.96\.0\.11/32 ' <<<"$addrs"
grep -q ' inet6 fd00:96::10/128 ' <<<"$addrs"
# kube-proxy leaves the link down; its addresses are still local.
routes=$(ip route show table local dev kube-ipvs0)
echo "$routes"
grep -q '^local 10\.96\.0\.10 ' <<<"$routes"
ip addr del 10.96.0.11/32 dev kube-ipvs0
if ip -o addr show dev kube-ipvs0 | grep -q '10\.96\.0\.11/'; then
  echo "10.96.0.11 is still on kube-ipvs0"; exit 1
fi
"#;

const IPSET: &str = r#"
ipset create KUBE-CLUSTER-IP hash:ip,port
ipset add KUBE-CLUSTER-IP 10.96.0.10,tcp:80
ipset test KUBE-CLUSTER-IP 10.96.0.10,tcp:80
if ipset test KUBE-CLUSTER-IP 10.96.0.10,tcp:81 2>/dev/null; then
  echo "10.96.0.10,tcp:81 is not in the set"; exit 1
fi
listed=$(ipset list KUBE-CLUSTER-IP)
echo "$listed"
grep -q '^Number of entries: 1$' <<<"$listed"
for backend in nft legacy; do
  iptables-$backend -t nat -N KUBE-SERVICES
  iptables-$backend -t nat -A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
  rules=$(iptables-$backend -t nat -S KUBE-SERVICES)
  echo "$rules"
  grep -q -- '-m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT' <<<"$rules"
done
"#;

/// The README's example command.
const COMPILE: [&str; 4] = [
    "compile",
    "--config",
    "examples/kube-proxy-config.yaml",
    "examples/cluster.yaml",
];

fn compile() -> Vec<u8> {
    let out = kpinspect().args(COMPILE).output().expect("run kpinspect");
    assert!(
        out.status.success(),
        "kpinspect compile failed: {}",
        stderr(&out)
    );
    out.stdout
}

fn compile_on_host(dir: &Path) {
    fs::write(dir.join("host.out"), compile()).expect("write host.out");
}

fn compile_in_vm(dir: &Path) {
    let host = fs::read(dir.join("host.out")).expect("host.out");
    let vm = compile();
    assert!(!vm.is_empty());
    if vm != host {
        let at = vm.iter().zip(&host).take_while(|(a, b)| a == b).count();
        panic!(
            "kpinspect compile differs in the VM from the host at byte {at} ({} vs {} bytes)",
            vm.len(),
            host.len()
        );
    }
}

/// kube-proxy's link (the shell check above owns the name `KUBE_IPVS0`).
const LINK: &str = kpinspect_node::KUBE_IPVS0;

/// Runs `program args`, which must succeed, and returns its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// `ip -o addr show dev kube-ipvs0`.
fn ip_addr_show() -> String {
    run("ip", &["-o", "addr", "show", "dev", LINK])
}

fn kube_ipvs0_over_rtnetlink(_: &Path) {
    let links = SystemLinks;
    assert_eq!(links.link(LINK), Ok(None));
    assert_eq!(
        links.addresses(LINK),
        Err(LinkError::NoSuchLink { name: LINK.into() })
    );
    assert_eq!(links.ensure_dummy(LINK), Ok(LinkEnsured::Created));
    assert_eq!(links.ensure_dummy(LINK), Ok(LinkEnsured::Existed));
    let shown = run("ip", &["-d", "link", "show", LINK]);
    println!("{shown}");
    assert!(shown.contains("\n    dummy "), "not a dummy link: {shown}");
    assert!(
        shown.contains(" state DOWN "),
        "kube-proxy leaves it down: {shown}"
    );
    let link = links.link(LINK).expect("link").expect("exists");
    assert_eq!(link.kind.as_deref(), Some("dummy"));
    assert!(!link.up);

    for a in ["10.96.0.10", "fd00:96::10", "10.96.0.11"] {
        assert_eq!(
            links.add_address(LINK, ip(a)),
            Ok(AddressAdded::Added),
            "{a}"
        );
    }
    assert_eq!(
        links.add_address(LINK, ip("10.96.0.10")),
        Ok(AddressAdded::AlreadyBound)
    );
    assert_eq!(
        links.addresses(LINK).expect("addresses"),
        [ip("10.96.0.10"), ip("10.96.0.11"), ip("fd00:96::10")]
    );
    let shown = ip_addr_show();
    println!("{shown}");
    for needle in [
        " inet 10.96.0.10/32 ",
        " inet 10.96.0.11/32 ",
        " inet6 fd00:96::10/128 ",
    ] {
        assert!(shown.contains(needle), "{needle:?} not in {shown}");
    }
    // The address is local (the local table routes it) though the link is down.
    let local = run("ip", &["route", "show", "table", "local", "dev", LINK]);
    assert!(local.contains("local 10.96.0.10 "), "{local}");

    assert_eq!(links.del_address(LINK, ip("10.96.0.10")), Ok(true));
    assert_eq!(links.del_address(LINK, ip("10.96.0.10")), Ok(false));
    assert_eq!(links.del_address(LINK, ip("fd00:96::10")), Ok(true));
    assert_eq!(links.del_address(LINK, ip("fd00:96::10")), Ok(false));
    let shown = ip_addr_show();
    assert!(
        !shown.contains("10.96.0.10/") && !shown.contains("fd00:96::10/"),
        "{shown}"
    );
    assert_eq!(links.addresses(LINK), Ok(vec![ip("10.96.0.11")]));

    // A link of that name of another kind is not taken for kube-ipvs0.
    run(
        "ip",
        &[
            "link",
            "add",
            "kpn-veth0",
            "type",
            "veth",
            "peer",
            "name",
            "kpn-veth1",
        ],
    );
    assert_eq!(
        links.ensure_dummy("kpn-veth0"),
        Err(LinkError::NotDummy {
            name: "kpn-veth0".into(),
            kind: Some("veth".into())
        })
    );
    assert_eq!(links.delete_link(LINK), Ok(()));
    assert_eq!(links.link(LINK), Ok(None));
    assert!(!run("ip", &["-o", "link"]).contains(LINK));
}

fn kube_ipvs0_planner_converges(_: &Path) {
    let links = SystemLinks;
    let both = [IpFamily::V4, IpFamily::V6];
    // Left over from before: an address of each family, and an IPv6
    // link-local one, which kube-proxy never reads nor unbinds.
    links.ensure_dummy(LINK).expect("ensure");
    links.add_address(LINK, ip("10.96.9.9")).expect("add");
    links.add_address(LINK, ip("fd00:96::99")).expect("add");
    run("ip", &["addr", "add", "fe80::1/64", "dev", LINK]);

    let first = [ip("10.96.0.1"), ip("10.96.0.10"), ip("fd00:96::1")];
    let done = sync_addresses(&links, LINK, &first, &both).expect("sync");
    assert_eq!(done.add, first);
    assert_eq!(done.delete, [ip("10.96.9.9"), ip("fd00:96::99")]);
    let current = links.addresses(LINK).expect("addresses");
    assert!(
        plan_addresses(&first, &current, &both).is_empty(),
        "{current:?}"
    );
    assert!(
        current.contains(&ip("fe80::1")),
        "link-local kept: {current:?}"
    );

    // A Service went away, another came: one unbind, one bind.
    let second = [ip("10.96.0.1"), ip("10.96.0.20"), ip("fd00:96::1")];
    let done = sync_addresses(&links, LINK, &second, &[IpFamily::V4]).expect("sync");
    assert_eq!(done.add, [ip("10.96.0.20")]);
    assert_eq!(done.delete, [ip("10.96.0.10")]);
    assert!(
        sync_addresses(&links, LINK, &second, &both)
            .expect("sync")
            .is_empty()
    );
    let shown = ip_addr_show();
    println!("{shown}");
    assert!(shown.contains(" inet 10.96.0.20/32 ") && !shown.contains("10.96.0.10/"));
}

fn ipvs_sysctls_set_and_read_back(_: &Path) {
    run("modprobe", &["ip_vs"]);
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let kernel = KernelVersion::parse(&release).expect("kernel version");
    let sysctls = SystemSysctls::new();
    let strict = IpvsConfig {
        strict_arp: true,
        ..IpvsConfig::default()
    };
    let want = ipvs_sysctls(&strict, kernel);
    let before = diff_sysctls(&sysctls, &want).expect("diff");
    println!("kernel {release}before: {before:?}");
    ensure_sysctls(&sysctls, &want).expect("ensure");
    let after = diff_sysctls(&sysctls, &want).expect("diff");
    assert!(
        after
            .iter()
            .all(|d| d.policy == SysctlPolicy::CheckIfPresent),
        "still differ: {after:?}"
    );
    for (name, value) in [
        ("net.ipv4.vs.conntrack", "1"),
        ("net.ipv4.vs.expire_nodest_conn", "1"),
        ("net.ipv4.vs.expire_quiescent_template", "1"),
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
    ] {
        assert_eq!(run("sysctl", &["-n", name]).trim(), value, "{name}");
    }
    // On a kernel before 5.9, conn_reuse_mode is set to 0 as well.
    let old = ipvs_sysctls(&strict, KernelVersion::new(5, 4, 0));
    ensure_sysctls(&sysctls, &old).expect("ensure");
    assert_eq!(
        run("sysctl", &["-n", "net.ipv4.vs.conn_reuse_mode"]).trim(),
        "0"
    );
    assert_eq!(
        sysctls.read_sysctl("net/ipv4/vs/conn_reuse_mode"),
        Ok(Some("0".into()))
    );
    // Only the checked bridge sysctl may still differ (br_netfilter loaded
    // with it off).
    let left = diff_sysctls(&sysctls, &old).expect("diff");
    assert!(
        left.iter()
            .all(|d| d.policy == SysctlPolicy::CheckIfPresent),
        "{left:?}"
    );
}

fn kube_ipvs0_takes_compiled_addresses(_: &Path) {
    let fx = Fixture {
        name: "edge_dual_stack".into(),
        dir: root().join("fixtures/ipvs/edge_dual_stack"),
    };
    let out = kpinspect()
        .arg("compile")
        .arg("--config")
        .arg(fx.path("config.yaml"))
        .args(fx.args())
        .args(["--format", "addresses"])
        .arg(fx.path("cluster.yaml"))
        .output()
        .expect("run kpinspect");
    assert!(out.status.success(), "compile: {}", stderr(&out));
    let compiled: Vec<IpAddr> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (addr, prefix) = l.split_once('/').expect("ADDRESS/PREFIX");
            assert!(prefix == "32" || prefix == "128", "{l}");
            ip(addr)
        })
        .collect();
    assert_eq!(compiled.len(), 2, "one address per family: {compiled:?}");

    let links = SystemLinks;
    let both = [IpFamily::V4, IpFamily::V6];
    let done = sync_addresses(&links, LINK, &compiled, &both).expect("sync");
    assert_eq!(done.add, compiled);
    let mut bound = links.addresses(LINK).expect("addresses");
    bound.sort();
    let mut want = compiled.clone();
    want.sort();
    assert_eq!(bound, want);
    let shown = ip_addr_show();
    println!("{shown}");
    assert_eq!(shown.lines().count(), compiled.len(), "{shown}");
    for a in &compiled {
        let prefix = if a.is_ipv4() { 32 } else { 128 };
        assert!(
            shown.contains(&format!(" {a}/{prefix} ")),
            "{a} not in {shown}"
        );
    }
    assert!(
        sync_addresses(&links, LINK, &compiled, &both)
            .expect("sync")
            .is_empty()
    );
}

/// `ipvsadm -Sn`'s lines, sorted (services come in hash order).
fn ipvsadm_save() -> Vec<String> {
    let mut lines: Vec<String> = run("ipvsadm", &["-Sn"]).lines().map(String::from).collect();
    lines.sort();
    lines
}

fn sorted(lines: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn ipvs_client(_: &Path) {
    run("modprobe", &["ip_vs"]);
    let ipvs = SystemIpvs;
    let tcp4 = Service::tcp("10.96.0.10:80".parse().unwrap()).scheduler("rr");
    let tcp6 = Service::tcp("[fd00:96::10]:443".parse().unwrap()).scheduler("rr");
    let udp4 = Service::udp("10.96.0.10:53".parse().unwrap()).scheduler("rr");
    let fwm = Service::fwmark(AF_INET, 42).scheduler("lc");
    assert_eq!(ipvs.services().expect("list"), []);
    for s in [&tcp4, &tcp6, &udp4, &fwm] {
        ipvs.new_service(s).unwrap_or_else(|e| panic!("{e}"));
    }
    let e = ipvs.new_service(&tcp4).unwrap_err();
    assert!(matches!(e, IpvsError::Exists { .. }), "{e}");
    let masq = |a: &str| Destination::new(a.parse().unwrap(), ForwardingMethod::Masquerade, 1);
    let (d11, d12, d6) = (
        masq("10.244.0.11:8080"),
        masq("10.244.0.12:8080"),
        masq("[fd00:244::11]:8443"),
    );
    ipvs.new_destination(&tcp4, &d11).expect("add d11");
    ipvs.new_destination(&tcp4, &d12).expect("add d12");
    ipvs.new_destination(&tcp6, &d6).expect("add d6");
    let e = ipvs.new_destination(&tcp4, &d11).unwrap_err();
    assert_eq!(
        e.to_string(),
        "IPVS destination 10.244.0.11:8080 of TCP 10.96.0.10:80 exists already"
    );
    ipvs.set_destination(
        &tcp4,
        &Destination {
            weight: Some(3),
            ..d11.clone()
        },
    )
    .expect("set d11");
    let persistent = Service {
        flags: Some(ServiceFlags {
            flags: ServiceFlags::PERSISTENT,
            mask: !0,
        }),
        timeout: Some(300),
        ..tcp4.clone().scheduler("wrr")
    };
    ipvs.set_service(&persistent).expect("set tcp4");

    let services = ipvs.services().expect("list");
    assert_eq!(services.len(), 4, "{services:?}");
    let listed = services
        .iter()
        .find(|s| s.key() == tcp4.key())
        .expect("tcp4 listed");
    assert_eq!(listed.scheduler.as_deref(), Some("wrr"));
    assert!(listed.flags.unwrap().has(ServiceFlags::PERSISTENT));
    assert_eq!(listed.timeout, Some(300));
    assert!(listed.stats.is_some() && listed.stats64.is_some());
    assert!(services.iter().any(|s| s.key() == tcp6.key()));
    assert!(services.iter().any(|s| s.fwmark == Some(42)));
    let mut weights: Vec<_> = ipvs
        .destinations(&tcp4)
        .expect("dests")
        .iter()
        .map(|d| {
            (
                d.address.unwrap().to_string(),
                d.port,
                d.weight,
                d.forwarding,
            )
        })
        .collect();
    weights.sort();
    assert_eq!(
        weights,
        [
            (
                "10.244.0.11".into(),
                Some(8080),
                Some(3),
                Some(ForwardingMethod::Masquerade)
            ),
            (
                "10.244.0.12".into(),
                Some(8080),
                Some(1),
                Some(ForwardingMethod::Masquerade)
            ),
        ]
    );
    let v6 = ipvs.destinations(&tcp6).expect("dests v6");
    assert_eq!(v6.len(), 1);
    assert_eq!(v6[0].address, d6.address);
    assert_eq!(v6[0].family, Some(kpinspect_node::kpinspect_ipvs::AF_INET6));
    assert_eq!(
        ipvsadm_save(),
        sorted(&[
            "-A -t 10.96.0.10:80 -s wrr -p 300",
            "-a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 3",
            "-a -t 10.96.0.10:80 -r 10.244.0.12:8080 -m -w 1",
            "-A -t [fd00:96::10]:443 -s rr",
            "-a -t [fd00:96::10]:443 -r [fd00:244::11]:8443 -m -w 1",
            "-A -u 10.96.0.10:53 -s rr",
            "-A -f 42 -s lc",
        ])
    );

    ipvs.set_timeouts(Timeouts {
        tcp: Some(600),
        tcp_fin: None,
        udp: Some(200),
    })
    .expect("set timeouts");
    let t = ipvs.timeouts().expect("timeouts");
    assert_eq!((t.tcp, t.udp), (Some(600), Some(200)));
    assert!(run("ipvsadm", &["-Ln", "--timeout"]).contains(&format!(
        "Timeout (tcp tcpfin udp): 600 {} 200",
        t.tcp_fin.unwrap()
    )));

    ipvs.del_destination(&tcp4, &d12).expect("del d12");
    let e = ipvs.del_destination(&tcp4, &d12).unwrap_err();
    assert!(matches!(e, IpvsError::NoDestination { .. }), "{e}");
    ipvs.del_service(&tcp6).expect("del tcp6");
    let e = ipvs.del_service(&tcp6).unwrap_err();
    assert_eq!(
        e.to_string(),
        "IPVS service TCP [fd00:96::10]:443 does not exist"
    );
    // The kernel's dump does not tell a missing service from an empty one.
    assert_eq!(ipvs.destinations(&tcp6).expect("dests of none"), []);
    assert_eq!(
        ipvsadm_save(),
        sorted(&[
            "-A -t 10.96.0.10:80 -s wrr -p 300",
            "-a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 3",
            "-A -u 10.96.0.10:53 -s rr",
            "-A -f 42 -s lc",
        ])
    );
    for s in [&tcp4, &udp4, &fwm] {
        ipvs.del_service(s).expect("del");
    }
    assert_eq!(ipvs.services().expect("list"), []);
    assert_eq!(ipvsadm_save(), Vec::<String>::new());
}

fn ipvs_not_loaded(_: &Path) {
    let module = Path::new("/sys/module/ip_vs");
    if module.exists() {
        println!("ip_vs is loaded already (built in, or by an earlier check): nothing to show");
        return;
    }
    // The controller asks for the module by the family's alias
    // (net-pf-16-proto-16-family-IPVS): no modprobe needed, and
    // IpvsError::NotAvailable only where IPVS is not built.
    assert_eq!(SystemIpvs.services().expect("services"), []);
    assert!(module.exists(), "the lookup did not load ip_vs");
}

/// `kpinspect compile --mode ipvs --format FORMAT` of fixture `fx`.
fn compile_fixture(fx: &Fixture, format: &str) -> String {
    let out = kpinspect()
        .arg("compile")
        .arg("--config")
        .arg(fx.path("config.yaml"))
        .args(fx.args())
        .args(["--mode", "ipvs", "--format", format])
        .arg(fx.path("cluster.yaml"))
        .output()
        .expect("run kpinspect");
    assert!(
        out.status.success(),
        "{}: compile: {}",
        fx.name,
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program args` with `input` on its stdin, which must succeed.
fn run_with_input(program: &str, args: &[&str], input: &str) {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        stderr(&out)
    );
}

/// `kpinspect dump --format json --cluster --config` of `fx` (with `extra`
/// arguments), its `services`.
fn dump_services(fx: &Fixture, extra: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = kpinspect()
        .arg("dump")
        .args(extra)
        .arg("--cluster")
        .arg(fx.path("cluster.yaml"))
        .arg("--config")
        .arg(fx.path("config.yaml"))
        .args(fx.args())
        .args(["--format", "json"])
        .output()
        .expect("run kpinspect");
    assert!(out.status.success(), "{}: dump: {}", fx.name, stderr(&out));
    let d: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{}: json: {e}", fx.name));
    println!(
        "{}: sources {}, anomalies {}",
        fx.name, d["sources"], d["anomalies"]
    );
    d["services"].clone()
}

/// The services in a canonical order, their virtual servers (`chains`)
/// and endpoints too: the live read sorts services and real servers
/// numerically, `ipvsadm` by libipvs's signed address differences (which
/// wrap for addresses more than 2^31 apart: 192.168.0.2 before 10.96.0.10),
/// and the dump keeps the order it reads.
fn canonical(mut services: serde_json::Value) -> serde_json::Value {
    fn sort(v: Option<&mut serde_json::Value>) {
        if let Some(a) = v.and_then(|v| v.as_array_mut()) {
            a.sort_by_key(|x| x.to_string());
        }
    }
    for s in services.as_array_mut().expect("services") {
        for list in ["chains", "endpoints", "external_endpoints"] {
            sort(s.get_mut(list));
        }
    }
    sort(Some(&mut services));
    services
}

/// The services without the real servers' connection counts (which the
/// rules form does not carry).
fn without_connections(mut services: serde_json::Value) -> serde_json::Value {
    for s in services.as_array_mut().expect("services") {
        for list in ["endpoints", "external_endpoints"] {
            if let Some(es) = s.get_mut(list).and_then(|v| v.as_array_mut()) {
                for e in es {
                    if let Some(e) = e.as_object_mut() {
                        e.remove("active_connections");
                        e.remove("inactive_connections");
                    }
                }
            }
        }
    }
    services
}

fn dump_reads_live_ipvs(dir: &Path) {
    let _ = Command::new("modprobe").arg("ip_vs").status();
    for name in [
        "session_affinity",
        "edge_dual_stack",
        "ipv4_proxier_two_services",
    ] {
        let fx = Fixture {
            name: name.into(),
            dir: root().join("fixtures/ipvs").join(name),
        };
        run("ipvsadm", &["-C"]);
        run("ipset", &["destroy"]);
        let ipvsadm = compile_fixture(&fx, "ipvsadm");
        let ipset = compile_fixture(&fx, "ipset");
        let compiled: serde_json::Value =
            serde_json::from_str(&compile_fixture(&fx, "json")).expect("compile json");
        run_with_input("ipvsadm", &["-R"], &ipvsadm);
        run_with_input("ipset", &["restore"], &ipset);

        let live = dump_services(&fx, &[]);
        let files: Vec<(std::path::PathBuf, String)> = [
            ("ipvsadm-Ln", run("ipvsadm", &["-Ln"])),
            ("ipvsadm-Sn", run("ipvsadm", &["-Sn"])),
            ("ipset-save", run("ipset", &["save"])),
        ]
        .into_iter()
        .map(|(f, text)| (dir.join(format!("{name}.{f}")), text))
        .collect();
        for (path, text) in &files {
            fs::write(path, text).expect("write");
        }
        let from = |ipvsadm: usize| {
            dump_services(
                &fx,
                &[
                    "--ipvsadm".as_ref(),
                    files[ipvsadm].0.as_os_str(),
                    "--ipset".as_ref(),
                    files[2].0.as_os_str(),
                ],
            )
        };
        // The listing carries the connection counts too (all 0 here).
        assert_eq!(
            canonical(live.clone()),
            canonical(from(0)),
            "{name}: live vs ipvsadm -Ln"
        );
        assert_eq!(
            canonical(without_connections(live.clone())),
            canonical(from(1)),
            "{name}: live vs ipvsadm -Sn"
        );

        // Every compiled virtual server is in its service port's entry; the
        // cluster IP's real servers are its endpoints, with shares.
        let services = live.as_array().expect("services");
        assert!(!services.is_empty(), "{name}: no service read live");
        for family in compiled.as_array().expect("families") {
            for vs in family["virtual_servers"].as_array().expect("servers") {
                let ctx = format!("{name}: {vs}");
                let found = crate::ipvs_dump::service_port_of(services, vs, &family["family"])
                    .unwrap_or_else(|| panic!("{ctx}: no service port in {services:#?}"));
                assert_eq!(found["scheduler"], vs["scheduler"], "{ctx}");
                if vs["kind"] != "cluster_ip" {
                    continue;
                }
                let reals = vs["real_servers"].as_array().expect("real servers");
                let endpoints = found["endpoints"].as_array().expect("endpoints");
                let got: Vec<(&serde_json::Value, &serde_json::Value)> =
                    endpoints.iter().map(|e| (&e["ip"], &e["port"])).collect();
                let want: Vec<(&serde_json::Value, &serde_json::Value)> =
                    reals.iter().map(|r| (&r["address"], &r["port"])).collect();
                assert_eq!(got, want, "{ctx}");
                for e in endpoints {
                    assert_eq!(e["weight"], 1, "{ctx}");
                    assert_eq!(e["active_connections"], 0, "{ctx}");
                    if vs["scheduler"] == "rr" {
                        let p = e["probability"].as_f64().expect("rr has shares");
                        assert!((p - 1.0 / reals.len() as f64).abs() < 1e-6, "{ctx}: {e}");
                    }
                }
            }
        }
        // The table names what it read and shows the virtual servers.
        let out = kpinspect()
            .arg("dump")
            .arg("--cluster")
            .arg(fx.path("cluster.yaml"))
            .arg("--config")
            .arg(fx.path("config.yaml"))
            .args(fx.args())
            .output()
            .expect("run kpinspect");
        assert!(out.status.success(), "{name}: dump: {}", stderr(&out));
        let table = String::from_utf8_lossy(&out.stdout);
        for want in [
            "source      IPVS (netlink)",
            "source      ipset save",
            "virtual servers",
        ] {
            assert!(table.contains(want), "{name}: no {want:?} in\n{table}");
        }
        println!("{name}: {} service ports", services.len());
    }
    run("ipvsadm", &["-C"]);
    run("ipset", &["destroy"]);
}
