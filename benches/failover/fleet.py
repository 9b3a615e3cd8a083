"""Fleet mode of the failover benchmark: do several proxy replicas agree during a failover?

The claim measured: three replicas of redis-master-proxy, each with `[sentinel]`, move to the
new master within a few milliseconds of each other. Per repetition, on a fresh local cluster
(1 master, 2 replicas, 3 sentinels, as the other modes), three proxies are started about a
second apart (so their health-check rounds are out of phase), then one trigger:

| trigger | what happens |
|---|---|
| switchover | `SENTINEL FAILOVER mymaster` on one sentinel (planned) |
| kill | `SIGKILL` to the master |
| hang | `SIGSTOP` to the master, `SIGCONT` 10 s later |

Per proxy, from its own log (tracing timestamps, RFC 3339 UTC with microseconds, the same
system clock as this script's `time.time()`):

  * publish: the first `master route published` after the trigger naming another master;
  * leave: the first moment it stopped routing new clients to the old master: the first
    `route paused`, `no backend qualifies` (route withdrawn) or `master route published`
    after the trigger;
  * follow: publish − the moment the new master first answered `role:master` to an INFO
    poller (every 5 ms; the answer's arrival, as run.py's follow time, which polls every 50 ms);
  * the master its `/status` names at the end, and every route it published after the trigger.

Per event: the spread (latest − earliest) of publish and of leave across the proxies, and
whether all ended on the master the sentinels name. run.py calls run_all() for `--modes fleet`
and writes fleet.json and fleet.md; the cluster, proxies and pollers come from trust.Run and
benches/harness.
"""

import datetime
import json
import os
import re
import signal
import statistics
import time
import traceback

from benches.failover.probes import r4
from benches.failover.trust import WARMUP, Run
from benches.harness.cluster import MASTER_NAME, agreed_master
from benches.harness.endpoints import http_get
from benches.harness.pollers import NodePoller
from benches.harness.procs import REPO, log, now, wall
from benches.harness.resp import redis_call

TRIGGERS = ["switchover", "kill", "hang"]
PROXIES = ("proxy-1", "proxy-2", "proxy-3")
DEFAULT_RUNS = 5
START_GAP = 1.0        # seconds between one proxy being ready and the next one starting
HANG_FOR = 10.0        # hang: SIGCONT this long after SIGSTOP
AFTER_HANG = 5.0       # hang: keep observing at least this long after SIGCONT
SETTLE = 3.0           # once all proxies route to the sentinels' master, observe this much more
MAX_OBSERVE = 40.0     # give up waiting for agreement this long after the trigger
FAST_POLL = 0.005      # the replicas' INFO replication polling period (the promotion's date)

# `2025-01-01T04:29:28.123456Z  WARN redis_master_proxy::control::shell: master route published ...`
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s+([A-Z]+)\s+(\S+?):\s+(.*)$")
EVENTS = [("master route published", "publish"), ("route paused", "pause"),
          ("no backend qualifies", "withdraw"), ("route resumed", "resume")]
FIELD = re.compile(r"\b(master|previous)=(\S+)")


def parse_log(lines):
    """[(wall time, event, master or None, the line)] of the route events in a proxy's log."""
    out = []
    for ln in lines:
        m = LINE.match(ln.strip())
        if not m:
            continue
        msg = m.group(4)
        kind = next((k for text, k in EVENTS if text in msg), None)
        if kind is None:
            continue
        ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f" if "." in m.group(1)
                                        else "%Y-%m-%dT%H:%M:%S")
        t = ts.replace(tzinfo=datetime.timezone.utc).timestamp()
        fields = dict(FIELD.findall(msg))
        master = fields.get("master") if kind == "publish" else None
        out.append((t, kind, master, msg[:300]))
    return out


def backend_port(text):
    """127.0.0.1:6379 (possibly quoted, or inside Some(...)) -> 6379."""
    m = re.search(r":(\d+)\D*$", text or "")
    return int(m.group(1)) if m else None


