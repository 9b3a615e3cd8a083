#!/usr/bin/env python3
"""Failover benchmark: what a client sees through a Redis "master endpoint" during a
Sentinel-driven failover.

For each candidate endpoint (HAProxy with the usual `role:master` tcp-check, and
redis-master-proxy) and each failover mode (switchover, kill, hang), several times,
on a fresh local cluster each time (1 master, 2 replicas, 3 sentinels, all on
127.0.0.1, persistence off):

  * a probe writes `SET probe:<run>:<n> <n>` through the endpoint every 10 ms and logs
    each attempt (ok / refused / reset / closed / timeout / readonly / other);
  * every redis node's `INFO replication` is polled every 50 ms and one sentinel's
    event stream is recorded (+switch-master, +sdown, ...);
  * about 3 s after the probe starts the failover is triggered;
  * at the end every key the probe got +OK for is looked up on the final master:
    a missing key is an acknowledged write that was lost.

Writes docs/failover/results.json, results.md and one chart per mode. Standard library
only; the charts use matplotlib from a virtualenv under benches/failover/.venv that
this script creates on first use.

    python3 benches/failover/run.py                      # everything, 3 repetitions
    python3 benches/failover/run.py --quick              # smoke test: 1 rep, 1 mode
    python3 benches/failover/run.py --candidates haproxy --modes kill --reps 1
"""

import argparse
import ctypes
import datetime
import http.client
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from resp import Conn, ConnectionClosed, RespError, call_once, parse_info  # noqa: E402
import report  # noqa: E402

HOST = "127.0.0.1"
MASTER_NAME = "mymaster"
CANDIDATES = ["haproxy", "proxy"]
CLIENTS = ["persistent", "fresh"]
MODES = ["switchover", "kill", "hang"]
FAIL_KINDS = ["readonly", "timeout", "refused", "reset", "closed", "other"]
KINDS = ["ok"] + FAIL_KINDS

PROBE_INTERVAL = 0.010      # one write attempt every 10 ms
PROBE_TIMEOUT = 1.0         # client socket timeout (connect and each reply)
POLL_PERIOD = 0.050         # INFO replication polling period per node
POLL_TIMEOUT = 0.300        # a node that does not answer within this is "down"
TRIGGER_AFTER = 3.0         # seconds of steady writes before the failover is triggered
HANG_FOR = 10.0             # hang mode: SIGCONT this long after SIGSTOP
MAX_EXTRA_OBSERVE = 20.0    # keep observing at most this long past --observe until stable


def now():
    return time.monotonic()


def log(msg):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), msg), flush=True)


# --------------------------------------------------------------------------------------
# Processes

_libc = None


