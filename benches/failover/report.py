"""Renders docs/failover/results.md from the results document built by run.py."""

import statistics

MODE_TEXT = {
    "switchover": "`SENTINEL FAILOVER mymaster` sent to one sentinel (planned switchover; the old "
                  "master stays up and is turned into a replica by the sentinels afterwards).",
    "kill": "`SIGKILL` to the master process (crash; it never comes back during the run).",
    "hang": "`SIGSTOP` to the master, `SIGCONT` 10 s later (a frozen master that wakes up still "
            "believing it is the master).",
}

CAND_TEXT = {
    "haproxy": "HAProxy (Debian package), TCP mode, `tcp-check` on `role:master` every second, "
               "`fall 1 rise 1 on-marked-down shutdown-sessions`",
    "proxy": "redis-master-proxy (`target/release/redis-master-proxy run --config ...`)",
}

CLIENT_TEXT = {
    "persistent": "long-lived connection",
    "fresh": "new connection per write",
}

FAIL_COLS = [("readonly", "READONLY"), ("timeout", "timeout"), ("refused", "refused"),
             ("reset", "reset"), ("closed", "closed"), ("other", "other")]


def fmt(x, nd=2):
    if x is None:
        return "–"
    if isinstance(x, float):
        return "%.*f" % (nd, x)
    return str(x)