def status_master(admin):
    """The master the proxy's /status names (its port), None when it has no route."""
    code, body = http_get(admin, "/status", timeout=1.0)
    m = json.loads(body).get("master")
    return backend_port(m["backend"]) if m else None


def promotion_wall(poller, t_from):
    """(the first poll answered at or after wall time t_from that says role:master, the send
    time of the poll before it): the node became master between the two. (None, None) when it
    did not."""
    prev = None
    for s in poller.samples:
        if s[1] >= t_from and s[2] == "master":
            return s[1], (prev[0] if prev else None)
        prev = s
    return None, None


def first_publish(pubs, port):
    """The time of the first publish (t, port) naming `port`, None if none."""
    return next((t for t, p in pubs if p == port), None)


def spread_ms(ts):
    ts = [t for t in ts if t is not None]
    return round((max(ts) - min(ts)) * 1000, 2) if len(ts) >= 2 else None


# --------------------------------------------------------------------------------------

def run_once(args, trigger, rep):
    run = Run(args, "fleet", trigger, rep, ["proxy"])
    res = run.res
    try:
        run.cluster(replicas=2, sentinels=3)
        for i, name in enumerate(PROXIES):
            if i:
                time.sleep(START_GAP)
            run.start_proxy(name, with_sentinel=True)
            run.mark(name + "_ready")
        missing = [n for n in PROXIES if not run.endpoints[n]["sentinel"]]
        if missing:
            raise RuntimeError("%s ran without [sentinel]: nothing to compare" % ", ".join(missing))
        # The replicas' INFO every FAST_POLL too, to date the promotion closely.
        fast = {p: NodePoller(p, run.names[p] + "-fast", period=FAST_POLL) for p in run.rports[1:]}
        for t in fast.values():
            t.start()
        run.threads += list(fast.values())
        # INFO pollers, sentinel events, /status watchers; then WARMUP seconds
        run.observe(idle=False, probes=False)
        old = run.rports[0]

        t_trig, run.t_trig = wall(), now()
        if trigger == "switchover":
            r = redis_call(run.sports[0], "SENTINEL", "FAILOVER", MASTER_NAME, timeout=2.0)
            res["trigger_reply"] = str(r)
        elif trigger == "kill":
            run.procs.signal("redis-1", signal.SIGKILL)
        else:
            run.procs.signal("redis-1", signal.SIGSTOP)
        log("  %s: triggered %s" % (run.run_id, trigger))

        t_cont = agreed_since = None
        deadline = run.t_trig + MAX_OBSERVE
        while now() < deadline:
            if trigger == "hang" and t_cont is None and now() >= run.t_trig + HANG_FOR:
                run.procs.signal("redis-1", signal.SIGCONT)
                t_cont = wall()
            final = agreed_master(run.sports)
            routes = {n: (run.endpoints[n]["watch"].changes or [(0, None)])[-1][1] for n in PROXIES}
            agreed = final not in (None, old) and set(routes.values()) == {run.names[final]}
            if agreed and agreed_since is None:
                agreed_since = now()
            elif not agreed:
                agreed_since = None
            if agreed_since is not None and now() >= agreed_since + SETTLE and (
                    trigger != "hang" or (t_cont is not None and wall() >= t_cont + AFTER_HANG)):
                break
            time.sleep(0.05)
        if trigger == "hang" and t_cont is None:
            run.procs.signal("redis-1", signal.SIGCONT)
            t_cont = wall()
        t_end = wall()
        final = agreed_master(run.sports)
        ended = {}
        for n in PROXIES:
            try:
                ended[n] = status_master(run.endpoints[n]["admin"])
            except Exception as e:  # noqa: BLE001
                ended[n] = "unreachable (%s)" % type(e).__name__
        run.stop_observers()

        res.update(analyse(run, trigger, old, final, ended, t_trig, t_cont, t_end, fast))
        if agreed_since is None:
            res["notes"].append("the proxies and sentinels did not agree on a new master within "
                                "%.0f s" % MAX_OBSERVE)
    except Exception as e:  # noqa: BLE001 - recorded, the next run goes on
        res["error"] = "%s: %s" % (type(e).__name__, e)
        res["traceback"] = traceback.format_exc()[-3000:]
        res["logs"] = run.procs.logtails()
    finally:
        run.close()
    return res


