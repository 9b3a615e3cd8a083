"""The endpoints clients go through: redis-master-proxy (config, start-up, admin HTTP, /metrics),
HAProxy with the production-style `role:master` tcp-check it replaces, and twemproxy
(nutcracker), the multiplexing Redis proxy the comparative benchmark measures beside them."""

import csv
import io
import http.client
import os
import shutil
import socket
import subprocess

from .cluster import MASTER_NAME
from .procs import HOST, wait_until
from .resp import redis_call

METRIC_PREFIX = "redis_master_proxy_"


# --------------------------------------------------------------------------------------
# redis-master-proxy

def proxy_toml(listen, admin, rports, sports=None, extra=""):
    """The proxy's config: listen, admin, backends, `extra` lines, and a [sentinel] section when
    sentinel ports are given."""
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


def start_proxy(procs, tmp, binary, admin, toml_text, name="proxy", env=None, args=(),
                ready_path="/readyz", timeout=30):
    """Writes <tmp>/<name>.toml, starts `binary run --config` it (plus `args`) as process `name`
    and waits until `ready_path` on the admin port answers 200. Returns the Popen; raises
    RuntimeError with the end of its log when it exits or is not ready in time."""
    cfg = os.path.join(tmp, name + ".toml")
    with open(cfg, "w") as f:
        f.write(toml_text)
    p = procs.start(name, [binary, "run", "--config", cfg] + list(args), env=env)

    def ready():
        try:
            return http_get(admin, ready_path)[0] == 200
        except (OSError, http.client.HTTPException):
            return False
    try:
        wait_until(ready, timeout, "200 from %s" % ready_path, proc=p)
    except RuntimeError as e:
        raise RuntimeError("redis-master-proxy %s: %s" % (e, procs.logtail(name, 1500)))
    return p


def stop_proxy(procs, res, log_copy, name="proxy"):
    """The proxy's last promises: SIGTERM ends it with status 0 (res["proxy_exit_on_sigterm"])
    and its log mentions no panic; each broken one goes to res["broken"]. Copies the log to
    `log_copy`. Returns (the log's lines, the panic lines)."""
    code = procs.terminate(name, timeout=15)
    res["proxy_exit_on_sigterm"] = code
    if code != 0:
        res["broken"].append("the proxy exited with %s on SIGTERM (expected 0)" % code)
    lines = procs.log_lines(name)
    shutil.copy(procs.logpath(name), log_copy)
    panics = [ln for ln in lines if "panic" in ln.lower()]
    if panics:
        res["broken"].append("the proxy log mentions a panic: %s" % panics[0][:300])
    return lines, panics


def metric_lines(body):
    """(series, value text) of each redis_master_proxy_ sample in a /metrics body, histogram
    buckets left out."""
    for line in body.splitlines():
        if not line.startswith(METRIC_PREFIX) or "_bucket{" in line:
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) == 2:
            yield parts[0], parts[1]


def scrape_metrics(admin, timeout=2.0):
    """/metrics as {series: float}, histogram buckets left out."""
    status, body = http_get(admin, "/metrics", timeout=timeout)
    out = {}
    for series, value in metric_lines(body):
        try:
            out[series] = float(value)
        except ValueError:
            pass
    return out


def metric(ms, name, **labels):
    """Sum of the series of `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    full = METRIC_PREFIX + name
    for k, v in ms.items():
        base, _, rest = k.partition("{")
        if base != full:
            continue
        if all(('%s="%s"' % (lk, lv)) in rest for lk, lv in labels.items()):
            total += v
    return total


# --------------------------------------------------------------------------------------
# HAProxy

HAPROXY_CFG = """global
    maxconn {maxconn}
{global_extra}    stats socket {sock} mode 600 level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 1h
    timeout server 1h
{defaults_extra}
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


def haproxy_config(listen, rports, sock, maxconn=4096, frontend_maxconn=None, nbthread=None):
    """Servers r1, r2, ... for `rports`, checked every second, marked down after one failed
    check (closing their sessions) and up after one good one. `nbthread`: HAProxy's threads
    (default: one per CPU)."""
    servers = "\n".join(
        "    server r%d 127.0.0.1:%d check inter 1s fall 1 rise 1 on-marked-down shutdown-sessions"
        % (i + 1, p) for i, p in enumerate(rports))
    extra = "    maxconn %d\n" % frontend_maxconn if frontend_maxconn else ""
    global_extra = "    nbthread %d\n" % nbthread if nbthread else ""
    return HAPROXY_CFG.format(maxconn=maxconn, sock=sock, global_extra=global_extra,
                              defaults_extra=extra, listen=listen, servers=servers)


