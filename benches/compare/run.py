#!/usr/bin/env python3
"""Comparative benchmark: redis-benchmark straight to Redis vs. through HAProxy
vs. through twemproxy vs. through redis-master-proxy, interleaved in one run.

Run `python3 benches/compare/run.py --help` for the options and
benches/compare/README.md for what is measured and how.

Only the Python standard library is used here; the chart is drawn by
chart.py with matplotlib (this Python's, or benches/.venv made by benches/install.sh).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import re
import platform
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repository root
    sys.path[0] = str(Path(__file__).resolve().parent.parent.parent)

from benches.harness.cluster import start_redis  # noqa: E402
from benches.harness.endpoints import proxy_toml, start_haproxy, start_proxy, start_twemproxy  # noqa: E402
from benches.harness.procfs import CLK_TCK, cpu_seconds, mem_snapshot  # noqa: E402
from benches.harness.procs import Procs, free_ports, log, raise_nofile, wait_until  # noqa: E402
from benches.harness.resp import RespError, parse_info, redis_call  # noqa: E402
from benches.harness.tools import build_release, first_line, require_tools, run_chart  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------
# n_full is chosen so one measurement lasts roughly 2-5 s on a 2-core machine
# when redis-benchmark talks to Redis directly (a proxy makes it longer).

KIB = 1024
MIB = 1024 * 1024


class Workload:
    def __init__(self, wid, title, test, size, pipeline, clients, n_full, n_quick):
        self.id = wid
        self.title = title
        self.test = test  # "set" or "get"
        self.size = size
        self.pipeline = pipeline
        self.clients = clients
        self.n_full = n_full
        self.n_quick = n_quick

    def as_dict(self, n):
        return {
            "id": self.id,
            "title": self.title,
            "test": self.test.upper(),
            "value_bytes": self.size,
            "pipeline": self.pipeline,
            "clients": self.clients,
            "requests": n,
        }


WORKLOADS = [
    Workload("set-3b-p1", "SET, 3 B values, 50 clients, no pipelining", "set", 3, 1, 50, 400_000, 20_000),
    Workload("get-3b-p1", "GET, 3 B values, 50 clients, no pipelining", "get", 3, 1, 50, 400_000, 20_000),
    Workload("set-3b-p16", "SET, 3 B values, 50 clients, pipeline 16", "set", 3, 16, 50, 4_000_000, 100_000),
    Workload("get-3b-p16", "GET, 3 B values, 50 clients, pipeline 16", "get", 3, 16, 50, 4_000_000, 100_000),
    Workload("set-16k", "SET, 16 KiB values, 50 clients", "set", 16 * KIB, 1, 50, 250_000, 5_000),
    Workload("get-16k", "GET, 16 KiB values, 50 clients", "get", 16 * KIB, 1, 50, 250_000, 5_000),
    Workload("set-1m", "SET, 1 MiB values, 50 clients", "set", MIB, 1, 50, 5_000, 200),
    Workload("get-1m", "GET, 1 MiB values, 50 clients", "get", MIB, 1, 50, 5_000, 200),
    Workload("set-3b-c1000", "SET, 3 B values, 1000 clients", "set", 3, 1, 1000, 400_000, 20_000),
    Workload("get-3b-c1000", "GET, 3 B values, 1000 clients", "get", 3, 1, 1000, 400_000, 20_000),
]
# Not in "all": mid-size values, for placing auto's copy/splice threshold (docs/benchmarks/README.md).
EXTRA_WORKLOADS = [
    Workload("set-1k", "SET, 1 KiB values, 50 clients", "set", KIB, 1, 50, 300_000, 10_000),
    Workload("get-1k", "GET, 1 KiB values, 50 clients", "get", KIB, 1, 50, 300_000, 10_000),
    Workload("set-4k", "SET, 4 KiB values, 50 clients", "set", 4 * KIB, 1, 50, 300_000, 10_000),
    Workload("get-4k", "GET, 4 KiB values, 50 clients", "get", 4 * KIB, 1, 50, 300_000, 10_000),
    Workload("set-8k", "SET, 8 KiB values, 50 clients", "set", 8 * KIB, 1, 50, 250_000, 5_000),
    Workload("get-8k", "GET, 8 KiB values, 50 clients", "get", 8 * KIB, 1, 50, 250_000, 5_000),
]
WORKLOAD_BY_ID = {w.id: w for w in WORKLOADS + EXTRA_WORKLOADS}

ALL_CANDIDATES = ["direct", "haproxy", "haproxy-t1", "twemproxy", "proxy", "proxy-copy", "proxy-splice",
                  "proxy-mux", "proxy-conn"]
DEFAULT_CANDIDATES = ["direct", "haproxy", "proxy"]


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# Processes, tools and environment (benches/harness does the rest)
# --------------------------------------------------------------------------


def free_port():
    return free_ports(1)[0]


def ping_ok(port, timeout=1.0):
    try:
        return redis_call(port, "PING", timeout=timeout) == "PONG"
    except Exception:  # noqa: BLE001 - not answering yet
        return False


def run_cmd(cmd, timeout=30, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


# --pin: the CPUs of redis-server, of the candidate under test (every thread) and of
# redis-benchmark; None: the scheduler places them.
PIN = {"redis": None, "candidate": None, "bench": None}


def parse_cpus(text):
    """A CPU list as taskset takes it ("0", "0-1", "0,2"): a set of CPU numbers."""
    out = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def pin_process(pid, cpus):
    """Binds every thread of `pid` to `cpus` (threads it starts later inherit the binding)."""
    if cpus is None or pid is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            pass


def fail(procs, name, why):
    return BenchError(f"{name}: {why}\n--- {procs.logpath(name)} (tail) ---\n{procs.logtail(name)}")


def wait_for(procs, name, pred, timeout, what):
    """wait_until() for process `name`: a BenchError with the end of its log on failure."""
    try:
        wait_until(pred, timeout, what, proc=procs.items[name])
    except RuntimeError as e:
        raise fail(procs, name, str(e))


NEEDED_TOOLS = ["redis-server", "redis-benchmark"]
# The tool a candidate needs beyond those.
CANDIDATE_TOOLS = {"haproxy": "haproxy", "haproxy-t1": "haproxy", "twemproxy": "nutcracker"}


def set_nofile(want):
    got = raise_nofile(want)[0]
    if got < want:
        log(f"warning: RLIMIT_NOFILE is {got} (wanted {want}); the hard limit needs root with CAP_SYS_RESOURCE to raise")
    return got


def version_of(cmd):
    return first_line(cmd) or "unknown"


def short_version(text, marker):
    """'Redis server v=7.0.15 sha=...' -> '7.0.15'; 'HAProxy version 2.6.12-1 2023/..' -> '2.6.12-1'."""
    words = text.split()
    for i, w in enumerate(words):
        if marker.endswith("=") and w.startswith(marker):
            return w[len(marker):]
        if w == marker and i + 1 < len(words):
            return words[i + 1]
    return text


def git_commit():
    try:
        head = run_cmd(["git", "-C", str(REPO), "rev-parse", "HEAD"], timeout=10).stdout.strip()
        dirty = run_cmd(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], timeout=10
        ).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "") if head else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------
# Redis, HAProxy, proxy
# --------------------------------------------------------------------------


def start_backend(procs, workdir, maxclients):
    port = free_port()
    try:
        start_redis(procs, workdir, "redis-server", port,
                    extra=["--protected-mode", "no", "--maxclients", str(maxclients)])
    except RuntimeError as e:
        raise fail(procs, "redis-server", str(e))
    return port


class Candidate:
    name = ""
    kind = ""

    def __init__(self):
        self.port = None
        self.procs = None

    @property
    def pid(self):
        return self.procs.pid(self.name) if self.procs is not None else None

    def start(self, procs, workdir, redis_port):
        raise NotImplementedError

    def unsupported(self, w):
        """Why this candidate cannot run workload `w` (recorded as not supported), or None."""
        return None

    def stop(self):
        if self.procs is not None:
            self.procs.terminate(self.name, timeout=5.0)
            self.procs = None

    def check_alive(self):
        if self.procs is not None and not self.procs.alive(self.name):
            code = self.procs.items[self.name].returncode
            raise fail(self.procs, self.name, f"exited unexpectedly (code {code})")


class Direct(Candidate):
    name = "direct"
    kind = "direct"

    def start(self, procs, workdir, redis_port):
        self.port = redis_port


# 20000 as in production; lowered only when RLIMIT_NOFILE cannot be raised far enough
# (HAProxy refuses to start when it cannot get about 2 descriptors per connection).
HAPROXY_MAXCONN = [20_000]


class HAProxy(Candidate):
    kind = "haproxy"

    def __init__(self, name="haproxy", nbthread=None):
        super().__init__()
        self.name = name
        self.nbthread = nbthread  # None: HAProxy's default, one thread per CPU

    def start(self, procs, workdir, redis_port):
        self.port = free_port()
        self.procs = procs
        try:
            # Waits until the first check has passed (L7OK), not just the optimistic initial UP.
            start_haproxy(procs, workdir, self.port, [redis_port], maxconn=HAPROXY_MAXCONN[0],
                          frontend_maxconn=HAPROXY_MAXCONN[0], nbthread=self.nbthread,
                          name=self.name)
        except RuntimeError as e:
            raise fail(procs, self.name, str(e))
        wait_for(procs, self.name, lambda: ping_ok(self.port), 10, "PING through HAProxy")


class Twemproxy(Candidate):
    name = "twemproxy"
    kind = "twemproxy"

    # redis-benchmark tests that fail through twemproxy 0.5.0 (each tried with `-t TEST`).
    UNSUPPORTED_TESTS = {
        "ping_inline": "twemproxy closes a connection that sends an inline command",
        "xadd": "twemproxy 0.5.0 has no stream commands",
    }

    def start(self, procs, workdir, redis_port):
        self.port, stats = free_ports(2)
        self.procs = procs
        try:
            start_twemproxy(procs, workdir, self.port, stats, [redis_port], name=self.name)
        except RuntimeError as e:
            raise fail(procs, self.name, str(e))

    def unsupported(self, w):
        why = self.UNSUPPORTED_TESTS.get(w.test)
        return f"not supported by twemproxy: {why}" if why else None


class Proxy(Candidate):
    kind = "proxy"

    def __init__(self, name, binary, relay, log_level, threads=None, mode=None, placement=None):
        super().__init__()
        self.name = name
        self.placement = placement  # None: the default (host)
        self.mode = mode  # None: the default (relay); "multiplex" for proxy-mux
        self.binary = binary
        self.relay = relay
        self.threads = threads
        self.log_level = log_level
        self.admin = None

    def start(self, procs, workdir, redis_port):
        self.port = free_port()
        self.admin = free_port()
        self.procs = procs
        # The config file says the same as the flags, plus max_connections: the default
        # (10000) is raised so that the idle-connection test measures memory, not the limit.
        extra = "max_connections = 20000"
        if self.relay:
            extra += f'\nrelay = "{self.relay}"'
        toml = proxy_toml(self.port, self.admin, [redis_port], extra=extra)
        flags = [
            "--listen", f"127.0.0.1:{self.port}",
            "--admin", f"127.0.0.1:{self.admin}",
            "--backend", f"127.0.0.1:{redis_port}",
        ]
        if self.relay:
            flags += ["--relay", self.relay]
        if self.threads is not None:
            flags += ["--threads", str(self.threads)]
        if self.mode:
            flags += ["--mode", self.mode]
        if self.placement:
            flags += ["--placement", self.placement]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", self.log_level)
        try:
            start_proxy(procs, workdir, str(self.binary), self.admin, toml, name=self.name, env=env,
                        args=flags, timeout=20)
        except RuntimeError as e:
            raise BenchError(str(e))
        wait_for(procs, self.name, lambda: ping_ok(self.port), 10, "PING through the proxy")


def proxy_binary(args):
    path = os.environ.get("REDIS_MASTER_PROXY_BIN") or args.proxy_bin
    if path:
        p = Path(path)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise BenchError(f"proxy binary {p} does not exist or is not executable")
        return p.resolve()
    if not args.no_build:
        if shutil.which("cargo") is None:
            raise BenchError("cargo not found; install Rust or set REDIS_MASTER_PROXY_BIN")
        build_release()
    p = REPO / "target" / "release" / "redis-master-proxy"
    if not p.is_file():
        raise BenchError(f"{p} not found; build it or set REDIS_MASTER_PROXY_BIN")
    return p


def make_candidates(names, args):
    out, binary = [], None
    for n in names:
        if n == "direct":
            out.append(Direct())
        elif n == "haproxy":
            out.append(HAProxy())
        elif n == "haproxy-t1":
            out.append(HAProxy("haproxy-t1", nbthread=1))
        elif n == "twemproxy":
            out.append(Twemproxy())
        elif n.startswith("proxy"):
            if binary is None:
                binary = proxy_binary(args)
            # proxy[-before][-copy|-splice|-auto|-mux][-conn][-tN]: another build (--before-bin),
            # relay mode (or multiplex mode), placement = "connection", and runtime threads.
            relay, threads, mode, placement, which = None, None, None, None, binary
            for part in n.split("-")[1:]:
                if re.fullmatch(r"t\d+", part):
                    threads = int(part[1:])
                elif part == "mux":
                    mode = "multiplex"
                elif part == "conn":
                    placement = "connection"
                elif part == "before":
                    if not args.before_bin or not Path(args.before_bin).is_file():
                        raise BenchError(f"{n}: --before-bin PATH (another build's binary) is needed")
                    which = Path(args.before_bin)
                else:
                    relay = part
            out.append(Proxy(n, which, relay, args.proxy_log_level, threads, mode, placement))
    return out, binary


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


def prepare_key(redis_port, size):
    """redis-benchmark's GET reads the key its SET writes; give it a value of the right size."""
    reply = redis_call(redis_port, "SET", "key:__rand_int__", b"x" * size, timeout=30)
    if reply != "OK":
        raise BenchError(f"could not prepare the GET key: {str(reply)[:100]!r}")


