//! VM checks of switching a node between IPVS and nftables modes (IPVS
//! needs the VM's kernel): after `cleanup --stale-only` with the new
//! mode's configuration the node holds only the new mode's state, as
//! kube-proxy's own start-up cleanup leaves it.

/// Shared set-up: the fixture, `kp VERB [ARGS]`, the node IP on an
/// interface (what proves a node-port virtual server kube-proxy's), and an
/// nftables-mode configuration.
macro_rules! setup {
    () => {
        r#"
modprobe ip_vs
fx=fixtures/ipvs/node_port_ipv4_two_endpoints
mapfile -t args < "$fx/args"
kp() { "$KPINSPECT" "$1" --config "$fx/config.yaml" "${args[@]}" "${@:2}" "$fx/cluster.yaml"; }
ip link add eth0 type dummy
ip addr add 100.101.102.103/24 dev eth0
ip link set eth0 up
nftcfg=/tmp/nft-switch-config.yaml
sed 's/^mode: .*/mode: nftables/' "$fx/config.yaml" > "$nftcfg"
grep -q '^mode: nftables$' "$nftcfg"
kube_iptables() { iptables-save | grep -E '^(:|-A )KUBE-(SERVICES|NODE-PORT|POSTROUTING|MARK|LOAD-BALANCER|SVC|SEP)' || true; }
"#
    };
}

/// IPVS → nftables.
pub const IPVS_TO_NFTABLES: &str = concat!(
    setup!(),
    r#"
kp apply --force
test -n "$(ipvsadm -Sn)"
ip link show kube-ipvs0
test -n "$(kube_iptables)"
kp apply --force --mode nftables
dry=$("$KPINSPECT" cleanup --stale-only --config "$nftcfg" --family ipv4 --dry-run --verbose 2>&1)
echo "$dry"
grep -q '^ipvsadm -D ' <<<"$dry"
if grep -q 'delete table' <<<"$dry"; then echo "nftables mode keeps its tables"; exit 1; fi
# kube-proxy's fixture uses node port 3001, outside the node-port range:
# not provably kube-proxy's, so kept and said so (kube-proxy would flush
# every virtual server).
grep -q '^kept virtual server 100\.101\.102\.103:3001/TCP' <<<"$dry"
"$KPINSPECT" cleanup --stale-only --config "$nftcfg" --family ipv4 --force
left=$(ipvsadm -Sn | grep '^-A' | grep -v -- '-t 100\.101\.102\.103:3001 ' || true)
if [ -n "$left" ]; then echo "virtual servers left: $left"; exit 1; fi
if ip link show kube-ipvs0 2>/dev/null; then echo "kube-ipvs0 left"; exit 1; fi
if ipset list -n | grep -q '^KUBE-'; then ipset list -n; exit 1; fi
if [ -n "$(kube_iptables)" ]; then kube_iptables; exit 1; fi
table=$(nft list table ip kube-proxy)
grep -q 'chain services' <<<"$table"
kp diff --mode nftables
"#
);

/// nftables → IPVS.
pub const NFTABLES_TO_IPVS: &str = concat!(
    setup!(),
    r#"
kp apply --force --mode nftables
nft list table ip kube-proxy > /dev/null
kp apply --force
dry=$("$KPINSPECT" cleanup --stale-only --config "$fx/config.yaml" --family ipv4 --dry-run)
echo "$dry"
grep -q '^delete table ip kube-proxy$' <<<"$dry"
"$KPINSPECT" cleanup --stale-only --config "$fx/config.yaml" --family ipv4 --force
if nft list table ip kube-proxy 2>/dev/null; then echo "kube-proxy table left"; exit 1; fi
test -n "$(ipvsadm -Sn)"
kp diff
"#
);

/// kube-proxy waits a second before deleting a stale chain because "with
/// kernels before 6.2, if there is a map element pointing to a chain, and
/// you delete that map element, the kernel doesn't notice until a short
/// amount of time later that the chain is now unreferenced": kpinspect
/// deletes the element, flushes and deletes the chain in one transaction.
/// This runs it on the VM's kernel (Debian's 6.1).
pub const STALE_CHAINS_ONE_TRANSACTION: &str = r#"
uname -r
kp() { "$KPINSPECT" apply --mode nftables --config fixtures/routed/config.yaml --node-ip 192.168.0.2 --family ipv4 --force "$@"; }
kp fixtures/routed/cluster.yaml
table=$(nft list table ip kube-proxy)
grep -q 'routed/np/tcp/http' <<<"$table"
out=$(kp fixtures/apply/cluster-scaled.yaml 2>&1)
echo "$out"
grep -q 'IPv4: applied 17 operations: 1 chains written, 5 stale chains deleted' <<<"$out"
table=$(nft list table ip kube-proxy)
if grep -q 'routed/np/' <<<"$table"; then echo "np's chains left"; exit 1; fi
again=$(kp fixtures/apply/cluster-scaled.yaml 2>&1)
grep -q 'in sync, nothing written' <<<"$again"
"#;
