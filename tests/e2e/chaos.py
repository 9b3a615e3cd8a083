#!/usr/bin/env python3
"""Chaos soak: real-client load through redis-master-proxy while Sentinel fails the master
over again and again, then a check of every promise.

A master and two replicas, three sentinels (quorum 2, down-after 1000 ms, failover-timeout
3000 ms) and the proxy with a [sentinel] section, all on 127.0.0.1 on free ports in a temp
dir. Load through the proxy, each pattern in its own thread, each reconnecting after an error:

  plain     SET soak:w:<n> <n> every 5 ms on one connection
  pipeline  batches of 50 commands (INCR soak:ctr / SET soak:p:<n> <n>) in one write
  fresh     a new connection for every SET soak:f:<n> <n>, every 20 ms
  pubsub    a subscriber on soak:ch (resubscribes after a close) and a publisher, every 10 ms
  blpop     two workers BLPOP soak:q 1 and a producer RPUSH soak:q <n> every 10 ms

A chaos loop triggers failovers round-robin, waiting for the topology to settle between them:
planned (SENTINEL FAILOVER), kill (SIGKILL, restarted later as a replica of the new master),
hang (SIGSTOP, SIGCONT 10 s later) and stall (SIGSTOP for 600 ms: shorter than down-after).

At the end: acknowledged writes lost, INCR counter, jobs lost, READONLY replies (and whether
one came after the proxy had switched away from that node), panics in the proxy log, the
proxy's descriptors and RSS (start, peak, end) and its /metrics.

    python3 tests/e2e/chaos.py                  # 5 minutes
    python3 tests/e2e/chaos.py --quick          # about 60 s, one failover of each kind (CI)
    python3 tests/e2e/chaos.py --duration 900 --no-build --keep-tmp

Exit code 0 when every promise held, 1 when one was broken, 2 when the run itself failed.
"""

import argparse
import collections
import datetime
import json
import os
import re
import select
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback

if __package__ in (None, ""):  # run as a file: import from the repository root
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benches.harness.cluster import (  # noqa: E402
    MASTER_NAME, agreed_master, replicas_caught_up, replicas_online, sentinels_ready, start_redis,
    start_sentinel,
)
from benches.harness.endpoints import (  # noqa: E402
    http_get, metric, proxy_toml, scrape_metrics, start_proxy, stop_proxy,
)
from benches.harness.pollers import NodePoller, ProcSampler, SentinelEvents  # noqa: E402
from benches.harness.procfs import settled_sample, smaps_rollup  # noqa: E402
from benches.harness.procs import (  # noqa: E402
    HOST, REPO, Procs, free_ports, log, now, wait_until, wall,
)
from benches.harness.resp import (  # noqa: E402
    Conn, ConnectionClosed, RespError, encode, info_repl, pairs_to_dict, redis_call,
)
from benches.harness.tools import DEFAULT_BIN, run_versions, run_with_proxy, write_report  # noqa: E402

KINDS = ["planned", "kill", "hang", "stall"]
HANG_FOR = 10.0           # hang: SIGCONT this long after SIGSTOP
STALL_FOR = 0.6           # stall: shorter than down-after-milliseconds (1000)
FAILOVER_COOLDOWN = 7.0   # sentinel refuses a new failover of a master within 2 x failover-timeout
SETTLE_TIMEOUT = 40.0     # bound on waiting for the topology to settle after an event
MIN_TIME = {"planned": 8.0, "kill": 12.0, "hang": 18.0, "stall": 4.0,  # time an event needs
            "planned-kill": 30.0}
PLANNED_KILL_AFTER = 8.0   # planned-kill: SIGKILL the new master this long after SENTINEL FAILOVER
KILL_LOSS_WINDOW = 0.1    # a write acked by a master at most this long before its SIGKILL
# End-of-run RSS may exceed the start (sampled with the load running) by this much. Measured:
# +70..+360 KiB in every run, 20-minute ones included (docs/soak/results.md); the relay's
# buffer pools may also keep a few more 16 KiB buffers than at the start. A leak of 1 KiB per
# session over the ~2,300 sessions of --quick, or of 160 bytes over the ~13,000 of the
# 5-minute run, exceeds it.
RSS_TOLERANCE_KIB = 2048
FDS_BACK_WITHIN = 15.0    # seconds the idle descriptor count may take to return to the baseline
QUICK_CAP = 180.0         # --quick: bound on the chaos phase (one event of each kind: ~50 s)
ERROR_CAP = 20000         # errors kept per client (all are counted)


# --------------------------------------------------------------------------------------
# Load clients

class ReplyErr(Exception):
    def __init__(self, reply):
        super().__init__(str(reply))
        self.reply = reply


def classify(exc):
    if isinstance(exc, ReplyErr):
        r = exc.reply
        if isinstance(r, RespError):
            return ("readonly" if r.prefix == "READONLY" else "error"), str(r)[:120]
        return "unexpected", repr(r)[:120]
    if isinstance(exc, ConnectionRefusedError):
        return "refused", ""
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset", ""
    if isinstance(exc, ConnectionClosed):
        return "closed", ""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout", ""
    return "other", ("%s: %s" % (type(exc).__name__, exc))[:120]