def run_benchmark(cand, w, n, redis_port, timeout):
    if w.test == "get":
        prepare_key(redis_port, w.size)
    cmd = [
        "redis-benchmark",
        "-h", "127.0.0.1",
        "-p", str(cand.port),
        "-t", w.test,
        "-n", str(n),
        "-c", str(w.clients),
        "-d", str(w.size),
        "-P", str(w.pipeline),
        "--csv",
    ]
    cpu0 = cpu_seconds(cand.pid)
    rcpu0 = cpu_seconds(REDIS_PID[0])
    t0 = time.monotonic()
    bench_cpus = PIN["bench"]
    pin = (lambda: os.sched_setaffinity(0, bench_cpus)) if bench_cpus is not None else None
    try:
        r = run_cmd(cmd, timeout=timeout, preexec_fn=pin)
    except subprocess.TimeoutExpired:
        return {"error": f"redis-benchmark timed out after {timeout}s"}
    wall = time.monotonic() - t0
    cpu1 = cpu_seconds(cand.pid)
    rcpu1 = cpu_seconds(REDIS_PID[0])
    row = None
    for rec in csv.DictReader(io.StringIO(r.stdout)):
        if rec.get("test", "").upper() == w.test.upper():
            row = rec
    if r.returncode != 0 or row is None:
        msg = (r.stderr or r.stdout).strip().replace("\n", " | ")[:300]
        return {"error": f"redis-benchmark exit {r.returncode}: {msg}"}
    rps = float(row["rps"])
    res = {
        "rps": rps,
        "avg_ms": float(row["avg_latency_ms"]),
        "p50_ms": float(row["p50_latency_ms"]),
        "p95_ms": float(row["p95_latency_ms"]),
        "p99_ms": float(row["p99_latency_ms"]),
        "max_ms": float(row["max_latency_ms"]),
        "wall_s": round(wall, 3),
        "proxy_cpu_s": None if cpu0 is None else round(cpu1 - cpu0, 3),
        "redis_cpu_s": round(rcpu1 - rcpu0, 3),
    }
    res["proxy_cpu_us_per_req"] = None if cpu0 is None else (cpu1 - cpu0) * 1e6 / n
    res["redis_cpu_us_per_req"] = (rcpu1 - rcpu0) * 1e6 / n
    return res