def analyse(run, trigger, old, final, ended, t_trig, t_cont, t_end, fast):
    rel = lambda t: None if t is None else round((t - t_trig) * 1000, 2)  # noqa: E731 - ms
    names = run.names
    # Every replica that became master after the trigger (Sentinel may promote two in a row).
    promos = {p: promotion_wall(f, t_trig) for p, f in fast.items()}
    promos = {p: v for p, v in promos.items() if v[0] is not None}
    first = min(promos, key=lambda p: promos[p][0]) if promos else None
    promo, promo_prev = promos.get(first, (None, None))
    out = {"old_master": names[old], "final_master": names.get(final, str(final)),
           "first_promoted": names.get(first),
           "promotion_ms": rel(promo),
           "promotion_poll_uncertainty_ms": None if promo is None or promo_prev is None
           else round((promo - promo_prev) * 1000, 2),
           "promotions": [[names[p], rel(t), None if tp is None else round((t - tp) * 1000, 2)]
                          for p, (t, tp) in sorted(promos.items(), key=lambda kv: kv[1][0])],
           "sigcont_ms": rel(t_cont), "end_ms": rel(t_end),
           "proxy_ready_s": {n: r4(run.marks[n + "_ready"] - run.t_trig) for n in PROXIES},
           "proxies": {}}
    publish, leave, publish_final = {}, {}, {}
    for n in PROXIES:
        lines = run.procs.log_lines(n)
        evs = [e for e in parse_log(lines) if e[0] >= t_trig]
        pubs = [(t, backend_port(m)) for t, k, m, _ in evs if k == "publish"]
        first_pub, first_port = next(((t, p) for t, p in pubs if p != old), (None, None))
        first_leave = next((t for t, k, m, _ in evs if k in ("pause", "withdraw")
                            or (k == "publish" and backend_port(m) != old)), None)
        leave_kind = next((k for t, k, m, _ in evs if t == first_leave), None)
        publish[n], leave[n] = first_pub, first_leave
        publish_final[n] = first_publish(pubs, final)
        # follow: from the promotion of the master this publish names
        promo_of = promos.get(first_port, (None, None))[0]
        e = ended[n]
        out["proxies"][n] = {
            "publish_ms": rel(first_pub),
            "published": names.get(first_port),
            "publish_final_ms": rel(publish_final[n]),
            "leave_ms": rel(first_leave),
            "leave_by": leave_kind,
            "follow_ms": None if first_pub is None or promo_of is None
            else round((first_pub - promo_of) * 1000, 2),
            "published_after_trigger": [[rel(t), names.get(p, str(p))] for t, p in pubs],
            "events": [[rel(t), k, names.get(backend_port(m), m) if m else None] for t, k, m, _ in evs],
            "ended_on": names.get(e, e) if not isinstance(e, str) else e,
            "routes_polled": [[r4(t - run.t_trig), r] for t, r in run.endpoints[n]["watch"].changes],
            "panic": any("panic" in ln.lower() for ln in lines),
        }
        if out["proxies"][n]["panic"]:
            run.res["notes"].append("%s's log mentions a panic" % n)
    ends = [ended[n] for n in PROXIES]
    out["publish_spread_ms"] = spread_ms(publish.values()) if None not in publish.values() else None
    out["first_published_same"] = len({out["proxies"][n]["published"] for n in PROXIES}) == 1
    out["publish_final_spread_ms"] = (spread_ms(publish_final.values())
                                      if None not in publish_final.values() else None)
    if len(promos) > 1:
        run.res["notes"].append("the sentinels promoted more than one replica: %s" % ", ".join(
            "%s at %.0f ms" % (nm, t) for nm, t, _ in out["promotions"]))
    if not out["first_published_same"]:
        run.res["notes"].append("the proxies' first new routes differ: %s" % ", ".join(
            "%s %s" % (n, out["proxies"][n]["published"]) for n in PROXIES))
    out["leave_spread_ms"] = spread_ms(leave.values()) if None not in leave.values() else None
    out["all_published"] = None not in publish.values()
    out["same_master"] = len(set(ends)) == 1 and ends[0] == final
    out["publishes_after_trigger"] = {n: len(out["proxies"][n]["published_after_trigger"]) for n in PROXIES}
    if not out["all_published"]:
        run.res["notes"].append("no new-master publish logged by %s" % ", ".join(
            n for n in PROXIES if publish[n] is None))
    out["topology"] = {p.name: [[r4(t - run.t_trig), st] for t, st in p.changes] for p in run.pollers}
    if run.sub:
        out["sentinel_events"] = [[r4(t - run.t_trig), ch, msg] for t, ch, msg in run.sub.events]
    out["configs"] = {n: run.endpoints[n]["config"] for n in PROXIES}
    return out


