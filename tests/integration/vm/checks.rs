//! The checks the VM runs (see the module above for how they run). To add
//! one, append a [`Check`] to [`CHECKS`]: a bash snippet
//! (`Check::shell(name, script)`) or a function of this test binary
//! (`Check::rust(name, f)`), optionally with `.prepare(g)` run on the host
//! before the boot and `.timeout(seconds)`. Each runs in its own network
//! namespace as root, from the repository root (read-only: write under
//! `/tmp` or `$KPINSPECT_VM_CHECK_DIR`).

use std::fs;
use std::path::Path;

use super::Check;
use crate::util::{kpinspect, stderr};

/// Every check, in the order they run.
pub static CHECKS: &[Check] = &[
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
