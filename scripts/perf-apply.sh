#!/usr/bin/env bash
# The one-endpoint iptables apply on a legacy node (a network namespace) of
# N x M services, against iptables-legacy-save + iptables-legacy-restore of
# the payload alone, with apply's phase times (KPINSPECT_TRACE_TIMES=1), in
# RUNS rounds. Quicker than scripts/perf.sh (no iptables-nft-restore of the
# whole state). Needs root.
#
#   scripts/perf-apply.sh [SERVICES [ENDPOINTS [RUNS]]]   (default 2000 10 3)
set -euo pipefail
N=${1:-2000}; M=${2:-10}; RUNS=${3:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --locked -q -p kpinspect -p kpinspect-gen
KP=$ROOT/target/release/kpinspect
GEN=$ROOT/target/release/kpinspect-gen
NODE=(--hostname node1 --node-ip 192.168.0.2 --cluster-cidr 10.128.0.0/9)
W=$(mktemp -d)
ns="kpa2-$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
ip netns add "$ns"; ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" nfacct add ct_state_invalid_dropped_pkts
ip netns exec "$ns" nfacct add localhost_nps_accepted_pkts
"$GEN" "$N" "$M" >"$W/base.json"
"$GEN" "$N" "$M" --change $((N / 2)) >"$W/changed.json"
"$KP" compile "${NODE[@]}" "$W/base.json" >"$W/base.restore"
ip netns exec "$ns" iptables-legacy-restore --noflush <"$W/base.restore"
ip netns exec "$ns" "$KP" apply "${NODE[@]}" --force "$W/base.json" >/dev/null 2>&1
ip netns exec "$ns" "$KP" apply "${NODE[@]}" --dry-run "$W/changed.json" >"$W/payload" 2>/dev/null
echo "payload: $(stat -c %s "$W/payload") bytes; load $(cut -d' ' -f1-3 /proc/loadavg)"
t() { local s=$EPOCHREALTIME; "$@" >/dev/null 2>>"$W/err" || { echo "failed: $*" >&2; exit 1; }; echo "scale=3; ($EPOCHREALTIME - $s)/1" | bc -l; }
# Each round: the change's payload planned against the node as it is,
# restored alone (timed), then the apply of the base state (timed: the
# same change, the other way).
for i in $(seq "$RUNS"); do
  ip netns exec "$ns" "$KP" apply "${NODE[@]}" --dry-run "$W/changed.json" >"$W/payload" 2>/dev/null
  s=$(t ip netns exec "$ns" iptables-legacy-save)
  p=$(t ip netns exec "$ns" iptables-legacy-restore --noflush <"$W/payload")
  : >"$W/err"
  a=$(t ip netns exec "$ns" env KPINSPECT_TRACE_TIMES=1 "$KP" apply "${NODE[@]}" "$W/base.json")
  cp "$W/err" "$W/times"
  echo "run $i: save $s restore $p apply(back) $a ratio $(echo "scale=2; $a/($s+$p)" | bc -l)"
  grep "time:" "$W/times" | sed 's/^kpinspect: time: /   /' | tr '\n' ';'; echo
done
