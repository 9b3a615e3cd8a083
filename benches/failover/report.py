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
