#!/usr/bin/env python3
"""Cuts link.strace (see capture-link.sh) into link_golden.rs: one byte
array per buffer ip(8) sent or received on fd 3, named SECTION_SENDn /
SECTION_RECVn (n counts from 0 within the section; the 32-byte probe
iproute2 sends first is skipped). Run from this directory:
    python3 golden-link.py < link.strace > link_golden.rs"""
import re
import sys

section, out, counts = None, [], {}
cur = None


def flush():
    global cur
    if cur and cur[2]:
        name, what, data = cur
        key = (name, what)
        n = counts.get(key, 0)
        counts[key] = n + 1
        ident = f"{name}_{what}{n}".upper().replace("-", "_")
        out.append(f"/// {name} {what.lower()} fd3 ({len(data)} bytes)\n#[rustfmt::skip]\n"
                   f"pub const {ident}: [u8; {len(data)}] = [\n")
        for i in range(0, len(data), 8):
            out.append("    " + " ".join(f"0x{b:02x}," for b in data[i:i + 8]) + "\n")
        out.append("];\n")
    cur = None


for line in sys.stdin:
    if line.startswith("### "):
        flush()
        section = line[4:].strip()
        continue
    m = re.match(r"(sendto|sendmsg|recvmsg)\(3,", line)
    if m:
        flush()
        if "MSG_PEEK" in line:
            continue
        what = "SEND" if m.group(1).startswith("send") else "RECV"
        probe = m.group(1) == "sendto" and line.rstrip().endswith("= 32")
        cur = None if probe else [section, what, bytearray()]
        continue
    if re.match(r"(sendto|sendmsg|recvmsg)\(", line):
        flush()
        continue
    m = re.match(r" \| [0-9a-f]{5}  ((?:[0-9a-f]{2} ?\s?){1,16})", line)
    if m and cur is not None:
        cur[2].extend(bytes.fromhex(m.group(1).replace(" ", "")))
flush()
sys.stdout.write("".join(out))
