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

`--modes fleet` (fleet.py) runs three proxies side by side instead and measures how closely
they change route (fleet.json, fleet.md).

Writes docs/failover/results.json, results.md and one chart per mode. Standard library
only (benches/harness); the charts use matplotlib, from benches/.venv made by
benches/install.sh.

    python3 benches/failover/run.py                      # everything, 3 repetitions
    python3 benches/failover/run.py --quick              # smoke test: 1 rep, 1 mode
    python3 benches/failover/run.py --candidates haproxy --modes kill --reps 1
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

if __package__ in (None, ""):  # run as a file: import from the repository root
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benches.failover import fleet, report, trust  # noqa: E402
from benches.failover.probes import (  # noqa: E402
    CANDIDATES, CLIENTS, POLL_PERIOD, PROBE_INTERVAL, PROBE_TIMEOUT, Probe, analyse_client,
    keys_present, proxy_metrics, r4, start_proxy_endpoint,
)
from benches.harness.cluster import (  # noqa: E402
    MASTER_NAME, agreed_master, replicas_caught_up, replicas_online, sentinel_conf,
    sentinel_master_port, sentinels_ready, start_redis, start_sentinel,
)
from benches.harness.endpoints import start_haproxy  # noqa: E402
from benches.harness.pollers import NodePoller, SentinelEvents  # noqa: E402
from benches.harness.procs import (  # noqa: E402
    HOST, REPO, Procs, free_ports, log, now, sigterm_interrupts, wait_until,
)
from benches.harness.resp import Conn, info_repl, redis_call  # noqa: E402
from benches.harness.tools import first_line, require_tools, run_chart, sha256_file, src_dirty  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

MODES = ["switchover", "kill", "hang"]
TRIGGER_AFTER = 3.0         # seconds of steady writes before the failover is triggered
HANG_FOR = 10.0             # hang mode: SIGCONT this long after SIGSTOP
MAX_EXTRA_OBSERVE = 20.0    # keep observing at most this long past --observe until stable

# --------------------------------------------------------------------------------------
# Tools

