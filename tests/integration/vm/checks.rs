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

use super::Check;
use crate::util::{Fixture, kpinspect, root, stderr};

/// Every check, in the order they run.
pub static CHECKS: &[Check] = &[
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
        "kpinspect compile: same bytes in the VM as on the host",
        compile_in_vm,
    )
    .prepare(compile_on_host),
];

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
