"""Shared pieces of the soak benchmarks (standard library only).

Processes (started with PR_SET_PDEATHSIG, stopped in a finally with SIGCONT before SIGKILL),
free loopback ports, a local Redis / Sentinel cluster, the proxy, and /proc readings of the
proxy process (descriptors, RSS, CPU time).

The RESP client is benches/failover/resp.py, imported from there.
"""

import ctypes
import datetime
import hashlib
import http.client
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Reuse the failover benchmark's RESP client without writing bytecode into its folder.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(REPO, "benches", "failover"))
from resp import Conn, ConnectionClosed, ProtocolError, RespError, call_once, parse_info  # noqa: E402,F401

HOST = "127.0.0.1"
MASTER_NAME = "mymaster"
DEFAULT_BIN = os.path.join(REPO, "target", "release", "redis-master-proxy")


def now():
    return time.monotonic()


def wall():
    return time.time()


def log(msg):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), msg), flush=True)


# --------------------------------------------------------------------------------------
# Descriptor limit

def raise_nofile():
    """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it). Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        target = 1 << 20
    else:
        target = hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --------------------------------------------------------------------------------------
# Processes

_libc = None


def _die_with_parent():
    # Runs in the child between fork and exec: if this script dies (even by SIGKILL),
    # the kernel kills the child too.
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class Procs:
    """Every process of one run; kill_all() is called from a finally."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.items = {}
        self.stopped = set()

    def logpath(self, name):
        return os.path.join(self.tmp, name + ".log")

    def start(self, name, argv, env=None):
        f = open(self.logpath(name), "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 env=env, preexec_fn=_die_with_parent, cwd=self.tmp)
        finally:
            f.close()
        self.items[name] = p
        return p

    def logtail(self, name, n=2000):
        try:
            with open(self.logpath(name), "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def alive(self, name):
        p = self.items.get(name)
        return p is not None and p.poll() is None

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

    def terminate(self, name, timeout=15):
        """SIGTERM and wait (the proxy's graceful shutdown); SIGKILL after the timeout."""
        p = self.items.get(name)
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        try:
            os.kill(p.pid, signal.SIGCONT)
            p.terminate()
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(name)
            return None

    def kill_all(self):
        for p in self.items.values():
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
    raise RuntimeError("timed out after %.0f s waiting for %s%s" % (
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
# Tools, versions, build

def ensure_tools(no_install=False, sentinel=True):
    needed = {"redis-server": "redis-server"}
    if sentinel:
        needed["redis-sentinel"] = "redis-sentinel"
    missing = [b for b in needed if shutil.which(b) is None]
    if not missing:
        return
    pkgs = sorted({needed[b] for b in missing})
    if no_install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit("error: missing %s; install them first, e.g. `apt-get install %s`"
                 % (", ".join(missing), " ".join(pkgs)))
    log("installing %s with apt-get" % " ".join(pkgs))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")  # RUNLEVEL=1: no service start
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + pkgs, check=True, env=env)
    still = [b for b in needed if shutil.which(b) is None]
    if still:
        sys.exit("error: still missing after apt-get: %s" % ", ".join(still))


def build_proxy():
    log("cargo build --release")
    r = subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "redis-master-proxy"], cwd=REPO)
    if r.returncode != 0:
        sys.exit("error: cargo build --release failed")


def private_copy(binary):
    """Copy the binary to a temp dir, so a rebuild during the run cannot swap it underneath."""
    if not os.access(binary, os.X_OK):
        sys.exit("error: %s not found; build it with `cargo build --release` (or drop --no-build)" % binary)
    d = tempfile.mkdtemp(prefix="soak-bin-")
    dst = os.path.join(d, "redis-master-proxy")
    shutil.copy2(binary, dst)
    return d, dst


def _first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        out = (r.stdout or r.stderr).strip()
        return out.splitlines()[0] if out else ""
    except Exception as e:  # noqa: BLE001
        return "unavailable (%s)" % e


def versions(binary_source, binary):
    commit = _first_line(["git", "-C", REPO, "rev-parse", "HEAD"])
    if not commit or commit.startswith("fatal:"):
        commit = "unknown (not a git checkout)"
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml",
                            "Cargo.lock"], capture_output=True, text=True).stdout.strip()
    with open(binary, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return {
        "git_commit": commit + (" (work tree with uncommitted changes in src/ or Cargo.*)" if dirty else ""),
        "proxy_version": _first_line([binary, "--version"]),
        "proxy_binary": binary_source,
        "proxy_sha256": sha,
        "proxy_built_utc": datetime.datetime.fromtimestamp(
            os.path.getmtime(binary_source), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "redis": _first_line(["redis-server", "--version"]),
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "nproc": os.cpu_count(),
        "nofile_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


# --------------------------------------------------------------------------------------
# Cluster

def redis_argv(tmp, name, port, master_port=None, extra=()):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", HOST, "--dir", d,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
            "--repl-diskless-sync-delay", "0"]
    argv += list(extra)
    if master_port:
        argv += ["--replicaof", HOST, str(master_port)]
    return argv


def start_redis(procs, tmp, name, port, master_port=None, extra=()):
    procs.start(name, redis_argv(tmp, name, port, master_port, extra))
    wait_until(lambda: redis_call(port, "PING", timeout=0.5) == "PONG", 10, name + " PING")


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


def replicas_online(master_port, n):
    info = info_repl(master_port)
    online = [k for k, v in info.items() if k.startswith("slave") and "state=online" in v]
    return len(online) == n


# --------------------------------------------------------------------------------------
# The proxy

def proxy_toml(listen, admin, rports, sports=None, extra=""):
    lines = [
        'listen = "127.0.0.1:%d"' % listen,
        'admin = "127.0.0.1:%d"' % admin,
        "backends = [%s]" % ", ".join('"127.0.0.1:%d"' % p for p in rports),
    ]
    if extra:
        lines.append(extra.rstrip("\n"))
    if sports:
        lines += ["", "[sentinel]",
                  "addresses = [%s]" % ", ".join('"127.0.0.1:%d"' % p for p in sports),
                  'master_name = "%s"' % MASTER_NAME]
    return "\n".join(lines) + "\n"


def http_get(port, path, timeout=1.0):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def start_proxy(procs, tmp, binary, admin, toml_text, env=None):
    cfg = os.path.join(tmp, "proxy.toml")
    with open(cfg, "w") as f:
        f.write(toml_text)
    p = procs.start("proxy", [binary, "run", "--config", cfg], env=env)
    deadline = now() + 30
    while now() < deadline and p.poll() is None:
        try:
            if http_get(admin, "/readyz")[0] == 200:
                return p
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("redis-master-proxy not ready within 30 s (exit code %s): %s"
                       % (p.poll(), procs.logtail("proxy", 1500)))


def scrape_metrics(admin, timeout=2.0):
    """/metrics as {series: float}, histogram buckets left out."""
    status, body = http_get(admin, "/metrics", timeout=timeout)
    out = {}
    for line in body.splitlines():
        if not line.startswith("redis_master_proxy_") or "_bucket{" in line:
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


def metric(ms, name, **labels):
    """Sum of the series of `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    full = "redis_master_proxy_" + name
    for k, v in ms.items():
        base, _, rest = k.partition("{")
        if base != full:
            continue
        if all(('%s="%s"' % (lk, lv)) in rest for lk, lv in labels.items()):
            total += v
    return total


# --------------------------------------------------------------------------------------
# /proc readings

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid):
    """Descriptors (total and by kind), RSS, CPU time and threads of a process."""
    fd_dir = "/proc/%d/fd" % pid
    kinds = {"socket": 0, "pipe": 0, "anon_inode": 0, "other": 0}
    total = 0
    for fd in os.listdir(fd_dir):
        total += 1
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:"):
            kinds["socket"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds["anon_inode"] += 1
        else:
            kinds["other"] += 1
    rss_kib = rss_anon_kib = threads = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                # The heap and the allocator's arenas; the rest of VmRSS is the mapped binary
                # and libraries (file pages), which do not grow with use.
                rss_anon_kib = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return {"t": wall(), "fds": total, "fd_kinds": kinds, "rss_kib": rss_kib, "rss_anon_kib": rss_anon_kib,
            "threads": threads,
            "cpu_user_s": utime / CLK_TCK, "cpu_sys_s": stime / CLK_TCK}


def smaps_rollup(pid):
    """/proc/PID/smaps_rollup as {field: KiB} (Rss, Anonymous, Private_Dirty, ...)."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def settled_sample(pid, seconds=3.0, every=0.25):
    """Samples over `seconds`; the minimum descriptor count and the last RSS (a health check
    or sentinel query in flight holds a socket for a moment, so one sample may be one high)."""
    samples = []
    deadline = now() + seconds
    while True:
        samples.append(proc_sample(pid))
        if now() >= deadline:
            break
        time.sleep(every)
    best = min(samples, key=lambda s: s["fds"])
    out = dict(samples[-1])
    out["fds"] = best["fds"]
    out["fd_kinds"] = best["fd_kinds"]
    out["fds_max_in_window"] = max(s["fds"] for s in samples)
    out["rss_kib_min_in_window"] = min(s["rss_kib"] for s in samples)
    return out


def log_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").splitlines()
    except OSError:
        return []


def parse_log_time(line):
    """Unix time of a tracing log line ('2026-11-22T20:44:27.415203Z  INFO ...'), or None."""
    ts = line.split(" ", 1)[0]
    if not ts.endswith("Z") or "T" not in ts:
        return None
    try:
        base, _, frac = ts[:-1].partition(".")
        t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        return t.timestamp() + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return None


def fmt_utc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
