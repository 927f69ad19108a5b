//! VM checks of IPVS mode's JSON reports (`apply --format json` with its
//! conntrack clearing, `cleanup --mode ipvs --format json`) and of
//! `apply --drain-timeout` against the kernel's real connection counts.
//! `jq` reads the JSON.

/// `apply --mode ipvs --format json` reports the stale UDP conntrack entry
/// it deletes (a dry run: that it would), and `cleanup --mode ipvs
/// --format json` the virtual servers, link and sets it removes and the
/// foreign virtual server it keeps; a virtual server on the node's
/// address is kube-proxy's only with a port in `--node-port-range`.
pub const JSON_REPORTS: &str = r#"
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
kp() { "$KPINSPECT" apply --config /tmp/cfg.yaml --node-ip 192.168.0.10 --family ipv4 --no-random-fully --force "$@" /tmp/dns.yaml; }
entry() {
  conntrack -I -p udp -s 10.0.0.1 -d 10.96.0.53 --sport "$1" --dport 53 \
    -r "$2" -q 10.0.0.1 --reply-port-src 53 --reply-port-dst "$1" -t 120
}
ipvsadm -A -t 192.0.2.1:443 -s wrr
kp --format json --no-conntrack-cleanup > /tmp/first.json
jq . /tmp/first.json
jq -e '.dry_run == false and .families[0].family == "ipv4" and .families[0].in_sync == false
  and .families[0].counts.virtual_servers_added == 1 and .families[0].counts.real_servers_added == 1
  and .families[0].conntrack == null and (.families[0].warnings | length) == 1' /tmp/first.json
entry 40001 10.244.0.11
entry 40002 10.244.0.99
kp --format json --dry-run > /tmp/dry.json
jq . /tmp/dry.json
jq -e '.dry_run == true and .families[0].in_sync == true
  and .families[0].conntrack.deleted == false
  and .families[0].conntrack.stale == [{"src": "10.0.0.1", "src_port": 40002, "dst": "10.96.0.53",
    "dst_port": 53, "endpoint": "10.244.0.99", "endpoint_port": 53}]' /tmp/dry.json
conntrack -L -p udp 2>/dev/null | grep -q 'src=10.244.0.99'
kp --format json > /tmp/second.json
jq -e '.families[0].in_sync == true and .families[0].conntrack.deleted == true
  and (.families[0].conntrack.stale | map(.endpoint)) == ["10.244.0.99"]
  and .families[0].conntrack.error == null' /tmp/second.json
if conntrack -L -p udp 2>/dev/null | grep -q 'src=10.244.0.99'; then exit 1; fi
# A node port outside the default range is not provably kube-proxy's.
ip link add eth9 type dummy
ip addr add 192.168.0.10/32 dev eth9
ipvsadm -A -t 192.168.0.10:8080 -s rr
"$KPINSPECT" cleanup --mode ipvs --dry-run --format json > /tmp/default.json
jq -e '(.ipvs.kept_virtual_servers | map(.service.port) | sort) == [443, 8080]' /tmp/default.json
"$KPINSPECT" cleanup --mode ipvs --dry-run --format json --node-port-range 8000-9000 > /tmp/range.json
jq -e '(.ipvs.virtual_servers | map(.port) | sort) == [53, 8080] and .ipvs.removed == false' /tmp/range.json
"$KPINSPECT" cleanup --mode ipvs --force --format json > /tmp/cleanup.json
jq . /tmp/cleanup.json
jq -e '.dry_run == false and .ipvs.removed == true and .ipvs.link == "kube-ipvs0"
  and .ipvs.virtual_servers == [{"address": "10.96.0.53", "protocol": "Udp", "port": 53}]
  and .ipvs.addresses == ["10.96.0.53"]
  and (.ipvs.kept_virtual_servers | map(.service.address) | sort) == ["192.0.2.1", "192.168.0.10"]
  and (.iptables.ipsets | index("KUBE-CLUSTER-IP")) != null
  and (.iptables.chains | map(.chain) | index("KUBE-SERVICES")) != null' /tmp/cleanup.json
[ "$(ipvsadm -Sn | sort)" = "$(printf '%s\n' '-A -t 192.0.2.1:443 -s wrr' '-A -t 192.168.0.10:8080 -s rr')" ]
"#;

/// `apply --drain-timeout`: a removed endpoint holding open connections
/// (local listeners on a dummy link, connections through IPVS) is set to
/// weight 0, waited for, and deleted at the timeout, with its connection
/// counts reported; the one that stays keeps its connections.
pub const DRAIN_TIMEOUT: &str = r#"
modprobe ip_vs
cat > /tmp/cfg.yaml <<'YAML'
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
hostnameOverride: test-node
YAML
web() {
cat <<YAML
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns1}
spec:
  clusterIP: 10.96.0.80
  clusterIPs: [10.96.0.80]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: ns1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints: [$1]
ports: [{name: http, port: 8080, protocol: TCP}]
YAML
}
web '{addresses: [10.244.0.11]}, {addresses: [10.244.0.12]}' > /tmp/two.yaml
web '{addresses: [10.244.0.11]}' > /tmp/one.yaml
kp() { "$KPINSPECT" apply --config /tmp/cfg.yaml --node-ip 192.168.0.10 --family ipv4 --no-random-fully --force --format json "$@"; }
ip link add eth9 type dummy
for a in 192.168.0.10 10.244.0.11 10.244.0.12; do ip addr add $a/32 dev eth9; done
ip link set eth9 up
kp /tmp/two.yaml > /tmp/first.json
jq -e '.families[0].counts.real_servers_added == 2' /tmp/first.json
# A server that accepts and holds every connection.
/usr/bin/python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(16)
held = []
while True:
    held.append(s.accept()[0])
' &
server=$!
trap 'kill $server' EXIT
for i in $(seq 50); do
  if (exec 9<>/dev/tcp/10.244.0.11/8080) 2>/dev/null; then break; fi
  sleep 0.1
done
# Four connections through the virtual server: round robin, two each.
exec 3<>/dev/tcp/10.96.0.80/80 4<>/dev/tcp/10.96.0.80/80 5<>/dev/tcp/10.96.0.80/80 6<>/dev/tcp/10.96.0.80/80
ipvsadm -Ln
active=$(ipvsadm -Ln | awk '$2 == "10.244.0.12:8080" {print $5}')
[ "$active" -ge 1 ]
start=$(date +%s)
kp --drain-timeout 3s /tmp/one.yaml > /tmp/drain.json
end=$(date +%s)
jq . /tmp/drain.json
jq -e --argjson active "$active" '.families[0].counts.real_servers_reweighted == 1
  and (.families[0].ipvs.draining | length) == 1
  and .drain.timeout_seconds == 3 and .drain.waited_seconds >= 3
  and (.drain.real_servers | length) == 1
  and .drain.real_servers[0].address == "10.244.0.12"
  and .drain.real_servers[0].end == "timed_out"
  and .drain.real_servers[0].active_connections == $active
  and .drain.real_servers[0].service == {"address": "10.96.0.80", "protocol": "Tcp", "port": 80}' /tmp/drain.json
[ $((end - start)) -ge 3 ]
left=$(ipvsadm -Ln)
echo "$left"
if grep -q '10\.244\.0\.12:8080' <<<"$left"; then exit 1; fi
grep -q '10\.244\.0\.11:8080' <<<"$left"
# The next apply: in sync, nothing draining.
kp --drain-timeout 3s /tmp/one.yaml > /tmp/after.json
jq -e '.families[0].in_sync == true and .drain == null' /tmp/after.json
"#;