def _die_with_parent():
    # Runs in the child between fork and exec: if this script dies (even SIGKILL),
    # the kernel kills the child too.
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Procs:
    """Every process of one run; kill_all() is called from a finally."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.items = {}
        self.stopped = set()

    def start(self, name, argv, env=None):
        logpath = os.path.join(self.tmp, name + ".log")
        f = open(logpath, "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, env=env,
                                 preexec_fn=_die_with_parent, cwd=self.tmp)
        finally:
            f.close()
        self.items[name] = p
        return p

    def logtail(self, name, n=2000):
        try:
            with open(os.path.join(self.tmp, name + ".log"), "rb") as f:
                data = f.read()
            return data[-n:].decode(errors="replace")
        except OSError:
            return ""

    def pid(self, name):
        return self.items[name].pid

    def signal(self, name, sig):
        p = self.items[name]
        if p.poll() is None:
            os.kill(p.pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped.add(name)
        elif sig == signal.SIGCONT:
            self.stopped.discard(name)

    def kill(self, name):
        p = self.items.get(name)
        if p is None:
            return
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except OSError:
                pass
            try:
                p.kill()
            except OSError:
                pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.stopped.discard(name)

    def kill_all(self):
        # SIGCONT first for paused ones so that SIGKILL is delivered promptly.
        for name, p in self.items.items():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except OSError:
                    pass
        for name in reversed(list(self.items)):
            self.kill(name)


def free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def wait_until(pred, timeout, what, interval=0.1):
    deadline = now() + timeout
    last_exc = None
    while now() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        time.sleep(interval)
    raise RuntimeError("timed out after %.0fs waiting for %s%s" % (
        timeout, what, (" (last error: %r)" % last_exc) if last_exc else ""))


def redis_call(port, *args, timeout=1.0):
    return call_once(HOST, port, *args, timeout=timeout)


def info_repl(port, timeout=1.0):
    r = redis_call(port, "INFO", "replication", timeout=timeout)
    if isinstance(r, RespError):
        raise RuntimeError(r)
    return parse_info(r)


def pairs_to_dict(lst):
    return {lst[i]: lst[i + 1] for i in range(0, len(lst) - 1, 2)}


# --------------------------------------------------------------------------------------
# Tools

def tool_versions(args):
    def out(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else ""
        except Exception as e:  # noqa: BLE001
            return "unavailable (%s)" % e
    v = {
        "redis": out(["redis-server", "--version"]),
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
    }
    if "haproxy" in args.candidates:
        v["haproxy"] = out(["haproxy", "-v"])
    if getattr(args, "built_commit", None):
        v["git_commit"] = "%s (proxy built from this commit with --build)" % args.built_commit
    else:
        commit = out(["git", "-C", REPO, "rev-parse", "HEAD"])
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml",
                                "Cargo.lock"], capture_output=True, text=True).stdout.strip()
        v["git_commit"] = commit + (" (work tree with uncommitted changes in src/ or Cargo.*)"
                                    if dirty else "")
    if "proxy" in args.candidates:
        v["proxy_binary"] = args.proxy_bin_source
        v["proxy_version"] = out([args.proxy_bin, "--version"]) if os.path.exists(args.proxy_bin) else "missing"
        if os.path.exists(args.proxy_bin):
            import hashlib
            with open(args.proxy_bin, "rb") as f:
                v["proxy_sha256"] = hashlib.sha256(f.read()).hexdigest()
            v["proxy_built"] = datetime.datetime.fromtimestamp(
                os.path.getmtime(args.proxy_bin_source), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return v


def ensure_tools(args):
    needed = {"redis-server": "redis-server", "redis-sentinel": "redis-sentinel"}
    if "haproxy" in args.candidates:
        needed["haproxy"] = "haproxy"
    missing = [b for b in needed if shutil.which(b) is None]
    if missing:
        pkgs = sorted({needed[b] for b in missing})
        if args.no_install or os.geteuid() != 0 or shutil.which("apt-get") is None:
            sys.exit("error: missing %s; install them first, e.g. `apt-get install %s`"
                     % (", ".join(missing), " ".join(pkgs)))
        log("installing %s with apt-get" % " ".join(pkgs))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")  # RUNLEVEL=1: no service start
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + pkgs, check=True, env=env)
        still = [b for b in needed if shutil.which(b) is None]
        if still:
            sys.exit("error: still missing after apt-get: %s" % ", ".join(still))
    if "proxy" in args.candidates and not os.access(args.proxy_bin, os.X_OK):
        sys.exit("error: %s not found; build it first with `cargo build --release`" % args.proxy_bin)


def build_proxy(rev):
    """git archive REV into .build/src and cargo build --release there; returns (binary, commit)."""
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--verify", rev + "^{commit}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        sys.exit("error: unknown git revision %r" % rev)
    commit = commit.stdout.strip()
    build = os.path.join(HERE, ".build")
    src = os.path.join(build, "src")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    log("building redis-master-proxy at %s in %s" % (commit[:12], src))
    archive = subprocess.Popen(["git", "-C", REPO, "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", src], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        sys.exit("error: git archive %s failed" % commit)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(build, "target"))
    r = subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "redis-master-proxy"],
                       cwd=src, env=env)
    if r.returncode != 0:
        sys.exit("error: cargo build --release failed for %s" % commit)
    return os.path.join(build, "target", "release", "redis-master-proxy"), commit


# --------------------------------------------------------------------------------------
# Cluster

def start_redis(procs, tmp, name, port, master_port=None):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", HOST, "--dir", d,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
            "--repl-diskless-sync-delay", "0"]
    if master_port:
        argv += ["--replicaof", HOST, str(master_port)]
    procs.start(name, argv)
    wait_until(lambda: redis_call(port, "PING", timeout=0.5) == "PONG", 10, name + " PING")
    return argv


SENTINEL_CONF = """port {port}
bind 127.0.0.1
daemonize no
dir {dir}
logfile ""
sentinel monitor {name} 127.0.0.1 {master_port} 2
sentinel down-after-milliseconds {name} 1000
sentinel failover-timeout {name} 3000
sentinel parallel-syncs {name} 1
"""


def start_sentinel(procs, tmp, name, port, master_port):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "sentinel.conf")
    with open(conf, "w") as f:
        f.write(SENTINEL_CONF.format(port=port, dir=d, name=MASTER_NAME, master_port=master_port))
    procs.start(name, ["redis-sentinel", conf])
    wait_until(lambda: redis_call(port, "PING", timeout=0.5) == "PONG", 10, name + " PING")


def sentinel_master_port(port, timeout=0.5):
    r = redis_call(port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME, timeout=timeout)
    if isinstance(r, list) and len(r) == 2:
        return int(r[1])
    return None


def sentinels_ready(sports):
    for sp in sports:
        m = pairs_to_dict(redis_call(sp, "SENTINEL", "MASTER", MASTER_NAME))
        if int(m.get("num-slaves", 0)) != 2 or int(m.get("num-other-sentinels", 0)) != 2:
            return False
        if m.get("flags") != "master":
            return False
        for rep in redis_call(sp, "SENTINEL", "REPLICAS", MASTER_NAME):
            rd = pairs_to_dict(rep)
            if rd.get("flags") != "slave" or rd.get("master-link-status") != "ok":
                return False
    return True


def replicas_online(master_port, n):
    info = info_repl(master_port)
    online = [k for k, v in info.items() if k.startswith("slave") and "state=online" in v]
    return len(online) == n


# --------------------------------------------------------------------------------------
# Candidates

HAPROXY_CFG = """global
    maxconn 4096
    stats socket {sock} mode 600 level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 1h
    timeout server 1h

frontend redis_master
    bind 127.0.0.1:{listen}
    default_backend redis_master

