#!/usr/bin/env bash
# IPVS mode's apply against the tools a user would otherwise run on the same
# state, in the project's VM (Debian's kernel under qemu TCG: this machine's
# kernel may lack IPVS), measured in one run. Not a test: it prints a report
# and fails only when a step fails (or the one-endpoint change touches
# another service's real servers).
#
#   scripts/perf-ipvs.sh [SERVICES [ENDPOINTS]]        (default 2000 10)
#
# On the host it builds the release binaries and boots the VM through the
# integration tests' harness (`vm::vm_script`, KPINSPECT_VM_SCRIPT), which
# runs this script again inside the VM with --in-vm, in a fresh network
# namespace, and prints its output. Needs what the VM checks need (qemu,
# linux-image-amd64, busybox-static, ipvsadm, ipset, iptables); no root on
# the host. Figures (each an empty network namespace of its own):
#
# * the full apply on an empty node: `kpinspect apply --mode ipvs` vs
#   `ipvsadm -R` + `ipset restore` of `kpinspect compile --mode ipvs -o
#   ipvsadm|ipset` (and vs those plus what apply also writes: kube-ipvs0's
#   addresses with `ip -batch`, the rules with `iptables-restore`);
# * one endpoint of one service changed (`kpinspect-gen --change`): its
#   apply, the IPVS writes it makes (each one netlink message), checked to
#   touch only that service's real servers, vs `ipvsadm -Sn` reading the
#   node + `ipvsadm -R` of the same writes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
KP=$ROOT/target/release/kpinspect
GEN=$ROOT/target/release/kpinspect-gen
NODE=(--mode ipvs --hostname node1 --node-ip 192.168.0.2 --cluster-cidr 10.128.0.0/9)

# t VAR CMD...: runs CMD, puts its wall time in seconds in VAR.
t() {
    local var=$1
    shift
    local start=$EPOCHREALTIME
    "$@"
    local end=$EPOCHREALTIME
    printf -v "$var" '%s' "$(echo "$end - $start" | bc -l)"
}
ratio() { echo "scale=3; $1 / $2" | bc -l | sed 's/^\./0./'; }
secs() { printf '%.3f s' "$1"; }
row() { printf '%-62s %11s %11s %7s\n' "$@"; }
sum() { echo "$*" | tr ' ' '+' | bc -l; }

# The tools' side, in its own empty namespace: prints "name seconds" lines.
tools_phase() {
    local w=$1
    ip link set lo up
    t ipset ipset restore <"$w/sets"
    t ipvsadm ipvsadm -R <"$w/ipvsadm"
    t addr_link ip link add kube-ipvs0 type dummy
    t addr ip -batch "$w/addr.batch"
    t rules iptables-restore <"$w/restore"
    [ "$(ipvsadm -Sn | wc -l)" = "$(wc -l <"$w/ipvsadm")" ]
    # The change as a user would make it: read the node, write the same
    # IPVS commands apply wrote.
    t read ipvsadm -Sn >/dev/null
    t change ipvsadm -R <"$w/change.ipvsadm"
    echo "ipset $ipset"
    echo "ipvsadm $ipvsadm"
    echo "addr $(sum "$addr_link" "$addr")"
    echo "rules $rules"
    echo "read $read"
    echo "change $change"
}

# kpinspect's side, in its own empty namespace.
ours_phase() {
    local w=$1
    ip link set lo up
    # What apply does before writing: compile, read the empty node, plan.
    t dry "$KP" apply "${NODE[@]}" --dry-run "$w/base.json" >/dev/null 2>&1
    t apply env KPINSPECT_TRACE_TIMES=1 "$KP" apply "${NODE[@]}" --force "$w/base.json" 2>"$w/apply.log"
    ipvsadm -Sn | sort >"$w/applied"
    diff -u "$w/ipvsadm.sorted" "$w/applied" >&2
    t again env KPINSPECT_TRACE_TIMES=1 "$KP" apply "${NODE[@]}" "$w/base.json" 2>"$w/again.log"
    grep -q 'IPVS mode in sync, nothing written' "$w/again.log"
    "$KP" apply "${NODE[@]}" --dry-run "$w/changed.json" 2>/dev/null \
        | sed -n 's/^ipvsadm //p' >"$w/change.ipvsadm"
    ipvsadm -Sn | sort >"$w/before"
    t change "$KP" apply "${NODE[@]}" --format json "$w/changed.json" >"$w/change.json" 2>/dev/null
    ipvsadm -Sn | sort >"$w/after"
    diff "$w/before" "$w/after" | grep '^[<>]' >"$w/kernel.diff" || true
    echo "dry $dry"
    echo "apply $apply"
    echo "again $again"
    echo "change $change"
}