class Client(threading.Thread):
    """One load pattern in its own thread. Subclasses implement step()."""

    timeout = 2.0
    identify = True

    def __init__(self, ctx, name):
        super().__init__(daemon=True, name=name)
        self.ctx = ctx
        self.stop_evt = threading.Event()
        self.conn = None
        self.conn_open = None
        self.node = None
        self.connects = 0
        self.kinds = collections.Counter()
        self.errors = []
        self.crash = None

    def running(self):
        return not self.stop_evt.is_set() and now() < self.ctx.hard_deadline

    def ensure_conn(self):
        if self.conn is None:
            t = wall()
            c = Conn(HOST, self.ctx.proxy_port, timeout=self.timeout)
            try:
                node = None
                if self.identify:
                    r = c.call("CONFIG", "GET", "port")
                    if not isinstance(r, list) or len(r) != 2:
                        raise ReplyErr(r)
                    node = int(r[1])
                self.on_connect(c)
            except BaseException:
                c.close()
                raise
            self.conn, self.conn_open, self.node = c, t, node
            self.connects += 1
        return self.conn

    def on_connect(self, c):
        pass

    def drop(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = self.node = self.conn_open = None

    def record(self, t_send, exc, op, drop=True, conn_open=None, node=None):
        kind, detail = classify(exc)
        self.kinds[kind] += 1
        if len(self.errors) < ERROR_CAP:
            self.errors.append({"client": self.name, "t_send": t_send, "t_recv": wall(), "kind": kind,
                                "detail": detail, "op": op,
                                "conn_open": conn_open if conn_open is not None else self.conn_open,
                                "node": node if node is not None else self.node})
        if drop:
            self.drop()

    def run(self):
        try:
            while self.running():
                self.step()
        except Exception:  # noqa: BLE001 - a crashed client is a failed run, reported
            self.crash = traceback.format_exc()[-2000:]
        finally:
            self.drop()

    def pause(self, seconds):
        self.stop_evt.wait(seconds)


class PlainWriter(Client):
    """SET soak:w:<n> <n> every few ms on one long-lived connection."""

    interval = 0.005

    def __init__(self, ctx, name="plain"):
        super().__init__(ctx, name)
        self.n = 0
        self.acked = []  # (n, t_ack, node)

    def step(self):
        self.n += 1
        n = self.n
        t0 = wall()
        op = "connect"
        try:
            c = self.ensure_conn()
            op = "SET"
            t0 = wall()
            r = c.call("SET", "soak:w:%d" % n, n)
            if r != "OK":
                raise ReplyErr(r)
            self.acked.append((n, wall(), self.node))
        except Exception as e:  # noqa: BLE001
            self.record(t0, e, op)
            self.pause(0.02)
        self.pause(self.interval)


class PipelineWriter(Client):
    """Batches of 50 pipelined commands, INCR soak:ctr and SET soak:p:<n> <n> alternating."""

    batch = 50
    interval = 0.02

    def __init__(self, ctx, name="pipeline"):
        super().__init__(ctx, name)
        self.n = 0
        self.acked = []      # SET: (n, t_ack, node)
        self.incr_acked = 0
        self.incr_max = 0
        self.incr_backwards = 0  # an INCR reply below an earlier acknowledged one
        self.batches = 0

    def step(self):
        cmds = []
        for i in range(self.batch):
            if i % 2 == 0:
                cmds.append(("INCR", "soak:ctr"))
            else:
                self.n += 1
                cmds.append(("SET", "soak:p:%d" % self.n, self.n))
        t0 = wall()
        op = "connect"
        i = 0
        try:
            c = self.ensure_conn()
            op = "pipeline"
            t0 = wall()
            c.sock.sendall(b"".join(encode(*cmd) for cmd in cmds))
            failed = False
            for i, cmd in enumerate(cmds):
                r = c.read_reply()
                if isinstance(r, RespError):
                    self.record(t0, ReplyErr(r), cmd[0], drop=False)
                    failed = True
                elif cmd[0] == "INCR" and isinstance(r, int):
                    self.incr_acked += 1
                    if r < self.incr_max:
                        self.incr_backwards += 1
                    self.incr_max = max(self.incr_max, r)
                elif cmd[0] == "SET" and r == "OK":
                    self.acked.append((cmd[2], wall(), self.node))
                else:
                    self.record(t0, ReplyErr(r), cmd[0], drop=False)
                    failed = True
            self.batches += 1
            if failed:
                self.drop()
        except Exception as e:  # noqa: BLE001
            self.record(t0, e, op if op == "connect" else cmds[i][0])
            self.pause(0.02)
        self.pause(self.interval)


class FreshWriter(Client):
    """A new connection for every SET soak:f:<n> <n> (short-lived clients)."""

    interval = 0.02

    def __init__(self, ctx, name="fresh"):
        super().__init__(ctx, name)
        self.n = 0
        self.acked = []

    def step(self):
        self.n += 1
        n = self.n
        t0 = wall()
        op = "connect"
        try:
            c = self.ensure_conn()
            op = "SET"
            t0 = wall()
            r = c.call("SET", "soak:f:%d" % n, n)
            if r != "OK":
                raise ReplyErr(r)
            self.acked.append((n, wall(), self.node))
            self.drop()
        except Exception as e:  # noqa: BLE001
            self.record(t0, e, op)
            self.pause(0.02)
        self.pause(self.interval)


class Subscriber(Client):
    """SUBSCRIBE soak:ch; resubscribes after any close. PINGs when quiet to notice a dead link."""

    timeout = 3.0

    def __init__(self, ctx, name="subscriber"):
        super().__init__(ctx, name)
        self.received = set()
        self.messages = 0
        self.subscribes = 0
        self.last_rx = None
        self.ping_sent = None

    def on_connect(self, c):
        c.send("SUBSCRIBE", "soak:ch")
        r = c.read_reply()
        if not (isinstance(r, list) and r and r[0] == "subscribe"):
            raise ReplyErr(r)
        self.subscribes += 1
        self.last_rx = now()
        self.ping_sent = None

    def step(self):
        t0 = wall()
        op = "connect"
        try:
            c = self.ensure_conn()
            op = "listen"
            if not c.buf:
                rl, _, _ = select.select([c.sock], [], [], 0.25)
                if not rl:
                    if self.ping_sent is not None and now() - self.ping_sent > self.timeout:
                        raise TimeoutError("no PONG in subscribed mode")
                    if self.ping_sent is None and now() - self.last_rx > 2.0:
                        c.send("PING")
                        self.ping_sent = now()
                    return
            msg = c.read_reply()
            self.last_rx = now()
            if isinstance(msg, list) and len(msg) == 3 and msg[0] == "message":
                self.messages += 1
                try:
                    self.received.add(int(msg[2]))
                except ValueError:
                    pass
            elif isinstance(msg, list) and msg and msg[0] == "pong":
                self.ping_sent = None
            elif isinstance(msg, RespError):
                raise ReplyErr(msg)
        except Exception as e:  # noqa: BLE001
            self.record(t0, e, op)
            self.pause(0.05)


class Publisher(Client):
    interval = 0.01

    def __init__(self, ctx, name="publisher"):
        super().__init__(ctx, name)
        self.n = 0
        self.acked = 0
        self.receivers = 0
        self.acked_ids = []

    def step(self):
        self.n += 1
        t0 = wall()
        op = "connect"
        try:
            c = self.ensure_conn()
            op = "PUBLISH"
            t0 = wall()
            r = c.call("PUBLISH", "soak:ch", self.n)
            if not isinstance(r, int):
                raise ReplyErr(r)
            self.acked += 1
            self.receivers += r
            if r > 0:
                self.acked_ids.append(self.n)
        except Exception as e:  # noqa: BLE001
            self.record(t0, e, op)
            self.pause(0.02)
        self.pause(self.interval)


class Producer(Client):
    """RPUSH soak:q <n>: a job queue (BullMQ/Sidekiq-like) fed every 10 ms."""

    interval = 0.01

    def __init__(self, ctx, name="producer"):
        super().__init__(ctx, name)
        self.n = 0
        self.acked = []  # (n, t_ack, node)

    def step(self):
        self.n += 1
        n = self.n
        t0 = wall()
        op = "connect"
        try:
            c = self.ensure_conn()
            op = "RPUSH"
            t0 = wall()
            r = c.call("RPUSH", "soak:q", n)
            if not isinstance(r, int):
                raise ReplyErr(r)
            self.acked.append((n, wall(), self.node))
        except Exception as e:  # noqa: BLE001
            self.record(t0, e, op)
            self.pause(0.02)
        self.pause(self.interval)


class Worker(Client):
    """BLPOP soak:q 1 in a loop."""

    timeout = 3.0

    def __init__(self, ctx, name):
        super().__init__(ctx, name)
        self.popped = []  # (n, t, node)
        self.empty = 0

    def step(self):
        t0 = wall()
        op = "connect"
        try:
            c = self.ensure_conn()
            op = "BLPOP"
            t0 = wall()
            r = c.call("BLPOP", "soak:q", 1)
            if r is None:
                self.empty += 1
            elif isinstance(r, list) and len(r) == 2:
                self.popped.append((int(r[1]), wall(), self.node))
            else:
                raise ReplyErr(r)
        except Exception as e:  # noqa: BLE001
            self.record(t0, e, op)
            self.pause(0.02)


# --------------------------------------------------------------------------------------
# Topology

class Cluster:
    def __init__(self, procs, tmp, rports, sports, proxy_port, admin_port):
        self.procs = procs
        self.tmp = tmp
        self.rports = rports
        self.sports = sports
        self.proxy_port = proxy_port
        self.admin_port = admin_port
        self.names = {p: "redis-%d" % (i + 1) for i, p in enumerate(rports)}

    def sentinel_master(self):
        return agreed_master(self.sports)

    def proxy_master(self):
        try:
            st, body = http_get(self.admin_port, "/status", timeout=1.0)
            m = json.loads(body).get("master")
            if m and m.get("backend"):
                return int(m["backend"].rsplit(":", 1)[1])
        except Exception:  # noqa: BLE001
            pass
        return None

    def state(self):
        """(sentinel master, redis ok, sentinels see the replicas ok, proxy master)."""
        m = self.sentinel_master()
        redis_ok = False
        sent_ok = False
        if m is not None:
            try:
                redis_ok = info_repl(m, timeout=0.5).get("role") == "master"
                for p in self.rports:
                    if p == m:
                        continue
                    i = info_repl(p, timeout=0.5)
                    if i.get("role") != "slave" or int(i.get("master_port", 0)) != m \
                            or i.get("master_link_status") != "up":
                        redis_ok = False
            except Exception:  # noqa: BLE001
                redis_ok = False
            if redis_ok:
                try:
                    sent_ok = True
                    for sp in self.sports:
                        reps = [pairs_to_dict(r) for r in
                                redis_call(sp, "SENTINEL", "REPLICAS", MASTER_NAME, timeout=0.5)]
                        # Flags only: a sentinel refreshes a replica's INFO (its link status)
                        # every 10 s, and the links were just checked on the nodes themselves.
                        good = [r for r in reps if r.get("flags") == "slave"]
                        if len(good) < len(self.rports) - 1:
                            sent_ok = False
                except Exception:  # noqa: BLE001
                    sent_ok = False
        return m, redis_ok, sent_ok, self.proxy_master()

    def settle(self, timeout):
        """Waits for: the sentinels agree on a master, it says role:master, every other node
        replicates it with the link up, every sentinel sees both replicas ok, and the proxy
        routes to it. Returns (master, t_settled or None, detail)."""
        deadline = now() + timeout
        last = None
        while now() < deadline:
            m, redis_ok, sent_ok, pm = self.state()
            last = {"sentinel_master": m, "redis_ok": redis_ok, "sentinels_ok": sent_ok,
                    "proxy_master": pm}
            if m is not None and redis_ok and sent_ok and pm == m:
                return m, wall(), last
            time.sleep(0.2)
        return last.get("sentinel_master") if last else None, None, last

    def failed_over_from(self, old, timeout):
        """Waits until the sentinels agree on a master other than `old`; returns it, or None."""
        try:
            return wait_until(lambda: (lambda m: m if m not in (None, old) else None)(self.sentinel_master()),
                                timeout, "the sentinels to name a master other than %s" % self.names[old], 0.1)
        except RuntimeError:
            return None

    def caught_up(self, m):
        return replicas_caught_up(m, self.rports, skip_unreachable=False)


# --------------------------------------------------------------------------------------
# Chaos

class Chaos:
    def __init__(self, cl, t0, end, rounds, kinds):
        self.cl = cl
        self.kinds = kinds
        self.planned_kill_after = PLANNED_KILL_AFTER
        self.t0 = t0
        self.end = end            # monotonic: no event starts that cannot finish by then
        self.rounds = rounds      # None: until the time is up
        self.events = []
        self.last_failover = None
        self.killed = []          # (t_kill, port)
        self.sentinel_i = 0

    def rel(self, t):
        return None if t is None else round(t - self.t0, 3)

    def run(self, stop_evt):
        i = 0
        while not stop_evt.is_set():
            if self.rounds is not None and i >= self.rounds * len(self.kinds):
                break
            kind = self.kinds[i % len(self.kinds)]
            if kind != "stall" and self.last_failover is not None:
                wait = self.last_failover + FAILOVER_COOLDOWN - now()
                if wait > 0:
                    stop_evt.wait(wait)
            if now() + MIN_TIME[kind] > self.end:
                log("chaos: %.0f s left, not enough for a %s; chaos done" % (max(0, self.end - now()), kind))
                break
            ev = {"n": len(self.events) + 1, "kind": kind, "steps": [], "notes": []}
            self.events.append(ev)
            try:
                getattr(self, "do_" + kind.replace("-", "_"))(ev)
            except Exception as e:  # noqa: BLE001
                ev["notes"].append("error: %s: %s" % (type(e).__name__, e))
                ev["traceback"] = traceback.format_exc()[-2000:]
                log("chaos: %s failed: %s" % (kind, e))
            i += 1

    def step(self, ev, what):
        t = wall()
        ev["steps"].append([t, what])
        log("  +%7.2f s  #%d %s: %s" % (t - self.t0, ev["n"], ev["kind"], what))
        return t

    def begin(self, ev):
        m, t_set, detail = self.cl.settle(min(SETTLE_TIMEOUT, max(5.0, self.end - now())))
        if t_set is None:
            ev["notes"].append("topology not settled before the event: %s" % detail)
        if m is None:
            raise RuntimeError("the sentinels do not agree on a master: %s" % detail)
        ev["old_master"] = self.cl.names[m]
        ev["old_master_port"] = m
        return m

    def finish(self, ev, old, expect_change, failed_over_to=None):
        """Waits for the topology to settle after the event and records the outcome.
        `failed_over_to`: the master the sentinels named after `old`, when the event already
        waited for it; otherwise, when a change is expected, it is waited for here first."""
        if expect_change and failed_over_to is None:
            failed_over_to = self.cl.failed_over_from(old, SETTLE_TIMEOUT)
            if failed_over_to is None:
                ev["notes"].append("no failover happened: the sentinels did not name a master other than "
                                   "%s within %.0f s" % (self.cl.names[old], SETTLE_TIMEOUT))
            else:
                self.step(ev, "sentinels name %s" % self.cl.names[failed_over_to])
        ev["failed_over_to"] = self.cl.names[failed_over_to] if failed_over_to else None
        # Settled means the sentinels, the nodes and the proxy agree; whichever node that is.
        # After a SIGKILL the killed node is restarted as a replica, and the sentinels may fail
        # over again (it happens: chaos-5min-after-fix.md, event #2) and promote it: that is a
        # legitimate end, as long as the proxy routes to the master they agree on.
        m, t_set, detail = self.cl.settle(SETTLE_TIMEOUT)
        ev["new_master"] = self.cl.names.get(m, str(m)) if m else None
        ev["t_settled"] = t_set
        ev["settle_s"] = None if t_set is None else round(t_set - ev["t_start"], 3)
        if t_set is None:
            ev["notes"].append("topology not settled within %.0f s: %s" % (SETTLE_TIMEOUT, detail))
        else:
            self.step(ev, "settled: master %s, proxy follows" % ev["new_master"])
        if not expect_change and m is not None and m != old:
            ev["notes"].append("the master changed (%s -> %s) although the stall was shorter than "
                               "down-after-milliseconds" % (self.cl.names[old], ev["new_master"]))
        if failed_over_to is not None and t_set is not None and m != failed_over_to:
            ev["notes"].append("the sentinels failed over again after promoting %s and settled on %s%s; the "
                               "proxy routes to it" % (
                                   self.cl.names[failed_over_to], self.cl.names[m],
                                   " (the node this event disturbed)" if m == old else ""))

    def do_planned(self, ev):
        old = self.begin(ev)
        sp = self.cl.sports[self.sentinel_i % len(self.cl.sports)]
        self.sentinel_i += 1
        ev["t_start"] = wall()
        deadline = now() + 15
        while True:
            t = self.step(ev, "SENTINEL FAILOVER on sentinel port %d" % sp)
            r = redis_call(sp, "SENTINEL", "FAILOVER", MASTER_NAME, timeout=2.0)
            if r == "OK":
                ev["t_start"] = t
                break
            self.step(ev, "SENTINEL FAILOVER answered %s" % r)
            if now() > deadline:
                raise RuntimeError("SENTINEL FAILOVER kept failing: %s" % r)
            time.sleep(1.0)
        self.last_failover = now()
        self.finish(ev, old, True)

    def kill_and_restart(self, ev, victim, what):
        """SIGKILL the master `victim`, wait for the sentinels to name another master, then restart
        the victim as its replica. Returns (time of the kill, the new master)."""
        name = self.cl.names[victim]
        t = self.step(ev, "SIGKILL %s (pid %d)%s" % (name, self.cl.procs.pid(name), what))
        self.cl.procs.signal(name, signal.SIGKILL)
        self.killed.append((t, victim))
        self.last_failover = now()
        try:
            self.cl.procs.items[name].wait(timeout=5)
        except Exception:  # noqa: BLE001
            pass
        new = wait_until(lambda: (lambda m: m if m not in (None, victim) else None)(self.cl.sentinel_master()),
                           30, "the sentinels to name a new master after the kill", 0.1)
        self.step(ev, "sentinels name %s" % self.cl.names[new])
        time.sleep(1.0)
        start_redis(self.cl.procs, self.cl.tmp, name, victim, master_port=new)
        self.step(ev, "%s restarted (pid %d) as a replica of %s" % (name, self.cl.procs.pid(name),
                                                                    self.cl.names[new]))
        return t, new

    def do_kill(self, ev):
        old = self.begin(ev)
        ev["t_start"], new = self.kill_and_restart(ev, old, "")
        self.finish(ev, old, True, failed_over_to=new)

    def do_hang(self, ev):
        old = self.begin(ev)
        name = self.cl.names[old]
        ev["t_start"] = self.step(ev, "SIGSTOP %s" % name)
        self.cl.procs.signal(name, signal.SIGSTOP)
        self.last_failover = now()
        try:
            time.sleep(HANG_FOR)
        finally:
            self.cl.procs.signal(name, signal.SIGCONT)
            self.step(ev, "SIGCONT %s" % name)
        self.finish(ev, old, True)

    def do_planned_kill(self, ev):
        """A double failure: SENTINEL FAILOVER, then SIGKILL of the new master a few seconds later,
        while Sentinel has not yet turned the old master into a replica (Redis 7.0's Sentinel
        leaves it reporting role:master for ~11 s after a SENTINEL FAILOVER)."""
        old = self.begin(ev)
        sp = self.cl.sports[self.sentinel_i % len(self.cl.sports)]
        self.sentinel_i += 1
        ev["t_start"] = self.step(ev, "SENTINEL FAILOVER on sentinel port %d" % sp)
        r = redis_call(sp, "SENTINEL", "FAILOVER", MASTER_NAME, timeout=2.0)
        if r != "OK":
            raise RuntimeError("SENTINEL FAILOVER answered %s" % r)
        self.last_failover = now()
        t_trig = now()
        new = wait_until(lambda: (lambda m: m if m not in (None, old) else None)(self.cl.sentinel_master()),
                           20, "the sentinels to name the new master", 0.1)
        self.step(ev, "sentinels name %s" % self.cl.names[new])
        time.sleep(max(0.0, t_trig + self.planned_kill_after - now()))
        try:
            role = info_repl(old, timeout=0.5).get("role")
        except Exception as e:  # noqa: BLE001
            role = "unknown (%s)" % type(e).__name__
        _, newer = self.kill_and_restart(
            ev, new, ", the new master (the old master %s reports role:%s)" % (self.cl.names[old], role))
        self.finish(ev, new, True, failed_over_to=newer)

    def do_stall(self, ev):
        old = self.begin(ev)
        name = self.cl.names[old]
        ev["t_start"] = self.step(ev, "SIGSTOP %s for %d ms" % (name, STALL_FOR * 1000))
        self.cl.procs.signal(name, signal.SIGSTOP)
        try:
            time.sleep(STALL_FOR)
        finally:
            self.cl.procs.signal(name, signal.SIGCONT)
            self.step(ev, "SIGCONT %s" % name)
        self.finish(ev, old, False)


# --------------------------------------------------------------------------------------
# Proxy log

ROUTE_RE = re.compile(r'master=(\S+)')


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


def route_changes(lines):
    """[(t, what, line)] for every route change and failover hold in the proxy log."""
    out = []
    for line in lines:
        if "master route published" in line:
            what = "published"
        elif "route withdrawn" in line:
            what = "withdrawn"
        elif "failover under way" in line:
            what = "hold"
        else:
            continue
        t = parse_log_time(line)
        if t is not None:
            out.append((t, what, line.strip()))
    return out


def route_target(line):
    m = ROUTE_RE.search(line)
    try:
        return int(m.group(1).rsplit(":", 1)[1]) if m else None
    except ValueError:
        return None


def classify_readonly(err, switches):
    """Where a READONLY reply falls relative to the proxy's route changes. `err["node"]` is the
    node the session was bound to (its CONFIG GET port at connect).

    bound_to_non_master: the route to that node was published after the client connected (the
      session waited for a route, or was being connected, and got that one), and the node
      answered READONLY: the proxy published a route to a node that was not a master;
    after_drain: the session was opened while the route pointed at that node, and the route
      changed before the request was sent: the proxy forwarded a request after the switch;
    stale_route: the session was opened while the route pointed at that node and nothing changed
      since: the proxy was still routing to a node that had been demoted.
    Returns (class, time of the last route change before the request, whether the request was
    sent after a route change that followed the binding publication)."""
    changes = [(t, what, line) for t, what, line in switches if what in ("published", "withdrawn")]
    last = max([t for t, _, _ in changes if t <= err["t_send"]], default=None)
    pubs = [t for t, what, line in changes if what == "published" and route_target(line) == err["node"]
            and t <= err["t_send"]]
    bound = max(pubs) if pubs else None
    opened = err["conn_open"] if err["conn_open"] is not None else err["t_send"]
    moved_after_binding = last is not None and bound is not None and last > bound
    if bound is not None and bound >= opened:
        return "bound_to_non_master", last, moved_after_binding
    if last is not None and last > opened:
        return "after_drain", last, True
    return "stale_route", last, False


# --------------------------------------------------------------------------------------
# Checks

def mget_present(port, keys):
    out = {}
    c = Conn(HOST, port, timeout=10.0)
    try:
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            vals = c.call("MGET", *batch)
            if isinstance(vals, RespError):
                raise RuntimeError("MGET failed: %s" % vals)
            out.update(zip(batch, vals))
    finally:
        c.close()
    return out


def lost_writes(final, prefix, acked, killed):
    """Acked (n, t, node) whose key is missing on the final master, split into those a SIGKILL
    explains (acked by the killed master at most KILL_LOSS_WINDOW before the kill) and the rest."""
    present = mget_present(final, ["%s:%d" % (prefix, n) for n, _, _ in acked])
    lost = [(n, t, node) for n, t, node in acked if present.get("%s:%d" % (prefix, n)) != str(n)]
    explained, unexplained = [], []
    for n, t, node in lost:
        if any(node == port and 0 <= tk - t <= KILL_LOSS_WINDOW for tk, port in killed):
            explained.append((n, t, node))
        else:
            unexplained.append((n, t, node))
    return lost, explained, unexplained


def idle_fds_back(pid, baseline, within):
    """The proxy's idle descriptors, polled until they equal the idle baseline exactly (total and
    by kind) or `within` seconds pass: a check or sentinel query in flight holds a socket for a
    moment, a leaked descriptor stays. Returns (the settled sample, seconds it took or None)."""
    t = now()
    deadline = t + within
    while True:
        started = now()
        s = settled_sample(pid, 1.0)
        if s["fds"] == baseline["fds"] and s["fd_kinds"] == baseline["fd_kinds"]:
            return s, round(started - t, 2)
        if now() >= deadline:
            return s, None
        time.sleep(0.25)


def resource_check(baseline, start, end):
    """End-of-run descriptors (exactly the idle baseline, before any client) and RSS (the start,
    after warm-up with the load running, plus RSS_TOLERANCE_KIB)."""
    return {
        "fds_ok": end["fds"] == baseline["fds"] and end["fd_kinds"] == baseline["fd_kinds"],
        "rss_ok": end["rss_kib"] <= start["rss_kib"] + RSS_TOLERANCE_KIB,
        "rss_tolerance_kib": RSS_TOLERANCE_KIB,
    }


def slope_kib_per_min(points):
    """Least-squares slope of [(t_s, kib)] in KiB per minute, or None."""
    if len(points) < 10:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return round(60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den, 1) if den else None


def rss_trend(series, parts=4):
    """RSS over the run in `parts` equal slices: for each, its time span, the RSS and anonymous
    RSS at its start and end (median of the slice's first and last 10 samples) and the slopes.
    A leak climbs at the same rate in every slice; memory the allocator keeps levels off."""
    if not series:
        return []
    t_end = series[-1][0]
    out = []
    for i in range(parts):
        a, b = t_end * i / parts, t_end * (i + 1) / parts
        sl = [x for x in series if a <= x[0] < b or (i == parts - 1 and x[0] == b)]
        if len(sl) < 20:
            continue

        def med(vals):
            vals = sorted(vals)
            return vals[len(vals) // 2]
        out.append({"from_s": round(a), "to_s": round(b),
                    "rss_kib": [med([x[2] for x in sl[:10]]), med([x[2] for x in sl[-10:]])],
                    "rss_anon_kib": [med([x[3] for x in sl[:10]]), med([x[3] for x in sl[-10:]])],
                    "rss_slope_kib_per_min": slope_kib_per_min([(x[0], x[2]) for x in sl]),
                    "rss_anon_slope_kib_per_min": slope_kib_per_min([(x[0], x[3]) for x in sl])})
    return out


# --------------------------------------------------------------------------------------
# Main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of load and chaos (default 300); with --quick, the bound on "
                         "the one round of events (default %.0f)" % QUICK_CAP)
    ap.add_argument("--quick", action="store_true",
                    help="one failover of each kind (about 50 s of load), then the checks (for CI)")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="failover kinds, round-robin in this order (default %s; also "
                         "planned-kill: SENTINEL FAILOVER, then SIGKILL of the new master "
                         "--planned-kill-after seconds later)" % ",".join(KINDS))
    ap.add_argument("--planned-kill-after", type=float, default=PLANNED_KILL_AFTER,
                    help="planned-kill: seconds from SENTINEL FAILOVER to the SIGKILL of the new "
                         "master (default %(default)s: before Sentinel demotes the old master, "
                         "which it does ~11 s after the failover)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds of load before the first event "
                    "(default 5; --quick: 3)")
    ap.add_argument("--scrape-every", type=float, default=15.0,
                    help="scrape /metrics every S seconds during the run, as Prometheus would "
                         "(default 15; 0: only at the end)")
    ap.add_argument("--out", default=os.path.join(REPO, "target", "e2e-chaos"),
                    help="output directory (default target/e2e-chaos)")
    ap.add_argument("--proxy-bin", default=DEFAULT_BIN, help="the proxy binary (default %(default)s)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release first")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the run's temp dir (configs, logs)")
    args = ap.parse_args()
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in args.kinds:
        if k not in MIN_TIME:
            ap.error("unknown kind %r (choose from %s)" % (k, ", ".join(MIN_TIME)))
    if not args.kinds:
        ap.error("--kinds needs at least one kind")
    if args.duration is None:
        args.duration = QUICK_CAP if args.quick else 300.0
    if args.warmup is None:
        args.warmup = 3.0 if args.quick else 5.0
    if not (20 <= args.duration <= 24 * 3600):
        ap.error("--duration must be between 20 s and 24 h")

    return run_with_proxy(args, ["redis-server", "redis-sentinel"], run, install="scripts/install-deps.sh")


