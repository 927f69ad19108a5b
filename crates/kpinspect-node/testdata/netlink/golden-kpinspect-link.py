#!/usr/bin/env python3
"""Cuts kpinspect-link.strace (see capture-kpinspect-link.sh) into
kpinspect_link_golden.rs: the exchanges (a request and the datagrams that
answered it) of the traced test process's first thread with netlink,
numbered from 0 in order, as KP{n}_SEND and KP{n}_RECV{k}; only those in
KEEP. Peeks (MSG_PEEK) and the ip(8) children are skipped. Run from this
directory:
    python3 golden-kpinspect-link.py < kpinspect-link.strace > kpinspect_link_golden.rs"""
import re
import sys

KEEP = {
    0: "RTM_GETLINK kube-ipvs0 before it exists: ENODEV",
    3: "RTM_NEWLINK dummy kube-ipvs0 (second request on its socket): ACK",
    4: "RTM_GETLINK kube-ipvs0: the link, then the ACK",
    13: "RTM_NEWADDR 10.96.0.10/32 again: EEXIST",
    15: "RTM_GETADDR dump naming link 2: every link's addresses, DONE",
    19: "RTM_DELADDR 10.96.0.10/32 again: EADDRNOTAVAIL",
    27: "RTM_DELLINK kube-ipvs0: ACK",
}

pid, exchanges, cur = None, [], None
for line in sys.stdin:
    m = re.match(r"\[pid +(\d+)\] (sendto|recvfrom)\(", line)
    if m:
        pid = pid or m.group(1)
        cur = None
        if m.group(1) != pid or "MSG_PEEK" in line:
            continue
        if m.group(2) == "sendto":
            exchanges.append([])
        cur = bytearray()
        exchanges[-1].append((m.group(2), cur))
        continue
    if line.startswith(("[pid", "strace")):
        cur = None
        continue
    d = re.match(r" \| [0-9a-f]{5}  ((?:[0-9a-f]{2} ?\s?){1,16})", line)
    if d and cur is not None:
        cur.extend(bytes.fromhex(d.group(1).replace(" ", "")))

out = []
for n, what in sorted(KEEP.items()):
    recv = 0
    for kind, data in exchanges[n]:
        if kind == "sendto":
            ident = f"KP{n}_SEND"
        else:
            ident = f"KP{n}_RECV{recv}"
            recv += 1
        out.append(f"/// {what} ({kind}, {len(data)} bytes)\n#[rustfmt::skip]\n"
                   f"pub const {ident}: [u8; {len(data)}] = [\n")
        for i in range(0, len(data), 8):
            out.append("    " + " ".join(f"0x{b:02x}," for b in data[i:i + 8]) + "\n")
        out.append("];\n")
sys.stdout.write("".join(out))
