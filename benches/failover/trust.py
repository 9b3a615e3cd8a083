"""Trust modes of the failover benchmark: ordinary mishaps in which one wrong signal could cost
acknowledged writes or the endpoint, with HAProxy and redis-master-proxy side by side.

| mode | variant | what happens |
|---|---|---|
| accidental-promotion | sentinel | `REPLICAOF NO ONE` on a replica; Sentinel converts it back (~10-15 s) |
| accidental-promotion | info-only | the same without sentinels; the operator reverts it by hand after 5 s |
| slow-master | lua-0.9s | a 0.9 s busy Lua script on the master, sent through the endpoint |
| slow-master | lua-3s | a 3 s script; sentinels with down-after 10 s, so no failover follows |
| slow-master | client-pause-3s | `CLIENT PAUSE 3000 WRITE` through the endpoint; down-after 10 s |
| lying-sentinel | one-of-three | 2 real sentinels + 1 fake that announces a failover of the master every 8 s |
| rdb-restart | info-only | a replica restarts from its own RDB without `replicaof` |
| split-brain | info-only, sentinel | two masters with unrelated histories; three proxies started at different times |

Where the trigger does not go through an endpoint, both endpoints run in front of the same
cluster at the same time, each with its own probes; slow-master sends its command through the
endpoint under test, so there each endpoint gets its own cluster. Every mode is bounded in time
and every process is stopped in a `finally`. run.py calls run_all(); everything reused (cluster,
endpoints, probes, pollers, the fake sentinel) comes from benches/harness and probes.py.
"""

import json
import os
import socket
import tempfile
import threading
import time
import traceback

from benches.failover.probes import (
    PROBE_TIMEOUT, Probe, analyse_client, keys_present, r4, start_proxy_endpoint,
)
from benches.harness.cluster import (
    MASTER_NAME, agreed_master, replicas_caught_up, replicas_online, sentinel_master_port,
    sentinels_ready, start_redis, start_sentinel,
)
from benches.harness.endpoints import haproxy_servers_up, http_get, start_haproxy
from benches.harness.fake_sentinel import FakeSentinel
from benches.harness.pollers import NodePoller, SentinelEvents
from benches.harness.procs import HOST, Procs, free_ports, log, now, wait_until
from benches.harness.resp import Conn, ConnectionClosed, RespError, info_repl, redis_call

MODES = {
    "accidental-promotion": ["sentinel", "info-only"],
    "slow-master": ["lua-0.9s", "lua-3s", "client-pause-3s"],
    "lying-sentinel": ["one-of-three"],
    "rdb-restart": ["info-only"],
    "split-brain": ["info-only", "sentinel"],
}

WARMUP = 3.0                # steady writes before the trigger
REVERT_WAIT = 30.0          # accidental-promotion: give up waiting for the revert after this
MANUAL_REVERT_AFTER = 5.0   # accidental-promotion, info-only: the operator reverts after this
AFTER_REVERT = 10.0         # observe this long after the revert
SLOW_AFTER = 8.0            # slow-master: observe this long after the slow command ends
LIE_EVERY = 8.0             # lying-sentinel: one false failover announcement this often
LIE_OBSERVE = 30.0          # lying-sentinel: observed this long
RDB_DOWN = 2.0              # rdb-restart: the replica stays stopped this long
RDB_OBSERVE = 15.0          # rdb-restart: observed this long after the restart
SPLIT_KEYS_A = 3000         # split-brain: keys on the isolated master A
SPLIT_KEYS_B = 442          # split-brain: keys on master B (the one with the replica)
SPLIT_PROXY_GAP = 3.0       # split-brain: seconds between the starts of proxy-2 and proxy-3
SPLIT_OBSERVE = 10.0        # split-brain: observed this long after the last proxy is ready
SLOW_PROBE_TIMEOUT = 5.0    # slow-master: the probes' socket timeout (the stall is 0.9-3 s)
IDLE_SESSIONS = 5           # idle client sessions per endpoint, checked with PING at the end

