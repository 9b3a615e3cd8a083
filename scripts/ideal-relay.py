#!/usr/bin/env python3
"""An ideal 1:1 TCP relay: each client connection gets its own backend connection, and bytes are
copied both ways with no policy of its own (no health checks, no routing, no drain). A test of
Redis's suite that fails through this relay too cannot pass through any relay; one that passes
here and fails through the proxy is the proxy's fault.

    scripts/ideal-relay.py --backend 127.0.0.1:6379 [--listen 127.0.0.1:0]

Prints `listening client=ADDR` once it accepts, like `redis-master-proxy run`. Used by
`scripts/redis-suite.sh --through ideal`.
"""
import argparse
import socket
import sys
import threading


def copy(src, dst):
    """Copies until src ends or either side fails, then forwards the end of stream."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(client, backend_addr):
    try:
        backend = socket.create_connection(backend_addr)
    except OSError:
        client.close()
        return
    for s in (client, backend):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up = threading.Thread(target=copy, args=(client, backend), daemon=True)
    up.start()
    copy(backend, client)
    # The backend is done: give the client a second to finish, then close both.
    up.join(timeout=1)
    for s in (client, backend):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", required=True, help="HOST:PORT")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free port)")
    args = ap.parse_args()
    host, port = args.backend.rsplit(":", 1)
    backend = (host, int(port))
    lhost, lport = args.listen.rsplit(":", 1)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((lhost, int(lport)))
    listener.listen(512)
    addr = listener.getsockname()
    print(f"listening client={addr[0]}:{addr[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, backend), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
