"""Timeline charts for the failover benchmark (run by run.py with matplotlib, from benches/.venv).

    benches/.venv/bin/python benches/failover/chart.py docs/failover/results.json docs/failover
    benches/.venv/bin/python benches/failover/chart.py docs/failover/trust.json docs/failover  # trust-<mode>.png

One PNG per mode: one row per endpoint and client (the endpoint's run with the median
disruption window of the first client),
x = seconds since the trigger, one tick per write attempt at the height of its outcome (at
its end; an attempt that took over 50 ms also gets a line from its start),
with vertical markers for the promotion, +switch-master and the old master's demotion.
"""

import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROWS = [  # (key, label, colour) from top to bottom
    ("ok", "ok", "#2ca02c"),
    ("lost", "ok, lost later", "#d62728"),
    ("readonly", "READONLY", "#9467bd"),
    ("timeout", "timeout", "#ff7f0e"),
    ("refused", "refused", "#8c564b"),
    ("reset", "reset", "#e377c2"),
    ("closed", "closed", "#7f7f7f"),
    ("other", "other", "#17becf"),
]
MARKERS = [  # (times key, label, colour, linestyle)
    ("promotion", "promotion", "#2ca02c", "--"),
    ("switch_master", "+switch-master", "#1f77b4", ":"),
    ("old_master_demoted", "old master demoted", "#d62728", "-."),
    ("sigcont", "SIGCONT", "#7f7f7f", (0, (1, 3))),
]


CODES = {"o": "ok", "R": "readonly", "T": "timeout", "F": "refused", "X": "reset", "C": "closed",
         "E": "other"}
CLIENT_TEXT = {"persistent": "long-lived connection", "fresh": "new connection per write"}


def representative(runs, client):
    ok = [r for r in runs if "error" not in r and client in r.get("clients", {})]
    if not ok:
        return None
    vals = [r["clients"][client]["window_s"] if r["clients"][client]["recovered"] else 1e9 for r in ok]
    m = statistics.median_low(vals)
    return ok[vals.index(m)]


LONG = 0.05  # attempts longer than this are drawn as a line from their start to their end


def rows_of(m):
    """{row key: ([end time in s], [(start, end) of long attempts])} from the attempt columns."""
    a = m["attempts"]
    lost = set(a["lost"])
    out = {k: ([], []) for k, _, _ in ROWS}
    for i, code in enumerate(a["kind"]):
        kind = CODES[code]
        if kind == "ok" and (i + 1) in lost:
            kind = "lost"
        start, end = a["start_ms"][i] / 1000.0, a["end_ms"][i] / 1000.0
        out[kind][0].append(end)
        if end - start > LONG:
            out[kind][1].append((start, end))
    return out


def draw(doc, mode, out_dir):
    s = doc["settings"]
    clients = s.get("clients", ["persistent"])
    panels = []
    for cand in s["candidates"]:
        r = representative([r for r in doc["runs"] if r["mode"] == mode and r["candidate"] == cand],
                           clients[0])
        if r is None:
            continue
        for client in clients:
            panels.append((cand, client, r))
    if not panels:
        return None
    xmin = -s["trigger_after_s"]
    xmax = max((r["times"]["end"] or 0) for _, _, r in panels) + 0.5
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 1.0 + 2.5 * len(panels)), sharex=True,
                             squeeze=False)
    ylabels = [lab for _, lab, _ in ROWS]
    for ax, (cand, client, r) in zip(axes[:, 0], panels):
        m = r["clients"][client]
        rows = rows_of(m)
        for yi, (key, _, colour) in enumerate(ROWS):
            xs, spans = rows[key]
            y = len(ROWS) - 1 - yi
            if xs:
                ax.scatter(xs, [y] * len(xs), marker="|", s=60, linewidths=0.6, color=colour)
            for x0, x1 in spans:
                ax.plot([x0, x1], [y, y], color=colour, linewidth=1.5, alpha=0.7)
        for key, label, colour, ls in MARKERS:
            t = r["times"].get(key)
            if t is not None:
                ax.axvline(t, color=colour, linestyle=ls, linewidth=1.2, label=label)
        ax.axvline(0, color="black", linewidth=1.2, label="trigger")
        ax.set_yticks(range(len(ROWS)))
        ax.set_yticklabels(list(reversed(ylabels)), fontsize=8)
        ax.set_ylim(-0.7, len(ROWS) - 0.3)
        ax.grid(axis="x", alpha=0.3)
        window = "never" if not m["recovered"] else "%.2f s" % m["window_s"]
        ax.set_title("%s, %s (run %d): window %s, %d failed, %d acknowledged writes lost" % (
            cand, CLIENT_TEXT.get(client, client), r["rep"], window, m["failed"], m["lost_acked"]),
            fontsize=10, loc="left")
        ax.legend(loc="lower right", fontsize=7, ncol=5, framealpha=0.85)
    axes[-1, 0].set_xlim(xmin, xmax)
    axes[-1, 0].set_xlabel("seconds since the trigger")
    fig.suptitle("Failover mode: %s — one write attempt every %d ms per client" % (
        mode, round(s["probe_interval_s"] * 1000)), fontsize=11)
    fig.tight_layout()
    path = os.path.join(out_dir, "%s.png" % mode)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