in_vm() {
    local n=$1 m=$2
    local w
    w=$(mktemp -d)
    modprobe ip_vs
    modprobe dummy
    # The VM's /etc is the host's over 9p: ipset resolves the protocol of
    # every member it reads or prints (opens /etc/protocols, stats
    # nsswitch.conf and resolv.conf), milliseconds each over 9p under TCG
    # (8,846 members: 46 s of `ipset restore`), nothing on a node's disk.
    # Local copies, as on a node; both sides run ipset.
    local f
    for f in /etc/protocols /etc/nsswitch.conf /etc/resolv.conf; do
        [ -f "$f" ] || continue
        cp "$f" "$w/${f##*/}"
        mount --bind "$w/${f##*/}" "$f"
    done
    "$GEN" "$n" "$m" >"$w/base.json"
    local changed=$((n / 2))
    "$GEN" "$n" "$m" --change "$changed" >"$w/changed.json"
    for f in ipvsadm ipset restore addresses; do
        "$KP" compile "${NODE[@]}" --format "$f" "$w/base.json" >"$w/$f" 2>/dev/null
    done
    sort "$w/ipvsadm" >"$w/ipvsadm.sorted"
    mv "$w/ipset" "$w/sets"
    sed 's/^/addr add /; s/$/ dev kube-ipvs0/' "$w/addresses" >"$w/addr.batch"
    "$KP" compile "${NODE[@]}" --format ipvsadm "$w/changed.json" 2>/dev/null | sort >"$w/ipvsadm.changed"
    # (no process substitution: the VM has no /dev/fd)
    diff "$w/ipvsadm.sorted" "$w/ipvsadm.changed" >"$w/compiled.diff" || true

    # Warm-up, in a namespace of its own: the boot's first apply loads the
    # kernel modules both sides use (ipset's set types, the xt matches,
    # nf_conntrack_netlink), seconds under TCG and once per boot on a
    # node; without it the side measured first pays for both.
    "$GEN" 20 2 >"$w/warm.json"
    unshare --net -- "$KP" apply "${NODE[@]}" --force "$w/warm.json" >/dev/null 2>&1
    unshare --net -- "$0" --phase ours "$w" >"$w/ours"
    unshare --net -- "$0" --phase tools "$w" >"$w/tools"
    local -A o k
    while read -r key v; do o[$key]=$v; done <"$w/ours"
    while read -r key v; do k[$key]=$v; done <"$w/tools"

    local vs rs
    vs=$(grep -c '^-A' "$w/ipvsadm")
    rs=$(grep -c '^-a' "$w/ipvsadm")
    echo "kpinspect apply --mode ipvs in the VM: kernel $(uname -r), $(nproc) vCPUs (qemu TCG)"
    echo "cluster: kpinspect-gen $n $m: $vs virtual servers, $rs real servers, $(wc -l <"$w/addresses") addresses, $(grep -c '^add' "$w/sets") set members"
    echo "$(ipvsadm --version 2>&1 | head -1); $(ipset --version | head -1); $(iptables --version)"
    echo
    row "figure" "kpinspect" "the tools" "ratio"
    local tools2 tools4
    tools2=$(sum "${k[ipvsadm]}" "${k[ipset]}")
    tools4=$(sum "$tools2" "${k[addr]}" "${k[rules]}")
    row "full apply vs ipvsadm -R + ipset restore" "$(secs "${o[apply]}")" "$(secs "$tools2")" "$(ratio "${o[apply]}" "$tools2")"
    row "  vs those + ip -batch (addresses) + iptables-restore" "$(secs "${o[apply]}")" "$(secs "$tools4")" "$(ratio "${o[apply]}" "$tools4")"
    local writes
    writes=$(echo "${o[apply]} - ${o[dry]}" | bc -l)
    row "  of which compile + read + plan (apply --dry-run)" "$(secs "${o[dry]}")" "" ""
    row "  of which the writes, vs the four tools" "$(secs "$writes")" "$(secs "$tools4")" "$(ratio "$writes" "$tools4")"
    row "  the tools: ipvsadm -R" "" "$(secs "${k[ipvsadm]}")" ""
    row "  ipset restore" "" "$(secs "${k[ipset]}")" ""
    row "  ip link add + ip -batch addr add" "" "$(secs "${k[addr]}")" ""
    row "  iptables-restore" "" "$(secs "${k[rules]}")" ""
    row "apply again, in sync (reads the node, plans)" "$(secs "${o[again]}")" "$(secs "${k[read]}")" "$(ratio "${o[again]}" "${k[read]}")"
    row "  (the tools: ipvsadm -Sn reading the node)" "" "" ""

    # Where the apply's time went (KPINSPECT_TRACE_TIMES: each phase's
    # time since the previous mark).
    echo
    echo "the full apply's phases:"
    sed -n 's/^kpinspect: time: /  /p' "$w/apply.log"
    echo "apply again's phases:"
    sed -n 's/^kpinspect: time: /  /p' "$w/again.log"

    # The one-endpoint change: what apply wrote, and that it touched only
    # the changed service's real servers.
    local svc_vips want_writes
    svc_vips=$(sed -n 's/^[<>] -[ae] -[tus] \([^ ]*\) .*/\1/p' "$w/compiled.diff" | sort -u)
    want_writes=$(grep -c '^[<>] -a' "$w/compiled.diff" || true)
    local written ours_rs kernel_rs
    written=$(jq -r '.families[].commands[] | select(startswith("ipvsadm "))' "$w/change.json")
    ours_rs=$(sed -n 's/^ipvsadm -[aed] -[tus] \([^ ]*\) .*/\1/p' <<<"$written" | sort -u)
    kernel_rs=$(sed -n 's/^[<>] -a -[tus] \([^ ]*\) .*/\1/p' "$w/kernel.diff" | sort -u)
    echo
    echo "one endpoint of service $changed changed: $(jq -c '.families[0].counts | with_entries(select(.value > 0))' "$w/change.json")"
    echo "  IPVS writes (one netlink message each): $(wc -l <<<"$written"); the compiled states differ in $want_writes real-server lines"
    echo "  virtual servers written: $(tr '\n' ' ' <<<"$ours_rs"); changed in ipvsadm -Sn: $(tr '\n' ' ' <<<"$kernel_rs")"
    if [ -z "$ours_rs" ] || [ "$ours_rs" != "$svc_vips" ] || [ "$kernel_rs" != "$svc_vips" ]; then
        echo "FAILED: the change touched other virtual servers than service $changed's ($(tr '\n' ' ' <<<"$svc_vips"))" >&2
        exit 1
    fi
    local tread
    tread=$(sum "${k[read]}" "${k[change]}")
    row "one-endpoint apply vs ipvsadm -Sn + ipvsadm -R of its writes" "$(secs "${o[change]}")" "$(secs "$tread")" "$(ratio "${o[change]}" "$tread")"
    row "  vs the full apply" "$(secs "${o[change]}")" "$(secs "${o[apply]}")" "$(ratio "${o[change]}" "${o[apply]}")"
    rm -rf "$w"
}

case "${1:-}" in
--phase)
    "${2}_phase" "$3"
    exit
    ;;
--in-vm)
    in_vm "${2:-2000}" "${3:-10}"
    exit
    ;;
esac

N=${1:-2000}
M=${2:-10}
cargo build --release --locked -q -p kpinspect -p kpinspect-gen
script=$(mktemp)
trap 'rm -f "$script"' EXIT
printf 'exec bash scripts/perf-ipvs.sh --in-vm %d %d\n' "$N" "$M" >"$script"
KPINSPECT_VM_SCRIPT=$script cargo test --locked -q --test integration vm::vm_script \
    -- --ignored --exact --nocapture
