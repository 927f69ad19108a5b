#!/usr/bin/env python3
"""Traffic helper of the routed test node (tests/integration/node.rs).

Answers name addresses as IP:PORT, IPv6 ones as [IP]:PORT.

serve PORT...
    Listens on TCP PORT for each PORT (IPv4, and IPv6 where the namespace
    has it) and answers every connection with
    "LOCAL from PEER\\n" (the address the connection reached, and who the
    server sees as the client), then closes it. Prints "ready" once every
    port is bound.

serve-udp PORT...
    Binds UDP PORT for each PORT (IPv4, and IPv6 where the namespace has
    it) and answers every datagram with "NONCE LOCAL from PEER\\n": NONCE
    is the datagram's first word, LOCAL the address it was sent to (its
    IP header's destination), PEER its source. Prints "ready" once every
    port is bound.

connect IP PORT COUNT TIMEOUT
    Opens COUNT TCP connections to IP:PORT, one after the other, and
    prints one line per connection: "ok " + the server's answer, or
    "err " + why not.

udp IP PORT SOURCE_PORT COUNT TIMEOUT
    Sends COUNT datagrams to IP:PORT, one after the other, all from the
    one SOURCE_PORT (so conntrack sees them as one flow, also across runs),
    waiting up to TIMEOUT seconds for each answer, and prints one line per
    datagram: "ok LOCAL from PEER" (who answered, and who it saw as the
    client), or "err " + why not. Answers to other datagrams (a late one
    of an earlier run) are ignored.
"""

import os
import socket
import struct
import sys
import threading
import time

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def addr(host, port):
    """host:port, IPv6 as [host]:port."""
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def bind_both(kind, port):
    """Sockets of `kind` bound to `port` on IPv4 and, where the namespace
    has IPv6, on IPv6 (IPv6 only, so both can bind)."""
    out = []
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    out.append(s)
    try:
        s6 = socket.socket(socket.AF_INET6, kind)
        s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s6.bind(("::", port))
        out.append(s6)
    except OSError:
        pass
    return out


def run_forever(loop, sockets):
    threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in sockets]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


def serve(ports):
    listeners = []
    for port in ports:
        for s in bind_both(socket.SOCK_STREAM, port):
            s.listen(128)
            listeners.append(s)

    def loop(s):
        while True:
            conn, peer = s.accept()
            with conn:
                local = conn.getsockname()
                answer = "%s from %s\n" % (addr(local[0], local[1]), addr(peer[0], peer[1]))
                try:
                    conn.sendall(answer.encode())
                except OSError:
                    pass

    run_forever(loop, listeners)


def serve_udp(ports):
    sockets = []
    for port in ports:
        for s in bind_both(socket.SOCK_DGRAM, port):
            if s.family == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sockets.append(s)

    def loop(s):
        port = s.getsockname()[1]
        while True:
            data, anc, _flags, peer = s.recvmsg(2048, socket.CMSG_SPACE(64))
            local = None
            for level, kind, value in anc:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    # struct in_pktinfo: ifindex, spec_dst, addr (the header's).
                    local = socket.inet_ntop(socket.AF_INET, value[8:12])
                elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    # struct in6_pktinfo: addr, ifindex.
                    local = socket.inet_ntop(socket.AF_INET6, value[:16])
            words = data.split()
            nonce = words[0].decode() if words else "-"
            answer = "%s %s from %s\n" % (
                nonce,
                addr(local or "?", port),
                addr(peer[0], peer[1]),
            )
            try:
                s.sendto(answer.encode(), peer)
            except OSError:
                pass

    run_forever(loop, sockets)


def connect(ip, port, count, timeout):
    for _ in range(count):
        try:
            with socket.create_connection((ip, port), timeout=timeout) as s:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(256)
                    if not chunk:
                        break
                    data += chunk
            line = data.decode().strip()
            print(("ok " + line) if line else "err empty answer", flush=True)
        except OSError as e:
            print("err %s" % e, flush=True)


def udp(ip, port, source_port, count, timeout):
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", source_port))
    for i in range(count):
        nonce = "%d-%d-%d" % (os.getpid(), time.monotonic_ns(), i)
        try:
            s.sendto(("%s ping\n" % nonce).encode(), (ip, port))
        except OSError as e:
            print("err %s" % e, flush=True)
            continue
        deadline = time.monotonic() + timeout
        line = None
        while line is None:
            left = deadline - time.monotonic()
            if left <= 0:
                line = "err timed out"
                break
            s.settimeout(left)
            try:
                data = s.recv(2048)
            except socket.timeout:
                line = "err timed out"
            except OSError as e:
                # An ICMP error (port unreachable, rejected) for this flow.
                line = "err %s" % e
            else:
                words = data.decode().strip().split(" ", 1)
                if words[0] == nonce and len(words) == 2:
                    line = "ok " + words[1]
        print(line, flush=True)


def main():
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "serve":
        serve([int(p) for p in args[1:]])
    elif len(args) >= 2 and args[0] == "serve-udp":
        serve_udp([int(p) for p in args[1:]])
    elif len(args) == 5 and args[0] == "connect":
        connect(args[1], int(args[2]), int(args[3]), float(args[4]))
    elif len(args) == 6 and args[0] == "udp":
        udp(args[1], int(args[2]), int(args[3]), int(args[4]), float(args[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
