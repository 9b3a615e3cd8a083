#!/usr/bin/env python3
"""Connection churn and concurrency against redis-master-proxy.

Setup: a master and two replicas on 127.0.0.1 (free ports, temp dir, persistence off) and
`redis-master-proxy run --config <toml>` in front of them (no sentinel: nothing fails over here).

  churn        for --duration seconds (default 60), --workers processes (default 4) each
               connect, send PING, read +PONG and close, as fast as they can (or at --rate
               connects/s in total); reports connects/s, errors by kind, latency, the proxy's CPU
               time, and whether its descriptors and RSS return to the idle level afterwards.
  concurrency  opens as many client connections as the descriptor limit allows, up to
               --max-conns (default 10000): the proxy holds two descriptors per session, so
               with a hard RLIMIT_NOFILE of H it fits about (H - its idle descriptors - 64) / 2;
               PING on each at open and again once all are open; reports RSS per connection and
               descriptors; closes them and checks the proxy returns to idle. Done --cycles times
               (default 3), so memory kept by the allocator after the first cycle can be told
               apart from a leak (a leak grows RSS again in every cycle).

    python3 benches/soak/churn.py
    python3 benches/soak/churn.py --duration 20 --workers 2 --no-build --only churn

Exit code 0 when everything held, 1 when the proxy failed a check, 2 when the run itself failed.
"""

import argparse
import collections
import errno
import json
import multiprocessing
import os
import resource
import selectors
import signal
import socket
import sys
import tempfile
import time
import traceback

if __package__ in (None, ""):  # run as a file: import from the repository root
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benches.harness.cluster import replicas_online, start_redis  # noqa: E402
from benches.harness.endpoints import (  # noqa: E402
    metric, proxy_toml, scrape_metrics, start_proxy, stop_proxy,
)
from benches.harness.pollers import ProcSampler  # noqa: E402
from benches.harness.procfs import nofile_limits, proc_sample, settled_sample  # noqa: E402
from benches.harness.procs import HOST, REPO, Procs, free_ports, log, now, wait_until  # noqa: E402
from benches.harness.resp import redis_call  # noqa: E402
from benches.harness.tools import DEFAULT_BIN, run_versions, run_with_proxy, write_report  # noqa: E402

PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"
OP_TIMEOUT = 2.0
RSS_TOLERANCE_KIB = 2048
FD_MARGIN = 64          # descriptors left to the proxy beyond 2 per session (listeners, checks, ...)
# Errors that say something about the proxy (or the master behind it); the rest are limits of the
# load generator's own machine (no local port left, its own descriptor limit).
PROXY_SIDE = {"refused", "reset", "closed", "timeout", "wrong_reply", "other"}


def errkind(e):
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(e, EOFError):
        return "closed"
    if isinstance(e, OSError):
        return {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset", errno.EPIPE: "reset",
                errno.ECONNABORTED: "reset", errno.EADDRNOTAVAIL: "no_local_port",
                errno.EMFILE: "client_emfile", errno.ENFILE: "client_enfile",
                errno.ETIMEDOUT: "timeout"}.get(e.errno, "os_%s" % errno.errorcode.get(e.errno, e.errno))
    return "other"


def read_line(s):
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = s.recv(64)
        if not chunk:
            raise EOFError()
        buf += chunk
        if len(buf) > 1024:
            break
    return buf


# --------------------------------------------------------------------------------------
# Churn

