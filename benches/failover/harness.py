"""What every failover benchmark run shares: processes, the local cluster, the two endpoints
(HAProxy with the production-style check, redis-master-proxy), the write probes, the
INFO/sentinel observers, lost-write accounting and the chart virtualenv.

run.py (switchover, kill, hang) and trust.py (the trust modes) both build on it; standard
library only.
"""

import ctypes
import datetime
import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from resp import Conn, ConnectionClosed, RespError, call_once, parse_info  # noqa: E402

HOST = "127.0.0.1"
MASTER_NAME = "mymaster"
CANDIDATES = ["haproxy", "proxy"]
CLIENTS = ["persistent", "fresh"]
FAIL_KINDS = ["readonly", "timeout", "refused", "reset", "closed", "other"]
KINDS = ["ok"] + FAIL_KINDS

PROBE_INTERVAL = 0.010      # one write attempt every 10 ms
PROBE_TIMEOUT = 1.0         # client socket timeout (connect and each reply)
POLL_PERIOD = 0.050         # INFO replication polling period per node
POLL_TIMEOUT = 0.300        # a node that does not answer within this is "down"


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
sentinel monitor {name} 127.0.0.1 {master_port} {quorum}
sentinel down-after-milliseconds {name} {down_after}
sentinel failover-timeout {name} 3000
sentinel parallel-syncs {name} 1
"""


def sentinel_conf(port, d, master_port, down_after=1000, quorum=2):
    return SENTINEL_CONF.format(port=port, dir=d, name=MASTER_NAME, master_port=master_port,
                                down_after=down_after, quorum=quorum)


def start_sentinel(procs, tmp, name, port, master_port, down_after=1000, quorum=2):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "sentinel.conf")
    with open(conf, "w") as f:
        f.write(sentinel_conf(port, d, master_port, down_after, quorum))
    procs.start(name, ["redis-sentinel", conf])
    wait_until(lambda: redis_call(port, "PING", timeout=0.5) == "PONG", 10, name + " PING")


def sentinel_master_port(port, timeout=0.5):
    r = redis_call(port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME, timeout=timeout)
    if isinstance(r, list) and len(r) == 2:
        return int(r[1])
    return None


def sentinels_ready(sports, replicas=2):
    """Every sentinel sees the master, `replicas` replicas with their links up, and its peers."""
    for sp in sports:
        m = pairs_to_dict(redis_call(sp, "SENTINEL", "MASTER", MASTER_NAME))
        if int(m.get("num-slaves", 0)) != replicas \
                or int(m.get("num-other-sentinels", 0)) != len(sports) - 1:
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


def start_haproxy(procs, tmp, listen, rports, notes, up=("r1",)):
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
    wait_until(lambda: haproxy_servers_up(sock) == list(up), 20,
               "HAProxy to mark only %s UP" % ", ".join(up), 0.2)
    return {"config": cfg_text, "command": "haproxy -db -f haproxy.cfg", "stats_socket": sock}


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


def start_proxy(procs, tmp, binary, listen, admin, rports, sports, notes, state, name="proxy",
                sentinel=True, ready_path="/readyz"):
    """Start redis-master-proxy as process `name` and wait for /readyz.

    sentinel=True: with a [sentinel] section, falling back to none if the build rejects it;
    sentinel=False: INFO checks only.
    """
    attempts = [True, False] if sentinel and state.get("sentinel", True) else [False]
    last_err = None
    base = name
    for with_sentinel in attempts:
        text = proxy_config(listen, admin, rports, sports, with_sentinel)
        cfg = os.path.join(tmp, base + ".toml")
        with open(cfg, "w") as f:
            f.write(text)
        name = base if with_sentinel or not sentinel else base + "-nosentinel"
        p = procs.start(name, [binary, "run", "--config", cfg])
        deadline = now() + 30
        ready = False
        while now() < deadline and p.poll() is None:
            try:
                if http_get(admin, ready_path)[0] == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.1)
        if ready:
            if sentinel and not with_sentinel:
                state["sentinel"] = False
                notes.append("the proxy rejected the [sentinel] section, so it ran without it "
                             "(health checks only): %s" % state.get("sentinel_error", "")[:300])
            return {"config": text, "command": "redis-master-proxy run --config %s.toml" % base,
                    "process": name, "sentinel": with_sentinel}
        tail = procs.logtail(name)
        procs.kill(name)
        last_err = "redis-master-proxy %s (exit code %s): %s" % (
            "exited" if p.poll() is not None else "no 200 from %s within 30 s" % ready_path, p.poll(),
            tail[-800:])
        if with_sentinel and p.poll() is not None and "sentinel" in tail.lower() \
                and "already in use" not in tail:
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

    def __init__(self, port, run_id, identify=True, max_seconds=300, fresh=False,
                 timeout=PROBE_TIMEOUT):
        super().__init__(daemon=True)
        self.timeout = timeout
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
                    conn = Conn(HOST, self.port, timeout=self.timeout)
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

def venv_python(install=False):
    """The .venv python with matplotlib; created only by the install step (install=True)."""
    venv = os.path.join(HERE, ".venv")
    py = os.path.join(venv, "bin", "python")
    if install and not os.path.exists(py):
        log("creating %s" % venv)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    if not os.path.exists(py):
        raise RuntimeError("no %s: run `python3 benches/failover/run.py --install` once" % venv)
    if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode != 0:
        if not install:
            raise RuntimeError("no matplotlib in %s: run `python3 benches/failover/run.py --install` "
                               "once" % venv)
        log("installing matplotlib into %s" % venv)
        subprocess.run([py, "-m", "pip", "install", "--quiet", "matplotlib"], check=True)
    return py


def make_charts(json_path, out_dir):
    py = venv_python()
    r = subprocess.run([py, os.path.join(HERE, "chart.py"), json_path, out_dir])
    if r.returncode != 0:
        raise RuntimeError("chart.py failed")
