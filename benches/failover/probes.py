"""What the failover benchmark's runs share beyond benches/harness: the write probes, the proxy
endpoint (falling back to health checks only when a build rejects [sentinel]), lost-write
accounting and the per-client analysis. run.py (switchover, kill, hang) and trust.py (the trust
modes) both build on it; standard library only.
"""

import socket
import threading
import time

from benches.harness.endpoints import http_get, metric_lines, proxy_toml, start_proxy
from benches.harness.procs import HOST, now
from benches.harness.resp import Conn, ConnectionClosed, RespError

CANDIDATES = ["haproxy", "proxy"]
CLIENTS = ["persistent", "fresh"]
FAIL_KINDS = ["readonly", "timeout", "refused", "reset", "closed", "other"]
KINDS = ["ok"] + FAIL_KINDS

PROBE_INTERVAL = 0.010      # one write attempt every 10 ms
PROBE_TIMEOUT = 1.0         # client socket timeout (connect and each reply)
POLL_PERIOD = 0.050         # INFO replication polling period per node


# --------------------------------------------------------------------------------------
# The proxy endpoint

def start_proxy_endpoint(procs, tmp, binary, listen, admin, rports, sports, notes, state,
                         name="proxy", sentinel=True, ready_path="/readyz"):
    """Start redis-master-proxy as process `name` and wait for `ready_path`.

    sentinel=True: with a [sentinel] section, falling back to none if the build rejects it;
    sentinel=False: INFO checks only.
    """
    attempts = [True, False] if sentinel and state.get("sentinel", True) else [False]
    last_err = None
    base = name
    for with_sentinel in attempts:
        text = proxy_toml(listen, admin, rports, sports if with_sentinel else None)
        name = base if with_sentinel or not sentinel else base + "-nosentinel"
        try:
            start_proxy(procs, tmp, binary, admin, text, name=name, ready_path=ready_path, timeout=30)
        except RuntimeError as e:
            p = procs.items[name]
            tail = procs.logtail(name)
            procs.kill(name)
            last_err = str(e)
            if with_sentinel and p.poll() is not None and "sentinel" in tail.lower() \
                    and "already in use" not in tail:
                state["sentinel_error"] = tail.strip().splitlines()[-1] if tail.strip() else ""
                continue
            break
        if sentinel and not with_sentinel:
            state["sentinel"] = False
            notes.append("the proxy rejected the [sentinel] section, so it ran without it "
                         "(health checks only): %s" % state.get("sentinel_error", "")[:300])
        return {"config": text, "command": "redis-master-proxy run --config %s.toml" % base,
                "process": name, "sentinel": with_sentinel}
    raise RuntimeError(last_err)


# --------------------------------------------------------------------------------------
# Probes

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


# --------------------------------------------------------------------------------------
# Lost writes and per-client analysis

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
    """The proxy's /metrics as {series: value text}, histogram buckets left out."""
    try:
        status, body = http_get(admin_port, "/metrics", timeout=2)
    except OSError as e:
        return {"error": repr(e)}
    return dict(metric_lines(body))


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