backend redis_master
    option tcp-check
    tcp-check send info\\ replication\\r\\n
    tcp-check expect string role:master
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
{servers}
"""


def haproxy_servers_up(sock_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(sock_path)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    lines = data.decode(errors="replace").splitlines()
    header = lines[0].lstrip("# ").split(",")
    up = []
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == "redis_master" and row.get("svname", "").startswith("r"):
            if row.get("status", "").startswith("UP"):
                up.append(row["svname"])
    return up


def start_haproxy(procs, tmp, listen, rports, notes):
    sock = os.path.join(tmp, "haproxy.sock")
    servers = "\n".join(
        "    server r%d 127.0.0.1:%d check inter 1s fall 1 rise 1 on-marked-down shutdown-sessions"
        % (i + 1, p) for i, p in enumerate(rports))
    cfg_text = HAPROXY_CFG.format(sock=sock, listen=listen, servers=servers)
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    r = subprocess.run(["haproxy", "-c", "-f", cfg], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError("haproxy -c failed: %s" % (r.stdout + r.stderr)[-1500:])
    procs.start("haproxy", ["haproxy", "-db", "-f", cfg])
    # Servers start UP until their first check: wait until only the master (r1) is UP.
    wait_until(lambda: haproxy_servers_up(sock) == ["r1"], 20, "HAProxy to mark only r1 UP", 0.2)
    return {"config": cfg_text, "command": "haproxy -db -f haproxy.cfg"}


def proxy_config(listen, admin, rports, sports, with_sentinel):
    lines = [
        'listen = "127.0.0.1:%d"' % listen,
        'admin = "127.0.0.1:%d"' % admin,
        "backends = [%s]" % ", ".join('"127.0.0.1:%d"' % p for p in rports),
    ]
    if with_sentinel:
        lines += ["", "[sentinel]",
                  "addresses = [%s]" % ", ".join('"127.0.0.1:%d"' % p for p in sports),
                  'master_name = "%s"' % MASTER_NAME]
    return "\n".join(lines) + "\n"


def http_get(port, path, timeout=0.5):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def start_proxy(procs, tmp, binary, listen, admin, rports, sports, notes, state):
    """Start redis-master-proxy; fall back to no [sentinel] section if it is rejected."""
    attempts = [True, False] if state.get("sentinel", True) else [False]
    last_err = None
    for with_sentinel in attempts:
        text = proxy_config(listen, admin, rports, sports, with_sentinel)
        cfg = os.path.join(tmp, "proxy.toml")
        with open(cfg, "w") as f:
            f.write(text)
        name = "proxy" if with_sentinel else "proxy-nosentinel"
        p = procs.start(name, [binary, "run", "--config", cfg])
        deadline = now() + 30
        ready = False
        while now() < deadline and p.poll() is None:
            try:
                if http_get(admin, "/readyz")[0] == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.1)
        if ready:
            if not with_sentinel:
                state["sentinel"] = False
                notes.append("the proxy rejected the [sentinel] section, so it ran without it "
                             "(health checks only): %s" % state.get("sentinel_error", "")[:300])
            return {"config": text, "command": "redis-master-proxy run --config proxy.toml",
                    "process": name, "sentinel": with_sentinel}
        tail = procs.logtail(name)
        procs.kill(name)
        last_err = "redis-master-proxy %s (exit code %s): %s" % (
            "exited" if p.poll() is not None else "not ready within 30 s", p.poll(), tail[-800:])
        if with_sentinel and p.poll() is not None and "sentinel" in tail.lower():
            state["sentinel_error"] = tail.strip().splitlines()[-1] if tail.strip() else ""
            continue
        break
    raise RuntimeError(last_err)


# --------------------------------------------------------------------------------------
# Observers

class Probe(threading.Thread):
    """Writes SET probe:<run>:<n> <n> every PROBE_INTERVAL.

    fresh=False: one long-lived connection, replaced after any error (a pooled client).
    fresh=True: a new connection for every write (short-lived clients: scripts, jobs).
    On each new connection it first asks `CONFIG GET port`, which tells which redis the
    endpoint bound that connection to (a TCP proxy keeps a connection on one backend).
    """

    def __init__(self, port, run_id, identify=True, max_seconds=300, fresh=False):
        super().__init__(daemon=True)
        self.port = port
        self.run_id = run_id
        self.identify = identify
        self.fresh = fresh
        self.max_seconds = max_seconds
        self.stop_evt = threading.Event()
        self.attempts = []  # (n, t_start, t_end, kind, phase, node, detail)

    def run(self):
        conn = None
        node = None
        n = 0
        next_t = now()
        deadline = now() + self.max_seconds
        while not self.stop_evt.is_set() and now() < deadline:
            d = next_t - now()
            if d > 0:
                time.sleep(d)
            n += 1
            key = "probe:%s:%d" % (self.run_id, n)
            t0 = now()
            kind, phase, detail = "ok", "connect", ""
            try:
                if conn is None:
                    phase = "connect"
                    conn = Conn(HOST, self.port, timeout=PROBE_TIMEOUT)
                    if self.identify:
                        phase = "identify"
                        r = conn.call("CONFIG", "GET", "port")
                        if isinstance(r, RespError):
                            raise _Reply(r)
                        node = int(r[1]) if isinstance(r, list) and len(r) == 2 else None
                phase = "write"
                r = conn.call("SET", key, str(n))
                if r != "OK":
                    raise _Reply(r)
            except _Reply as e:
                r = e.reply
                if isinstance(r, RespError) and r.prefix == "READONLY":
                    kind = "readonly"
                else:
                    kind, detail = "other", str(r)[:80]
            except ConnectionRefusedError:
                kind = "refused"
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                kind = "reset"
            except ConnectionClosed:
                kind = "closed"
            except (TimeoutError, socket.timeout):
                kind = "timeout"
            except Exception as e:  # noqa: BLE001 - classified as "other"
                kind, detail = "other", ("%s: %s" % (type(e).__name__, e))[:80]
            t1 = now()
            self.attempts.append((n, t0, t1, kind, phase, node if kind == "ok" or phase == "write" else None, detail))
            if kind != "ok" or self.fresh:
                if conn is not None:
                    conn.close()
                conn = None
                node = None
            next_t = max(next_t + PROBE_INTERVAL, t1)
        if conn is not None:
            conn.close()


class _Reply(Exception):
    def __init__(self, reply):
        super().__init__(str(reply))
        self.reply = reply


class NodePoller(threading.Thread):
    """Polls one redis node's INFO replication; records every change of role/link."""

    def __init__(self, name, port):
        super().__init__(daemon=True)
        self.name = name
        self.port = port
        self.stop_evt = threading.Event()
        self.changes = []   # (t, state)
        self.last = None    # (t, state, offset)

    def run(self):
        conn = None
        last_key = None
        deadline = now() + 600
        while not self.stop_evt.is_set() and now() < deadline:
            t0 = now()
            offset = None
            try:
                if conn is None:
                    conn = Conn(HOST, self.port, timeout=POLL_TIMEOUT)
                try:
                    r = conn.call("INFO", "replication")
                except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                    # Sentinel sends CLIENT KILL TYPE normal when it reconfigures a node:
                    # a killed connection is not an unreachable node, retry once at once.
                    conn.close()
                    conn = Conn(HOST, self.port, timeout=POLL_TIMEOUT)
                    r = conn.call("INFO", "replication")
                if isinstance(r, RespError):
                    state = {"role": "error", "why": r.prefix}
                else:
                    info = parse_info(r)
                    state = {"role": info.get("role", "?")}
                    if state["role"] == "slave":
                        state["master_port"] = int(info.get("master_port", 0))
                        state["link"] = info.get("master_link_status", "?")
                        offset = int(info.get("slave_repl_offset", 0) or 0)
                    else:
                        offset = int(info.get("master_repl_offset", 0) or 0)
            except ConnectionRefusedError:
                state = {"role": "down", "why": "refused"}
            except (TimeoutError, socket.timeout):
                state = {"role": "down", "why": "timeout"}
            except Exception as e:  # noqa: BLE001
                state = {"role": "down", "why": type(e).__name__}
            t1 = now()
            if state["role"] in ("down", "error") and conn is not None:
                conn.close()
                conn = None
            key = tuple(sorted(state.items()))
            if key != last_key:
                self.changes.append((t1, state))
                last_key = key
            self.last = (t1, state, offset)
            d = POLL_PERIOD - (now() - t0)
            if d > 0:
                time.sleep(d)
        if conn is not None:
            conn.close()