# --------------------------------------------------------------------------------------

def run_all(args, doc):
    """Every trigger, args.fleet_runs times; fills doc["runs"]. Returns True when interrupted."""
    todo = [(t, rep) for t in TRIGGERS for rep in range(1, args.fleet_runs + 1)]
    for i, (trigger, rep) in enumerate(todo, 1):
        log("fleet run %d/%d: %s, repetition %d" % (i, len(todo), trigger, rep))
        try:
            r = run_once(args, trigger, rep)
        except KeyboardInterrupt:
            return True
        doc["runs"].append(r)
        if "error" in r:
            log("  error: %s" % r["error"])
        else:
            log("  publish spread %s ms, leave spread %s ms, same master %s, follow %s ms" % (
                r["publish_spread_ms"], r["leave_spread_ms"], r["same_master"],
                [r["proxies"][n]["follow_ms"] for n in PROXIES]))
    doc["summary"] = summarize(doc["runs"])
    return False


def _stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return {"n": 0, "median": None, "max": None, "min": None}
    return {"n": len(vals), "median": round(statistics.median(vals), 2), "max": max(vals),
            "min": min(vals)}


def summarize(runs):
    out = {}
    for trigger in TRIGGERS:
        rs = [r for r in runs if r["variant"] == trigger]
        ok = [r for r in rs if "error" not in r]
        out[trigger] = {
            "runs": len(rs), "errors": len(rs) - len(ok),
            "publish_spread_ms": _stats([r["publish_spread_ms"] for r in ok]),
            "leave_spread_ms": _stats([r["leave_spread_ms"] for r in ok]),
            "follow_ms": _stats([p["follow_ms"] for r in ok for p in r["proxies"].values()]),
            "same_master": sum(1 for r in ok if r["same_master"]),
            "all_published": sum(1 for r in ok if r["all_published"]),
            "within_10ms": sum(1 for r in ok if r["publish_spread_ms"] is not None
                               and r["publish_spread_ms"] <= 10),
        }
    return out


# --------------------------------------------------------------------------------------
# fleet.md

def _f(x, nd=1):
    return "–" if x is None else ("%.*f" % (nd, x) if isinstance(x, float) else str(x))