def run(args, binary):
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="soak-chaos-")
    procs = Procs(tmp)
    threads = []
    clients = {}
    res = {"command": "python3 tests/e2e/chaos.py " + " ".join(sys.argv[1:]),
           "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
           "settings": {"duration_s": args.duration, "quick": args.quick, "kinds": args.kinds,
                        "warmup_s": args.warmup, "hang_for_s": HANG_FOR, "stall_for_s": STALL_FOR,
                        "failover_cooldown_s": FAILOVER_COOLDOWN, "scrape_every_s": args.scrape_every},
           "versions": run_versions(os.path.abspath(args.proxy_bin), binary),
           "notes": [], "broken": []}
    exit_code = 2
    try:
        ports = free_ports(8)
        rports, sports, proxy_port, admin_port = ports[0:3], ports[3:6], ports[6], ports[7]
        cl = Cluster(procs, tmp, rports, sports, proxy_port, admin_port)
        log("cluster in %s: redis %s, sentinels %s, proxy %d (admin %d)" % (tmp, rports, sports,
                                                                          proxy_port, admin_port))
        start_redis(procs, tmp, "redis-1", rports[0])
        start_redis(procs, tmp, "redis-2", rports[1], rports[0])
        start_redis(procs, tmp, "redis-3", rports[2], rports[0])
        wait_until(lambda: replicas_online(rports[0], 2), 20, "both replicas in sync")
        for i, sp in enumerate(sports):
            start_sentinel(procs, tmp, "sentinel-%d" % (i + 1), sp, rports[0])
        wait_until(lambda: sentinels_ready(sports), 40,
                   "every sentinel to see 2 replicas and 2 other sentinels", 0.25)
        toml = proxy_toml(proxy_port, admin_port, rports, sports)
        res["proxy_config"] = toml
        start_proxy(procs, tmp, binary, admin_port, toml)
        proxy_pid = procs.pid("proxy")
        m, t_set, detail = cl.settle(60)
        if t_set is None:
            raise RuntimeError("the cluster did not settle at start: %s" % detail)
        log("settled: master %s, proxy pid %d" % (cl.names[m], proxy_pid))
        # The baseline counts the proxy's sentinel subscriptions, so wait until all are open.
        wait_until(lambda: sum("subscribed to sentinel failover events" in ln
                                 for ln in procs.log_lines("proxy")) >= len(sports),
                     15, "the proxy to subscribe to every sentinel", 0.2)

        res["resources"] = {"baseline_idle": settled_sample(proxy_pid, 3.0),
                            "baseline_smaps_rollup": smaps_rollup(proxy_pid)}
        t0 = wall()
        res["t0_unix"] = t0
        # --quick: --duration bounds the chaos round; the load stops 5 s after its last event.
        load_end = now() + args.duration
        ctx = argparse.Namespace(proxy_port=proxy_port, hard_deadline=load_end + 5)
        sub_events = SentinelEvents(sports[0], load_end + 120, clock=wall)
        sampler = ProcSampler(proxy_pid, load_end + 180, every=1.0, admin=admin_port,
                              scrape_every=args.scrape_every)
        pollers = {p: NodePoller(p, period=0.1, deadline=load_end + 120) for p in rports}
        clients = {c.name: c for c in [
            PlainWriter(ctx), PipelineWriter(ctx), FreshWriter(ctx), Subscriber(ctx), Publisher(ctx),
            Producer(ctx), Worker(ctx, "worker-1"), Worker(ctx, "worker-2")]}
        threads = [sub_events, sampler] + list(pollers.values()) + list(clients.values())
        sub_events.start()
        sampler.start()
        for p in pollers.values():
            p.start()
        time.sleep(0.3)
        for c in clients.values():
            c.start()
        log("load started (%s); warm-up %.0f s" % (", ".join(clients), args.warmup))
        time.sleep(args.warmup)
        res["resources"]["start"] = settled_sample(proxy_pid, 2.0)

        chaos = Chaos(cl, t0, load_end, 1 if args.quick else None, args.kinds)
        chaos.planned_kill_after = args.planned_kill_after
        stop_chaos = threading.Event()
        try:
            chaos.run(stop_chaos)
        finally:
            if args.quick:
                # One round done: a few more seconds of load, then stop.
                load_end = min(load_end, now() + 5)
                ctx.hard_deadline = load_end + 5
            while now() < load_end:
                time.sleep(min(1.0, load_end - now()))
            for c in clients.values():
                c.stop_evt.set()
            for c in clients.values():
                c.join(timeout=10)
        t_load_end = wall()
        log("load stopped after %.0f s; %d events" % (t_load_end - t0, len(chaos.events)))
        res["events"] = chaos.events
        res["load_s"] = round(t_load_end - t0, 1)

        # Final topology, replication caught up.
        final, t_set, detail = cl.settle(60)
        if t_set is None:
            res["notes"].append("final topology not settled: %s" % detail)
            res["broken"].append("the topology did not settle after the load (proxy follows: %s)" % detail)
        if final is None:
            raise RuntimeError("no agreed master at the end: %s" % detail)
        try:
            wait_until(lambda: cl.caught_up(final), 30, "replicas to catch up with the final master", 0.2)
        except RuntimeError as e:
            res["notes"].append(str(e))
        res["final_master"] = cl.names[final]

        # Resources at the end: no client, a few seconds of idle.
        def no_sessions():
            ms = scrape_metrics(admin_port)
            return metric(ms, "client_connections_active") == 0
        try:
            wait_until(no_sessions, 15, "client_connections_active to reach 0", 0.25)
        except RuntimeError as e:
            res["broken"].append(str(e))
        time.sleep(5.0)
        end, took = idle_fds_back(proxy_pid, res["resources"]["baseline_idle"], FDS_BACK_WITHIN)
        res["resources"]["end"] = end
        res["resources"]["end_smaps_rollup"] = smaps_rollup(proxy_pid)
        res["resources"]["fds_back_after_s"] = took
        sampler.stop_evt.set()
        sampler.join(timeout=3)
        samples = sampler.samples
        res["resources"]["peak"] = {"fds": max(s["fds"] for s in samples),
                                    "rss_kib": max(s["rss_kib"] for s in samples),
                                    "threads": max(s["threads"] for s in samples)}
        res["resources"]["series"] = [[round(s["t"] - t0, 1), s["fds"], s["rss_kib"], s["rss_anon_kib"]]
                                      for s in samples]
        res["metrics"] = scrape_metrics(admin_port)
        res["resources"]["metrics_scrapes_during_run"] = sampler.scrapes
        sub_events.stop_evt.set()
        for p in pollers.values():
            p.stop_evt.set()
            p.join(timeout=2)
        analyse(res, cl, final, clients, chaos, procs, sub_events, pollers, t0)

        # Graceful stop: SIGTERM must end the proxy with status 0.
        lines, panics = stop_proxy(procs, res, os.path.join(args.out, "chaos-proxy.log"))
        res["proxy_log"] = {"lines": len(lines), "panic_lines": panics[:20],
                            "warn": sum(1 for ln in lines if " WARN " in ln),
                            "error": sum(1 for ln in lines if " ERROR " in ln)}
        exit_code = 1 if res["broken"] else 0
    except KeyboardInterrupt:
        res["error"] = "interrupted"
        log("interrupted")
    except Exception as e:  # noqa: BLE001
        res["error"] = "%s: %s" % (type(e).__name__, e)
        res["traceback"] = traceback.format_exc()[-3000:]
        log("error: %s" % res["error"])
        res["logs"] = procs.logtails()
    finally:
        # A second SIGTERM (from `timeout`, or a second Ctrl-C) must not cut the cleanup short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if procs.close(threads, keep=args.keep_tmp, join_timeout=5):
            res["tmp"] = tmp
            log("kept %s" % tmp)
    res["exit_code"] = exit_code
    write_report(args.out, "chaos", res, render(res), also=["chaos-proxy.log"])
    return exit_code