REDIS_PID = [None]


def redis_connected_clients(redis_port):
    try:
        info = redis_call(redis_port, "INFO", "clients", timeout=5.0)
    except Exception:  # noqa: BLE001
        return None
    if isinstance(info, RespError) or not isinstance(info, str):
        return None
    v = parse_info(info).get("connected_clients")
    return int(v) if v is not None else None


# As a RESP array, as clients send it (twemproxy closes a connection that sends an inline command).
PING = b"*1\r\n$4\r\nPING\r\n"


def hold_idle_connections(port, count, batch=200, deadline_s=120):
    """Open `count` connections, PING each once (so the proxy has its backend side
    open too), and return the sockets plus the number that failed."""
    sel = selectors.DefaultSelector()
    socks, failed = [], 0
    end = time.monotonic() + deadline_s
    try:
        for start in range(0, count, batch):
            if time.monotonic() > end:
                failed += count - start
                break
            pending = {}
            for _ in range(min(batch, count - start)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", port))
                if err not in (0, 115):  # EINPROGRESS
                    s.close()
                    failed += 1
                    continue
                pending[s] = "connect"
                sel.register(s, selectors.EVENT_WRITE)
            batch_end = min(end, time.monotonic() + 30)
            bufs = {}
            while pending and time.monotonic() < batch_end:
                for key, _ in sel.select(timeout=0.5):
                    s = key.fileobj
                    if pending[s] == "connect":
                        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                            sel.unregister(s)
                            s.close()
                            del pending[s]
                            failed += 1
                            continue
                        try:
                            s.send(PING)
                        except OSError:
                            sel.unregister(s)
                            s.close()
                            del pending[s]
                            failed += 1
                            continue
                        pending[s] = "pong"
                        bufs[s] = b""
                        sel.modify(s, selectors.EVENT_READ)
                    else:
                        try:
                            data = s.recv(64)
                        except OSError:
                            data = b""
                        if not data:
                            sel.unregister(s)
                            s.close()
                            del pending[s]
                            failed += 1
                            continue
                        bufs[s] += data
                        if bufs[s].endswith(b"\r\n"):
                            sel.unregister(s)
                            del pending[s]
                            if bufs[s].startswith(b"+PONG"):
                                socks.append(s)
                            else:
                                s.close()
                                failed += 1
            for s in list(pending):
                sel.unregister(s)
                s.close()
                failed += 1
    except BaseException:
        for s in socks:
            s.close()
        raise
    finally:
        sel.close()
    return socks, failed


def ping_all(socks, deadline_s=30):
    """PING every held connection once more; return how many answered +PONG."""
    sel = selectors.DefaultSelector()
    bufs = {}
    try:
        for s in socks:
            try:
                if s.send(PING) == len(PING):
                    bufs[s] = b""
                    sel.register(s, selectors.EVENT_READ)
            except OSError:
                pass
        ok = 0
        end = time.monotonic() + deadline_s
        while bufs and time.monotonic() < end:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    data = s.recv(64)
                except OSError:
                    data = b""
                bufs[s] += data
                if not data or bufs[s].endswith(b"\r\n"):
                    ok += bufs[s].startswith(b"+PONG")
                    sel.unregister(s)
                    del bufs[s]
        return ok
    finally:
        sel.close()


def idle_test(cand, redis_port, count, settle_s):
    """Memory and fds of one freshly started candidate holding `count` idle connections."""
    pid = cand.pid if cand.pid is not None else REDIS_PID[0]
    time.sleep(settle_s)
    before = mem_snapshot(pid)
    clients_before = redis_connected_clients(redis_port)
    t0 = time.monotonic()
    socks, failed = hold_idle_connections(cand.port, count)
    open_s = time.monotonic() - t0
    try:
        time.sleep(settle_s)
        cand.check_alive()
        after = mem_snapshot(pid)
        clients_after = redis_connected_clients(redis_port)
        # Idle connections must still work: PING each once more.
        alive = ping_all(socks)
        cand.check_alive()
    finally:
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            s.close()
    held = len(socks)
    res = {
        "process": "redis-server" if cand.pid is None else cand.name,
        "requested": count,
        "held": held,
        "failed": failed,
        "alive_after": alive,
        "open_seconds": round(open_s, 2),
        "before": before,
        "after": after,
        "backend_clients_before": clients_before,
        "backend_clients_after": clients_after,
    }
    if held and before["rss_kib"] is not None and after["rss_kib"] is not None:
        res["rss_per_conn_bytes"] = (after["rss_kib"] - before["rss_kib"]) * 1024 / held
    if held and before["fds"] is not None and after["fds"] is not None:
        res["fds_per_conn"] = (after["fds"] - before["fds"]) / held
    return res


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(samples, cand_names, workloads):
    summary = {}
    for w in workloads:
        per = {}
        for c in cand_names:
            ok = [s for s in samples if s["workload"] == w.id and s["candidate"] == c and "rps" in s]
            bad = [s for s in samples if s["workload"] == w.id and s["candidate"] == c and "error" in s]
            errs = [s["error"] for s in bad]
            rps = [s["rps"] for s in ok]
            per[c] = {
                "runs": len(ok),
                "errors": errs,
                "unsupported": bool(bad) and not ok and all(s.get("unsupported") for s in bad),
                "rps_median": median(rps),
                "rps_min": min(rps) if rps else None,
                "rps_max": max(rps) if rps else None,
                "p50_ms_median": median([s["p50_ms"] for s in ok]),
                "p99_ms_median": median([s["p99_ms"] for s in ok]),
                "proxy_cpu_us_per_req_median": median([s["proxy_cpu_us_per_req"] for s in ok]),
                "redis_cpu_us_per_req_median": median([s["redis_cpu_us_per_req"] for s in ok]),
            }
        direct = per.get("direct", {}).get("rps_median")
        for c in cand_names:
            m = per[c]["rps_median"]
            per[c]["ratio_to_direct"] = (m / direct) if (m is not None and direct) else None
            # Median of the per-round ratios: robust against slow drifts of the machine.
            rr = []
            for s in samples:
                if s["workload"] == w.id and s["candidate"] == c and "rps" in s:
                    d = [x for x in samples if x["workload"] == w.id and x["candidate"] == "direct"
                         and x["round"] == s["round"] and "rps" in x]
                    if d:
                        rr.append(s["rps"] / d[0]["rps"])
            per[c]["ratio_to_direct_paired_median"] = median(rr)
        summary[w.id] = per
    return summary


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def fmt(v, spec, dash="–"):
    return dash if v is None else format(v, spec)


def human_size(b):
    if b >= MIB:
        return f"{b // MIB} MiB"
    if b >= KIB:
        return f"{b // KIB} KiB"
    return f"{b} B"


def write_markdown(res, path):
    m = res["meta"]
    cands = m["candidates"]
    L = []
    L.append("# Benchmark results: redis-master-proxy vs. HAProxy vs. twemproxy vs. direct")
    L.append("")
    if m.get("quick"):
        L.append("> **Smoke-test run (`--quick`)**: one round with few requests; the numbers are not meaningful.")
        L.append("")
    L.append(f"Measured {m['date']} with `{m['command']}`.")
    L.append("")
    L.append("## Machine and versions")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    for k, label in [
        ("nproc", "CPUs (`nproc`)"),
        ("cpu_model", "CPU model"),
        ("kernel", "Kernel"),
        ("os", "OS"),
        ("redis_version", "Redis"),
        ("redis_benchmark_version", "redis-benchmark"),
        ("haproxy_version", "HAProxy"),
        ("twemproxy_version", "twemproxy (nutcracker)"),
        ("proxy_version", "redis-master-proxy"),
        ("proxy_commit", "redis-master-proxy commit"),
        ("haproxy_threads", "HAProxy threads"),
        ("twemproxy_threads", "twemproxy threads"),
        ("haproxy_maxconn", "HAProxy maxconn"),
        ("rlimit_nofile", "RLIMIT_NOFILE"),
        ("proxy_threads", "redis-master-proxy threads"),
        ("pin", "CPUs of redis-server / the candidate / redis-benchmark (`--pin`)"),
        ("loadavg_start", "Load average at start"),
        ("loadavg_end", "Load average at end"),
    ]:
        if m.get(k) is not None:
            L.append(f"| {label} | {m[k]} |")
    if m.get("threads"):
        L.append("| OS threads per process | " + ", ".join(f"`{c}` {n}" for c, n in m["threads"].items())
                 + " |")
    L.append("")
    L.append(f"Rounds: {m['rounds']}. Candidates: {', '.join(f'`{c}`' for c in cands)}.")
    L.append("")
    L.append("Candidates:")
    L.append("")
    descr = {
        "direct": "redis-benchmark connects straight to redis-server (the baseline).",
        "haproxy": "HAProxy in TCP mode with the production-style `INFO replication` / `role:master` check "
                   "(config in `benches/harness/endpoints.py`), default threads (one per CPU).",
        "haproxy-t1": "HAProxy as above with `nbthread 1`: one thread, like the proxy's sessions from one "
                      "client host.",
        "twemproxy": "twemproxy (nutcracker) with one pool holding the one redis-server, `redis: true`, "
                     "`server_connections: 1` (its default), `preconnect: true`, defaults otherwise "
                     "(config in `benches/harness/endpoints.py`): every client's commands share one "
                     "backend connection, many clients' commands per write, which spares Redis work "
                     "per request and is why it cannot offer `MULTI`, blocking commands, pub/sub, "
                     "`SELECT` or `CLIENT` commands.",
        "proxy": "redis-master-proxy with its default relay mode (`auto`).",
        "proxy-copy": "redis-master-proxy with `--relay copy` (user-space copy).",
        "proxy-splice": "redis-master-proxy with `--relay splice` (splice(2) through a pipe).",
        "proxy-mux": "redis-master-proxy with `--mode multiplex` (commands without connection state "
                     "share a few backend connections per thread).",
        "proxy-conn": "redis-master-proxy with `--placement connection` (each client on the least-loaded "
                      "data-path thread, so one client host uses both threads).",
    }
    for c in cands:
        d = descr.get(c)
        if d is None and c.startswith("proxy-before"):
            d = descr.get(c.replace("-before", ""), "redis-master-proxy").rstrip(".") + \
                f", the build given with `--before-bin` ({m.get('before_bin') or 'another build'})."
        if d is None and (mt := re.fullmatch(r"(proxy(?:-\w+)?)-t(\d+)", c)):
            d = descr.get(mt.group(1), "redis-master-proxy").rstrip(".") + f", with `--threads {mt.group(2)}`."
        L.append(f"- `{c}`: {d or ''}")
    L.append("")
    L.append("![Throughput relative to direct](throughput.png)")
    L.append("")
    L.append("## Throughput and latency")
    L.append("")
    L.append("Medians over the rounds. *vs direct* is the ratio of the median requests/s to the median "
             "of `direct`; *spread* is (max − min) / median of requests/s over the rounds. "
             "*CPU/req* is the user+system CPU time of the proxy process (all threads) during the "
             "measurement divided by the number of requests; *redis CPU/req* is the same for redis-server.")
    L.append("")
    for w in res["workloads"]:
        per = res["summary"][w["id"]]
        L.append(f"### {w['title']}")
        L.append("")
        L.append(f"`redis-benchmark -t {w['test'].lower()} -d {w['value_bytes']} -c {w['clients']} "
                 f"-P {w['pipeline']} -n {w['requests']}` ({human_size(w['value_bytes'])} values)")
        L.append("")
        L.append("| candidate | requests/s | vs direct | spread | p50 ms | p99 ms | CPU/req µs | redis CPU/req µs |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for c in cands:
            s = per[c]
            if s["rps_median"] is None:
                L.append(f"| {c} | {'not supported' if s.get('unsupported') else 'failed'} | | | | | | |")
                continue
            spread = (s["rps_max"] - s["rps_min"]) / s["rps_median"] * 100 if s["rps_median"] else None
            ratio = s["ratio_to_direct"]
            L.append(
                f"| {c} | {s['rps_median']:,.0f} | {fmt(ratio, '.2f')} | {fmt(spread, '.0f')}% | "
                f"{fmt(s['p50_ms_median'], '.3f')} | {fmt(s['p99_ms_median'], '.3f')} | "
                f"{fmt(s['proxy_cpu_us_per_req_median'], '.2f')} | {fmt(s['redis_cpu_us_per_req_median'], '.2f')} |"
            )
        errs = [(c, e) for c in cands if not per[c].get("unsupported") for e in per[c]["errors"]]
        unsupported = [(c, per[c]["errors"][0]) for c in cands if per[c].get("unsupported")]
        if errs or unsupported:
            L.append("")
            for c, e in unsupported:
                L.append(f"- `{c}`: {e}")
            for c, e in errs:
                L.append(f"- `{c}` failed a run: {e}")
        L.append("")
    idle = res.get("idle")
    if idle:
        L.append(f"## {res['meta']['idle_conns']:,} idle client connections")
        L.append("")
        L.append("Each process was started fresh, then a client opened the connections, sent one `PING` "
                 "on each (so the backend side is open too) and held them idle. *open time* is how long "
                 "opening them took, 200 connection attempts at a time; *held / alive* counts the connections "
                 "that answered the first `PING` and those that still answered a second `PING` after the "
                 "measurement. RSS and open file descriptors were read from `/proc/PID/status` and `/proc/PID/fd` before and after; "
                 "*peak RSS* is VmHWM with the connections open. *backend conns* is `connected_clients` "
                 "of redis-server while the connections were held (includes the health checks).")
        L.append("")
        L.append("| process | open time | held / alive | RSS before | RSS after | peak RSS | RSS/conn | fds before | fds after | fds/conn | backend conns |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in cands:
            r = idle.get(c)
            if r is None:
                continue
            if "error" in r:
                L.append(f"| {c} | failed: {r['error'][:80]} | | | | | | | | | |")
                continue
            b, a = r["before"], r["after"]
            name = c if c != "direct" else "direct (redis-server itself)"
            per_conn = r.get("rss_per_conn_bytes")
            L.append(
                f"| {name} | {r['open_seconds']:.1f} s | {r['held']:,} / {r.get('alive_after', 0):,} | {fmt_kib(b['rss_kib'])} | {fmt_kib(a['rss_kib'])} | "
                f"{fmt_kib(a['hwm_kib'])} | {fmt(per_conn / 1024 if per_conn is not None else None, '.1f')} KiB | "
                f"{fmt(b['fds'], ',')} | {fmt(a['fds'], ',')} | {fmt(r.get('fds_per_conn'), '.2f')} | "
                f"{fmt(r.get('backend_clients_after'), ',')} |"
            )
        L.append("")
    L.append("## Method")
    L.append("")
    L.append(
        "- One redis-server (persistence off) on a free loopback port is the only backend; every candidate "
        "runs in front of it at the same time, on the same machine as redis-benchmark."
    )
    L.append(
        "- Measurements are interleaved: in each round every workload is run once per candidate, "
        "back to back, and the order of the candidates rotates from round to round, so slow drifts of "
        "the machine (other load, thermal, caches) hit all candidates alike."
    )
    L.append(
        "- The reported numbers are medians over the rounds; the spread column shows how noisy a "
        "workload was. Differences smaller than the spread are noise."
    )
    L.append(
        "- redis-benchmark, redis-server and the proxy share the same CPUs. On a machine with few cores "
        "the proxy competes with the client and the server for CPU, so the ratios show the cost of the "
        "extra hop including that competition; CPU/req is the more portable number."
    )
    L.append(
        "- CPU time comes from `/proc/PID/stat` (utime+stime, all threads, plus any child processes), "
        f"sampled right before and after each redis-benchmark run; its resolution is 1/{CLK_TCK} s."
    )
    L.append("- GET workloads read a key written beforehand with a value of the workload's size.")
    L.append("")
    L.append("Raw samples of every round are in [`results.json`](results.json). "
             "How to reproduce: [`README.md`](README.md).")
    L.append("")
    Path(path).write_text("\n".join(L))


def fmt_kib(k):
    if k is None:
        return "–"
    if k >= 10 * 1024:
        return f"{k / 1024:.1f} MiB"
    return f"{k:,} KiB"


def draw_chart(json_path, png_path):
    try:
        run_chart(str(HERE / "chart.py"), json_path, png_path)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        log(f"warning: {e}; no chart drawn")
        return False
    return True


def write_outputs(res, out_dir, chart=True):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jp = out_dir / "results.json"
    jp.write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, out_dir / "results.md")
    drawn = chart and draw_chart(jp, out_dir / "throughput.png")
    log(f"wrote {out_dir / 'results.md'}, {jp}" + (f", {out_dir / 'throughput.png'}" if drawn else ""))


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Interleaved comparative benchmark: direct Redis vs HAProxy vs twemproxy vs redis-master-proxy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--rounds", type=int, default=5, help="rounds (each runs every workload on every candidate)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 round, few requests, 1000 idle connections, output under target/")
    ap.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES),
                    help=f"comma-separated subset of {','.join(ALL_CANDIDATES)}; a proxy candidate "
                         "may end in -tN to run the proxy with --threads N (e.g. proxy-t1), -conn "
                         "runs it with --placement connection; haproxy-t1 is HAProxy with nbthread 1; "
                         "proxy-before[-...] runs the --before-bin build")
    ap.add_argument("--workloads", default="all",
                    help=f"comma-separated subset of {','.join(w.id for w in WORKLOADS)} (default: all), "
                         f"or of the extra mid-size workloads {','.join(w.id for w in EXTRA_WORKLOADS)}")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every workload's request count")
    ap.add_argument("--idle-conns", type=int, default=None,
                    help="idle connections for the memory test (default 10000, 1000 with --quick; 0 skips it)")
    ap.add_argument("--out", default=None,
                    help="output directory (default docs/benchmarks, or target/bench-compare-quick with --quick)")
    ap.add_argument("--proxy-bin", default=None,
                    help="redis-master-proxy binary (env REDIS_MASTER_PROXY_BIN wins; default: cargo build --release)")
    ap.add_argument("--before-bin", default=None,
                    help="another build of redis-master-proxy (e.g. the previous commit's), run by the "
                         "proxy-before candidates, interleaved with this one")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release")
    ap.add_argument("--proxy-log-level", default="warn", help="RUST_LOG for the proxy (unless RUST_LOG is set)")
    ap.add_argument("--bench-timeout", type=float, default=None,
                    help="seconds before one redis-benchmark run is killed (default 180, 60 with --quick)")
    ap.add_argument("--no-chart", action="store_true", help="do not draw throughput.png")
    ap.add_argument("--pin", metavar="REDIS/CANDIDATE/BENCH", default=None,
                    help="bind redis-server, each candidate (all its threads) and redis-benchmark to "
                         "these CPU lists, e.g. 0/0/1: on a machine with fewer CPUs than busy processes, "
                         "which ones share a CPU decides much of the result, and the scheduler's choice "
                         "changes from run to run (docs/benchmarks/README.md)")
    ap.add_argument("--report-only", metavar="RESULTS_JSON",
                    help="only regenerate results.md and throughput.png from an existing results.json")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds = 1
    if a.idle_conns is None:
        a.idle_conns = 1000 if a.quick else 10_000
    if a.bench_timeout is None:
        a.bench_timeout = 60.0 if a.quick else 180.0
    a.out_given = a.out is not None
    if a.out is None:
        a.out = str(REPO / "target" / "bench-compare-quick") if a.quick else str(REPO / "docs" / "benchmarks")
    if a.pin is not None:
        parts = a.pin.split("/")
        try:
            cpus = [parse_cpus(x) for x in parts]
        except ValueError:
            cpus = []
        have = os.sched_getaffinity(0)
        if len(parts) != 3 or not all(cpus) or not all(c <= have for c in cpus):
            ap.error(f"--pin {a.pin}: expected REDIS/CANDIDATE/BENCH CPU lists within "
                     f"{','.join(map(str, sorted(have)))}, e.g. 0/0/1")
        PIN.update(redis=cpus[0], candidate=cpus[1], bench=cpus[2])
    a.candidates = [c.strip() for c in a.candidates.split(",") if c.strip()]
    bad = [c for c in a.candidates
           if c not in ALL_CANDIDATES
           and not re.fullmatch(r"proxy(-before)?(-(auto|copy|splice|mux))?(-conn)?(-t\d+)?", c)]
    if bad or not a.candidates:
        ap.error(f"unknown candidates {bad}; choose from {ALL_CANDIDATES}")
    if len(set(a.candidates)) != len(a.candidates):
        ap.error("duplicate candidates")
    if a.workloads == "all":
        a.workloads = list(WORKLOADS)
    else:
        ids = [x.strip() for x in a.workloads.split(",") if x.strip()]
        bad = [x for x in ids if x not in WORKLOAD_BY_ID]
        if bad or not ids:
            ap.error(f"unknown workloads {bad}; choose from {list(WORKLOAD_BY_ID)}")
        a.workloads = [WORKLOAD_BY_ID[x] for x in ids]
    if not 1 <= a.rounds <= 100:
        ap.error("--rounds must be between 1 and 100")
    if a.scale <= 0:
        ap.error("--scale must be positive")
    if not 0 <= a.idle_conns <= 100_000:
        ap.error("--idle-conns must be between 0 and 100000")
    return a