def render(doc):
    v = doc["versions"]
    w = []
    w.append("# Fleet: how closely three proxy replicas agree during a failover")
    w.append("")
    if not doc.get("complete"):
        w.append("**Partial run** (fewer than %d repetitions of every trigger, or interrupted): "
                 "for checking the setup, not for publishing." % DEFAULT_RUNS)
        w.append("")
    w.append("Produced by `%s` (%s to %s UTC, %d s)." % (doc["command"], doc["started_utc"],
                                                        doc["finished_utc"], doc["duration_s"]))
    w.append("")
    w.append("Build measured: `%s` (%s) at commit `%s`%s, sha256 `%s…`, built %s. %s; Python %s; "
             "kernel %s." % (
                 v.get("proxy_binary", "?").replace(REPO + "/", ""), v.get("proxy_version", "?"),
                 v.get("git_commit", "?"),
                 " (`src/`, `Cargo.*` last changed in `%s`)" % v["proxy_src_commit"][:12]
                 if v.get("proxy_src_commit") else "",
                 v.get("proxy_sha256", "?")[:16], v.get("proxy_built", "?"), v.get("redis", "?"),
                 v.get("python", "?"), v.get("kernel", "?")))
    w.append("")
    la = doc.get("load_average", {})
    w.append("The machine (%s CPUs) was shared with other builds and benchmarks while this ran "
             "(load average over 1, 5 and 15 min: %s at the start, %s at the end): scheduling "
             "delays of the proxies, the sentinels and this script are in the numbers." % (
                 v.get("cpus", "?"), " / ".join(map(str, la.get("start", ["?"]))),
                 " / ".join(map(str, la.get("end", ["?"])))))
    w.append("")
    w.append("## Method")
    w.append("")
    w.append("Per repetition a fresh cluster on 127.0.0.1 (1 master, 2 replicas, 3 sentinels: "
             "quorum 2, `down-after-milliseconds 1000`, `failover-timeout 3000`), and three "
             "redis-master-proxy processes with the same config (the three backends and "
             "`[sentinel]` naming the three sentinels), each started %.0f s after the previous "
             "one was ready. %.0f s after the last observer started, the trigger: `switchover` "
             "(`SENTINEL FAILOVER mymaster`), `kill` (`SIGKILL` to the master) or `hang` "
             "(`SIGSTOP`, `SIGCONT` %.0f s later). The run ends %.0f s after every proxy's "
             "`/status` and every sentinel name the same new master (hang: at least %.0f s "
             "after `SIGCONT`), at most %.0f s after the trigger."
             % (START_GAP, WARMUP, HANG_FOR, SETTLE, AFTER_HANG, MAX_OBSERVE))
    w.append("")
    w.append("| column | meaning |")
    w.append("|---|---|")
    w.append("| publish spread | latest − earliest, across the three proxies, of the first "
             "`master route published` log line after the trigger that names a new master |")
    w.append("| leave spread | the same for the moment each proxy stopped routing new clients to "
             "the old master: its first `route paused`, `no backend qualifies` (withdrawn) or "
             "new-master publish after the trigger |")
    w.append("| follow | a proxy's publish − the first `role:master` answer of the master it "
             "names to `INFO replication`, polled every %.0f ms (the answer's arrival: the "
             "promotion happened between the previous poll's send and this answer, the window "
             "shown beside `promotion seen`, so a follow down to minus that window is a publish "
             "right after the promotion) |" % (FAST_POLL * 1000))
    w.append("| same master | every proxy's `/status` names, at the end, the master the "
             "sentinels name |")
    w.append("")
    w.append("Times are the proxies' own log timestamps (tracing, RFC 3339 UTC, microseconds); "
             "all processes read the same system clock, so a spread compares like with like. "
             "A timestamp is taken when the proxy formats the line, right after it swaps the route.")
    w.append("")
    w.append("## Summary")
    w.append("")
    w.append("Milliseconds; median and max over the repetitions (follow: over every proxy of every "
             "repetition).")
    w.append("")
    w.append("| trigger | runs | publish spread median | publish spread max | within 10 ms | "
             "leave spread median | leave spread max | same master | follow median | follow max |")
    w.append("|---|---|---|---|---|---|---|---|---|---|")
    for t in TRIGGERS:
        m = doc["summary"].get(t)
        if not m or not m["runs"]:
            continue
        ok = m["runs"] - m["errors"]
        w.append("| %s | %d%s | %s | %s | %d of %d | %s | %s | %d of %d | %s | %s |" % (
            t, m["runs"], " (%d failed)" % m["errors"] if m["errors"] else "",
            _f(m["publish_spread_ms"]["median"]), _f(m["publish_spread_ms"]["max"]),
            m["within_10ms"], ok,
            _f(m["leave_spread_ms"]["median"]), _f(m["leave_spread_ms"]["max"]),
            m["same_master"], ok, _f(m["follow_ms"]["median"]), _f(m["follow_ms"]["max"])))
    w.append("")
    w.append("## Every repetition")
    w.append("")
    w.append("Milliseconds after the trigger. `leave` names the log line that ended the old route.")
    w.append("")
    w.append("| trigger | rep | promotion seen (window) | publish proxy-1 / 2 / 3 | publish spread | "
             "leave proxy-1 / 2 / 3 | leave spread | follow proxy-1 / 2 / 3 | ended on | notes |")
    w.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in doc["runs"]:
        if "error" in r:
            w.append("| %s | %d | – | – | – | – | – | – | – | error: %s |" % (
                r["variant"], r["rep"], r["error"][:200].replace("|", "/")))
            continue
        ps = [r["proxies"][n] for n in PROXIES]
        ends = sorted({str(p["ended_on"]) for p in ps})
        w.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["variant"], r["rep"], "%s (%s)" % (_f(r["promotion_ms"]), _f(r["promotion_poll_uncertainty_ms"])),
            " / ".join(_f(p["publish_ms"]) for p in ps), _f(r["publish_spread_ms"]),
            " / ".join("%s (%s)" % (_f(p["leave_ms"]), p["leave_by"] or "–") for p in ps),
            _f(r["leave_spread_ms"]),
            " / ".join(_f(p["follow_ms"]) for p in ps),
            (ends[0] + (" (all)" if r["same_master"] else " (not the sentinels' master)"))
            if len(ends) == 1 else "split: " + ", ".join(ends),
            "; ".join(r["notes"]).replace("|", "/") or ""))
    extra = [(r, n, r["proxies"][n]["published_after_trigger"]) for r in doc["runs"] if "error" not in r
             for n in PROXIES if len(r["proxies"][n]["published_after_trigger"]) > 1]
    if extra:
        w.append("")
        w.append("Proxies that published more than one route after the trigger (ms, master):")
        w.append("")
        for r, n, pubs in extra:
            w.append("- %s rep %d, %s: %s (spread of the publish of the final master %s: %s ms)"
                     % (r["variant"], r["rep"], n, ", ".join("%s %s" % (_f(t), m) for t, m in pubs),
                        r["final_master"], _f(r["publish_final_spread_ms"])))
    w.append("")
    w.append("## fleet.json")
    w.append("")
    w.append("`settings`, `versions`, `summary` (the table above, per trigger: `n`, `median`, `max`, "
             "`min` of each measure) and `runs`: per repetition `variant` (the trigger), "
             "`promotion_ms` (the first), `promotions` (each replica promoted: name, ms, poll "
             "window), `sigcont_ms`, `publish_spread_ms`, `publish_final_spread_ms` (of the first "
             "publish of the final master), `leave_spread_ms`, `same_master`, "
             "`proxies.<proxy-N>` (`publish_ms`, `published`, `publish_final_ms`, `leave_ms`, "
             "`leave_by`, `follow_ms`, every route "
             "event of its log after the trigger, `routes_polled` from `/status` every 200 ms in "
             "seconds, `ended_on`), `topology`, `sentinel_events` (seconds after the trigger) "
             "and `configs`.")
    w.append("")
    return "\n".join(w)


def write(args, doc):
    """fleet.json and fleet.md in args.out."""
    path = os.path.join(args.out, "fleet.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    with open(os.path.join(args.out, "fleet.md"), "w") as f:
        f.write(render(doc))
    return path