def analyse(res, cl, final, clients, chaos, procs, sub_events, pollers, t0):
    broken = res["broken"]
    crashed = {n: c.crash for n, c in clients.items() if c.crash}
    if crashed:
        res["notes"].append("client threads crashed: %s" % crashed)
        broken.append("a load client crashed (harness bug): %s" % ", ".join(crashed))
    load = {}
    for n, c in clients.items():
        d = {"connects": c.connects, "errors": dict(c.kinds), "errors_total": sum(c.kinds.values())}
        if hasattr(c, "acked"):
            d["acked"] = c.acked if isinstance(c.acked, int) else len(c.acked)
        load[n] = d
    load["pipeline"].update({"incr_acked": clients["pipeline"].incr_acked,
                             "batches": clients["pipeline"].batches,
                             "incr_reply_went_backwards": clients["pipeline"].incr_backwards})
    load["subscriber"].update({"messages": clients["subscriber"].messages,
                               "subscribes": clients["subscriber"].subscribes})
    load["publisher"].update({"published": clients["publisher"].n,
                              "receivers_total": clients["publisher"].receivers})
    for w in ("worker-1", "worker-2"):
        load[w].update({"popped": len(clients[w].popped), "empty_polls": clients[w].empty})
    res["load"] = load

    killed = chaos.killed
    checks = {}
    # Writes.
    for name, prefix in (("plain", "soak:w"), ("pipeline", "soak:p"), ("fresh", "soak:f")):
        lost, explained, unexplained = lost_writes(final, prefix, clients[name].acked, killed)
        checks["lost_" + name] = {
            "acked": len(clients[name].acked), "lost": len(lost),
            "lost_at_kill": len(explained), "lost_unexplained": len(unexplained),
            "examples": [[n, round(t - t0, 3), cl.names.get(node, node)] for n, t, node in lost[:20]]}
        if unexplained:
            broken.append("%d acknowledged %s writes lost (not explained by a SIGKILL of the master "
                          "that acknowledged them), e.g. %s" % (
                              len(unexplained), name,
                              ["%s:%d acked at +%.3f s by %s" % (prefix, n, t - t0, cl.names.get(node, node))
                               for n, t, node in unexplained[:5]]))
    ctr = redis_call(final, "GET", "soak:ctr", timeout=5.0)
    ctr = int(ctr) if ctr is not None else 0
    acked_incr = clients["pipeline"].incr_acked
    checks["incr"] = {"final_counter": ctr, "acked": acked_incr, "ok": ctr >= acked_incr,
                      "max_reply": clients["pipeline"].incr_max}
    if ctr < acked_incr:
        broken.append("INCR soak:ctr is %d on the final master but %d INCRs were acknowledged" % (ctr, acked_incr))

    # Jobs.
    remaining = redis_call(final, "LRANGE", "soak:q", 0, -1, timeout=5.0) or []
    remaining = collections.Counter(int(x) for x in remaining)
    popped = collections.Counter()
    for w in ("worker-1", "worker-2"):
        popped.update(n for n, _, _ in clients[w].popped)
    acked_jobs = clients["producer"].acked
    lost_jobs = [(n, t, node) for n, t, node in acked_jobs if n not in popped and n not in remaining]
    lost_jobs_kill = [j for j in lost_jobs
                      if any(j[2] == port and 0 <= tk - j[1] <= KILL_LOSS_WINDOW for tk, port in killed)]
    lost_jobs_other = [j for j in lost_jobs if j not in lost_jobs_kill]
    checks["jobs"] = {"pushed_acked": len(acked_jobs), "popped": sum(popped.values()),
                      "popped_twice": sum(1 for v in popped.values() if v > 1),
                      "still_queued": sum(remaining.values()), "lost": len(lost_jobs),
                      "lost_at_kill": len(lost_jobs_kill), "lost_unexplained": len(lost_jobs_other),
                      "examples": [[n, round(t - t0, 3), cl.names.get(node, node)] for n, t, node in lost_jobs[:20]]}
    if lost_jobs_other:
        broken.append("%d jobs acknowledged by RPUSH were neither popped nor still queued, e.g. %s" % (
            len(lost_jobs_other), ["job %d acked at +%.3f s by %s" % (n, t - t0, cl.names.get(node, node))
                                   for n, t, node in lost_jobs_other[:5]]))

    # Pub/sub (at-most-once by design: reported, not a promise).
    pub = clients["publisher"]
    got = clients["subscriber"].received
    delivered = [n for n in pub.acked_ids if n in got]
    checks["pubsub"] = {"published_acked": pub.acked, "published_with_a_receiver": len(pub.acked_ids),
                        "received": len(got), "received_of_those": len(delivered)}

    # READONLY.
    lines = procs.log_lines("proxy")
    switches = route_changes(lines)
    res["route_changes"] = [[round(t - t0, 3), what, line[:400]] for t, what, line in switches]
    ro = []
    for c in clients.values():
        for e in c.errors:
            if e["kind"] == "readonly":
                cls, last, moved = classify_readonly(e, switches)
                ro.append({"client": e["client"], "op": e["op"], "t_send": round(e["t_send"] - t0, 4),
                           "t_recv": round(e["t_recv"] - t0, 4),
                           "conn_open": None if e["conn_open"] is None else round(e["conn_open"] - t0, 4),
                           "node": cl.names.get(e["node"], e["node"]), "class": cls,
                           "sent_after_a_later_route_change": moved,
                           "last_route_change": None if last is None else round(last - t0, 4)})
    ro.sort(key=lambda x: x["t_send"])
    by_class = collections.Counter(x["class"] for x in ro)
    checks["readonly"] = {"total": len(ro), "by_class": dict(by_class),
                          "sent_after_a_later_route_change": sum(1 for x in ro if x["sent_after_a_later_route_change"]),
                          "first": ro[:60]}
    if ro:
        firsts = {}
        for x in ro:
            firsts.setdefault((x["client"], x["conn_open"]), x)
        broken.append("%d READONLY replies reached clients: %s; %d of them on a request sent after the "
                      "route had moved on from the publication that bound the session. First per session: %s" % (
                          len(ro), dict(by_class), checks["readonly"]["sent_after_a_later_route_change"],
                          "; ".join("%s session opened at +%.4f s, bound to %s, request sent at +%.4f s (%s; last "
                                    "route change +%s s)" % (x["client"], x["conn_open"] or 0, x["node"], x["t_send"],
                                                             x["class"], x["last_route_change"])
                                    for x in list(firsts.values())[:6])))

    # Every route the proxy published: was the node a master at that moment, per the 100 ms
    # INFO polling of the script (the last answer before and the first after the publication)?
    anomalies = []
    changes = [(t, what, line) for t, what, line in switches if what in ("published", "withdrawn")]
    for i, (t, what, line) in enumerate(changes):
        if what != "published":
            continue
        mm = ROUTE_RE.search(line)
        port = int(mm.group(1).rsplit(":", 1)[1]) if mm else None
        if port not in pollers:
            continue
        before, after = pollers[port].around(t)
        # A role seen before (answered by t) and after (asked after t) with at most 0.5 s
        # between them; a longer gap (the node was paused, or this machine was) proves nothing.
        if before is None or after is None or after[0] - before[1] > 0.5:
            continue
        if "master" in (before[2], after[2]):
            continue
        until = changes[i + 1][0] if i + 1 < len(changes) else None
        anomalies.append({"t": round(t - t0, 4), "at_utc": fmt_utc(t), "node": cl.names[port],
                          "role_before": [round(before[1] - t, 3), before[2]],
                          "role_after": [round(after[0] - t, 3), after[2]],
                          "route_kept_s": None if until is None else round(until - t, 4),
                          "log": line[:300]})
    checks["route_to_non_master"] = anomalies
    if anomalies:
        broken.append("the proxy published the route to a node that was not a master %d time(s): %s" % (
            len(anomalies), "; ".join("at +%.3f s (%s UTC) to %s, which reported %s %.3f s before and %s "
                                      "%.3f s after; the route stayed %s s" % (
                                          a["t"], a["at_utc"], a["node"], a["role_before"][1],
                                          -a["role_before"][0], a["role_after"][1], a["role_after"][0],
                                          a["route_kept_s"]) for a in anomalies[:5])))

    # Other error replies (not transport errors): listed, they are worth a look.
    others = [e for c in clients.values() for e in c.errors if e["kind"] in ("error", "unexpected", "other")]
    checks["other_errors"] = {"total": len(others),
                              "by_detail": dict(collections.Counter(e["detail"] for e in others).most_common(15))}

    # Per event: client errors between its start and one second after it settled.
    all_errors = sorted((e for c in clients.values() for e in c.errors), key=lambda e: e["t_recv"])
    starts = [ev.get("t_start") for ev in chaos.events if ev.get("t_start")]
    for ev in chaos.events:
        ts = ev.get("t_start")
        te = ev.get("t_settled") or (ts + SETTLE_TIMEOUT if ts else None)
        if ts is None:
            continue
        te = min([te + 1.0] + [x for x in starts if x > ts])
        ev["window_end_rel"] = round(te - t0, 3)
        k = collections.Counter(e["kind"] for e in all_errors if ts <= e["t_recv"] < te)
        ev["client_errors"] = dict(k)
        ev["proxy_route_changes"] = [[round(t - ts, 3), what] for t, what, _ in switches if ts <= t < te]
        ev["t_start_rel"] = round(ts - t0, 3)
        ev["steps"] = [[round(t - t0, 3), what] for t, what in ev["steps"]]
        ev.pop("t_settled", None)
        ev.pop("t_start", None)
    errs_outside = collections.Counter()
    for e in all_errors:
        inside = False
        for ev in chaos.events:
            if ev.get("t_start_rel") is None:
                continue
            ts = t0 + ev["t_start_rel"]
            te = t0 + ev["window_end_rel"]
            if ts <= e["t_recv"] < te:
                inside = True
                break
        if not inside:
            errs_outside[e["kind"]] += 1
    checks["errors_outside_events"] = dict(errs_outside)
    for ev in chaos.events:
        for n in ev["notes"]:
            if n.startswith("error") or n.startswith("no failover happened") or "not settled" in n:
                broken.append("event #%d (%s): %s" % (ev["n"], ev["kind"], n[:300]))
    res["sentinel_events"] = [[round(t - t0, 3), ch, msg] for t, ch, msg in sub_events.events]
    kinds_done = collections.Counter(ev["kind"] for ev in chaos.events)
    res["events_by_kind"] = dict(kinds_done)
    for k in chaos.kinds:
        if kinds_done[k] == 0:
            if chaos.rounds is not None:
                # --quick promises one event of each kind: a run that skipped one tested less.
                broken.append("no %s event ran within the %.0f s bound of the chaos round" % (
                    k, res["settings"]["duration_s"]))
            else:
                res["notes"].append("no %s event fitted in the duration" % k)

    # Resources.
    r = res["resources"]
    rc = resource_check(r["baseline_idle"], r["start"], r["end"])
    r.update(rc)
    if not rc["fds_ok"]:
        broken.append("proxy descriptors did not return to the idle baseline within %.0f s of idle: baseline "
                      "%d %s, start %d, end %d %s" % (
                          FDS_BACK_WITHIN, r["baseline_idle"]["fds"], r["baseline_idle"]["fd_kinds"],
                          r["start"]["fds"], r["end"]["fds"], r["end"]["fd_kinds"]))
    if not rc["rss_ok"]:
        broken.append("proxy RSS did not return to its starting level: start %d KiB, end %d KiB "
                      "(tolerance %d KiB)" % (r["start"]["rss_kib"], r["end"]["rss_kib"], RSS_TOLERANCE_KIB))
    # RSS trend over the run (KiB per minute): a leak shows as a steady climb, memory the
    # allocator keeps as a climb that levels off.
    series = [x for x in r["series"] if x[0] <= res["load_s"]]
    half = [x for x in series if x[0] >= series[-1][0] / 2] if series else []
    r["rss_slope_kib_per_min_second_half"] = slope_kib_per_min([(x[0], x[2]) for x in half])
    r["rss_trend"] = rss_trend(series)

    ms = res["metrics"]
    res["metrics_summary"] = {
        "master_changes_total": metric(ms, "master_changes_total"),
        "connections_drained_total": metric(ms, "connections_drained_total"),
        "connections_refused_total": {reason: metric(ms, "connections_refused_total", reason=reason)
                                      for reason in ("no_master", "over_limit", "backend_connect")},
        "client_connections_total": metric(ms, "client_connections_total"),
        "client_connections_active": metric(ms, "client_connections_active"),
        "split_brain_conflicts_total": metric(ms, "split_brain_conflicts_total"),
        "sentinel_disagreements_total": metric(ms, "sentinel_disagreements_total"),
        "accept_errors_total": metric(ms, "accept_errors_total"),
        "route_epoch": metric(ms, "route_epoch"),
    }
    if res["metrics_summary"]["split_brain_conflicts_total"]:
        res["notes"].append("split_brain_conflicts_total = %d" % res["metrics_summary"]["split_brain_conflicts_total"])
    res["checks"] = checks


