#!/usr/bin/env python3
"""Draw throughput.png (requests/s relative to direct, grouped per workload)
from a results.json written by run.py.

Usage: chart.py RESULTS_JSON OUTPUT_PNG
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "direct": "#9e9e9e",
    "haproxy": "#1f77b4",
    "twemproxy": "#8c564b",
    "proxy": "#d62728",
    "proxy-copy": "#ff7f0e",
    "proxy-splice": "#2ca02c",
    "proxy-mux": "#9467bd",
}
# For the other candidates (proxy-t1, proxy-before, ...), in order; none is one of the above, so
# no two candidates of a chart share a colour (matplotlib's own cycle starts with haproxy's blue).
SPARE_COLORS = ["#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]


def colors_for(cands):
    """{candidate: (colour, hatch)}, no two alike: past the spare colours, hatching tells them apart."""
    out, k = {}, 0
    for c in cands:
        if c in COLORS:
            out[c] = (COLORS[c], None)
        else:
            out[c] = (SPARE_COLORS[k % len(SPARE_COLORS)], None if k < len(SPARE_COLORS) else "//")
            k += 1
    return out


def main(src, dst):
    res = json.load(open(src))
    cands = res["meta"]["candidates"]
    workloads = res["workloads"]
    summary = res["summary"]
    n = len(cands)
    width = 0.8 / max(n, 1)

    colors = colors_for(cands)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(workloads) + 2), 4.8), dpi=120)
    for i, c in enumerate(cands):
        xs, ys, missing = [], [], []
        for j, w in enumerate(workloads):
            s = summary[w["id"]][c]
            r = s.get("ratio_to_direct")
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(r if r is not None else 0.0)
            missing.append(None if r is not None else ("not supported" if s.get("unsupported") else "failed"))
        color, hatch = colors[c]
        bars = ax.bar(xs, ys, width * 0.95, label=c, color=color, hatch=hatch, edgecolor="white" if hatch else None)
        for b, y, m in zip(bars, ys, missing):
            label = m if m else (f"{y:.2f}" if c != "direct" and y > 0 else None)
            if label:
                ax.annotate(label, (b.get_x() + b.get_width() / 2, y), xytext=(0, 2),
                            textcoords="offset points", ha="center", va="bottom", fontsize=6, rotation=90,
                            color=color if m else None)
    ax.axhline(1.0, color="black", linewidth=0.6, linestyle="--")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels([w["id"] for w in workloads], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("requests/s relative to direct (median)")
    top = max([1.0] + [summary[w["id"]][c].get("ratio_to_direct") or 0 for w in workloads for c in cands])
    ax.set_ylim(0, top * 1.18)
    title = f"Throughput relative to direct Redis ({res['meta']['nproc']} CPUs, {res['meta']['rounds']} round{'s' if res['meta']['rounds'] != 1 else ''})"
    if res["meta"].get("quick"):
        title += " [quick smoke test]"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=n, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    fig.savefig(dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
