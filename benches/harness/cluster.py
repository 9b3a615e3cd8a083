"""A local Redis cluster: redis-server and redis-sentinel start-up, and the questions asked of it
(who is master, are the replicas in sync, do the sentinels see each other).

Everything listens on 127.0.0.1, on ports the caller picked free, in the run's temp dir, with
persistence off.
"""

import os

from .procs import HOST, wait_until
from .resp import info_repl, pairs_to_dict, redis_call

MASTER_NAME = "mymaster"


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
    """Starts redis-server `name` (a replica of `master_port` if given) and waits for PING.
    Returns its argv."""
    argv = redis_argv(tmp, name, port, master_port, extra)
    p = procs.start(name, argv)
    wait_until(lambda: redis_call(port, "PING", timeout=0.5) == "PONG", 10, name + " PING", proc=p)
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
    p = procs.start(name, ["redis-sentinel", conf])
    wait_until(lambda: redis_call(port, "PING", timeout=0.5) == "PONG", 10, name + " PING", proc=p)


def sentinel_master_port(port, timeout=0.5):
    r = redis_call(port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME, timeout=timeout)
    if isinstance(r, list) and len(r) == 2:
        return int(r[1])
    return None


def agreed_master(sports):
    """The master port every sentinel names, or None (they disagree, or one does not answer)."""
    ms = set()
    for sp in sports:
        try:
            ms.add(sentinel_master_port(sp))
        except Exception:  # noqa: BLE001
            ms.add(None)
    if len(ms) == 1 and None not in ms:
        return ms.pop()
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


def replicas_caught_up(master, ports, strict=True, skip_unreachable=True):
    """Every node of `ports` but `master` replicates it and has reached its replication offset.

    strict: each must replicate `master` with its link up; otherwise only the nodes that already
    replicate `master` are checked. skip_unreachable: a node that does not answer (killed) is
    left out; otherwise it raises, and a wait_until() around this retries."""
    moff = int(info_repl(master).get("master_repl_offset", 0))
    for p in ports:
        if p == master:
            continue
        try:
            i = info_repl(p, timeout=0.5)
        except OSError:
            if skip_unreachable:
                continue
            raise
        follows = i.get("role") == "slave" and int(i.get("master_port", 0)) == master
        if strict and (not follows or i.get("master_link_status") != "up"):
            return False
        if follows and int(i.get("slave_repl_offset", 0)) < moff:
            return False
    return True