def requests_for(w, args):
    base = w.n_quick if args.quick else w.n_full
    return max(w.clients * w.pipeline, int(base * args.scale))


def main(argv):
    args = parse_args(argv)
    if args.report_only:
        res = json.loads(Path(args.report_only).read_text())
        out = Path(args.out) if args.out_given else Path(args.report_only).parent
        write_outputs(res, out, chart=not args.no_chart)
        return 0
    if sys.platform != "linux":
        raise BenchError("this benchmark reads /proc and needs Linux")

    require_tools(NEEDED_TOOLS + [t for c, t in CANDIDATE_TOOLS.items() if c in args.candidates])
    candidates, binary = make_candidates(args.candidates, args)

    # Every connection through a proxy costs the proxy two descriptors; the idle test
    # holds args.idle_conns of them in this process too.
    nofile = set_nofile(max(65536, 3 * args.idle_conns + 4096))
    HAPROXY_MAXCONN[0] = min(20_000, (nofile - 200) // 2)
    max_idle = (nofile - 300) // 2 // 500 * 500
    if args.idle_conns > max_idle:
        log(f"warning: RLIMIT_NOFILE {nofile} allows a proxy about {max_idle} connections "
            f"(2 descriptors each); the idle test uses {max_idle} instead of {args.idle_conns}")
        args.idle_conns = max_idle

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(shlex.quote(x) for x in ["python3", "benches/compare/run.py", *argv]),
        "quick": args.quick,
        "rounds": args.rounds,
        "candidates": args.candidates,
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "os": os_name(),
        "redis_version": short_version(version_of(["redis-server", "--version"]), "v="),
        "redis_benchmark_version": version_of(["redis-benchmark", "--version"]),
        "haproxy_version": short_version(version_of(["haproxy", "-v"]), "version") if any(c.startswith("haproxy") for c in args.candidates) else None,
        # "This is nutcracker-0.5.0" -> "0.5.0"
        "twemproxy_version": version_of(["nutcracker", "--version"]).rsplit("-", 1)[-1]
        if "twemproxy" in args.candidates else None,
        "proxy_version": version_of([str(binary), "--version"]) if binary else None,
        "proxy_commit": git_commit() if binary else None,
        "proxy_binary": str(binary) if binary else None,
        "before_bin": args.before_bin,
        "python": platform.python_version(),
        "rlimit_nofile": nofile,
        "haproxy_maxconn": HAPROXY_MAXCONN[0] if "haproxy" in args.candidates else None,
        "idle_conns": args.idle_conns,
        "pin": args.pin,
        "loadavg_start": loadavg(),
    }
    log(f"machine: {meta['nproc']} CPUs, {meta['cpu_model']}, kernel {meta['kernel']}, load {meta['loadavg_start']}")

    workdir = tempfile.mkdtemp(prefix="bench-compare-")
    procs = Procs(workdir)
    samples, idle = [], {}
    try:
        if binary is not None:
            # A private copy, so that a rebuild during the run cannot swap the binary
            # between candidates or rounds.
            private = Path(workdir) / "redis-master-proxy"
            shutil.copy2(binary, private)
            for c in candidates:
                if isinstance(c, Proxy):
                    c.binary = private
        redis_port = start_backend(procs, workdir, maxclients=max(10_000, 2 * args.idle_conns + 2000))
        REDIS_PID[0] = procs.pid("redis-server")
        pin_process(REDIS_PID[0], PIN["redis"])
        log(f"redis-server pid {REDIS_PID[0]} on 127.0.0.1:{redis_port}")

        # Phase 1: idle connections, each candidate freshly started and measured alone.
        if args.idle_conns > 0:
            for c in candidates:
                try:
                    c.start(procs, workdir, redis_port)
                    log(f"idle test: {c.name}, {args.idle_conns} connections")
                    r = idle_test(c, redis_port, args.idle_conns, settle_s=1.0 if args.quick else 2.0)
                    idle[c.name] = r
                    a, b = r["after"], r["before"]
                    log(f"  held {r['held']} (failed {r['failed']}, answering PING after {r['alive_after']}) "
                        f"in {r['open_seconds']}s, RSS {b['rss_kib']} -> {a['rss_kib']} KiB, "
                        f"peak {a['hwm_kib']} KiB, fds {b['fds']} -> {a['fds']}, "
                        f"redis clients {r['backend_clients_after']}")
                    if c.procs is not None and (r["failed"] or r["alive_after"] < r["held"]):
                        log(f"  {c.name} log (tail):\n{procs.logtail(c.name, 1500)}")
                except BenchError as e:
                    log(f"idle test failed for {c.name}: {e}")
                    idle[c.name] = {"error": str(e).splitlines()[0]}
                finally:
                    c.stop()
                time.sleep(1.0)

        # Phase 2: throughput, all candidates running, interleaved round-robin.
        for c in candidates:
            c.start(procs, workdir, redis_port)
            pin_process(c.pid, PIN["candidate"])
            log(f"started {c.name} on 127.0.0.1:{c.port}" + (f" (pid {c.pid})" if c.pid else ""))
        # OS threads of each candidate's process (the proxy's: its control-plane thread and the
        # data-path threads).
        meta["threads"] = {c.name: mem_snapshot(c.pid)["threads"] for c in candidates if c.pid}
        redis_call(redis_port, "FLUSHALL")

        # Warm-up: one short run per candidate so connection pools, page cache, CPU
        # frequency and allocators are in a steady state before the first round.
        warm = WORKLOADS[0]
        for c in candidates:
            run_benchmark(c, warm, 10_000, redis_port, args.bench_timeout)

        dead = {}
        for rnd in range(args.rounds):
            k = rnd % len(candidates)
            order = candidates[k:] + candidates[:k]
            log(f"round {rnd + 1}/{args.rounds}: order {', '.join(c.name for c in order)}")
            for w in args.workloads:
                n = requests_for(w, args)
                for c in order:
                    why = c.unsupported(w)
                    if why:
                        r = {"error": why, "unsupported": True}
                    elif c.name in dead:
                        r = {"error": dead[c.name]}
                    else:
                        r = run_benchmark(c, w, n, redis_port, args.bench_timeout)
                    r.update({"round": rnd, "workload": w.id, "candidate": c.name, "requests": n})
                    samples.append(r)
                    if r.get("unsupported"):
                        log(f"  {w.id:13} {c.name:13} {r['error']}")
                    elif "error" in r:
                        log(f"  {w.id:13} {c.name:13} ERROR {r['error']}")
                    else:
                        cpu = r["proxy_cpu_us_per_req"]
                        log(f"  {w.id:13} {c.name:13} {r['rps']:>11,.0f} req/s  p50 {r['p50_ms']:.3f} "
                            f"p99 {r['p99_ms']:.3f} ms  {r['wall_s']:.1f}s"
                            + (f"  cpu {cpu:.2f} us/req" if cpu is not None else ""))
                    if c.name not in dead:
                        try:
                            c.check_alive()
                        except BenchError as e:
                            # Keep measuring the others; this candidate's later runs are errors.
                            log(f"error: {e}")
                            dead[c.name] = f"{c.name} exited during the run"
    finally:
        for c in candidates:
            try:
                c.stop()
            except Exception as e:  # keep stopping the others
                log(f"warning: stopping {c.name}: {e}")
        procs.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)

    meta["loadavg_end"] = loadavg()
    res = {
        "meta": meta,
        "workloads": [w.as_dict(requests_for(w, args)) for w in args.workloads],
        "summary": summarize(samples, args.candidates, args.workloads),
        "idle": idle,
        "samples": samples,
    }
    write_outputs(res, args.out, chart=not args.no_chart)
    return 0


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted; all started processes were stopped")
        sys.exit(130)