# --------------------------------------------------------------------------------------
# Report

def render(res):
    L = []
    ok = not res.get("broken") and not res.get("error")
    L.append("# Chaos soak: %s" % ("PASS" if ok else ("ERROR" if res.get("error") else "FAIL")))
    L.append("")
    L.append("`%s`, started %s UTC, load for %s s." % (res["command"], res["started_utc"], res.get("load_s")))
    v = res["versions"]
    L.append("")
    L.append("Proxy %s at %s; %s; kernel %s, %s CPUs; Python %s." % (
        v["proxy_version"], v["git_commit"], v["redis"], v["kernel"], v["nproc"], v["python"]))
    ch = res.get("checks")
    if ch:
        # The promises at a glance (CI reads this first).
        lost = sum(ch["lost_" + n]["lost_unexplained"] for n in ("plain", "pipeline", "fresh"))
        r = res.get("resources", {})
        L += ["", "| promise | result |", "|---|---|",
              "| acknowledged writes lost (not at a SIGKILL) | %d |" % lost,
              "| increments lost | %d |" % max(0, ch["incr"]["acked"] - ch["incr"]["final_counter"]),
              "| jobs lost (not at a SIGKILL) | %d |" % ch["jobs"]["lost_unexplained"],
              "| READONLY replies | %d |" % ch["readonly"]["total"],
              "| routes published to a non-master | %d |" % len(ch["route_to_non_master"]),
              "| panics in the proxy log | %s |" % (len(res["proxy_log"]["panic_lines"]) if "proxy_log" in res else "-"),
              "| proxy exit status on SIGTERM | %s |" % res.get("proxy_exit_on_sigterm", "-"),
              "| descriptors back to the idle baseline | %s |" % {True: "yes", False: "NO"}.get(r.get("fds_ok"), "-"),
              "| RSS within start + %d KiB | %s |" % (RSS_TOLERANCE_KIB, {True: "yes", False: "NO"}.get(r.get("rss_ok"), "-"))]
    if res.get("error"):
        L += ["", "**The run failed:** %s" % res["error"], "", "```", res.get("traceback", ""), "```"]
    if res.get("broken"):
        L += ["", "## Promises broken", ""]
        L += ["- %s" % b for b in res["broken"]]
    if res.get("notes"):
        L += ["", "## Notes", ""]
        L += ["- %s" % n for n in res["notes"]]
    evs = res.get("events") or []
    if evs:
        L += ["", "## Events", "",
              "| # | kind | at (s) | master before | master after | settled after (s) | proxy route changes (s after start) | client errors | notes |",
              "|---|---|---|---|---|---|---|---|---|"]
        for ev in evs:
            rc = ", ".join("%s %+.2f" % (w, t) for t, w in ev.get("proxy_route_changes", []))
            ce = ", ".join("%s %d" % kv for kv in sorted(ev.get("client_errors", {}).items()))
            L.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                ev["n"], ev["kind"], ev.get("t_start_rel"), ev.get("old_master"), ev.get("new_master"),
                ev.get("settle_s"), rc or "-", ce or "-", "; ".join(ev["notes"]) or ""))
    load = res.get("load")
    if load:
        L += ["", "## Load", "", "| client | acknowledged | connects | errors by kind |", "|---|---|---|---|"]
        for n, d in load.items():
            extra = {k: v for k, v in d.items() if k not in ("connects", "errors", "errors_total", "acked")}
            L.append("| %s | %s | %d | %s |" % (
                n, d.get("acked", "-") if "acked" in d else ", ".join("%s %s" % kv for kv in extra.items()),
                d["connects"], ", ".join("%s %d" % kv for kv in sorted(d["errors"].items())) or "none"))
    if ch:
        L += ["", "## Checks", ""]
        for name in ("plain", "pipeline", "fresh"):
            c = ch["lost_" + name]
            L.append("- %s writes: %d acknowledged, %d lost (%d acknowledged by a master within %d ms "
                     "before its SIGKILL, %d otherwise)" % (name, c["acked"], c["lost"], c["lost_at_kill"],
                                                           KILL_LOSS_WINDOW * 1000, c["lost_unexplained"]))
        c = ch["incr"]
        L.append("- INCR soak:ctr: %d on the final master, %d acknowledged (%s)" % (
            c["final_counter"], c["acked"], "ok" if c["ok"] else "LOST INCREMENTS"))
        c = ch["jobs"]
        L.append("- jobs: %d pushed and acknowledged, %d popped (%d popped twice), %d still queued, "
                 "%d lost (%d at a SIGKILL)" % (c["pushed_acked"], c["popped"], c["popped_twice"],
                                                c["still_queued"], c["lost"], c["lost_at_kill"]))
        c = ch["pubsub"]
        L.append("- pub/sub (at-most-once, reported only): %d published, %d reached a subscriber per "
                 "PUBLISH's reply, %d of those received by our subscriber" % (
                     c["published_acked"], c["published_with_a_receiver"], c["received_of_those"]))
        c = ch["readonly"]
        L.append("- READONLY replies: %d %s (bound_to_non_master: the session was bound by a route "
                 "publication to that node; after_drain: sent after the route changed while the "
                 "session was open; stale_route: the route still pointed at a demoted node)" % (
                     c["total"], c["by_class"] or ""))
        c = ch.get("route_to_non_master", [])
        L.append("- routes published to a node that was not a master (per the script's 100 ms INFO polling): %d" % len(c))
        for a in c[:10]:
            L.append("  - +%.3f s (%s UTC): route to %s, which answered `role:%s` %.3f s before and `role:%s` "
                     "%.3f s after; the route stayed %s s. Log: `%s`" % (
                         a["t"], a["at_utc"], a["node"], a["role_before"][1], -a["role_before"][0],
                         a["role_after"][1], a["role_after"][0], a["route_kept_s"], a["log"]))
        c = ch["other_errors"]
        L.append("- other error replies and unclassified errors: %d %s" % (c["total"], c["by_detail"] or ""))
        L.append("- client errors outside the events' windows: %s" % (ch["errors_outside_events"] or "none"))
    r = res.get("resources")
    if r and "end" in r:
        L += ["", "## Proxy process", "",
              "| when | fds | sockets | pipes | RSS (KiB) | threads |", "|---|---|---|---|---|---|"]
        for k, label in (("baseline_idle", "idle, before any client"), ("start", "after warm-up (load running)"),
                         ("end", "end: no client, after 5 s idle")):
            s = r[k]
            L.append("| %s | %d | %d | %d | %d | %d |" % (label, s["fds"], s["fd_kinds"]["socket"],
                                                          s["fd_kinds"]["pipe"], s["rss_kib"], s["threads"]))
        p = r["peak"]
        L.append("| peak (1 s samples) | %d | | | %d | %d |" % (p["fds"], p["rss_kib"], p["threads"]))
        L.append("")
        yn = {True: "yes", False: "NO", None: "not checked"}
        took = r.get("fds_back_after_s")
        L.append("Descriptors back to the idle baseline exactly: %s%s. RSS back (end <= start + %d KiB): %s. "
                 "RSS slope over the second half: %s KiB/min. CPU time used by the proxy: %.1f s user, "
                 "%.1f s system." % (
                     yn[r.get("fds_ok")], " (after %.2f s more idle)" % took if took else "",
                     RSS_TOLERANCE_KIB, yn[r.get("rss_ok")], r.get("rss_slope_kib_per_min_second_half"),
                     r["end"]["cpu_user_s"] - r["baseline_idle"]["cpu_user_s"],
                     r["end"]["cpu_sys_s"] - r["baseline_idle"]["cpu_sys_s"]))
        if r.get("rss_trend"):
            L += ["", "RSS during the load, in quarters (KiB; anonymous = heap and allocator arenas):", "",
                  "| seconds | RSS at start → end | slope (KiB/min) | anonymous at start → end | slope (KiB/min) |",
                  "|---|---|---|---|---|"]
            for q in r["rss_trend"]:
                L.append("| %d–%d | %d → %d | %s | %d → %d | %s |" % (
                    q["from_s"], q["to_s"], q["rss_kib"][0], q["rss_kib"][1], q["rss_slope_kib_per_min"],
                    q["rss_anon_kib"][0], q["rss_anon_kib"][1], q["rss_anon_slope_kib_per_min"]))
    ms = res.get("metrics_summary")
    if ms:
        L += ["", "## /metrics at the end", ""]
        for k, val in ms.items():
            L.append("- %s: %s" % (k, val))
    if "proxy_log" in res:
        pl = res["proxy_log"]
        L += ["", "Proxy log: %d lines, %d WARN, %d ERROR, %d mentioning a panic; exit status on SIGTERM: %s." % (
            pl["lines"], pl["warn"], pl["error"], len(pl["panic_lines"]), res.get("proxy_exit_on_sigterm"))]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