def tool_versions(args):
    v = {
        "redis": first_line(["redis-server", "--version"]),
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
    }
    if "haproxy" in args.candidates:
        v["haproxy"] = first_line(["haproxy", "-v"])
    if getattr(args, "built_commit", None):
        v["git_commit"] = "%s (proxy built from this commit with --build)" % args.built_commit
    else:
        v["git_commit"] = first_line(["git", "-C", REPO, "rev-parse", "HEAD"]) + (
            " (work tree with uncommitted changes in src/ or Cargo.*)" if src_dirty() else "")
        v["proxy_src_commit"] = first_line(["git", "-C", REPO, "log", "-1", "--format=%H %s", "--", "src",
                                            "Cargo.toml", "Cargo.lock"])[:100] + " (last commit touching src/, Cargo.*)"
    if "proxy" in args.candidates:
        v["proxy_binary"] = args.proxy_bin_source
        v["proxy_version"] = first_line([args.proxy_bin, "--version"]) if os.path.exists(args.proxy_bin) else "missing"
        if os.path.exists(args.proxy_bin):
            v["proxy_sha256"] = sha256_file(args.proxy_bin)
            v["proxy_built"] = datetime.datetime.fromtimestamp(
                os.path.getmtime(args.proxy_bin_source), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return v


def ensure_tools(args):
    """Stops with the install command when a tool is missing; never installs anything."""
    require_tools(["redis-server", "redis-sentinel"] + (["haproxy"] if "haproxy" in args.candidates else []))
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
            res["endpoint"] = start_haproxy(procs, tmp, ep_port, rports)
        else:
            res["endpoint"] = start_proxy_endpoint(procs, tmp, args.proxy_bin, ep_port, admin_port,
                                          rports, sports, res["notes"], cand_state)

        def endpoint_ok():
            c = Conn(HOST, ep_port, timeout=1.0)
            try:
                port = c.call("CONFIG", "GET", "port")
                return c.call("SET", "probe:%s:ready" % run_id, "1") == "OK" and int(port[1]) == rports[0]
            finally:
                c.close()
        wait_until(endpoint_ok, 20, "a write through the endpoint to reach the master", 0.2)

        pollers = [NodePoller(p, names[p], period=POLL_PERIOD) for p in rports]
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
        final = wait_until(lambda: agreed_master(sports), 20, "sentinels to agree on a master", 0.25)
        if info_repl(final).get("role") != "master":
            res["notes"].append("the node the sentinels name (%d) does not report role:master" % final)

        try:
            wait_until(lambda: replicas_caught_up(final, rports), 20,
                       "replicas to catch up with the final master", 0.2)
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
        res["logs"] = procs.logtails()
    finally:
        if procs.close(threads, keep=args.keep_tmp):
            res["tmp"] = tmp
    return res



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


# --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates",
                    help="comma-separated, from: %s (default: all; `--modes fleet` alone: proxy)"
                         % ",".join(CANDIDATES))
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated, from the failover modes %s (default: all three), the "
                         "trust modes %s (or `trust` for all five; written to trust.json/trust.md) "
                         "and `fleet` (three proxies, each trigger; fleet.json/fleet.md)"
                         % (",".join(MODES), ",".join(trust.MODES)))
    ap.add_argument("--clients", default=",".join(CLIENTS),
                    help="probes run side by side: persistent (one long-lived connection, replaced "
                         "after an error) and/or fresh (a new connection per write); default both")
    ap.add_argument("--reps", "--runs", dest="reps", type=int,
                    help="repetitions per candidate and mode (default 3; fleet: %d per trigger)"
                         % fleet.DEFAULT_RUNS)
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
    ap.add_argument("--keep-tmp", action="store_true", help="keep each run's temp dir (logs, configs)")
    args = ap.parse_args()

    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.candidates is None:  # the fleet mode measures proxies only
        args.candidates = "proxy" if args.modes == ["fleet"] else ",".join(CANDIDATES)
    args.candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    if "trust" in args.modes:  # shorthand for every trust mode
        i = args.modes.index("trust")
        args.modes[i:i + 1] = [m for m in trust.MODES if m not in args.modes]
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
        if m not in MODES and m not in trust.MODES and m != "fleet":
            ap.error("unknown mode %r" % m)
    if "fleet" in args.modes and "proxy" not in args.candidates:
        ap.error("--modes fleet needs the proxy candidate")
    if args.quick:
        args.reps = 1
        args.modes = args.modes[:1]
    args.fleet_runs = args.reps or fleet.DEFAULT_RUNS
    args.reps = args.reps or 3
    if args.reps < 1 or args.reps > 50:
        ap.error("--reps must be between 1 and 50")
    if not (5 <= args.observe <= 120):
        ap.error("--observe must be between 5 and 120 seconds")
    args.proxy_bin = os.path.abspath(args.proxy_bin)

    sigterm_interrupts()

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
        want_fleet = "fleet" in args.modes
        classic = [m for m in args.modes if m in MODES]
        trusted = [m for m in args.modes if m in trust.MODES]
        rc = 0
        if classic:
            args.modes = classic
            rc = run_all(args)
        if trusted:
            rc = max(rc, run_trust(args, trusted))
        if want_fleet:
            rc = max(rc, run_fleet(args))
        return rc
    finally:
        if bin_dir:
            shutil.rmtree(bin_dir, ignore_errors=True)


