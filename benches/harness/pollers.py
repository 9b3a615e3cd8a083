"""Observer threads: each redis node's role (INFO replication), one sentinel's events
(PSUBSCRIBE *), and a process's /proc numbers. Each has a stop_evt and a deadline."""

import select
import socket
import threading

from . import procfs
from .endpoints import scrape_metrics
from .procs import HOST, now, wall
from .resp import Conn, ConnectionClosed, RespError, parse_info


class NodePoller(threading.Thread):
    """Polls one redis node's INFO replication every `period` seconds.

    changes: [(t, state)] at every change of role or link (monotonic t, when the answer came);
    last: (t, state, replication offset) of the latest poll;
    samples: [(t_send, t_recv, role)] of every poll in wall-clock time: the answer describes the
    node at some moment between the two, and on a loaded machine the gap can be long (this
    thread waits for the CPU), so both ends are kept.
    A state is {"role": "master"} or {"role": "slave", "master_port", "link"}, or "down" (no
    answer within `timeout`: killed, or paused with SIGSTOP) or "error" (an error reply), with
    "why"."""

    def __init__(self, port, name=None, period=0.05, timeout=0.3, deadline=None):
        super().__init__(daemon=True, name=name or "poll-%d" % port)
        self.port = port
        self.period = period
        self.timeout = timeout
        self.deadline = deadline
        self.stop_evt = threading.Event()
        self.changes = []
        self.last = None
        self.samples = []

    def poll(self, conn):
        """(connection to keep, state, offset)."""
        offset = None
        try:
            if conn is None:
                conn = Conn(HOST, self.port, timeout=self.timeout)
            try:
                r = conn.call("INFO", "replication")
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                # Sentinel sends CLIENT KILL TYPE normal when it reconfigures a node:
                # a killed connection is not an unreachable node, retry once at once.
                conn.close()
                conn = Conn(HOST, self.port, timeout=self.timeout)
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
        if state["role"] in ("down", "error") and conn is not None:
            conn.close()
            conn = None
        return conn, state, offset

    def run(self):
        conn = None
        last_key = None
        deadline = self.deadline if self.deadline is not None else now() + 600
        while not self.stop_evt.is_set() and now() < deadline:
            t0 = now()
            t_send = wall()
            conn, state, offset = self.poll(conn)
            t1 = now()
            self.samples.append((t_send, wall(), state["role"]))
            key = tuple(sorted(state.items()))
            if key != last_key:
                self.changes.append((t1, state))
                last_key = key
            self.last = (t1, state, offset)
            self.stop_evt.wait(max(0.0, self.period - (now() - t0)))
        if conn is not None:
            conn.close()

    def around(self, t):
        """(the last sample answered by t, the first one asked after t), wall-clock `t`: the
        node's role certainly before t and certainly after t, whatever the scheduling delays."""
        before = after = None
        for s in self.samples:
            if s[1] <= t:
                before = s
            if s[0] >= t:
                after = s
                break
        return before, after


class SentinelEvents(threading.Thread):
    """PSUBSCRIBE * on one sentinel (never one the run disturbs); records every event except the
    hello chatter as (clock(), channel, message), reconnecting after an error (kept in
    `error`)."""

    def __init__(self, port, deadline=None, clock=now):
        super().__init__(daemon=True, name="sentinel-events")
        self.port = port
        self.deadline = deadline
        self.clock = clock
        self.stop_evt = threading.Event()
        self.events = []
        self.error = None

    def run(self):
        c = None
        deadline = self.deadline if self.deadline is not None else now() + 600
        while not self.stop_evt.is_set() and now() < deadline:
            try:
                if c is None:
                    c = Conn(HOST, self.port, timeout=2.0)
                    c.send("PSUBSCRIBE", "*")
                if not c.buf:
                    rl, _, _ = select.select([c.sock], [], [], 0.1)
                    if not rl:
                        continue
                msg = c.read_reply()
                t = self.clock()
                if isinstance(msg, list) and len(msg) == 4 and msg[0] == "pmessage":
                    if not msg[2].startswith("__sentinel__"):
                        self.events.append((t, msg[2], msg[3]))
            except Exception as e:  # noqa: BLE001
                self.error = repr(e)
                if c is not None:
                    c.close()
                c = None
                self.stop_evt.wait(0.2)
        if c is not None:
            c.close()


class ProcSampler(threading.Thread):
    """procfs.proc_sample() of one process every `every` seconds; with an admin port, /metrics
    scraped every `scrape_every` seconds too (as Prometheus would; 0: never)."""

    def __init__(self, pid, deadline, every=1.0, admin=None, scrape_every=0):
        super().__init__(daemon=True, name="sampler")
        self.pid = pid
        self.deadline = deadline
        self.every = every
        self.admin = admin
        self.scrape_every = scrape_every
        self.stop_evt = threading.Event()
        self.samples = []
        self.scrapes = 0
        self.scrape_errors = 0

    def run(self):
        next_scrape = now() + self.scrape_every if self.scrape_every else None
        while not self.stop_evt.is_set() and now() < self.deadline:
            try:
                self.samples.append(procfs.proc_sample(self.pid))
            except OSError:
                pass
            if next_scrape is not None and now() >= next_scrape:
                next_scrape += self.scrape_every
                try:
                    scrape_metrics(self.admin)
                    self.scrapes += 1
                except Exception:  # noqa: BLE001
                    self.scrape_errors += 1
            self.stop_evt.wait(self.every)
