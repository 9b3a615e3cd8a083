#!/usr/bin/env python3
"""Writes src/data/mux/commands.rs: Redis's command table (flags and ACL categories of every command
and subcommand) as `COMMAND INFO` reports it, for the multiplexed mode's pinning rule.

    python3 scripts/mux-commands.py [redis-server] > src/data/mux/commands.rs

Starts a throwaway redis-server on a free loopback port (no persistence, its own temp dir), asks
it `COMMAND INFO` and `INFO server`, stops it. The rule that turns flags into "pin" or "share"
lives in src/data/mux/classify.rs, not here: this file only records what the server says.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time


def read(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [read(f) for _ in range(n)]
    raise RuntimeError(f"unexpected reply line {line!r}")


def command(sock, f, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    return read(f)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    server = sys.argv[1] if len(sys.argv) > 1 else "redis-server"
    with tempfile.TemporaryDirectory(prefix="mux-commands-") as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            f = sock.makefile("rb")
            info = command(sock, f, "INFO", "server")
            version = next(l.split(":", 1)[1].strip() for l in info.splitlines()
                           if l.startswith("redis_version:"))
            table = command(sock, f, "COMMAND", "INFO")
            sock.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    rows = []
    for c in table:
        rows.append((c[0], c[2], c[6]))
        for sub in (c[9] if len(c) > 9 else []):
            rows.append((sub[0], sub[2], sub[6]))
    rows.sort()

    def strs(xs):
        return "&[" + ", ".join('"%s"' % x for x in xs) + "]"

    print("//! Redis's command table: the flags and ACL categories of every command and subcommand,")
    print(f"//! as `COMMAND INFO` of redis-server {version} reports them. Generated, not edited:")
    print("//!")
    print("//! ```sh")
    print("//! python3 scripts/mux-commands.py > src/data/mux/commands.rs && cargo fmt")
    print("//! ```")
    print("//!")
    print("//! Subcommands are named `parent|sub`, as Redis names them. The rule that reads this table")
    print("//! is in [`super::classify`].")
    print()
    print(f'/// The redis-server version the table was taken from.')
    print(f'pub const REDIS_VERSION: &str = "{version}";')
    print()
    print("/// `(name, flags, ACL categories)` of every command and subcommand, sorted by name.")
    print("pub const COMMANDS: &[(&str, &[&str], &[&str])] = &[")
    for name, flags, cats in rows:
        print(f'    ("{name}", {strs(flags)}, {strs(cats)}),')
    print("];")


if __name__ == "__main__":
    main()