class SentinelEvents(threading.Thread):
    """PSUBSCRIBE * on one sentinel; records every event except the hello chatter."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop_evt = threading.Event()
        self.events = []  # (t, channel, message)
        self.error = None

    def run(self):
        try:
            c = Conn(HOST, self.port, timeout=2.0)
            c.send("PSUBSCRIBE", "*")
            deadline = now() + 600
            while not self.stop_evt.is_set() and now() < deadline:
                if not c.buf:
                    rl, _, _ = select.select([c.sock], [], [], 0.1)
                    if not rl:
                        continue
                msg = c.read_reply()
                t = now()
                if isinstance(msg, list) and len(msg) == 4 and msg[0] == "pmessage":
                    if not msg[2].startswith("__sentinel__"):
                        self.events.append((t, msg[2], msg[3]))
            c.close()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)


# --------------------------------------------------------------------------------------
# One run

def topology_stable(sports, pollers):
    """Sentinels agree on one master, it says role:master, every other live node replicates it."""
    try:
        masters = {sentinel_master_port(sp) for sp in sports}
    except Exception:  # noqa: BLE001
        return None
    if len(masters) != 1:
        return None
    mp = masters.pop()
    for p in pollers:
        if p.last is None:
            return None
        st = p.last[1]
        if p.port == mp:
            if st["role"] != "master":
                return None
        elif st["role"] == "master" or (st["role"] == "slave" and (
                st.get("master_port") != mp or st.get("link") != "up")):
            return None
    return mp


def run_once(args, candidate, mode, rep, cand_state):
    run_id = "%s-%s-%d-%d" % (candidate, mode, rep, int(time.time()))
    res = {"candidate": candidate, "mode": mode, "rep": rep, "run_id": run_id, "notes": []}
    tmp = tempfile.mkdtemp(prefix="failover-%s-%s-" % (candidate, mode))
    procs = Procs(tmp)
    threads = []
    try:
        ports = free_ports(8)
        rports, sports, ep_port, admin_port = ports[0:3], ports[3:6], ports[6], ports[7]
        res["ports"] = {"redis": rports, "sentinel": sports, "endpoint": ep_port}
        names = {rports[0]: "redis-1", rports[1]: "redis-2", rports[2]: "redis-3"}

        res["redis_argv"] = start_redis(procs, tmp, "redis-1", rports[0])
        start_redis(procs, tmp, "redis-2", rports[1], rports[0])
        start_redis(procs, tmp, "redis-3", rports[2], rports[0])
        wait_until(lambda: replicas_online(rports[0], 2), 20, "both replicas in sync")
        for i, sp in enumerate(sports):
            start_sentinel(procs, tmp, "sentinel-%d" % (i + 1), sp, rports[0])
        wait_until(lambda: sentinels_ready(sports), 40, "sentinels to see 2 replicas and 2 peers", 0.25)

        if candidate == "haproxy":
            res["endpoint"] = start_haproxy(procs, tmp, ep_port, rports, res["notes"])
        else:
            res["endpoint"] = start_proxy(procs, tmp, args.proxy_bin, ep_port, admin_port,
                                          rports, sports, res["notes"], cand_state)

        def endpoint_ok():
            c = Conn(HOST, ep_port, timeout=1.0)
            try:
                port = c.call("CONFIG", "GET", "port")
                return c.call("SET", "probe:%s:ready" % run_id, "1") == "OK" and int(port[1]) == rports[0]
            finally:
                c.close()
        wait_until(endpoint_ok, 20, "a write through the endpoint to reach the master", 0.2)

        pollers = [NodePoller(names[p], p) for p in rports]
        sub = SentinelEvents(sports[0])
        threads = pollers + [sub]
        for t in threads:
            t.start()
        time.sleep(0.5)
        probes = {c: Probe(ep_port, "%s-%s" % (run_id, c[0]), identify=not args.no_identify,
                           max_seconds=TRIGGER_AFTER + args.observe + MAX_EXTRA_OBSERVE + 30,
                           fresh=(c == "fresh"))
                  for c in args.clients}
        threads += list(probes.values())
        t_probe = now()
        for p in probes.values():
            p.start()
        time.sleep(max(0.0, t_probe + TRIGGER_AFTER - now()))

        old = rports[0]
        if mode == "switchover":
            t_trig = now()
            r = redis_call(sports[0], "SENTINEL", "FAILOVER", MASTER_NAME, timeout=2.0)
            res["trigger_reply"] = str(r)
            if r != "OK":
                res["notes"].append("SENTINEL FAILOVER answered %s" % r)
        elif mode == "kill":
            t_trig = now()
            procs.signal("redis-1", signal.SIGKILL)
        elif mode == "hang":
            t_trig = now()
            procs.signal("redis-1", signal.SIGSTOP)
        else:
            raise ValueError(mode)
        log("  %s: triggered %s" % (run_id, mode))

        t_cont = None
        stable_port = None
        observe = max(args.observe, HANG_FOR + 10) if mode == "hang" else args.observe
        deadline = t_trig + observe + MAX_EXTRA_OBSERVE
        next_check = t_trig + observe
        while now() < deadline:
            if mode == "hang" and t_cont is None and now() >= t_trig + HANG_FOR:
                procs.signal("redis-1", signal.SIGCONT)
                t_cont = now()
            if now() >= next_check:
                stable_port = topology_stable(sports, pollers)
                if stable_port:
                    break
                next_check = now() + 0.5
            if not all(p.is_alive() for p in probes.values()):
                break
            time.sleep(0.02)
        t_end = now()
        for p in probes.values():
            p.stop_evt.set()
        for p in probes.values():
            p.join(timeout=PROBE_TIMEOUT * 3 + 1)
        for t in threads:
            t.stop_evt.set()
        for t in threads:
            t.join(timeout=3)
        if mode == "hang" and t_cont is None:
            procs.signal("redis-1", signal.SIGCONT)
            t_cont = now()
        if not stable_port:
            res["notes"].append("topology not stable %.0f s after the trigger" % (t_end - t_trig))

        # Final master: the one all sentinels name; wait for the replicas to catch up.
        final = wait_until(lambda: _agreed_master(sports), 20, "sentinels to agree on a master", 0.25)
        if info_repl(final).get("role") != "master":
            res["notes"].append("the node the sentinels name (%d) does not report role:master" % final)

        def caught_up():
            moff = int(info_repl(final).get("master_repl_offset", 0))
            for p in rports:
                if p == final:
                    continue
                try:
                    i = info_repl(p, timeout=0.5)
                except OSError:
                    continue  # killed node
                if i.get("role") != "slave" or int(i.get("master_port", 0)) != final \
                        or i.get("master_link_status") != "up" or int(i.get("slave_repl_offset", 0)) < moff:
                    return False
            return True
        try:
            wait_until(caught_up, 20, "replicas to catch up with the final master", 0.2)
        except RuntimeError as e:
            res["notes"].append(str(e))

        topo = analyse_topology(pollers, sub, t_trig, t_cont, t_end, old, final, names)
        res["notes"] += topo.pop("topology_notes")
        res.update(topo)
        # Which acknowledged keys survived on the final master?
        res["clients"] = {}
        promotion = None if topo["times"]["promotion"] is None else topo["times"]["promotion"] + t_trig
        for c, p in probes.items():
            acked = [a[0] for a in p.attempts if a[3] == "ok"]
            sent_unacked = [a[0] for a in p.attempts if a[3] != "ok" and a[4] == "write"]
            present = keys_present(final, p.run_id, acked + sent_unacked)
            res["clients"][c] = analyse_client(p, t_trig, promotion, final, names, present,
                                               acked, sent_unacked)
        res["stable"] = bool(stable_port)
        if candidate == "proxy":
            res["proxy_metrics"] = pm = proxy_metrics(admin_port)
            res["proxy_sentinel_active"] = any(k.startswith("redis_master_proxy_sentinel_up") for k in pm)
            if res["endpoint"].get("sentinel") and not res["proxy_sentinel_active"]:
                res["notes"].append("the proxy accepted the [sentinel] section but exported no "
                                    "redis_master_proxy_sentinel_up series: its sentinel watcher "
                                    "was not active, it followed the health checks only")
        for name in list(procs.items):
            if procs.items[name].poll() not in (None, -9) and name != "redis-1":
                res["notes"].append("%s exited with %s: %s" % (
                    name, procs.items[name].poll(), procs.logtail(name, 400)))
    except Exception as e:  # noqa: BLE001 - recorded, the next run goes on
        res["error"] = "%s: %s" % (type(e).__name__, e)
        res["traceback"] = traceback.format_exc()[-3000:]
        for name in list(procs.items):
            res.setdefault("logs", {})[name] = procs.logtail(name, 1500)
    finally:
        for t in threads:
            t.stop_evt.set()
        procs.kill_all()
        for t in threads:
            t.join(timeout=3)
        if args.keep_tmp:
            res["tmp"] = tmp
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def _agreed_master(sports):
    ms = set()
    for sp in sports:
        ms.add(sentinel_master_port(sp))
    if len(ms) == 1 and None not in ms:
        return ms.pop()
    return None


def keys_present(port, key_prefix, numbers):
    """Map n -> value found on the node (None when the key is missing)."""
    out = {}
    c = Conn(HOST, port, timeout=5.0)
    try:
        for i in range(0, len(numbers), 1000):
            batch = numbers[i:i + 1000]
            if not batch:
                continue
            vals = c.call("MGET", *["probe:%s:%d" % (key_prefix, n) for n in batch])
            if isinstance(vals, RespError):
                raise RuntimeError("MGET failed: %s" % vals)
            for n, v in zip(batch, vals):
                out[n] = v
    finally:
        c.close()
    return out


def proxy_metrics(admin_port):
    try:
        status, body = http_get(admin_port, "/metrics", timeout=2)
    except OSError as e:
        return {"error": repr(e)}
    keep = {}
    for line in body.splitlines():
        if line.startswith("redis_master_proxy_") and "_bucket" not in line:
            parts = line.rsplit(" ", 1)
            if len(parts) == 2:
                keep[parts[0]] = parts[1]
    return keep


# --------------------------------------------------------------------------------------
# Analysis

def r4(x):
    return None if x is None else round(x, 4)


KIND_CODE = {"ok": "o", "readonly": "R", "timeout": "T", "refused": "F", "reset": "X",
             "closed": "C", "other": "E"}
PHASE_CODE = {"connect": "c", "identify": "i", "write": "w"}


def analyse_topology(pollers, sub, t_trig, t_cont, t_end, old, final, names):
    rel = lambda t: None if t is None else r4(t - t_trig)  # noqa: E731
    by_port = {p.port: p for p in pollers}
    promotion = None
    if final != old:
        for t, st in by_port[final].changes:
            if t >= t_trig and st["role"] == "master":
                promotion = t
                break
    first_other_master = None
    for p in pollers:
        if p.port == old:
            continue
        for t, st in p.changes:
            if t >= t_trig and st["role"] == "master":
                if first_other_master is None or t < first_other_master:
                    first_other_master = t
                break
    old_unreachable = old_back = old_demoted = old_master_again = None
    for t, st in by_port[old].changes:
        if t < t_trig:
            continue
        if st["role"] == "down" and old_unreachable is None:
            old_unreachable = t
        if st["role"] != "down" and old_unreachable is not None and old_back is None:
            old_back = t
            if st["role"] == "master":
                old_master_again = t
        if st["role"] == "slave" and old_demoted is None:
            old_demoted = t
    switch = None
    for t, ch, msg in sub.events:
        if ch == "+switch-master" and t >= t_trig:
            switch = t
            break
    # Every node other than the old master that started reporting role:master after the trigger.
    promotions = []
    for p in pollers:
        if p.port == old:
            continue
        was_master = False
        for t, st in p.changes:
            is_master = st["role"] == "master"
            if t >= t_trig and is_master and not was_master:
                promotions.append((t, p.name))
            if st["role"] != "down":
                was_master = is_master
    promotions.sort()
    notes = []
    if len(promotions) > 1:
        notes.append("the sentinels promoted more than one replica: %s; the final master is %s" % (
            ", ".join("%s at +%.2f s" % (n, t - t_trig) for t, n in promotions),
            names.get(final, final)))
    return {
        "topology_notes": notes,
        "promotions": [[rel(t), n] for t, n in promotions],
        "switch_master_count": sum(1 for t, ch, _ in sub.events if ch == "+switch-master" and t >= t_trig),
        "old_master": names[old],
        "final_master": names.get(final, str(final)),
        "times": {
            "trigger": 0.0,
            "promotion": rel(promotion),
            "first_other_master": rel(first_other_master),
            "switch_master": rel(switch),
            "old_master_unreachable": rel(old_unreachable),
            "old_master_back": rel(old_back),
            "old_master_back_as_master": rel(old_master_again),
            "old_master_demoted": rel(old_demoted),
            "sigcont": rel(t_cont),
            "end": rel(t_end),
        },
        "topology": {p.name: [[rel(t), st] for t, st in p.changes] for p in pollers},
        "sentinel_events": [[rel(t), ch, msg] for t, ch, msg in sub.events],
        "sentinel_subscriber_error": sub.error,
    }


def analyse_client(probe, t_trig, promotion, final, names, present, acked, sent_unacked):
    """Client-side metrics of one probe. promotion: absolute time or None."""
    atts = probe.attempts  # (n, t_start, t_end, kind, phase, node, detail)
    lost = {n for n in acked if present.get(n) != str(n)}
    applied_unacked = [n for n in sent_unacked if present.get(n) is not None]

    fails = [a for a in atts if a[3] != "ok" and a[2] >= t_trig]
    window, recovered = 0.0, True
    if fails:
        last_fail_n = max(a[0] for a in fails)
        after = [a for a in atts if a[0] > last_fail_n and a[3] == "ok"]
        if after:
            window = after[0][2] - t_trig
        else:
            window, recovered = None, False
    oks = [a[2] for a in atts if a[3] == "ok"]
    longest_gap = 0.0
    prev = max([t for t in oks if t < t_trig], default=None)
    for t in oks:
        if t < t_trig:
            continue
        if prev is not None:
            longest_gap = max(longest_gap, t - prev)
        prev = t
    follow = None
    if promotion is not None:
        for a in atts:
            if a[3] == "ok" and a[2] >= promotion and a[5] == final:
                follow = a[2] - promotion
                break
    by_kind = {k: 0 for k in KINDS}
    for a in atts:
        if a[2] >= t_trig:
            by_kind[a[3]] += 1
    stale = 0
    if promotion is not None:
        stale = sum(1 for a in atts if a[3] == "ok" and a[2] >= promotion
                    and a[5] is not None and a[5] != final)
    acked_by_node = {}
    for a in atts:
        if a[3] == "ok" and a[2] >= t_trig:
            k = names.get(a[5], "unknown")
            acked_by_node[k] = acked_by_node.get(k, 0) + 1
    details = {}
    for a in atts:
        if a[6]:
            details[a[6]] = details.get(a[6], 0) + 1
    lost_times = sorted(a[2] - t_trig for a in atts if a[0] in lost)
    node_code = {p: name[-1] for p, name in names.items()}  # "redis-2" -> "2"

    return {
        "window_s": r4(window),
        "recovered": recovered,
        "follow_s": r4(follow),
        "longest_write_gap_s": r4(longest_gap),
        "attempts_total": len(atts),
        "attempts_after_trigger": sum(by_kind.values()),
        "by_kind": by_kind,
        "failed": sum(by_kind[k] for k in FAIL_KINDS),
        "failed_before_trigger": sum(1 for a in atts if a[3] != "ok" and a[2] < t_trig),
        "acked": len(acked),
        "lost_acked": len(lost),
        "lost_acked_first_last_s": [r4(lost_times[0]), r4(lost_times[-1])] if lost_times else None,
        "stale_master_acked": stale,
        "acked_by_node_after_trigger": acked_by_node,
        "unacked_sent": len(sent_unacked),
        "unacked_but_applied": len(applied_unacked),
        "error_details": details,
        # Attempt n (1-based) is index n-1 of every column. Times in ms since the trigger.
        "attempts": {
            "start_ms": [round((a[1] - t_trig) * 1000, 1) for a in atts],
            "end_ms": [round((a[2] - t_trig) * 1000, 1) for a in atts],
            "kind": "".join(KIND_CODE[a[3]] for a in atts),
            "phase": "".join(PHASE_CODE[a[4]] for a in atts),
            "node": "".join(node_code.get(a[5], "-") for a in atts),
            "lost": sorted(lost),
        },
    }


# --------------------------------------------------------------------------------------
# Charts (matplotlib in a private virtualenv)

def venv_python():
    venv = os.path.join(HERE, ".venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        log("creating %s" % venv)
        r = subprocess.run([sys.executable, "-m", "venv", venv])
        if r.returncode != 0:
            if os.geteuid() == 0 and shutil.which("apt-get"):
                env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
                subprocess.run(["apt-get", "update"], env=env)
                subprocess.run(["apt-get", "install", "-y", "python3-venv"], env=env)
                shutil.rmtree(venv, ignore_errors=True)
                r = subprocess.run([sys.executable, "-m", "venv", venv])
            if r.returncode != 0:
                raise RuntimeError("cannot create a virtualenv (python3 -m venv)")
    if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode != 0:
        log("installing matplotlib into %s" % venv)
        subprocess.run([py, "-m", "pip", "install", "--quiet", "matplotlib"], check=True)
    return py


def make_charts(json_path, out_dir):
    py = venv_python()
    r = subprocess.run([py, os.path.join(HERE, "chart.py"), json_path, out_dir])
    if r.returncode != 0:
        raise RuntimeError("chart.py failed")


# --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", default=",".join(CANDIDATES),
                    help="comma-separated, from: %s (default: all)" % ",".join(CANDIDATES))
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated, from: %s (default: all)" % ",".join(MODES))
    ap.add_argument("--clients", default=",".join(CLIENTS),
                    help="probes run side by side: persistent (one long-lived connection, replaced "
                         "after an error) and/or fresh (a new connection per write); default both")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per candidate and mode (default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 repetition of the first mode")
    ap.add_argument("--observe", type=float, default=25.0,
                    help="seconds to observe after the trigger (then up to %.0f s more until the "
                         "topology is stable; default 25, at least %.0f in hang mode)"
                         % (MAX_EXTRA_OBSERVE, HANG_FOR + 10))
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "failover"),
                    help="output directory (default docs/failover)")
    ap.add_argument("--proxy-bin", default=os.path.join(REPO, "target", "release", "redis-master-proxy"),
                    help="the proxy binary (default target/release/redis-master-proxy)")
    ap.add_argument("--build", metavar="REV",
                    help="build the proxy from git revision REV (e.g. HEAD) in a scratch "
                         "checkout under benches/failover/.build and use that binary, so the "
                         "results name exactly the commit they measured")
    ap.add_argument("--no-charts", action="store_true", help="skip the matplotlib charts")
    ap.add_argument("--no-identify", action="store_true",
                    help="do not send CONFIG GET port on new connections (no per-node attribution)")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install missing tools")
    ap.add_argument("--keep-tmp", action="store_true", help="keep each run's temp dir (logs, configs)")
    args = ap.parse_args()

    args.candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    for c in args.clients:
        if c not in CLIENTS:
            ap.error("unknown client %r" % c)
    if not args.clients or not args.candidates or not args.modes:
        ap.error("--candidates, --modes and --clients need at least one value each")
    for c in args.candidates:
        if c not in CANDIDATES:
            ap.error("unknown candidate %r" % c)
    for m in args.modes:
        if m not in MODES:
            ap.error("unknown mode %r" % m)
    if args.quick:
        args.reps = 1
        args.modes = args.modes[:1]
    if args.reps < 1 or args.reps > 50:
        ap.error("--reps must be between 1 and 50")
    if not (5 <= args.observe <= 120):
        ap.error("--observe must be between 5 and 120 seconds")
    args.proxy_bin = os.path.abspath(args.proxy_bin)

    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)

    if args.build and "proxy" in args.candidates:
        args.proxy_bin, args.built_commit = build_proxy(args.build)
    else:
        args.built_commit = None
    ensure_tools(args)
    os.makedirs(args.out, exist_ok=True)
    bin_dir = None
    args.proxy_bin_source = args.proxy_bin
    if "proxy" in args.candidates:
        # Run a private copy, so that a rebuild during the benchmark cannot mix two builds.
        bin_dir = tempfile.mkdtemp(prefix="failover-bin-")
        args.proxy_bin = os.path.join(bin_dir, "redis-master-proxy")
        shutil.copy2(args.proxy_bin_source, args.proxy_bin)
    try:
        return run_all(args)
    finally:
        if bin_dir:
            shutil.rmtree(bin_dir, ignore_errors=True)


def run_all(args):
    started = datetime.datetime.now(datetime.timezone.utc)
    doc = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python3 benches/failover/run.py " + " ".join(sys.argv[1:]),
        "settings": {
            "candidates": args.candidates, "modes": args.modes, "reps": args.reps,
            "observe_s": args.observe, "probe_interval_s": PROBE_INTERVAL,
            "probe_timeout_s": PROBE_TIMEOUT, "poll_period_s": POLL_PERIOD,
            "trigger_after_s": TRIGGER_AFTER, "hang_for_s": HANG_FOR,
            "identify": not args.no_identify, "clients": args.clients,
        },
        "complete": (set(args.candidates) == set(CANDIDATES) and set(args.modes) == set(MODES)
                     and set(args.clients) == set(CLIENTS) and args.reps >= 3),
        "versions": tool_versions(args),
        "configs": {"sentinel": SENTINEL_CONF.format(port="PORT", dir="DIR", name=MASTER_NAME,
                                                     master_port="MASTER_PORT")},
        "runs": [],
    }
    cand_state = {c: {} for c in args.candidates}
    total = len(args.candidates) * len(args.modes) * args.reps
    i = 0
    try:
        for mode in args.modes:
            for rep in range(1, args.reps + 1):
                for cand in args.candidates:
                    i += 1
                    log("run %d/%d: %s, %s, repetition %d" % (i, total, cand, mode, rep))
                    r = run_once(args, cand, mode, rep, cand_state[cand])
                    doc["runs"].append(r)
                    if "endpoint" in r:
                        doc["configs"][cand] = r["endpoint"].get("config")
                    if "error" in r:
                        log("  error: %s" % r["error"])
                    else:
                        for c, m in r["clients"].items():
                            log("  %-10s window %s s, follow %s s, failed %d %s, acked %d, lost %d, "
                                "stale %d" % (c, m["window_s"], m["follow_s"], m["failed"],
                                              {k: v for k, v in m["by_kind"].items() if v and k != "ok"},
                                              m["acked"], m["lost_acked"], m["stale_master_acked"]))
    except KeyboardInterrupt:
        log("interrupted; writing what was measured")
        doc["complete"] = False
        doc["interrupted"] = True
    doc["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    json_path = os.path.join(args.out, "results.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    charts = []
    if not args.no_charts:
        try:
            make_charts(json_path, args.out)
            charts = [m for m in args.modes if os.path.exists(os.path.join(args.out, m + ".png"))]
        except Exception as e:  # noqa: BLE001
            log("charts skipped: %s" % e)
    md = report.render(doc, charts)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    log("wrote %s, results.md%s" % (json_path, ", charts" if charts else ""))
    if not doc["complete"]:
        log("partial run: these results are for checking the setup, not for publishing")
    return 1 if any("error" in r for r in doc["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