def write_doc(args, doc, name, pngs):
    """Writes the results document to --out and draws its charts (unless --no-charts).
    Returns (its path, the modes of `pngs` {mode: file} whose chart was drawn)."""
    json_path = os.path.join(args.out, name)
    with open(json_path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    charts = []
    if not args.no_charts:
        try:
            run_chart(os.path.join(HERE, "chart.py"), json_path, args.out)
            charts = [m for m, png in pngs.items() if os.path.exists(os.path.join(args.out, png))]
        except Exception as e:  # noqa: BLE001
            log("charts skipped: %s" % e)
    return json_path, charts


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
        "configs": {"sentinel": sentinel_conf("PORT", "DIR", "MASTER_PORT")},
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
    json_path, charts = write_doc(args, doc, "results.json", {m: m + ".png" for m in args.modes})
    md = report.render(doc, charts)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    log("wrote %s, results.md%s" % (json_path, ", charts" if charts else ""))
    if not doc["complete"]:
        log("partial run: these results are for checking the setup, not for publishing")
    return 1 if any("error" in r for r in doc["runs"]) else 0



def run_trust(args, modes):
    """The trust modes: trust.json, trust.md and trust-<mode>.png in --out."""
    t_start = time.monotonic()
    started = datetime.datetime.now(datetime.timezone.utc)
    doc = {
        "kind": "trust",
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python3 benches/failover/run.py " + " ".join(sys.argv[1:]),
        "settings": {
            "candidates": args.candidates, "modes": modes, "reps": args.reps, "clients": args.clients,
            "variants": {m: trust.MODES[m] for m in modes},
            "probe_interval_s": PROBE_INTERVAL, "probe_timeout_s": PROBE_TIMEOUT,
            "poll_period_s": POLL_PERIOD, "warmup_s": trust.WARMUP,
            "idle_sessions": trust.IDLE_SESSIONS,
            "slow_probe_timeout_s": trust.SLOW_PROBE_TIMEOUT,
        },
        "complete": (set(args.candidates) == set(CANDIDATES) and set(modes) == set(trust.MODES)
                     and set(args.clients) == set(CLIENTS) and args.reps >= 3),
        "versions": tool_versions(args),
        "runs": [],
    }
    if trust.run_all(args, modes, doc):
        log("interrupted; writing what was measured")
        doc["complete"] = False
        doc["interrupted"] = True
    doc["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    doc["duration_s"] = round(time.monotonic() - t_start)
    json_path, charts = write_doc(args, doc, "trust.json", {m: "trust-%s.png" % m for m in modes})
    with open(os.path.join(args.out, "trust.md"), "w") as f:
        f.write(report.render_trust(doc, charts))
    log("wrote %s, trust.md%s (%d s)" % (json_path, ", charts" if charts else "", doc["duration_s"]))
    if not doc["complete"]:
        log("partial run: these results are for checking the setup, not for publishing")
    return 1 if any("error" in r for r in doc["runs"]) else 0


def run_fleet(args):
    """The fleet mode: fleet.json and fleet.md in --out."""
    t_start = time.monotonic()
    doc = {
        "kind": "fleet",
        "started_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python3 benches/failover/run.py " + " ".join(sys.argv[1:]),
        "settings": {
            "triggers": fleet.TRIGGERS, "runs": args.fleet_runs, "proxies": len(fleet.PROXIES),
            "start_gap_s": fleet.START_GAP, "warmup_s": trust.WARMUP, "hang_for_s": fleet.HANG_FOR,
            "settle_s": fleet.SETTLE, "max_observe_s": fleet.MAX_OBSERVE, "poll_period_s": POLL_PERIOD,
        },
        "complete": args.fleet_runs >= fleet.DEFAULT_RUNS,
        "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
        "versions": tool_versions(args),
        "runs": [],
    }
    if fleet.run_all(args, doc):
        log("interrupted; writing what was measured")
        doc["complete"] = False
        doc["interrupted"] = True
        doc["summary"] = fleet.summarize(doc["runs"])
    doc["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    doc["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    doc["duration_s"] = round(time.monotonic() - t_start)
    path = fleet.write(args, doc)
    log("wrote %s, fleet.md (%d s)" % (path, doc["duration_s"]))
    for t, m in doc["summary"].items():
        log("  %-10s publish spread median %s ms, max %s ms; same master %d of %d" % (
            t, m["publish_spread_ms"]["median"], m["publish_spread_ms"]["max"], m["same_master"],
            m["runs"] - m["errors"]))
    if not doc["complete"]:
        log("partial run: these results are for checking the setup, not for publishing")
    return 1 if any("error" in r for r in doc["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