def med(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    m = statistics.median(vals)
    return m


def fmt_med(vals, nd=2, integer=False):
    m = med(vals)
    if m is None:
        return "–"
    if integer:
        return ("%.1f" % m) if m != int(m) else "%d" % m
    return "%.*f" % (nd, m)


def client_runs(runs, mode, cand, client):
    return [(r, r["clients"][client]) for r in runs
            if r["mode"] == mode and r["candidate"] == cand and "error" not in r
            and client in r.get("clients", {})]


def render(doc, charts):
    s = doc["settings"]
    v = doc["versions"]
    runs = doc["runs"]
    clients = s.get("clients", ["persistent"])
    out = []
    w = out.append
    w("# Failover benchmark: what a client sees during a Redis failover")
    w("")
    if doc.get("complete"):
        w("Complete run: %s; %s; %d repetitions each; started %s UTC." % (
            ", ".join(s["candidates"]), ", ".join(s["modes"]), s["reps"], doc["started_utc"]))
    else:
        w("**Partial run** (%s; %s; %s; %d repetition(s)%s), started %s UTC: for checking a "
          "setup, not for drawing conclusions." % (
              ", ".join(s["candidates"]), ", ".join(s["modes"]), ", ".join(clients), s["reps"],
              "; interrupted" if doc.get("interrupted") else "", doc["started_utc"]))
    w("")
    w("Produced by `%s`; [README.md](README.md) explains how." % doc["command"])
    w("")

    # Summary
    w("## Summary (medians over the repetitions)")
    w("")
    w("| mode | endpoint | client | runs | disruption window (s) | endpoint follow time (s) "
      "| failed writes | READONLY | acknowledged writes lost | acked by a stale master |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for mode in s["modes"]:
        for cand in s["candidates"]:
            errs = sum(1 for r in runs if r["mode"] == mode and r["candidate"] == cand and "error" in r)
            for client in clients:
                ms = [m for _, m in client_runs(runs, mode, cand, client)]
                w("| %s | %s | %s | %d%s | %s | %s | %s | %s | %s | %s |" % (
                    mode, cand, CLIENT_TEXT.get(client, client), len(ms),
                    (" (+%d failed to run)" % errs) if errs else "",
                    fmt_med([m["window_s"] for m in ms]) if all(m["recovered"] for m in ms) else
                    "never (%d of %d)" % (sum(1 for m in ms if not m["recovered"]), len(ms)),
                    fmt_med([m["follow_s"] for m in ms]),
                    fmt_med([m["failed"] for m in ms], integer=True),
                    fmt_med([m["by_kind"]["readonly"] for m in ms], integer=True),
                    fmt_med([m["lost_acked"] for m in ms], integer=True),
                    fmt_med([m["stale_master_acked"] for m in ms], integer=True)))
    w("")
    w("- **client**: two probes write side by side through the endpoint, one attempt every %d ms "
      "each, with a %g s client timeout: one keeps a long-lived connection and replaces it after "
      "an error (like a connection pool); the other opens a new connection for every write "
      "(like short-lived clients). While HAProxy has two servers up, both probes share its "
      "round-robin, so which of them lands on the stale server depends on how their "
      "connections interleave." % (round(s["probe_interval_s"] * 1000), s["probe_timeout_s"]))
    w("- **disruption window**: from the trigger to the first successful write after the last "
      "failed one (0 when no write failed; `never` when writes had not recovered at the end).")
    w("- **endpoint follow time**: from the moment the new master first reports `role:master` "
      "(INFO polled every %d ms) to the first write acknowledged by that new master through the "
      "endpoint: how fast the endpoint follows the promotion." % round(s["poll_period_s"] * 1000))
    w("- **failed writes**: write attempts after the trigger that did not get `+OK`.")
    w("- **acknowledged writes lost**: keys the probe got `+OK` for that are missing on the final "
      "master once the topology is stable: the client was told the write succeeded, and it is gone.")
    w("- **acked by a stale master**: writes acknowledged, after the promotion, by a node other "
      "than the final master (split brain seen through the endpoint; the promotion time is known "
      "to the polling period, so a few writes around it can fall either side).")
    w("")

    # Per mode
    for mode in s["modes"]:
        w("## Mode: %s" % mode)
        w("")
        w(MODE_TEXT.get(mode, ""))
        w("")
        if mode in charts:
            w("![%s timeline](%s.png)" % (mode, mode))
            w("")
            w("One row per endpoint and client, from the endpoint's run with the median disruption "
              "window of the long-lived client; one tick per write attempt, when it ended, at the "
              "height of its outcome (an attempt that took over 50 ms, such as a timeout, also gets "
              "a line from its start); `ok, lost later` are writes that were acknowledged and then "
              "lost.")
            w("")
        for cand in s["candidates"]:
            rs = [r for r in runs if r["mode"] == mode and r["candidate"] == cand]
            if not rs:
                continue
            w("### %s — %s" % (mode, cand))
            w("")
            ok_runs = [r for r in rs if "error" not in r]
            for client in clients:
                cr = client_runs(runs, mode, cand, client)
                if not cr:
                    continue
                w("Client with a %s:" % CLIENT_TEXT.get(client, client))
                w("")
                w("| run | window (s) | follow (s) | longest write gap (s) | failed | "
                  + " | ".join(c[1] for c in FAIL_COLS)
                  + " | acked | lost acked | lost writes acked at (s) | stale-master acked "
                    "| unacked but applied |")
                w("|---" * (10 + len(FAIL_COLS)) + "|")
                for r, m in cr:
                    ll = m.get("lost_acked_first_last_s")
                    w("| %d | %s | %s | %s | %d | %s | %d | %d | %s | %d | %d |" % (
                        r["rep"], "never" if not m["recovered"] else fmt(m["window_s"]),
                        fmt(m["follow_s"]), fmt(m["longest_write_gap_s"]), m["failed"],
                        " | ".join(str(m["by_kind"][c[0]]) for c in FAIL_COLS),
                        m["acked"], m["lost_acked"],
                        ("%s … %s" % (fmt(ll[0]), fmt(ll[1]))) if ll else "–",
                        m["stale_master_acked"], m["unacked_but_applied"]))
                ms = [m for _, m in cr]
                if len(ms) > 1:
                    w("| **median** | %s | %s | %s | %s | %s | %s | %s | | %s | %s |" % (
                        fmt_med([m["window_s"] for m in ms]),
                        fmt_med([m["follow_s"] for m in ms]),
                        fmt_med([m["longest_write_gap_s"] for m in ms]),
                        fmt_med([m["failed"] for m in ms], integer=True),
                        " | ".join(fmt_med([m["by_kind"][c[0]] for m in ms], integer=True)
                                   for c in FAIL_COLS),
                        fmt_med([m["acked"] for m in ms], integer=True),
                        fmt_med([m["lost_acked"] for m in ms], integer=True),
                        fmt_med([m["stale_master_acked"] for m in ms], integer=True),
                        fmt_med([m["unacked_but_applied"] for m in ms], integer=True)))
                w("")
            if ok_runs:
                w("Topology (seconds after the trigger, from INFO polling and the sentinel events):")
                w("")
                w("| run | old master unreachable | promotion | +switch-master | old master back "
                  "| old master demoted | final master |")
                w("|---|---|---|---|---|---|---|")
                for r in ok_runs:
                    t = r["times"]
                    w("| %d | %s | %s | %s | %s | %s | %s |" % (
                        r["rep"], fmt(t["old_master_unreachable"]), fmt(t["promotion"]),
                        fmt(t["switch_master"]),
                        fmt(t["old_master_back"]) + (" (as master)" if t.get("old_master_back_as_master") else ""),
                        fmt(t["old_master_demoted"]), r["final_master"]))
                w("")
            notes = {}
            for r in rs:
                if "error" in r:
                    w("- run %d did not complete: `%s`" % (r["rep"], r["error"].replace("`", "'")[:400]))
                for n in r.get("notes", []):
                    notes.setdefault(n.replace("\n", " ")[:400], []).append(str(r["rep"]))
            for n, reps in notes.items():
                w("- run%s %s: %s" % ("s" if len(reps) > 1 else "", ", ".join(reps), n))
            details = {}
            for r in ok_runs:
                for m in r["clients"].values():
                    for k, c in m.get("error_details", {}).items():
                        details[k] = details.get(k, 0) + c
            if details:
                w("- other errors seen: " + "; ".join(
                    "`%s` ×%d" % (k.replace("`", "'"), c)
                    for k, c in sorted(details.items(), key=lambda x: -x[1])))
            w("")

    # Method
    w("## Method")
    w("")
    w("Every run starts from scratch on 127.0.0.1 (free ports, temporary directories, no "
      "persistence): one redis master, two replicas, three sentinels, then the endpoint in front "
      "of the three redis. The run waits until both replicas are in sync, every sentinel sees 2 "
      "replicas and 2 peers, and a write through the endpoint reaches the master.")
    w("")
    w("- **Probes**: raw-socket RESP2 clients write `SET probe:<run>:<n> <n>` through the "
      "endpoint every %d ms with a %g s connect/reply timeout. On each new connection a probe "
      "first sends `CONFIG GET port` to learn which redis the endpoint bound it to. Every attempt "
      "is logged with its start and end time and its outcome: ok; READONLY (error reply from a "
      "replica); timeout; refused (connect refused); reset (ECONNRESET/EPIPE); closed (EOF before "
      "a reply); other (any other error reply or error)."
      % (round(s["probe_interval_s"] * 1000), s["probe_timeout_s"]))
    w("- **Topology**: each redis is polled with `INFO replication` every %d ms (no answer "
      "within 300 ms counts as unreachable) and one sentinel's events are recorded with "
      "`PSUBSCRIBE *` (`+sdown`, `+odown`, `+promoted-slave`, `+switch-master`, ...)."
      % round(s["poll_period_s"] * 1000))
    w("- **Trigger**: %g s after the probes start. Hang mode sends `SIGCONT` %g s after `SIGSTOP`."
      % (s["trigger_after_s"], s["hang_for_s"]))
    w("- **End**: the probes run for %g s after the trigger, then until the topology is stable "
      "(all sentinels name the same master, it reports `role:master`, every other live node "
      "replicates it with its link up), at most 20 s more. The run then waits for the replicas "
      "to reach the master's offset and reads every acknowledged key back from the final master "
      "with `MGET`." % s["observe_s"])
    w("")
    w("## Versions")
    w("")
    for k in ("redis", "haproxy", "git_commit", "proxy_version", "proxy_built", "proxy_sha256",
              "python", "kernel", "cpus"):
        if k in v:
            w("- %s: `%s`" % (k, v[k]))
    w("")
    w("## Configuration")
    w("")
    w("Redis: `redis-server --port PORT --bind 127.0.0.1 --dir DIR --save '' --appendonly no "
      "--repl-diskless-sync-delay 0 [--replicaof 127.0.0.1 MASTER_PORT]` (everything else at its "
      "default).")
    w("")
    w("Sentinels (three of them):")
    w("")
    w("```")
    w(doc["configs"]["sentinel"].rstrip())
    w("```")
    for cand in s["candidates"]:
        cfg = doc["configs"].get(cand)
        if cfg:
            w("")
            w("%s (ports vary per run):" % CAND_TEXT.get(cand, cand))
            w("")
            w("```")
            w(cfg.rstrip())
            w("```")
    w("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Trust modes (trust.json -> trust.md)

TRUST_TEXT = {
    ("accidental-promotion", "sentinel"):
        "`REPLICAOF NO ONE` on redis-2 (a replica) while the three sentinels (quorum 2, down-after "
        "1 s) keep naming redis-1; Sentinel converts redis-2 back to a replica by itself "
        "(`+convert-to-slave`, 10-15 s later). The proxy has `[sentinel]`.",
    ("accidental-promotion", "info-only"):
        "The same promotion with no sentinels and a proxy without `[sentinel]`; the operator "
        "reverts it by hand 5 s later (`REPLICAOF 127.0.0.1 <redis-1>` on redis-2).",
    ("slow-master", "lua-0.9s"):
        "A busy Lua script of 0.9 s (`EVAL` looping on `TIME`) sent through the endpoint on its "
        "own connection; the master runs nothing else meanwhile. Sentinels: down-after 1 s.",
    ("slow-master", "lua-3s"):
        "A 3 s busy script; sentinels with down-after 10 s, so no failover follows.",
    ("slow-master", "client-pause-3s"):
        "`CLIENT PAUSE 3000 WRITE` sent through the endpoint: writes wait 3 s, `INFO` is still "
        "answered. Sentinels with down-after 10 s.",
    ("lying-sentinel", "one-of-three"):
        "Two real sentinels and one fake (a RESP server in the benchmark) that answers `PING` and "
        "`SENTINEL get-master-addr-by-name` with the real master and, from the trigger on, "
        "publishes `+selected-slave` and `+failover-state-send-slaveof-noone` for the current "
        "master every 8 s (Redis 7 payload `slave <ip>:<port> <ip> <port> @ mymaster <master-ip> "
        "<master-port>`) with no failover behind them. The proxy's `[sentinel] addresses` are "
        "the three; observed 30 s.",
    ("rdb-restart", "info-only"):
        "redis-3 (a replica) is stopped with `SHUTDOWN SAVE` and, 2 s later, started from its "
        "own RDB without `replicaof`: it boots as a master whose `master_replid2` is the live "
        "master's replid, with no replicas and an offset behind. No sentinels; the proxy without "
        "`[sentinel]`. Observed 15 s after the restart.",
    ("split-brain", "info-only"):
        "Before the split redis-1 (A) is the master of redis-2 and redis-3; HAProxy and proxy-1 "
        "route to it. The split: redis-3 restarts empty as master B (an unrelated history), gets "
        "442 keys, and redis-2 becomes B's replica; A keeps 3,000 keys and no replica. Then "
        "proxy-2 starts, and proxy-3 3 s later. No sentinels; proxies without `[sentinel]`.",
    ("split-brain", "sentinel"):
        "The same split with three sentinels, moved at the split to monitor B (`SENTINEL "
        "REMOVE`/`MONITOR`), so they name the master with the replica; every proxy has "
        "`[sentinel]`.",
}

# (summary key, header, where: "client" or "endpoint")
TRUST_COLUMNS = {
    "accidental-promotion": [
        ("acked", "acked", "client"), ("lost", "acked writes lost", "client"),
        ("readonly", "READONLY", "client"), ("other_errors", "other errors", "client"),
        ("longest_gap_s", "longest gap between acked writes (s)", "client"),
        ("serving_after_revert_s", "revert → write acked by the master (s)", "client"),
        ("idle_closed", "idle sessions closed (of 5)", "endpoint"),
    ],
    "slow-master": [
        ("errors", "client errors", "client"), ("closed", "probe sessions closed", "client"),
        ("sessions_closed", "sessions closed (all)", "endpoint"),
        ("slow_command", "slow command's own connection", "endpoint"),
        ("lost", "acked writes lost", "client"),
        ("longest_gap_s", "longest gap between acked writes (s)", "client"),
    ],
    "lying-sentinel": [
        ("acked", "acked", "client"),
        ("longest_gap_s", "longest gap between acked writes (s)", "client"),
        ("lost", "acked writes lost", "client"), ("errors", "errors", "client"),
        ("idle_closed", "idle sessions closed (of 5)", "endpoint"),
    ],
    "rdb-restart": [
        ("routes_after_restart", "routes from the restart on", "endpoint"),
        ("acked_redis3", "acked by redis-3", "client"),
        ("lost", "acked writes lost", "client"), ("errors", "errors", "client"),
        ("idle_closed", "idle sessions closed (of 5)", "endpoint"),
    ],
}


def _cell(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "%.2f" % v
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) if v else "–"
    return "–" if v is None else str(v)


def _vals_cell(vals):
    """`median (run1 / run2 / run3)` for numbers; the values side by side otherwise."""
    shown = " / ".join(_cell(v) for v in vals)
    nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(vals) > 1 and len(nums) == len(vals):
        m = statistics.median(nums)
        return "**%s** (%s)" % (_cell(float(m)) if isinstance(m, float) else str(m), shown)
    return shown


def _trust_value(run, label, client, key, where):
    s = run["summary"].get(label, {})
    if key == "acked_redis3":
        return s.get("clients", {}).get(client, {}).get("acked_by_node", {}).get("redis-3", 0)
    if where == "client":
        return s.get("clients", {}).get(client, {}).get(key)
    return s.get(key)


def trust_targets(doc):
    """(target, measured on the proxy, met) for issue 10's targets."""
    runs = [r for r in doc["runs"] if "error" not in r]
    out = []

    def sel(mode, variant, label="proxy"):
        return [r for r in runs if r["mode"] == mode and r["variant"] == variant
                and label in r["summary"]]

    def pc(r, label="proxy"):
        return r["summary"][label]["clients"].get("persistent") or \
            next(iter(r["summary"][label]["clients"].values()))

    rs = sel("accidental-promotion", "sentinel")
    if rs:
        lost = [pc(r)["lost"] for r in rs]
        ro = [pc(r)["readonly"] for r in rs]
        srv = [pc(r)["serving_after_revert_s"] for r in rs]
        met = all(x == 0 for x in lost) and all(x == 0 for x in ro) and all(
            isinstance(x, (int, float)) and x < 3 for x in srv)
        out.append(("Accidental promotion with `[sentinel]`: 0 acked writes lost, 0 READONLY, "
                    "serving within 3 s of the revert",
                    "lost %s; READONLY %s; serving %s" % (
                        " / ".join(map(_cell, lost)), " / ".join(map(_cell, ro)),
                        " / ".join(map(_cell, srv))), met))
    rs = sel("lying-sentinel", "one-of-three")
    if rs:
        gap = [pc(r)["longest_gap_s"] for r in rs]
        lost = [pc(r)["lost"] for r in rs]
        out.append(("Lying sentinel: longest gap < 3 s, 0 lost",
                    "gap %s s; lost %s" % (" / ".join(map(_cell, gap)), " / ".join(map(_cell, lost))),
                    all(g < 3 for g in gap) and all(x == 0 for x in lost)))
    for v in ("lua-0.9s", "lua-3s", "client-pause-3s"):
        rs = sel("slow-master", v)
        if rs:
            err = [sum(c["errors"] for c in r["summary"]["proxy"]["clients"].values()) for r in rs]
            closed = [r["summary"]["proxy"]["sessions_closed"] for r in rs]
            out.append(("Slow master (%s): 0 client errors, 0 sessions closed" % v,
                        "errors %s; closed %s" % (" / ".join(map(_cell, err)),
                                                  " / ".join(map(_cell, closed))),
                        all(x == 0 for x in err) and all(x == 0 for x in closed)))
    rs = sel("rdb-restart", "info-only")
    if rs:
        routes = [r["summary"]["proxy"]["routes_after_restart"] for r in rs]
        out.append(("RDB restart (INFO-only): the route stays on the live master (redis-1)",
                    " / ".join(_cell(x) for x in routes), all(x == ["redis-1"] for x in routes)))
    for v in ("info-only", "sentinel"):
        rs = [r for r in runs if r["mode"] == "split-brain" and r["variant"] == v
              and "_fleet" in r["summary"] and r["summary"]["_fleet"]["proxies"]]
        if rs:
            f = [r["summary"]["_fleet"] for r in rs]
            out.append(("Split brain (%s): all proxies route to the same master; the split-brain "
                        "alert's expression is true" % v,
                        " / ".join("%s, alert %s" % (
                            "same" if x["same_master"] else "differ (%s)" % ", ".join(
                                "%s→%s" % kv for kv in sorted(x["routes"].items())),
                            "true" if x["alert_expr_true"] else "false") for x in f),
                        all(x["same_master"] and x["alert_expr_true"] for x in f)))
    return out


def render_trust(doc, charts):
    s = doc["settings"]
    v = doc["versions"]
    runs = doc["runs"]
    clients = s.get("clients", ["persistent"])
    out = []
    w = out.append
    w("# Trust modes: what a client sees when one signal is wrong")
    w("")
    if doc.get("complete"):
        w("Complete run: %s; %s; %d repetitions each; started %s UTC, took %s s." % (
            ", ".join(s["candidates"]), ", ".join(s["modes"]), s["reps"], doc["started_utc"],
            doc.get("duration_s", "?")))
    else:
        w("**Partial run** (%s; %s; %s; %d repetition(s)%s), started %s UTC: for checking a "
          "setup, not for drawing conclusions." % (
              ", ".join(s["candidates"]), ", ".join(s["modes"]), ", ".join(clients), s["reps"],
              "; interrupted" if doc.get("interrupted") else "", doc["started_utc"]))
    w("")
    w("Produced by `%s` (%s s); proxy measured: `%s`, sha256 `%s`, work tree at `%s`. "
      "[README.md](README.md) explains how." % (
          doc["command"], doc.get("duration_s", "?"), v.get("proxy_version", "–"),
          v.get("proxy_sha256", "–")[:16], v.get("git_commit", "–")))
    w("")
    w("Cells show the median in bold and each repetition in brackets. `persistent` is one "
      "long-lived connection (replaced after an error), `fresh` a new connection per write; "
      "each writes every %d ms through its endpoint. **Acked writes lost**: acknowledged "
      "through the endpoint, absent from the final master. **Idle sessions**: %d connections "
      "opened through the endpoint before the trigger and sent a `PING` at the end."
      % (round(s["probe_interval_s"] * 1000), s.get("idle_sessions", 5)))
    w("")
    targets = trust_targets(doc)
    if targets:
        w("## Targets (issue 10) on the proxy measured")
        w("")
        w("| target | measured (each repetition) | met |")
        w("|---|---|---|")
        for t, m, ok in targets:
            w("| %s | %s | %s |" % (t, m, "yes" if ok else "**no**"))
        w("")
    for mode in s["modes"]:
        w("## %s" % mode)
        w("")
        if mode in charts:
            w("![%s timeline](trust-%s.png)" % (mode, mode))
            w("")
            w("One row per variant and endpoint (long-lived client, first repetition): one tick "
              "per write attempt at the height of its outcome; `ok, lost later` were acknowledged "
              "and then lost.")
            w("")
        for variant in s["variants"][mode]:
            rs = [r for r in runs if r["mode"] == mode and r["variant"] == variant]
            ok = [r for r in rs if "error" not in r]
            w("### %s / %s" % (mode, variant))
            w("")
            w(TRUST_TEXT.get((mode, variant), ""))
            w("")
            if mode == "split-brain":
                _split_table(w, ok)
            elif ok:
                cols = TRUST_COLUMNS[mode]
                w("| endpoint | client | runs | " + " | ".join(c[1] for c in cols) + " |")
                w("|---|---|---|" + "---|" * len(cols))
                labels = [c for c in s["candidates"] if any(c in r["summary"] for r in ok)]
                for label in labels:
                    lr = [r for r in ok if label in r["summary"]]
                    for client in clients:
                        w("| %s | %s | %d | %s |" % (label, client, len(lr), " | ".join(
                            _vals_cell([_trust_value(r, label, client, k, where) for r in lr])
                            for k, _, where in cols)))
                w("")
            _trust_notes(w, mode, rs)
    w("## Method")
    w("")
    w("Every run starts from scratch on 127.0.0.1 (free ports, temporary directories, no "
      "persistence): redis-1 master, redis-2 and redis-3 its replicas, sentinels as the variant "
      "says (`sentinel monitor mymaster ... 2`, failover-timeout 3 s). Where the trigger does not "
      "go through an endpoint, HAProxy and the proxy run side by side in front of the same "
      "cluster, each with its own probes; slow-master sends the slow command through the "
      "endpoint under test, so each endpoint gets its own cluster there. Probes write "
      "`SET probe:<run>:<n> <n>` every %d ms with a %g s timeout (%g s in slow-master, longer "
      "than the stall) after %g s of warm-up and "
      "learn which redis serves each connection with `CONFIG GET port`; every redis is polled "
      "with `INFO replication` every %d ms; where each endpoint routes is read every 200 ms "
      "(the proxy's `/status` master; the servers HAProxy has UP on its stats socket). At the "
      "end the replicas are given up to 15 s to catch up and every acknowledged key is read "
      "back from the final master."
      % (round(s["probe_interval_s"] * 1000), s["probe_timeout_s"],
         s.get("slow_probe_timeout_s", s["probe_timeout_s"]), s["warmup_s"],
         round(s["poll_period_s"] * 1000)))
    w("")
    w("The split-brain alert: `deploy/prometheus/alerts.yaml` `RedisMasterProxySplitBrain`, "
      "`increase(redis_master_proxy_split_brain_conflicts_total[5m]) > 0`. Each proxy's counter "
      "is read from `/metrics` every second from its start; the expression counts as true when "
      "some proxy's counter grew between its first and last reading (a counter already above 0 "
      "at a proxy's first scrape is no increase to Prometheus either).")
    w("")
    w("## Versions")
    w("")
    for k in ("redis", "haproxy", "git_commit", "proxy_src_commit", "proxy_binary", "proxy_version",
              "proxy_built",
              "proxy_sha256", "python", "kernel", "cpus"):
        if k in v:
            w("- %s: `%s`" % (k, v[k]))
    w("")
    w("## Configuration")
    w("")
    shown = set()
    for r in runs:
        for label, cfg in (r.get("configs") or {}).items():
            kind = "haproxy" if label == "haproxy" else (
                "proxy with [sentinel]" if cfg and "[sentinel]" in cfg else "proxy, INFO only")
            if cfg and kind not in shown:
                shown.add(kind)
                w("%s (%s/%s; ports vary per run):" % (kind, r["mode"], r["variant"]))
                w("")
                w("```")
                w(cfg.rstrip())
                w("```")
                w("")
    return "\n".join(out)


def _split_table(w, ok):
    if not ok:
        return
    labels = []
    for r in ok:
        for k in r["summary"]:
            if k != "_fleet" and k not in labels:
                labels.append(k)
    w("| run | " + " | ".join(labels) + " | proxies on one master | split-brain alert expression "
      "| `/status` split_brain (per proxy) |")
    w("|---|" + "---|" * (len(labels) + 3))
    for r in ok:
        cells = []
        for k in labels:
            s = r["summary"].get(k, {})
            reach = s.get("new_connections_reach", [])
            cell = "routes to %s" % _cell(s.get("route_at_end"))
            if reach:
                cell += "; new connections reach %s" % "+".join(reach)
            if "split_counter_first_last" in s:
                cell += "; counter %s→%s" % tuple(_cell(x) for x in s["split_counter_first_last"])
            cells.append(cell)
        f = r["summary"].get("_fleet", {})
        flags = ", ".join(_cell(r["summary"][k].get("status_split_brain")) for k in labels
                          if k.startswith("proxy"))
        w("| %d | %s | %s | %s | %s |" % (r["rep"], " | ".join(cells), _cell(f.get("same_master")),
                                          "true" if f.get("alert_expr_true") else "false", flags))
    w("")
    m = ok[0].get("masters")
    if m:
        w("After the split (run %d): A = %s, %s keys, %s replicas; B = %s, %s keys, %s replica(s), "
          "`master_replid2` %s." % (ok[0]["rep"], m["A"]["node"], m["A"]["keys"], m["A"]["replicas"],
                                     m["B"]["node"], m["B"]["keys"], m["B"]["replicas"],
                                     m["B"].get("replid2", "?")[:12]))
        w("")


def _trust_notes(w, mode, rs):
    notes = {}
    for r in rs:
        if "error" in r:
            w("- run %d (%s) did not complete: `%s`" % (r["rep"], "+".join(r["candidates"]),
                                                        r["error"].replace("`", "'")[:400]))
        for n in r.get("notes", []):
            notes.setdefault(n.replace("\n", " ")[:300], []).append(str(r["rep"]))
        t = r.get("times", {})
        if mode == "accidental-promotion" and "error" not in r:
            w("- run %d: promotion seen at +%s s, reverted (redis-2 a replica again) at +%s s; "
              "routes: %s" % (r["rep"], _cell(t.get("promotion")), _cell(t.get("revert")),
                              _routes_text(r)))
        if mode == "slow-master" and "error" not in r:
            for label, e in r["endpoints"].items():
                sc = e.get("slow_command", {})
                w("- run %d, %s: the slow command's connection: %s%s after %s s; routes: %s" % (
                    r["rep"], label, sc.get("outcome"),
                    (" `%s`" % sc["reply"]) if sc.get("reply") else "",
                    _cell(sc.get("answered_after_s")), _routes_text(r)))
        if mode == "lying-sentinel" and "error" not in r:
            lies = r.get("lies", [])
            w("- run %d: %d false announcements (at %s s); routes: %s" % (
                r["rep"], len(lies), ", ".join(_cell(x) for x in sorted({x[0] for x in lies})) or "–",
                _routes_text(r)))
        if mode == "rdb-restart" and "error" not in r:
            n = r.get("restarted_node", {})
            w("- run %d: the restarted node: role %s, %s replicas, offset %s (live master %s with "
              "%s replicas), master_replid2 is the live master's replid: %s; routes: %s" % (
                  r["rep"], n.get("role"), n.get("connected_slaves"), n.get("master_repl_offset"),
                  n.get("live_master_offset"), n.get("live_master_replicas"),
                  _cell(n.get("master_replid2_is_live_masters_replid")), _routes_text(r)))
    for n, reps in notes.items():
        w("- run%s %s: %s" % ("s" if len(reps) > 1 else "", ", ".join(reps), n))
    w("")


def _routes_text(r):
    parts = []
    for label, e in r.get("endpoints", {}).items():
        rt = e.get("routes", [])
        parts.append("%s %s" % (label, " → ".join("%s (%s s)" % (x[1], _cell(x[0])) for x in rt)))
    return "; ".join(parts)