def churn_worker(port, seconds, rate, q):
    """connect, PING, +PONG, close; as fast as possible or at `rate` per second."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    counts = collections.Counter()
    lat = []
    n = 0
    interval = 1.0 / rate if rate else 0.0
    t_start = time.monotonic()
    end = t_start + seconds
    next_t = t_start
    while True:
        t = time.monotonic()
        if t >= end:
            break
        if interval:
            if next_t > t:
                time.sleep(next_t - t)
                t = time.monotonic()
            next_t += interval
        n += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(OP_TIMEOUT)
            s.connect((HOST, port))
            s.sendall(PING)
            if read_line(s) == PONG:
                counts["ok"] += 1
            else:
                counts["wrong_reply"] += 1
        except Exception as e:  # noqa: BLE001
            counts[errkind(e)] += 1
        finally:
            s.close()
        if n % 8 == 0:
            lat.append(time.monotonic() - t)
    q.put({"attempts": n, "counts": dict(counts), "elapsed": time.monotonic() - t_start,
           "lat_sample": lat, "rusage": list(resource.getrusage(resource.RUSAGE_SELF))[:2]})


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def wait_idle(admin, res_list, what):
    try:
        wait_until(lambda: metric(scrape_metrics(admin), "client_connections_active") == 0,
                     20, "client_connections_active to reach 0 after " + what, 0.25)
    except RuntimeError as e:
        res_list.append(str(e))


def run_churn(args, cl, out):
    pid = cl["proxy_pid"]
    base = settled_sample(pid, 3.0)
    m0 = scrape_metrics(cl["admin"])
    sampler = ProcSampler(pid, now() + args.duration + 30, every=0.5)
    sampler.start()
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    per_rate = (args.rate / args.workers) if args.rate else 0
    ps = [ctx.Process(target=churn_worker, args=(cl["proxy_port"], args.duration, per_rate, q), daemon=True)
          for _ in range(args.workers)]
    log("churn: %d workers for %.0f s%s" % (args.workers, args.duration,
                                           (", %d connects/s in total" % args.rate) if args.rate else ", as fast as they can"))
    s0 = proc_sample(pid)
    t0 = now()
    results = []
    try:
        for p in ps:
            p.start()
        deadline = now() + args.duration + 30
        while len(results) < len(ps) and now() < deadline:
            try:
                results.append(q.get(timeout=1.0))
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
    finally:
        for p in ps:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    elapsed = now() - t0
    s1 = proc_sample(pid)
    sampler.stop_evt.set()
    sampler.join(timeout=2)
    if len(results) < len(ps):
        raise RuntimeError("only %d of %d churn workers reported" % (len(results), len(ps)))
    counts = collections.Counter()
    lat = []
    for r in results:
        counts.update(r["counts"])
        lat += r["lat_sample"]
    attempts = sum(r["attempts"] for r in results)
    worker_elapsed = max(r["elapsed"] for r in results)
    notes = []
    wait_idle(cl["admin"], notes, "the churn")
    time.sleep(5.0)
    end = settled_sample(pid, 3.0)
    m1 = scrape_metrics(cl["admin"])
    cpu = (s1["cpu_user_s"] - s0["cpu_user_s"], s1["cpu_sys_s"] - s0["cpu_sys_s"])
    res = {
        "workers": args.workers, "rate_target": args.rate or "unlimited", "duration_s": round(worker_elapsed, 2),
        "attempts": attempts, "ok": counts["ok"],
        "connects_per_s": round(counts["ok"] / worker_elapsed, 1),
        "errors": {k: v for k, v in counts.items() if k != "ok"},
        "latency_ms": {"p50": _ms(pct(lat, 50)), "p90": _ms(pct(lat, 90)), "p99": _ms(pct(lat, 99)),
                       "max": _ms(max(lat) if lat else None), "samples": len(lat)},
        "proxy_cpu_s": {"user": round(cpu[0], 2), "sys": round(cpu[1], 2),
                        "percent_of_one_core": round(100 * (cpu[0] + cpu[1]) / elapsed, 1)},
        "proxy_cpu_us_per_connection": round(1e6 * (cpu[0] + cpu[1]) / max(1, counts["ok"]), 1),
        "load_generator_cpu_s": round(sum(r["rusage"][0] + r["rusage"][1] for r in results), 1),
        "resources": {"before": base, "end": end,
                      "peak": {"fds": max(s["fds"] for s in sampler.samples),
                               "rss_kib": max(s["rss_kib"] for s in sampler.samples)}},
        "metrics_delta": {
            "client_connections_total": metric(m1, "client_connections_total") - metric(m0, "client_connections_total"),
            "connections_refused_total": {r: metric(m1, "connections_refused_total", reason=r)
                                          - metric(m0, "connections_refused_total", reason=r)
                                          for r in ("no_master", "over_limit", "backend_connect")},
            "accept_errors_total": metric(m1, "accept_errors_total") - metric(m0, "accept_errors_total"),
        },
        "notes": notes,
    }
    res["fds_back"] = end["fds"] <= base["fds"] and end["fd_kinds"]["socket"] <= base["fd_kinds"]["socket"]
    res["rss_back"] = end["rss_kib"] <= base["rss_kib"] + RSS_TOLERANCE_KIB
    broken = []
    proxy_errs = {k: v for k, v in res["errors"].items() if k in PROXY_SIDE}
    if proxy_errs:
        broken.append("churn: clients saw errors that point at the proxy: %s" % proxy_errs)
    if not res["fds_back"]:
        broken.append("churn: descriptors did not return: before %d (%s), after %d (%s)" % (
            base["fds"], base["fd_kinds"], end["fds"], end["fd_kinds"]))
    if not res["rss_back"]:
        broken.append("churn: RSS did not return: before %d KiB, after %d KiB (tolerance %d KiB)" % (
            base["rss_kib"], end["rss_kib"], RSS_TOLERANCE_KIB))
    broken += notes
    log("churn: %d ok in %.1f s = %.0f connects/s; errors %s; proxy CPU %.1f%% of a core" % (
        counts["ok"], worker_elapsed, res["connects_per_s"], res["errors"] or "none",
        res["proxy_cpu_s"]["percent_of_one_core"]))
    return res, broken


def _ms(x):
    return None if x is None else round(x * 1000, 2)


# --------------------------------------------------------------------------------------
# Concurrency

def ping_all(socks, timeout):
    """Sends PING on every socket, then reads every +PONG (epoll). Returns (ok, errors Counter)."""
    errs = collections.Counter()
    sel = selectors.DefaultSelector()
    pending = {}
    for s in socks:
        try:
            s.setblocking(False)
            s.send(PING)  # 14 bytes into an empty send buffer
            pending[s.fileno()] = (s, b"")
            sel.register(s, selectors.EVENT_READ)
        except OSError as e:
            errs[errkind(e)] += 1
    ok = 0
    deadline = now() + timeout
    while pending and now() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s, buf = pending[key.fd]
            try:
                chunk = s.recv(64)
            except BlockingIOError:
                continue
            except OSError as e:
                errs[errkind(e)] += 1
                sel.unregister(s)
                del pending[key.fd]
                continue
            if not chunk:
                errs["closed"] += 1
            else:
                buf += chunk
                if not buf.endswith(b"\r\n"):
                    pending[key.fd] = (s, buf)
                    continue
                if buf == PONG:
                    ok += 1
                else:
                    errs["wrong_reply"] += 1
            sel.unregister(s)
            del pending[key.fd]
    if pending:
        errs["timeout"] += len(pending)
    for s in socks:
        try:
            s.setblocking(True)
            s.settimeout(OP_TIMEOUT)
        except OSError:
            pass
    sel.close()
    return ok, errs


def run_concurrency(args, cl):
    pid = cl["proxy_pid"]
    broken = []
    soft, hard = nofile_limits(pid)
    own_soft, own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    base = settled_sample(pid, 3.0)
    fit = (soft - base["fds"] - FD_MARGIN) // 2
    own_fit = own_soft - 64 - proc_sample(os.getpid())["fds"]
    n = min(args.max_conns, fit, own_fit)
    why = ("the requested %d" % args.max_conns if n == args.max_conns else
           "what the proxy's descriptor limit fits: (%d - %d idle - %d spare) / 2 = %d" % (soft, base["fds"], FD_MARGIN, fit)
           if n == fit else "what this script's own descriptor limit (%d) fits" % own_soft)
    log("concurrency: %d connections (%s); proxy RLIMIT_NOFILE %s/%s" % (n, why, soft, hard))
    res = {"requested": args.max_conns, "connections": n, "why": why,
           "proxy_nofile": [soft, hard], "own_nofile": [own_soft, own_hard], "cycles": []}
    for cycle in range(1, args.cycles + 1):
        cyc = {"cycle": cycle, "before": settled_sample(pid, 2.0) if cycle > 1 else base}
        socks = []
        open_errs = collections.Counter()
        t0 = now()
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.settimeout(OP_TIMEOUT)
                    s.connect((HOST, cl["proxy_port"]))
                    s.sendall(PING)
                    if read_line(s) != PONG:
                        raise ValueError("wrong reply")
                    socks.append(s)
                except Exception as e:  # noqa: BLE001
                    open_errs["wrong_reply" if isinstance(e, ValueError) else errkind(e)] += 1
                    s.close()
                    if sum(open_errs.values()) > 200:
                        break
            t_open = now() - t0
            time.sleep(args.hold)
            held = settled_sample(pid, 2.0)
            active = metric(scrape_metrics(cl["admin"]), "client_connections_active")
            t1 = now()
            ok2, errs2 = ping_all(socks, 30.0)
            t_ping = now() - t1
            after_ping = proc_sample(pid)
        finally:
            for s in socks:
                s.close()
        opened = len(socks)
        notes = []
        wait_idle(cl["admin"], notes, "closing the connections")
        time.sleep(5.0)
        end = settled_sample(pid, 3.0)
        cyc.update({
            "opened_with_pong": opened, "open_errors": dict(open_errs), "open_s": round(t_open, 2),
            "opens_per_s": round(opened / t_open, 1) if t_open else None,
            "second_ping_ok": ok2, "second_ping_errors": dict(errs2), "second_ping_s": round(t_ping, 2),
            "active_reported": active, "held": held, "after_ping": after_ping, "end": end,
            "fds_per_connection": round((held["fds"] - cyc["before"]["fds"]) / opened, 3) if opened else None,
            "rss_kib_per_connection": round((held["rss_kib"] - cyc["before"]["rss_kib"]) / opened, 3) if opened else None,
            "rss_kib_per_connection_after_ping": round((after_ping["rss_kib"] - cyc["before"]["rss_kib"]) / opened, 3) if opened else None,
            "notes": notes,
        })
        cyc["fds_back"] = end["fds"] <= base["fds"] and end["fd_kinds"]["socket"] <= base["fd_kinds"]["socket"]
        res["cycles"].append(cyc)
        log("concurrency cycle %d: %d/%d open with PONG in %.1f s, second PING ok %d; proxy fds %d -> %d -> %d, "
            "RSS %d -> %d -> %d KiB (%.2f KiB per connection)" % (
                cycle, opened, n, t_open, ok2, cyc["before"]["fds"], held["fds"], end["fds"],
                cyc["before"]["rss_kib"], held["rss_kib"], end["rss_kib"], cyc["rss_kib_per_connection"] or 0))
        if opened < n or open_errs:
            broken.append("concurrency cycle %d: %d of %d connections answered PONG at open (errors %s)" % (
                cycle, opened, n, dict(open_errs)))
        if ok2 < opened:
            broken.append("concurrency cycle %d: %d of %d open connections answered the second PING (errors %s)" % (
                cycle, ok2, opened, dict(errs2)))
        if active != opened:
            broken.append("concurrency cycle %d: /metrics client_connections_active %s with %d open" % (cycle, active, opened))
        if not cyc["fds_back"]:
            broken.append("concurrency cycle %d: descriptors did not return: before %d (%s), after %d (%s)" % (
                cycle, base["fds"], base["fd_kinds"], end["fds"], end["fd_kinds"]))
        broken += notes
    ends = [c["end"]["rss_kib"] for c in res["cycles"]]
    res["rss_end_after_each_cycle_kib"] = ends
    res["rss_kept_after_first_cycle_kib"] = ends[0] - base["rss_kib"]
    # Memory the allocator keeps after thousands of sessions is not a leak as long as it is
    # reused: a leak grows RSS in every cycle. Reported; a steady climb over 3+ cycles fails.
    if len(ends) >= 3:
        steps = [b - a for a, b in zip(ends, ends[1:])]
        res["rss_steps_between_cycles_kib"] = steps
        res["rss_grows_every_cycle"] = all(d > RSS_TOLERANCE_KIB for d in steps)
        if res["rss_grows_every_cycle"]:
            broken.append("concurrency: RSS grew by more than %d KiB in every cycle: after each cycle %s KiB"
                          % (RSS_TOLERANCE_KIB, ends))
    return res, broken


# --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--duration", type=float, default=60.0, help="churn seconds (default 60)")
    ap.add_argument("--workers", type=int, default=4, help="churn client processes (default 4)")
    ap.add_argument("--rate", type=int, default=0,
                    help="churn connects per second in total (default 0: as fast as they can)")
    ap.add_argument("--max-conns", type=int, default=10000,
                    help="concurrency: most connections to hold (default 10000)")
    ap.add_argument("--cycles", type=int, default=3, help="concurrency: open/close cycles (default 3)")
    ap.add_argument("--hold", type=float, default=3.0, help="concurrency: seconds to hold them open (default 3)")
    ap.add_argument("--only", choices=["churn", "concurrency"], help="run one part only")
    ap.add_argument("--relay", choices=["auto", "splice", "copy"], default=None,
                    help="the proxy's relay mode (default: its own default, auto)")
    ap.add_argument("--out", default=os.path.join(REPO, "benches", "soak", "out"),
                    help="output directory (default benches/soak/out, ignored by git)")
    ap.add_argument("--proxy-bin", default=DEFAULT_BIN, help="the proxy binary (default %(default)s)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release first")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the run's temp dir (configs, logs)")
    args = ap.parse_args()
    if not (5 <= args.duration <= 3600):
        ap.error("--duration must be between 5 and 3600 s")
    if not (1 <= args.workers <= 64):
        ap.error("--workers must be between 1 and 64")
    if not (1 <= args.max_conns <= 100000) or not (1 <= args.cycles <= 10):
        ap.error("--max-conns must be 1..100000 and --cycles 1..10")

    return run_with_proxy(args, ["redis-server"], run)


def run(args, binary):
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="soak-churn-")
    procs = Procs(tmp)
    res = {"command": "python3 benches/soak/churn.py " + " ".join(sys.argv[1:]),
           "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
           "versions": run_versions(os.path.abspath(args.proxy_bin), binary), "broken": [], "notes": []}
    exit_code = 2
    try:
        rports = free_ports(3)
        proxy_port, admin_port = free_ports(2)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        maxclients = min(args.max_conns + 500, max(1000, soft - 100))
        extra = ["--maxclients", str(maxclients)]
        start_redis(procs, tmp, "redis-1", rports[0], extra=extra)
        start_redis(procs, tmp, "redis-2", rports[1], rports[0], extra=extra)
        start_redis(procs, tmp, "redis-3", rports[2], rports[0], extra=extra)
        wait_until(lambda: replicas_online(rports[0], 2), 20, "both replicas in sync")
        toml = proxy_toml(proxy_port, admin_port, rports, None,
                            extra=('relay = "%s"' % args.relay) if args.relay else "")
        res["proxy_config"] = toml
        start_proxy(procs, tmp, binary, admin_port, toml)
        pid = procs.pid("proxy")
        wait_until(lambda: redis_call(proxy_port, "PING", timeout=1.0) == "PONG", 20, "PING through the proxy")
        cl = {"proxy_port": proxy_port, "admin": admin_port, "proxy_pid": pid}
        log("proxy pid %d on %d in front of %s" % (pid, proxy_port, rports))
        if args.only in (None, "churn"):
            res["churn"], b = run_churn(args, cl, args.out)
            res["broken"] += b
        if args.only in (None, "concurrency"):
            res["concurrency"], b = run_concurrency(args, cl)
            res["broken"] += b
        if redis_call(proxy_port, "PING", timeout=2.0) != "PONG":
            res["broken"].append("the proxy no longer answers PING at the end")
        res["metrics_end"] = {k: v for k, v in scrape_metrics(admin_port).items()
                              if "connections" in k or "accept_errors" in k}
        lines, panics = stop_proxy(procs, res, os.path.join(args.out, "churn-proxy.log"))
        res["proxy_log"] = {"lines": len(lines), "panic_lines": panics[:20],
                            "warn_or_error": [ln[:300] for ln in lines if " WARN " in ln or " ERROR " in ln][:30]}
        exit_code = 1 if res["broken"] else 0
    except KeyboardInterrupt:
        res["error"] = "interrupted"
    except Exception as e:  # noqa: BLE001
        res["error"] = "%s: %s" % (type(e).__name__, e)
        res["traceback"] = traceback.format_exc()[-3000:]
        log("error: %s" % res["error"])
        res["logs"] = procs.logtails()
    finally:
        if procs.close(keep=args.keep_tmp):
            res["tmp"] = tmp
    res["exit_code"] = exit_code
    write_report(args.out, "churn", res, render(res), also=["churn-proxy.log"])
    return exit_code


def render(res):
    L = []
    ok = not res.get("broken") and not res.get("error")
    L.append("# Connection churn and concurrency: %s" % ("PASS" if ok else ("ERROR" if res.get("error") else "FAIL")))
    L.append("")
    v = res["versions"]
    L.append("`%s`, started %s UTC. Proxy %s at %s; %s; kernel %s, %s CPUs." % (
        res["command"], res["started_utc"], v["proxy_version"], v["git_commit"], v["redis"], v["kernel"], v["nproc"]))
    if res.get("error"):
        L += ["", "**The run failed:** %s" % res["error"], "", "```", res.get("traceback", ""), "```"]
    if res.get("broken"):
        L += ["", "## Checks that failed", ""] + ["- %s" % b for b in res["broken"]]
    c = res.get("churn")
    if c:
        b, e, pk = c["resources"]["before"], c["resources"]["end"], c["resources"]["peak"]
        L += ["", "## Churn", "",
              "| | |", "|---|---|",
              "| client processes | %d (%s) |" % (c["workers"], c["rate_target"]),
              "| duration | %.1f s |" % c["duration_s"],
              "| connect + PING + PONG + close | %d ok of %d |" % (c["ok"], c["attempts"]),
              "| connects per second | %.0f |" % c["connects_per_s"],
              "| errors by kind | %s |" % (", ".join("%s %d" % kv for kv in sorted(c["errors"].items())) or "none"),
              "| latency p50 / p90 / p99 / max | %s / %s / %s / %s ms |" % (
                  c["latency_ms"]["p50"], c["latency_ms"]["p90"], c["latency_ms"]["p99"], c["latency_ms"]["max"]),
              "| proxy CPU | %.1f s user + %.1f s sys = %.0f%% of one core, %.0f µs per connection |" % (
                  c["proxy_cpu_s"]["user"], c["proxy_cpu_s"]["sys"], c["proxy_cpu_s"]["percent_of_one_core"],
                  c["proxy_cpu_us_per_connection"]),
              "| load generator CPU | %.1f s |" % c["load_generator_cpu_s"],
              "| proxy fds before / peak / after | %d / %d / %d (%s) |" % (b["fds"], pk["fds"], e["fds"],
                                                                          "back" if c["fds_back"] else "NOT BACK"),
              "| proxy RSS before / peak / after | %d / %d / %d KiB (%s) |" % (
                  b["rss_kib"], pk["rss_kib"], e["rss_kib"], "back" if c["rss_back"] else "NOT BACK"),
              "| /metrics deltas | %s |" % json.dumps(c["metrics_delta"])]
    k = res.get("concurrency")
    if k:
        L += ["", "## Concurrency", "",
              "%d connections (%s). Proxy RLIMIT_NOFILE %s." % (k["connections"], k["why"], k["proxy_nofile"]),
              "",
              "| cycle | opened with PONG | open time | second PING ok | fds before / held / after | fds per conn | RSS before / held / after (KiB) | RSS per conn (KiB) |",
              "|---|---|---|---|---|---|---|---|"]
        for cy in k["cycles"]:
            L.append("| %d | %d | %.1f s | %d | %d / %d / %d | %s | %d / %d / %d | %s (%s after the second PING) |" % (
                cy["cycle"], cy["opened_with_pong"], cy["open_s"], cy["second_ping_ok"],
                cy["before"]["fds"], cy["held"]["fds"], cy["end"]["fds"], cy["fds_per_connection"],
                cy["before"]["rss_kib"], cy["held"]["rss_kib"], cy["end"]["rss_kib"],
                cy["rss_kib_per_connection"], cy["rss_kib_per_connection_after_ping"]))
        L.append("")
        L.append("RSS after each cycle (connections closed, 5 s idle): %s KiB, against %d KiB idle before the "
                 "first; kept after the first cycle: %d KiB; change from cycle to cycle: %s KiB%s." % (
                     k["rss_end_after_each_cycle_kib"], k["cycles"][0]["before"]["rss_kib"],
                     k["rss_kept_after_first_cycle_kib"], k.get("rss_steps_between_cycles_kib"),
                     " (grows every cycle: LEAK?)" if k.get("rss_grows_every_cycle") else ""))
    if "proxy_log" in res:
        L += ["", "Proxy log: %d lines, %d mentioning a panic; exit status on SIGTERM: %s." % (
            res["proxy_log"]["lines"], len(res["proxy_log"]["panic_lines"]), res.get("proxy_exit_on_sigterm"))]
        if res["proxy_log"]["warn_or_error"]:
            L += ["", "WARN/ERROR lines:", "", "```"] + res["proxy_log"]["warn_or_error"] + ["```"]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