SLOW = {  # variant -> (sentinel down-after ms, seconds the master is slow, command)
    "lua-0.9s": (1000, 0.9, "lua"),
    "lua-3s": (10000, 3.0, "lua"),
    "client-pause-3s": (10000, 3.0, "pause"),
}

# A busy loop on the server's clock: the master runs nothing else until it returns.
BUSY_LUA = """local t = redis.call('TIME')
local stop = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])
while true do
  t = redis.call('TIME')
  if tonumber(t[1]) * 1000000 + tonumber(t[2]) >= stop then break end
end
return 1"""


# --------------------------------------------------------------------------------------
# Observers specific to these modes

class RouteWatcher(threading.Thread):
    """Where one endpoint routes, every 200 ms: a proxy's `/status` master (and its split-brain
    counter every second), or the servers HAProxy has UP."""

    def __init__(self, label, names, admin=None, stats_socket=None):
        super().__init__(daemon=True)
        self.label = label
        self.names = names
        self.admin = admin
        self.stats_socket = stats_socket
        self.stop_evt = threading.Event()
        self.changes = []        # (t, route)
        self.split_counter = []  # (t, value) of redis_master_proxy_split_brain_conflicts_total
        self.last_status = None

    def route(self):
        if self.stats_socket:
            up = haproxy_servers_up(self.stats_socket)
            return "+".join("redis-%s" % s[1:] for s in up) or "none"
        code, body = http_get(self.admin, "/status", timeout=0.5)
        st = json.loads(body)
        self.last_status = st
        m = st.get("master")
        if not m:
            return "none"
        port = int(m["backend"].rsplit(":", 1)[1])
        return self.names.get(port, m["backend"])

    def counter(self):
        code, body = http_get(self.admin, "/metrics", timeout=0.5)
        total = 0.0
        for line in body.splitlines():
            if line.startswith("redis_master_proxy_split_brain_conflicts_total"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def run(self):
        last, next_metrics = None, 0.0
        deadline = now() + 600
        while not self.stop_evt.is_set() and now() < deadline:
            try:
                r = self.route()
            except Exception as e:  # noqa: BLE001
                r = "unreachable (%s)" % type(e).__name__
            t = now()
            if r != last:
                self.changes.append((t, r))
                last = r
            if self.admin and t >= next_metrics:
                try:
                    self.split_counter.append((t, self.counter()))
                except Exception:  # noqa: BLE001
                    pass
                next_metrics = t + 1.0
            self.stop_evt.wait(0.2)


class IdleSessions:
    """IDLE_SESSIONS client sessions through one endpoint, opened before the trigger and idle
    until the end, when each gets a PING: did the endpoint keep them open?"""

    def __init__(self, port):
        self.conns = []
        for _ in range(IDLE_SESSIONS):
            c = Conn(HOST, port, timeout=2.0)
            r = c.call("CONFIG", "GET", "port")
            self.conns.append((c, int(r[1]) if isinstance(r, list) and len(r) == 2 else None))

    def check(self):
        out = {"opened": len(self.conns), "alive": 0, "closed": 0, "stuck": 0}
        for c, _ in self.conns:
            try:
                out["alive" if c.call("PING") == "PONG" else "closed"] += 1
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                out["closed"] += 1
            except (TimeoutError, socket.timeout):
                out["stuck"] += 1
            except OSError:
                out["closed"] += 1
            c.close()
        return out


class SlowCommand(threading.Thread):
    """Sends the slow command through the endpoint on its own connection; records its reply."""

    def __init__(self, port, kind, seconds):
        super().__init__(daemon=True)
        self.conn = Conn(HOST, port, timeout=seconds + 5.0)
        self.kind, self.seconds = kind, seconds
        self.go = threading.Event()
        self.result = {"reply": None, "outcome": "not sent"}

    def run(self):
        if not self.go.wait(120):
            return
        t0 = now()
        try:
            if self.kind == "lua":
                r = self.conn.call("EVAL", BUSY_LUA, 0, str(int(self.seconds * 1_000_000)))
            else:
                r = self.conn.call("CLIENT", "PAUSE", str(int(self.seconds * 1000)), "WRITE")
            self.result["reply"] = str(r)
            self.result["outcome"] = "error reply" if isinstance(r, RespError) else "reply"
            # The session itself must still work afterwards.
            self.result["ping_after"] = str(self.conn.call("PING"))
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            self.result["outcome"] = "closed"
        except (TimeoutError, socket.timeout):
            self.result["outcome"] = "timeout"
        except Exception as e:  # noqa: BLE001
            self.result["outcome"] = "error: %s" % type(e).__name__
        self.result["sent_s"] = t0
        self.result["answered_after_s"] = r4(now() - t0)
        self.conn.close()


# --------------------------------------------------------------------------------------
# One run

class Run:
    """One trust run: its own directory, ports, processes, endpoints and observers."""

    def __init__(self, args, mode, variant, rep, candidates):
        self.args = args
        self.mode, self.variant, self.rep = mode, variant, rep
        self.candidates = candidates
        self.run_id = "%s-%s-%d-%d" % (mode, variant, rep, int(time.time()))
        self.tmp = tempfile.mkdtemp(prefix="trust-%s-%s-" % (mode, variant))
        self.procs = Procs(self.tmp)
        self._used_ports = set()
        self.threads = []
        self.rports, self.sports, self.names = [], [], {}
        self.endpoints = {}   # label -> {"port", "admin", "watch", "idle", "probes", ...}
        self.pollers, self.sub = [], None
        self.t_trig = None
        self.marks = {}
        # slow-master: longer than the stall, so a client waiting it out is not an error
        self.probe_timeout = SLOW_PROBE_TIMEOUT if mode == "slow-master" else PROBE_TIMEOUT
        self.res = {"mode": mode, "variant": variant, "rep": rep, "run_id": self.run_id,
                    "candidates": candidates, "notes": [], "endpoints": {}}

    def port(self):
        """A free port, picked when it is about to be bound: picked early, an outgoing
        connection of this run could take it first."""
        for _ in range(20):
            p = free_ports(1)[0]
            if p not in self._used_ports:
                self._used_ports.add(p)
                return p
        raise RuntimeError("no free port")

    def mark(self, key, t=None):
        self.marks[key] = now() if t is None else t

    def cluster(self, replicas=2, sentinels=3, down_after=1000, quorum=2):
        self.rports = [self.port() for _ in range(1 + replicas)]
        self.names = {p: "redis-%d" % (i + 1) for i, p in enumerate(self.rports)}
        start_redis(self.procs, self.tmp, "redis-1", self.rports[0])
        for i, p in enumerate(self.rports[1:]):
            start_redis(self.procs, self.tmp, "redis-%d" % (i + 2), p, self.rports[0])
        wait_until(lambda: replicas_online(self.rports[0], replicas), 20, "replicas in sync")
        self.sports = [self.port() for _ in range(sentinels)]
        for i, sp in enumerate(self.sports):
            start_sentinel(self.procs, self.tmp, "sentinel-%d" % (i + 1), sp, self.rports[0],
                           down_after=down_after, quorum=quorum)
        if sentinels:
            wait_until(lambda: sentinels_ready(self.sports, replicas), 40,
                       "sentinels to see the replicas and their peers", 0.25)

    def start_endpoints(self, with_sentinel, sentinel_addrs=None, proxies=("proxy",),
                        up=("r1",), ready_path="/readyz"):
        for cand in self.candidates:
            if cand == "haproxy":
                port = self.port()
                ep = start_haproxy(self.procs, self.tmp, port, self.rports, up=up)
                self.endpoints["haproxy"] = {"port": port, "config": ep["config"],
                                             "stats_socket": ep["stats_socket"]}
            else:
                for name in proxies:
                    self.start_proxy(name, with_sentinel, sentinel_addrs, ready_path)

    def start_proxy(self, name, with_sentinel, sentinel_addrs=None, ready_path="/readyz"):
        for attempt in range(3):
            port, admin = self.port(), self.port()
            try:
                ep = start_proxy_endpoint(self.procs, self.tmp, self.args.proxy_bin, port, admin,
                                 self.rports, sentinel_addrs or self.sports, self.res["notes"], {},
                                 name=name, sentinel=with_sentinel, ready_path=ready_path)
                break
            except RuntimeError as e:
                # A port picked free can be taken by an outgoing connection before the
                # proxy binds it: pick others.
                if "Address already in use" not in str(e) or attempt == 2:
                    raise
                self.res["notes"].append("%s: a picked port was taken meanwhile; retried on "
                                         "other ports" % name)
        self.endpoints[name] = {"port": port, "admin": admin, "config": ep["config"],
                                "sentinel": ep["sentinel"], "started": now()}
        return self.endpoints[name]

    def watch(self, label):
        ep = self.endpoints[label]
        w = RouteWatcher(label, self.names, admin=ep.get("admin"), stats_socket=ep.get("stats_socket"))
        ep["watch"] = w
        self.threads.append(w)
        w.start()

    def observe(self, idle=True, probes=True):
        """INFO pollers, one sentinel's events, route watchers, idle sessions and the probes."""
        self.pollers = [NodePoller(p, self.names[p]) for p in self.rports]
        for p in self.pollers:
            p.start()
        self.threads += self.pollers
        if self.sports:
            self.sub = SentinelEvents(self.sports[0])
            self.sub.start()
            self.threads.append(self.sub)
        for label, ep in self.endpoints.items():
            self.watch(label)
            if idle:
                ep["idle"] = IdleSessions(ep["port"])
            if probes:
                ep["probes"] = {}
                for c in self.args.clients:
                    p = Probe(ep["port"], "%s-%s-%s" % (self.run_id, label, c[0]),
                              identify=True, max_seconds=120, fresh=(c == "fresh"),
                              timeout=self.probe_timeout)
                    ep["probes"][c] = p
                    self.threads.append(p)
        time.sleep(0.3)
        for ep in self.endpoints.values():
            for p in ep.get("probes", {}).values():
                p.start()
        time.sleep(WARMUP)

    def node_state(self, port):
        for p in self.pollers:
            if p.port == port and p.last:
                return p.last[1]
        return None

    def wait_for(self, pred, timeout):
        deadline = now() + timeout
        while now() < deadline:
            if pred():
                return True
            time.sleep(0.02)
        return False

    def stop_observers(self):
        for ep in self.endpoints.values():
            for p in ep.get("probes", {}).values():
                p.stop_evt.set()
        for ep in self.endpoints.values():
            for p in ep.get("probes", {}).values():
                p.join(timeout=self.probe_timeout * 3 + 1)
        for t in self.threads:
            t.stop_evt.set()
        for t in self.threads:
            t.join(timeout=3)

    def finish(self, final, promotion=None):
        """Stops the observers; per endpoint: client metrics against `final`, idle sessions,
        routes. `promotion` (absolute time) is what the follow time is measured from."""
        for label, ep in self.endpoints.items():
            if "idle" in ep:
                ep["idle_result"] = ep["idle"].check()
        self.stop_observers()

        try:
            wait_until(lambda: replicas_caught_up(final, self.rports, strict=False), 15,
                       "replicas to catch up with the final master", 0.2)
        except RuntimeError as e:
            self.res["notes"].append(str(e))
        self.res["final_master"] = self.names.get(final, str(final))
        t0 = self.t_trig
        for label, ep in self.endpoints.items():
            out = self.res["endpoints"].setdefault(label, {})
            out["clients"] = {}
            for c, p in ep.get("probes", {}).items():
                acked = [a[0] for a in p.attempts if a[3] == "ok"]
                unacked = [a[0] for a in p.attempts if a[3] != "ok" and a[4] == "write"]
                present = keys_present(final, p.run_id, acked + unacked)
                out["clients"][c] = analyse_client(p, t0, promotion, final, self.names, present,
                                                   acked, unacked)
            if "idle_result" in ep:
                out["idle_sessions"] = ep["idle_result"]
            w = ep.get("watch")
            if w:
                out["routes"] = [[r4(t - t0), r] for t, r in w.changes]
                if w.split_counter:
                    out["split_brain_counter"] = [[r4(t - t0), v] for t, v in w.split_counter]
                if w.last_status is not None:
                    out["status"] = w.last_status
        self.res["times"] = {k: r4(v - t0) if v is not None else None for k, v in self.marks.items()}
        self.res["times"]["trigger"] = 0.0
        self.res["times"]["end"] = r4(now() - t0)
        self.res["topology"] = {p.name: [[r4(t - t0), st] for t, st in p.changes] for p in self.pollers}
        if self.sub:
            self.res["sentinel_events"] = [[r4(t - t0), ch, msg] for t, ch, msg in self.sub.events]
        self.res["configs"] = {label: ep.get("config") for label, ep in self.endpoints.items()}

    def close(self):
        for t in self.threads:
            t.stop_evt.set()
        for ep in self.endpoints.values():
            if "idle" in ep:
                for c, _ in ep["idle"].conns:
                    c.close()
        if self.procs.close(self.threads, keep=self.args.keep_tmp):
            self.res["tmp"] = self.tmp


def _became(poller, t_from, role):
    """First time at or after t_from that the poller saw `role`."""
    for t, st in poller.changes:
        if t >= t_from and st["role"] == role:
            return t
    return None


# --------------------------------------------------------------------------------------
# Modes

def accidental_promotion(run):
    sentinel = run.variant == "sentinel"
    run.cluster(replicas=2, sentinels=3 if sentinel else 0)
    run.start_endpoints(with_sentinel=sentinel)
    run.observe()
    r1, r2 = run.rports[0], run.rports[1]
    poller2 = run.pollers[1]
    run.t_trig = now()
    run.res["trigger_reply"] = str(redis_call(r2, "REPLICAOF", "NO", "ONE"))
    log("  %s: REPLICAOF NO ONE on redis-2" % run.run_id)
    run.wait_for(lambda: _became(poller2, run.t_trig, "master") is not None, 5)
    run.mark("promotion", _became(poller2, run.t_trig, "master"))
    if not sentinel:
        time.sleep(max(0.0, run.t_trig + MANUAL_REVERT_AFTER - now()))
        run.mark("revert_sent")
        run.res["revert_reply"] = str(redis_call(r2, "REPLICAOF", HOST, str(r1)))
    t_p = run.marks["promotion"] or run.t_trig
    run.wait_for(lambda: _became(poller2, t_p, "slave") is not None,
                 max(0.0, run.t_trig + REVERT_WAIT - now()))
    t_rev = _became(poller2, t_p, "slave")
    run.mark("revert", t_rev)
    if t_rev is None:
        run.res["notes"].append("redis-2 was not converted back within %.0f s" % REVERT_WAIT)
    time.sleep(max(0.0, (t_rev or now()) + AFTER_REVERT - now()))
    final = agreed_master(run.sports) if sentinel else r1
    if final != r1:
        run.res["notes"].append("the final master is %s, not redis-1" % run.names.get(final, final))
    run.finish(final or r1, promotion=t_rev)


def slow_master(run):
    down_after, seconds, kind = SLOW[run.variant]
    run.cluster(replicas=2, sentinels=3, down_after=down_after)
    run.start_endpoints(with_sentinel=True)
    label = next(iter(run.endpoints))
    slow = SlowCommand(run.endpoints[label]["port"], kind, seconds)
    slow.start()
    run.threads.append(_Joinable(slow))
    run.observe()
    run.t_trig = now()
    slow.go.set()
    log("  %s: %s for %.1f s through %s" % (run.run_id, "busy script" if kind == "lua" else
                                             "CLIENT PAUSE WRITE", seconds, label))
    slow.join(timeout=seconds + 7)
    time.sleep(max(0.0, run.t_trig + seconds + SLOW_AFTER - now()))
    final = agreed_master(run.sports) or run.rports[0]
    if final != run.rports[0]:
        run.res["notes"].append("the sentinels failed over to %s" % run.names.get(final, final))
    run.finish(final)
    res = dict(slow.result)
    if "sent_s" in res:
        res["sent_s"] = r4(res["sent_s"] - run.t_trig)
    run.res["endpoints"][label]["slow_command"] = res
    run.res["slow_seconds"] = seconds


def lying_sentinel(run):
    run.cluster(replicas=2, sentinels=2)
    fake = FakeSentinel(run.port(), run.sports[0], run.rports[0], run.rports[1], lie_every=LIE_EVERY)
    fake.start()
    run.threads.append(fake)
    run.start_endpoints(with_sentinel=True, sentinel_addrs=run.sports + [fake.port])
    run.observe()
    run.t_trig = now()
    fake.lying()
    log("  %s: the fake sentinel announces a failover every %.0f s" % (run.run_id, LIE_EVERY))
    time.sleep(max(0.0, run.t_trig + LIE_OBSERVE - now()))
    final = agreed_master(run.sports) or run.rports[0]
    run.finish(final)
    run.res["lies"] = [[r4(t - run.t_trig), ch, payload, n] for t, ch, payload, n in fake.published]
    run.res["fake_sentinel_commands"] = fake.commands
    run.res["times"]["lies"] = sorted({r[0] for r in run.res["lies"]})


def rdb_restart(run):
    run.cluster(replicas=2, sentinels=0)
    run.start_endpoints(with_sentinel=False)
    run.observe()
    r1, r3 = run.rports[0], run.rports[2]
    run.t_trig = now()
    try:
        redis_call(r3, "SHUTDOWN", "SAVE", timeout=5)
    except (ConnectionClosed, OSError):
        pass  # the server closes the connection as it exits
    run.procs.items["redis-3"].wait(timeout=10)
    run.mark("replica_stopped")
    log("  %s: redis-3 stopped with its RDB; restarting it without replicaof" % run.run_id)
    time.sleep(RDB_DOWN)
    start_redis(run.procs, run.tmp, "redis-3", r3)
    run.mark("restarted")
    i3, i1 = info_repl(r3), info_repl(r1)
    run.res["restarted_node"] = {
        "role": i3.get("role"), "connected_slaves": i3.get("connected_slaves"),
        "master_repl_offset": i3.get("master_repl_offset"),
        "master_replid2_is_live_masters_replid": i3.get("master_replid2") == i1.get("master_replid"),
        "live_master_offset": i1.get("master_repl_offset"),
        "live_master_replicas": i1.get("connected_slaves"),
    }
    time.sleep(max(0.0, run.marks["restarted"] + RDB_OBSERVE - now()))
    run.finish(r1)


def split_brain(run):
    """A (redis-1) is the master before the split; after it, A is isolated with more keys and
    B (redis-3, restarted empty: an unrelated history) has redis-2 as its replica."""
    sentinel = run.variant == "sentinel"
    run.cluster(replicas=2, sentinels=3 if sentinel else 0)
    a, r2, b = run.rports
    _fill(a, "a", SPLIT_KEYS_A)
    run.start_endpoints(with_sentinel=sentinel, proxies=("proxy-1",))
    run.observe(idle=False, probes=False)
    if "proxy-1" in run.endpoints:
        w = run.endpoints["proxy-1"]["watch"]
        run.wait_for(lambda: w.changes and w.changes[-1][1] == "redis-1", 5)
    run.t_trig = now()
    log("  %s: splitting: redis-3 restarts empty as master B, redis-2 follows it" % run.run_id)
    for sp in run.sports:
        redis_call(sp, "SENTINEL", "REMOVE", MASTER_NAME)
    run.procs.kill("redis-3")
    for f in ("dump.rdb",):
        try:
            os.remove(os.path.join(run.tmp, "redis-3", f))
        except OSError:
            pass
    start_redis(run.procs, run.tmp, "redis-3", b)
    _fill(b, "b", SPLIT_KEYS_B)
    redis_call(r2, "REPLICAOF", HOST, str(b))
    wait_until(lambda: replicas_online(b, 1), 20, "redis-2 to replicate B")
    if sentinel:
        for sp in run.sports:
            redis_call(sp, "SENTINEL", "MONITOR", MASTER_NAME, HOST, str(b), "2")
            redis_call(sp, "SENTINEL", "SET", MASTER_NAME, "down-after-milliseconds", "1000",
                       "failover-timeout", "3000")
        wait_until(lambda: all(sentinel_master_port(sp) == b for sp in run.sports), 10,
                   "every sentinel to name B")
    run.mark("split")
    ia, ib = info_repl(a), info_repl(b)
    run.res["masters"] = {
        "A": {"node": "redis-1", "keys": redis_call(a, "DBSIZE"), "replicas": ia.get("connected_slaves"),
              "replid": ia.get("master_replid")},
        "B": {"node": "redis-3", "keys": redis_call(b, "DBSIZE"), "replicas": ib.get("connected_slaves"),
              "replid": ib.get("master_replid"), "replid2": ib.get("master_replid2")},
    }
    if "proxy" in run.candidates:
        for i, name in enumerate(("proxy-2", "proxy-3")):
            if i:
                time.sleep(SPLIT_PROXY_GAP)
            run.start_proxy(name, sentinel, ready_path="/livez")
            run.mark("%s_started" % name)
            run.watch(name)
    time.sleep(SPLIT_OBSERVE)
    # Which node does a new connection through each endpoint reach?
    served = {}
    for label, ep in run.endpoints.items():
        nodes = []
        for _ in range(6):
            try:
                c = Conn(HOST, ep["port"], timeout=1.0)
                r = c.call("CONFIG", "GET", "port")
                c.close()
                nodes.append(run.names.get(int(r[1]), r[1]) if isinstance(r, list) else str(r))
            except Exception as e:  # noqa: BLE001
                nodes.append("error: %s" % type(e).__name__)
        served[label] = nodes
    run.finish(a)
    for label, nodes in served.items():
        run.res["endpoints"][label]["new_connections_reach"] = nodes


def _fill(port, prefix, n):
    c = Conn(HOST, port, timeout=5.0)
    try:
        for i in range(0, n, 500):
            args = []
            for k in range(i, min(n, i + 500)):
                args += ["%s:%d" % (prefix, k), str(k)]
            c.call("MSET", *args)
    finally:
        c.close()


class _Joinable:
    """Lets a plain thread sit in Run.threads (stop_evt and join)."""

    def __init__(self, t):
        self.t = t
        self.stop_evt = threading.Event()

    def join(self, timeout=None):
        self.t.join(timeout)


RUNNERS = {
    "accidental-promotion": accidental_promotion,
    "slow-master": slow_master,
    "lying-sentinel": lying_sentinel,
    "rdb-restart": rdb_restart,
    "split-brain": split_brain,
}


# --------------------------------------------------------------------------------------
# Summaries: the numbers the report and the targets are about

def summarize(r):
    """Per endpoint, the few numbers the report shows for this mode: endpoint-wide ones, and
    per client (`clients.<persistent|fresh>`)."""
    out = {}
    mode = r["mode"]
    for label, e in r.get("endpoints", {}).items():
        s = {"clients": {}}
        for c, m in e.get("clients", {}).items():
            cs = {
                "acked": m["acked"],
                "lost": m["lost_acked"],
                "readonly": m["by_kind"]["readonly"],
                "other_errors": m["failed"] - m["by_kind"]["readonly"],
                "errors": m["failed"],
                "closed": m["by_kind"]["closed"] + m["by_kind"]["reset"],
                "longest_gap_s": _longest_gap(m),
                "acked_by_node": m["acked_by_node_after_trigger"],
            }
            if mode == "accidental-promotion":
                if r["times"].get("revert") is None:
                    cs["serving_after_revert_s"] = "no revert"
                else:
                    cs["serving_after_revert_s"] = "never" if m["follow_s"] is None else m["follow_s"]
            s["clients"][c] = cs
        idle = e.get("idle_sessions")
        if idle:
            s["idle_closed"] = idle["closed"] + idle["stuck"]
        if mode == "slow-master":
            sc = e.get("slow_command")
            closed = sum(c["closed"] for c in s["clients"].values()) + s.get("idle_closed", 0)
            if sc:
                s["slow_command"] = sc["outcome"]
                if sc["outcome"] not in ("reply", "error reply"):
                    closed += 1
            s["sessions_closed"] = closed
        routes = e.get("routes", [])
        if mode == "rdb-restart":
            t_rs = r["times"].get("restarted") or 0
            seen = {_route_at(routes, t_rs)} | {rt for ts, rt in routes if ts >= t_rs}
            s["routes_after_restart"] = sorted(x for x in seen if x is not None)
        if mode == "split-brain":
            s["route_at_end"] = routes[-1][1] if routes else None
            s["new_connections_reach"] = sorted(set(e.get("new_connections_reach", [])))
            sc = e.get("split_brain_counter")
            if sc:
                s["split_counter_first_last"] = [sc[0][1], sc[-1][1]]
                s["split_alert_expr"] = sc[-1][1] - sc[0][1] > 0
            st = e.get("status")
            if st is not None:
                s["status_split_brain"] = st.get("split_brain")
        out[label] = s
    if mode == "split-brain":
        proxies = {k: v for k, v in out.items() if k.startswith("proxy")}
        routes = {v.get("route_at_end") for v in proxies.values()}
        out["_fleet"] = {
            "proxies": len(proxies),
            "same_master": len(routes) == 1 and None not in routes and "none" not in routes,
            "routes": {k: v.get("route_at_end") for k, v in proxies.items()},
            "alert_expr_true": any(v.get("split_alert_expr") for v in proxies.values()),
        }
    return out


def _longest_gap(m):
    """analyse_client's longest gap after the trigger, including a gap still open at the end."""
    a = m["attempts"]
    oks = [a["end_ms"][i] for i, k in enumerate(a["kind"]) if k == "o"]
    gap = m["longest_write_gap_s"] or 0.0
    if a["end_ms"]:
        last_ok = max(oks) if oks else a["start_ms"][0]
        gap = max(gap, (a["end_ms"][-1] - max(last_ok, 0.0)) / 1000.0)
    return r4(gap)


def _route_at(routes, t):
    cur = None
    for ts, rt in routes:
        if ts is not None and ts <= t:
            cur = rt
    return cur


# --------------------------------------------------------------------------------------

def run_one(args, mode, variant, rep, candidates):
    run = Run(args, mode, variant, rep, candidates)
    try:
        RUNNERS[mode](run)
    except Exception as e:  # noqa: BLE001 - recorded, the next run goes on
        run.res["error"] = "%s: %s" % (type(e).__name__, e)
        run.res["traceback"] = traceback.format_exc()[-3000:]
        run.res["logs"] = run.procs.logtails()
    finally:
        run.close()
    if "error" not in run.res:
        run.res["summary"] = summarize(run.res)
    return run.res


def plan(args, modes):
    """(mode, variant, rep, candidates) in run order; slow-master runs each endpoint alone."""
    out = []
    for mode in modes:
        for variant in MODES[mode]:
            for rep in range(1, args.reps + 1):
                if mode == "slow-master":
                    out += [(mode, variant, rep, [c]) for c in args.candidates]
                else:
                    out.append((mode, variant, rep, list(args.candidates)))
    return out


def run_all(args, modes, doc):
    """Runs the trust modes; fills doc["runs"]. Returns True when interrupted."""
    todo = plan(args, modes)
    for i, (mode, variant, rep, cands) in enumerate(todo, 1):
        log("trust run %d/%d: %s/%s, repetition %d, %s" % (i, len(todo), mode, variant, rep,
                                                           " + ".join(cands)))
        try:
            r = run_one(args, mode, variant, rep, cands)
        except KeyboardInterrupt:
            return True
        doc["runs"].append(r)
        if "error" in r:
            log("  error: %s" % r["error"])
        else:
            for label, s in r["summary"].items():
                log("  %-8s %s" % (label, json.dumps(s, sort_keys=True)[:400]))
    return False
