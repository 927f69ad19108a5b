#!/usr/bin/env python3
"""TCP helper of the routed test node (tests/integration/node.rs).

serve PORT...
    Listens on 0.0.0.0:PORT for each PORT and answers every connection with
    "LOCAL_IP:LOCAL_PORT from PEER_IP:PEER_PORT\\n" (the address the
    connection reached, and who the server sees as the client), then closes
    it. Prints "ready" once every port is bound.

connect IP PORT COUNT TIMEOUT
    Opens COUNT connections to IP:PORT, one after the other, and prints one
    line per connection: "ok " + the server's answer, or "err " + why not.
"""

import socket
import sys
import threading


def serve(ports):
    listeners = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(128)
        listeners.append(s)

    def loop(s):
        while True:
            conn, peer = s.accept()
            with conn:
                local = conn.getsockname()
                answer = "%s:%d from %s:%d\n" % (local[0], local[1], peer[0], peer[1])
                try:
                    conn.sendall(answer.encode())
                except OSError:
                    pass

    threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in listeners]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


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


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve([int(p) for p in sys.argv[2:]])
    elif len(sys.argv) == 6 and sys.argv[1] == "connect":
        connect(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