def haproxy_stats(sock_path):
    """`show stat` from the stats socket: one dict per row (pxname, svname, status, ...)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(sock_path)
        s.sendall(b"show stat\n")
        data = b""
        for _ in range(10000):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return list(csv.DictReader(io.StringIO(data.decode(errors="replace").lstrip("# "))))


def haproxy_servers_up(sock_path, checked=False):
    """The servers HAProxy has UP; checked=True: only those whose last check passed (a server
    starts UP before its first check)."""
    up = []
    for row in haproxy_stats(sock_path):
        if row.get("pxname") == "redis_master" and (row.get("svname") or "").startswith("r"):
            if (row.get("status") or "").startswith("UP") and (
                    not checked or (row.get("check_status") or "").lstrip("* ").startswith("L7OK")):
                up.append(row["svname"])
    return up


def start_haproxy(procs, tmp, listen, rports, up=("r1",), maxconn=4096, frontend_maxconn=None,
                  nbthread=None, name="haproxy"):
    """Checks and starts HAProxy, then waits until its checks have marked exactly `up` UP.
    Returns {"config", "command", "stats_socket"}."""
    sock = os.path.join(tmp, name + ".sock")
    cfg_text = haproxy_config(listen, rports, sock, maxconn, frontend_maxconn, nbthread)
    cfg = os.path.join(tmp, name + ".cfg")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    r = subprocess.run(["haproxy", "-c", "-f", cfg], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError("haproxy -c failed: %s" % (r.stdout + r.stderr)[-1500:])
    p = procs.start(name, ["haproxy", "-db", "-f", cfg])
    wait_until(lambda: haproxy_servers_up(sock, checked=True) == list(up), 20,
               "HAProxy to mark only %s UP" % ", ".join(up), 0.2, proc=p)
    return {"config": cfg_text, "command": "haproxy -db -f %s.cfg" % name, "stats_socket": sock}


# --------------------------------------------------------------------------------------
# twemproxy (nutcracker)

# One pool, one server: hash and distribution (defaults fnv1a_64 / ketama) pick that server for
# every key. server_connections: 1 is twemproxy's default: every client's commands are written to
# the one backend connection, many clients' commands per write, and the replies read back in order
# (which is why it cannot offer MULTI, blocking commands, pub/sub, SELECT or CLIENT). preconnect
# opens that connection at start-up instead of on the first command. No timeout (the default):
# commands wait for Redis as long as over a direct connection.
TWEMPROXY_CFG = """redis_master:
  listen: 127.0.0.1:{listen}
  redis: true
  preconnect: true
  server_connections: 1
  auto_eject_hosts: false
  servers:
{servers}
"""


def twemproxy_config(listen, rports):
    """The pool `redis_master` listening on `listen`, with servers 127.0.0.1:port:1 for `rports`."""
    servers = "\n".join("    - 127.0.0.1:%d:1" % p for p in rports)
    return TWEMPROXY_CFG.format(listen=listen, servers=servers)


def start_twemproxy(procs, tmp, listen, stats, rports, name="twemproxy", timeout=20):
    """Checks and starts nutcracker as process `name` (its log in the process's log file), its
    stats on 127.0.0.1:`stats` (the default would be 0.0.0.0:22222), then waits until a PING
    through it answers PONG and a command it forwards (EXISTS) gets Redis's answer: twemproxy
    answers PING itself, so only the second shows the backend connection is open.
    Returns {"config", "command"}."""
    cfg_text = twemproxy_config(listen, rports)
    cfg = os.path.join(tmp, name + ".yml")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    r = subprocess.run(["nutcracker", "--test-conf", "--conf-file", cfg], capture_output=True,
                       text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError("nutcracker --test-conf failed: %s" % (r.stdout + r.stderr)[-1500:])
    argv = ["nutcracker", "--conf-file", cfg, "--stats-addr", HOST, "--stats-port", str(stats),
            "--output", procs.logpath(name), "--pid-file", os.path.join(tmp, name + ".pid")]
    p = procs.start(name, argv)

    def forwarding():
        return (redis_call(listen, "PING") == "PONG"
                and isinstance(redis_call(listen, "EXISTS", "twemproxy:ready"), int))
    try:
        wait_until(forwarding, timeout, "PONG and a forwarded EXISTS through twemproxy", proc=p)
    except RuntimeError as e:
        raise RuntimeError("twemproxy %s: %s" % (e, procs.logtail(name, 1500)))
    return {"config": cfg_text,
            "command": "nutcracker --conf-file twemproxy.yml --stats-addr 127.0.0.1 --stats-port PORT"}
