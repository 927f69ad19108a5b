//! The checks the VM runs (see the module above for how they run). To add
//! one, append a [`Check`] to [`CHECKS`]: a bash snippet
//! (`Check::shell(name, script)`) or a function of this test binary
//! (`Check::rust(name, f)`), optionally with `.prepare(g)` run on the host
//! before the boot and `.timeout(seconds)`. Each runs in its own network
//! namespace as root, from the repository root (read-only: write under
//! `/tmp` or `$KPINSPECT_VM_CHECK_DIR`).

use std::fs;
use std::path::Path;

use kpinspect_node::kpinspect_ipvs::{
    AF_INET, Destination, ForwardingMethod, Service, ServiceFlags, Timeouts,
};
use kpinspect_node::{Ipvs, IpvsError, SystemIpvs};

use super::Check;
use crate::util::{kpinspect, stderr};

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
    Check::shell(
        "ipset: kube-proxy's hash:ip,port set, matched by iptables",
        IPSET,
    ),
    Check::rust(
        "ipvs client: SystemIpvs creates, lists, changes and deletes IPv4/IPv6 services and destinations (ipvsadm -Sn agrees)",
        ipvs_client,
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

fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        stderr(&out)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
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
