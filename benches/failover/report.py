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


def render(doc, charts):
    s = doc["settings"]
    v = doc["versions"]
    runs = doc["runs"]
    out = []
    w = out.append
    w("# Failover benchmark: what a client sees during a Redis failover")
    w("")
    if doc.get("complete"):
        w("Complete run: %s, %s, %d repetitions each, started %s UTC." % (
            ", ".join(s["candidates"]), ", ".join(s["modes"]), s["reps"], doc["started_utc"]))
    else:
        w("**Partial run** (%s; %s; %d repetition(s)%s), started %s UTC. The published results "
          "come from a complete run." % (", ".join(s["candidates"]), ", ".join(s["modes"]), s["reps"],
                                          "; interrupted" if doc.get("interrupted") else "",
                                          doc["started_utc"]))
    w("")
    w("Produced by `%s` (see [README.md](README.md) for how this works)." % doc["command"])
    w("")

    # Summary
    w("## Summary (medians over the repetitions)")
    w("")
    w("| mode | endpoint | runs | disruption window (s) | endpoint follow time (s) | failed writes "
      "| READONLY | acknowledged writes lost | acked by a stale master |")
    w("|---|---|---|---|---|---|---|---|---|")
    for mode in s["modes"]:
        for cand in s["candidates"]:
            rs = [r for r in runs if r["mode"] == mode and r["candidate"] == cand and "error" not in r]
            errs = sum(1 for r in runs if r["mode"] == mode and r["candidate"] == cand and "error" in r)
            w("| %s | %s | %d%s | %s | %s | %s | %s | %s | %s |" % (
                mode, cand, len(rs), (" (+%d failed to run)" % errs) if errs else "",
                fmt_med([r["window_s"] for r in rs]),
                fmt_med([r["follow_s"] for r in rs]),
                fmt_med([r["failed"] for r in rs], integer=True),
                fmt_med([r["by_kind"]["readonly"] for r in rs], integer=True),
                fmt_med([r["lost_acked"] for r in rs], integer=True),
                fmt_med([r["stale_master_acked"] for r in rs], integer=True)))
    w("")
    w("- **disruption window**: from the trigger to the first successful write after the last "
      "failed one (0 when no write failed; `never` when writes had not recovered at the end).")
    w("- **endpoint follow time**: from the moment the new master first reports `role:master` "
      "(INFO polled every %d ms) to the first write acknowledged by that new master through the "
      "endpoint: how fast the endpoint follows the promotion." % round(s["poll_period_s"] * 1000))
    w("- **failed writes**: write attempts after the trigger that did not get `+OK`, at one "
      "attempt every %d ms with a %g s client timeout." % (round(s["probe_interval_s"] * 1000),
                                                           s["probe_timeout_s"]))
    w("- **acknowledged writes lost**: keys the probe got `+OK` for that are missing on the final "
      "master once the topology is stable: the client was told the write succeeded, and it is gone.")
    w("- **acked by a stale master**: writes acknowledged, after the promotion, by a node that is "
      "not the final master (split brain through the endpoint).")
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
            w("Each row is one endpoint's representative run (the one with the median disruption "
              "window); each tick is one write attempt, by outcome; `ok, lost later` are writes that "
              "were acknowledged and then lost.")
            w("")
        for cand in s["candidates"]:
            rs = [r for r in runs if r["mode"] == mode and r["candidate"] == cand]
            if not rs:
                continue
            w("### %s — %s" % (mode, cand))
            w("")
            ok_runs = [r for r in rs if "error" not in r]
            if ok_runs:
                w("| run | window (s) | follow (s) | longest write gap (s) | failed | "
                  + " | ".join(c[1] for c in FAIL_COLS)
                  + " | acked | lost acked | stale-master acked | unacked but applied |")
                w("|---" * (10 + len(FAIL_COLS)) + "|")
                for r in ok_runs:
                    w("| %d | %s | %s | %s | %d | %s | %d | %d | %d | %d |" % (
                        r["rep"], "never" if not r["recovered"] else fmt(r["window_s"]),
                        fmt(r["follow_s"]), fmt(r["longest_write_gap_s"]), r["failed"],
                        " | ".join(str(r["by_kind"][c[0]]) for c in FAIL_COLS),
                        r["acked"], r["lost_acked"], r["stale_master_acked"], r["unacked_but_applied"]))
                w("| **median** | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    fmt_med([r["window_s"] for r in ok_runs]),
                    fmt_med([r["follow_s"] for r in ok_runs]),
                    fmt_med([r["longest_write_gap_s"] for r in ok_runs]),
                    fmt_med([r["failed"] for r in ok_runs], integer=True),
                    " | ".join(fmt_med([r["by_kind"][c[0]] for r in ok_runs], integer=True)
                               for c in FAIL_COLS),
                    fmt_med([r["acked"] for r in ok_runs], integer=True),
                    fmt_med([r["lost_acked"] for r in ok_runs], integer=True),
                    fmt_med([r["stale_master_acked"] for r in ok_runs], integer=True),
                    fmt_med([r["unacked_but_applied"] for r in ok_runs], integer=True)))
                w("")
                w("Topology timeline (seconds after the trigger):")
                w("")
                w("| run | old master unreachable | promotion | +switch-master | old master back "
                  "| old master demoted | lost acked writes acknowledged between | final master |")
                w("|---|---|---|---|---|---|---|---|")
                for r in ok_runs:
                    t = r["times"]
                    ll = r.get("lost_acked_first_last_s")
                    w("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
                        r["rep"], fmt(t["old_master_unreachable"]), fmt(t["promotion"]),
                        fmt(t["switch_master"]),
                        fmt(t["old_master_back"]) + (" (as master)" if t.get("old_master_back_as_master") else ""),
                        fmt(t["old_master_demoted"]),
                        ("%s … %s" % (fmt(ll[0]), fmt(ll[1]))) if ll else "–",
                        r["final_master"]))
                w("")
            for r in rs:
                if "error" in r:
                    w("- run %d did not complete: `%s`" % (r["rep"], r["error"].replace("`", "'")[:400]))
                for n in r.get("notes", []):
                    w("- run %d: %s" % (r["rep"], n.replace("\n", " ")[:400]))
            details = {}
            for r in ok_runs:
                for k, c in r.get("error_details", {}).items():
                    details[k] = details.get(k, 0) + c
            if details:
                w("- other errors seen: " + "; ".join("`%s` ×%d" % (k.replace("`", "'"), c)
                                                     for k, c in sorted(details.items(), key=lambda x: -x[1])))
            w("")

    # Method
    w("## Method")
    w("")
    w("Every run starts from scratch on 127.0.0.1 (free ports, temporary directories, no "
      "persistence: `--save '' --appendonly no`): one redis master, two replicas "
      "(`--replicaof`), three sentinels, then the endpoint in front of the three redis. The run "
      "waits until both replicas are in sync, every sentinel sees 2 replicas and 2 peers, and a "
      "write through the endpoint reaches the master.")
    w("")
    w("- **Probe**: a raw-socket RESP2 client writes `SET probe:<run>:<n> <n>` through the "
      "endpoint every %d ms, with a %g s connect/reply timeout, and reconnects after any error. "
      "On each new connection it first sends `CONFIG GET port` to learn which redis the endpoint "
      "bound it to. Each attempt is logged with its start and end time and its outcome: ok, "
      "READONLY (error reply from a replica), timeout, refused (connect refused), reset "
      "(ECONNRESET/EPIPE), closed (EOF before a reply), other (any other error reply or error)."
      % (round(s["probe_interval_s"] * 1000), s["probe_timeout_s"]))
    w("- **Topology**: each redis is polled with `INFO replication` every %d ms (a node that does "
      "not answer within %d ms counts as unreachable), and one sentinel's events are recorded "
      "with `PSUBSCRIBE *` (`+switch-master`, `+sdown`, `+odown`, `+promoted-slave`, ...)."
      % (round(s["poll_period_s"] * 1000), 300))
    w("- **Trigger**: %g s after the probe starts. Hang mode sends `SIGCONT` %g s after `SIGSTOP`."
      % (s["trigger_after_s"], s["hang_for_s"]))
    w("- **End**: the probe runs for %g s after the trigger, then until the topology is stable "
      "(all sentinels name the same master, it reports `role:master`, every other live node "
      "replicates it with its link up), at most 20 s more. The run then waits for the replicas "
      "to reach the master's offset and reads every acknowledged key back from the final master "
      "with `MGET`." % s["observe_s"])
    w("")
    w("## Versions")
    w("")
    for k in ("redis", "haproxy", "git_commit", "proxy_version", "python", "kernel", "cpus"):
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
