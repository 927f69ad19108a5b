#!/usr/bin/env bash
# End-to-end performance of kpinspect on this machine, each figure set
# against what a user would otherwise run on the same data, measured in one
# run (the ratios are what to compare across machines; absolute numbers move
# with the load). Not a test: it prints a report and fails only when a step
# fails.
#
#   sudo scripts/perf.sh [SERVICES [ENDPOINTS]]      (default 1000 10)
#
# nftables mode: compile and dump vs nft -f and nft list table, the apply
# of the whole state into an empty namespace vs nft -f of the compiled text,
# and a one-endpoint change's apply vs nft -f of its payload alone. IPVS
# mode's figures need the VM: scripts/perf-ipvs.sh.
#
# KPINSPECT_PERF_COMPILE=N: the size of the compile figure (default 10000).
# Needs root (network namespaces), iptables (nft and legacy), nft. The
# cluster comes from kpinspect-gen (deterministic). The namespaces it makes
# are named kpperf-$$-* and deleted on exit.
set -euo pipefail

N=${1:-1000}
M=${2:-10}
BIG=${KPINSPECT_PERF_COMPILE:-10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

cargo build --release --locked -q -p kpinspect -p kpinspect-gen
KP=$ROOT/target/release/kpinspect
GEN=$ROOT/target/release/kpinspect-gen
NODE=(--hostname node1 --node-ip 192.168.0.2 --cluster-cidr 10.128.0.0/9)

W=$(mktemp -d)
# newns runs in a command substitution (a subshell): the namespaces are
# found by their prefix, not remembered.
cleanup() {
    for ns in $(ip netns list | awk '{print $1}' | grep "^kpperf-$$-"); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$W"
}
trap cleanup EXIT

newns() {
    local ns="kpperf-$$-$1"
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    # The nfacct counters kube-proxy creates at start-up (its rules use them).
    ip netns exec "$ns" nfacct add ct_state_invalid_dropped_pkts
    ip netns exec "$ns" nfacct add localhost_nps_accepted_pkts
    echo "$ns"
}

# t VAR CMD...: runs CMD (stdin/stdout as given by the caller), puts its wall
# time in seconds in VAR and its peak RSS in kilobytes in VAR_kb.
t() {
    local var=$1
    shift
    local start=$EPOCHREALTIME
    /usr/bin/time -f %M -o "$W/rss" "$@"
    local end=$EPOCHREALTIME
    printf -v "$var" '%s' "$(echo "$end - $start" | bc -l)"
    printf -v "${var}_kb" '%s' "$(tail -1 "$W/rss")"
}

ratio() { echo "scale=3; $1 / $2" | bc -l | sed 's/^\./0./'; }
secs() { printf '%.3f s' "$1"; }
row() { printf '%-58s %12s %12s %8s\n' "$@"; }

echo "kpinspect end-to-end performance: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cluster: kpinspect-gen $N $M (compile figure: $BIG $M); $(iptables --version)"
echo
row "figure" "kpinspect" "the tool" "ratio"

# 1. compile at scale: read, parse, compile, write; peak RSS vs output size.
"$GEN" "$BIG" "$M" >"$W/big.json"
t c_big "$KP" compile "${NODE[@]}" "$W/big.json" >"$W/big.restore"
out_kb=$(( $(stat -c %s "$W/big.restore") / 1024 ))
row "compile $BIG x $M from JSON (wall)" "$(secs "$c_big")" "" ""
row "  peak RSS / output size" "$((c_big_kb / 1024)) MB" "$((out_kb / 1024)) MB" "$(ratio "$c_big_kb" "$out_kb")"

# 2. compile N x M vs loading its output with iptables-restore (nft, legacy).
"$GEN" "$N" "$M" >"$W/base.json"
"$GEN" "$N" "$M" --change $((N / 2)) >"$W/changed.json"
t c_n "$KP" compile "${NODE[@]}" "$W/base.json" >"$W/base.restore"
for backend in nft legacy; do
    ns=$(newns "$backend")
    t r "ip" netns exec "$ns" "iptables-$backend-restore" --noflush <"$W/base.restore"
    printf -v "restore_$backend" '%s' "$r"
    row "compile $N x $M vs iptables-$backend-restore of it" "$(secs "$c_n")" "$(secs "$r")" "$(ratio "$c_n" "$r")"
done

# 3. dump vs iptables-save on the loaded node (nft backend).
ns_nft="kpperf-$$-nft"
t s ip netns exec "$ns_nft" iptables-nft-save >"$W/node.save"
t d "$KP" dump --iptables-save "$W/node.save" >/dev/null
row "dump of the $N x $M save vs iptables-nft-save printing it" "$(secs "$d")" "$(secs "$s")" "$(ratio "$d" "$s")"
ns_leg="kpperf-$$-legacy"
t s ip netns exec "$ns_leg" iptables-legacy-save >"$W/node-legacy.save"
t d "$KP" dump --iptables-save "$W/node-legacy.save" >/dev/null
row "dump of the $N x $M save vs iptables-legacy-save" "$(secs "$d")" "$(secs "$s")" "$(ratio "$d" "$s")"

# 4. a one-endpoint change on the N-service node: apply vs reading the node
# (iptables-save) + restoring the minimal payload alone, and vs the full
# restore. A fresh node gets a full apply first (also against the full
# restore); the payload restored alone is the change's, the apply times
# the change back (the same size of payload, the other way).
ns=$(newns apply)
# kubelet's hint chain, as on any node whose kubelet uses iptables-nft.
ip netns exec "$ns" iptables-nft -t mangle -N KUBE-IPTABLES-HINT
t full ip netns exec "$ns" "$KP" apply "${NODE[@]}" --force "$W/base.json" 2>/dev/null
row "full apply $N x $M vs iptables-nft-restore of the text" "$(secs "$full")" "$(secs "$restore_nft")" "$(ratio "$full" "$restore_nft")"
ip netns exec "$ns" "$KP" apply "${NODE[@]}" --dry-run "$W/changed.json" >"$W/payload" 2>/dev/null
t s ip netns exec "$ns" iptables-save >/dev/null
t p ip netns exec "$ns" iptables-restore --noflush <"$W/payload"
t a ip netns exec "$ns" "$KP" apply "${NODE[@]}" "$W/base.json" 2>"$W/apply.log"
row "one-endpoint apply vs iptables-save + restore of payload" "$(secs "$a")" "$(secs "$(echo "$s + $p" | bc -l)")" "$(ratio "$a" "$(echo "$s + $p" | bc -l)")"
row "  payload: $(stat -c %s "$W/payload") bytes; vs the full restore" "$(secs "$a")" "$(secs "$restore_nft")" "$(ratio "$a" "$restore_nft")"
t dry ip netns exec "$ns" "$KP" apply "${NODE[@]}" --dry-run "$W/changed.json" >/dev/null 2>&1
row "  of which read + plan (apply --dry-run)" "$(secs "$dry")" "" ""

# 5. nftables mode: compile vs nft -f of the full transaction.
t cn "$KP" compile --mode nftables "${NODE[@]}" "$W/base.json" >"$W/base.nft"
ns=$(newns nftables)
t nf ip netns exec "$ns" nft -f "$W/base.nft"
row "compile --mode nftables $N x $M vs nft -f of it" "$(secs "$cn")" "$(secs "$nf")" "$(ratio "$cn" "$nf")"
t sn ip netns exec "$ns" nft list table ip kube-proxy >"$W/node.nft"
t dn "$KP" dump --mode nftables --nft "$W/node.nft" >/dev/null
row "dump --mode nftables vs nft list table printing it" "$(secs "$dn")" "$(secs "$sn")" "$(ratio "$dn" "$sn")"

# 6. nftables apply: into an empty namespace vs nft -f of the compiled text
# (step 5's namespace took it), then the one-endpoint change: apply vs
# nft -f of its payload alone (into step 5's namespace, which holds the
# same state), and the read + plan share (apply --dry-run).
ns_nfa=$(newns nftapply)
t na ip netns exec "$ns_nfa" "$KP" apply --mode nftables "${NODE[@]}" "$W/base.json" 2>/dev/null
row "apply --mode nftables $N x $M (empty node) vs nft -f of it" "$(secs "$na")" "$(secs "$nf")" "$(ratio "$na" "$nf")"
ip netns exec "$ns_nfa" "$KP" apply --mode nftables "${NODE[@]}" --dry-run "$W/changed.json" >"$W/nft.payload" 2>/dev/null
t np ip netns exec "$ns" nft -f "$W/nft.payload"
t nd ip netns exec "$ns_nfa" "$KP" apply --mode nftables "${NODE[@]}" --dry-run "$W/changed.json" >/dev/null 2>&1
t nc ip netns exec "$ns_nfa" "$KP" apply --mode nftables "${NODE[@]}" "$W/changed.json" 2>/dev/null
row "  one-endpoint apply vs nft -f of its payload alone" "$(secs "$nc")" "$(secs "$np")" "$(ratio "$nc" "$np")"
row "  payload: $(stat -c %s "$W/nft.payload") bytes; of which read + plan" "$(secs "$nd")" "" ""
t ns_list ip netns exec "$ns_nfa" nft list table ip kube-proxy >/dev/null
row "  vs nft list table + nft -f of the payload" "$(secs "$nc")" "$(secs "$(echo "$ns_list + $np" | bc -l)")" "$(ratio "$nc" "$(echo "$ns_list + $np" | bc -l)")"