TRUST_MARKERS = [  # (times key, label, colour, linestyle)
    ("promotion", "promotion seen", "#9467bd", "--"),
    ("revert_sent", "operator's REPLICAOF", "#7f7f7f", ":"),
    ("revert", "replica again", "#2ca02c", "-."),
    ("replica_stopped", "replica stopped", "#7f7f7f", ":"),
    ("restarted", "restarted without replicaof", "#d62728", "--"),
]


def draw_trust(doc, mode, out_dir):
    """trust-<mode>.png: one row per variant and endpoint, long-lived client, first repetition."""
    s = doc["settings"]
    panels = []
    for variant in s["variants"][mode]:
        for cand in s["candidates"]:
            for r in doc["runs"]:
                if r["mode"] == mode and r["variant"] == variant and "error" not in r \
                        and r.get("endpoints", {}).get(cand, {}).get("clients"):
                    panels.append((variant, cand, r))
                    break
    if not panels:
        return None
    client = "persistent" if "persistent" in s["clients"] else s["clients"][0]
    xmax = max((r["times"]["end"] or 0) for _, _, r in panels) + 0.5
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 1.0 + 2.2 * len(panels)), sharex=True,
                             squeeze=False)
    for ax, (variant, cand, r) in zip(axes[:, 0], panels):
        m = r["endpoints"][cand]["clients"][client]
        # the summary's gap also counts a gap still open at the end of the run
        gap = r.get("summary", {}).get(cand, {}).get("clients", {}).get(client, {}).get(
            "longest_gap_s", m["longest_write_gap_s"])
        rows = rows_of(m)
        for yi, (key, _, colour) in enumerate(ROWS):
            xs, spans = rows[key]
            y = len(ROWS) - 1 - yi
            if xs:
                ax.scatter(xs, [y] * len(xs), marker="|", s=60, linewidths=0.6, color=colour)
            for x0, x1 in spans:
                ax.plot([x0, x1], [y, y], color=colour, linewidth=1.5, alpha=0.7)
        ax.axvline(0, color="black", linewidth=1.2, label="trigger")
        for key, label, colour, ls in TRUST_MARKERS:
            t = r["times"].get(key)
            if t is not None:
                ax.axvline(t, color=colour, linestyle=ls, linewidth=1.2, label=label)
        for i, t in enumerate(r["times"].get("lies") or []):
            ax.axvline(t, color="#ff7f0e", linestyle=":", linewidth=1.2,
                       label="false failover announced" if i == 0 else None)
        sc = r["endpoints"][cand].get("slow_command")
        if sc and sc.get("sent_s") is not None:
            ax.axvspan(sc["sent_s"], sc["sent_s"] + r.get("slow_seconds", 0), color="#ff7f0e",
                       alpha=0.15, label="master slow")
        ax.set_yticks(range(len(ROWS)))
        ax.set_yticklabels(list(reversed([lab for _, lab, _ in ROWS])), fontsize=8)
        ax.set_ylim(-0.7, len(ROWS) - 0.3)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title("%s / %s — %s, %s (run %d): %d failed, %d acked, %d acknowledged writes lost, "
                     "longest gap %.2f s" % (mode, variant, cand, CLIENT_TEXT.get(client, client),
                                             r["rep"], m["failed"], m["acked"], m["lost_acked"],
                                             gap), fontsize=9, loc="left")
        ax.legend(loc="lower right", fontsize=7, ncol=4, framealpha=0.85)
    axes[-1, 0].set_xlim(-s["warmup_s"], xmax)
    axes[-1, 0].set_xlabel("seconds since the trigger")
    fig.suptitle("Trust mode: %s — one write attempt every %d ms" % (
        mode, round(s["probe_interval_s"] * 1000)), fontsize=11)
    fig.tight_layout()
    path = os.path.join(out_dir, "trust-%s.png" % mode)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main():
    json_path, out_dir = sys.argv[1], sys.argv[2]
    with open(json_path) as f:
        doc = json.load(f)
    trust = doc.get("kind") == "trust"
    for mode in doc["settings"]["modes"]:
        p = draw_trust(doc, mode, out_dir) if trust else draw(doc, mode, out_dir)
        if p:
            print("wrote", p)


if __name__ == "__main__":
    main()
