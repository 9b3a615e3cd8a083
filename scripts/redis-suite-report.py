#!/usr/bin/env python3
"""Compares runs of Redis's test suite (the output of `./runtest`) with a direct run.

    scripts/redis-suite-report.py --run default=direct.log:proxy.log [--run ...]
                                  [--markdown report.md]

Each run is compared with a direct run (against the same servers, without the proxy): each test
that passed directly is counted, per unit, as passed, failed (`[err]`, or the test an
`[exception]` aborted in) or not run (absent from the run's output: a unit that aborted, a
test that never started). Tests that failed directly are listed, not counted. Exits 1 when a
test that passed directly did not pass in some run, 2 on unusable input.
"""
import argparse
import collections
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
UNIT_START = re.compile(r"^Testing ((?:unit|integration)/\S+)$")
UNIT_DONE = re.compile(r"^\[\d+/\d+ done\]: (\S+) \((\d+) seconds\)$")
STATUS = re.compile(r"^\[(ok|err|exception|skip|ignore)\]: (.*)$")
OK_TIME = re.compile(r" \(\d+ ms\)$")
ERR_FILE = re.compile(r" in tests/((?:unit|integration)/\S+)\.tcl$")
# The test an exception aborted, from the Tcl stack trace that follows it.
TRACE_TEST = re.compile(r'^"test (?:\{(.*)\}|"(.*)") \{$')


class Run:
    """What one `./runtest` output says, per unit."""

    def __init__(self, path):
        self.path = path
        self.ok = collections.defaultdict(collections.Counter)
        self.failed = collections.defaultdict(collections.Counter)
        self.seconds = {}
        self.units = []
        self.exceptions = []
        self.finished = False
        unit = None
        pending_exception = None
        with open(path, errors="replace") as f:
            for raw in f:
                line = ANSI.sub("", raw.rstrip("\n"))
                m = UNIT_START.match(line)
                if m:
                    unit = m.group(1)
                    self.units.append(unit)
                    continue
                m = UNIT_DONE.match(line)
                if m:
                    self.seconds[m.group(1)] = int(m.group(2))
                    continue
                if line.startswith("\\o/ All tests passed") or "The following tests failed" in line:
                    self.finished = True
                if pending_exception is not None:
                    m = TRACE_TEST.match(line)
                    if m:
                        name = m.group(1) if m.group(1) is not None else m.group(2)
                        self.failed[pending_exception][name] += 1
                        pending_exception = None
                        continue
                m = STATUS.match(line)
                if not m:
                    continue
                status, data = m.groups()
                if status == "ok":
                    self.ok[unit][OK_TIME.sub("", data)] += 1
                elif status == "err":
                    fm = ERR_FILE.search(data)
                    name = data[: fm.start()] if fm else data
                    self.failed[fm.group(1) if fm else unit][name] += 1
                elif status == "exception":
                    self.exceptions.append(f"{unit}: {data}")
                    pending_exception = unit

    def total_seconds(self):
        return sum(self.seconds.values())


def compare(direct, run):
    """Per unit: (passed, failed, not run, names of the tests that did not pass)."""
    rows = {}
    for unit in direct.units:
        passed = failed = not_run = 0
        missing = []
        for name, k in direct.ok[unit].items():
            p = min(k, run.ok[unit][name])
            f = min(k - p, run.failed[unit][name])
            n = k - p - f
            passed, failed, not_run = passed + p, failed + f, not_run + n
            if f:
                missing.append(f"failed: {name}")
            if n:
                missing.append(f"not run: {name}")
        rows[unit] = (passed, failed, not_run, missing)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--run",
        action="append",
        default=[],
        help="NAME=DIRECT_LOG:LOG, a run and the direct run it is compared with",
    )
    ap.add_argument("--markdown", help="also write the per-unit table here")
    args = ap.parse_args()
    runs = []
    try:
        for spec in args.run:
            name, _, paths = spec.partition("=")
            direct_path, _, path = paths.partition(":")
            runs.append((name, Run(direct_path), Run(path)))
    except OSError as e:
        print(f"redis-suite-report: {e}", file=sys.stderr)
        return 2
    for name, direct, _ in runs:
        if not direct.units:
            print(f"redis-suite-report: no unit ran directly ({direct.path})", file=sys.stderr)
            return 2

    results = [(name, direct, run, compare(direct, run)) for name, direct, run in runs]
    units = []
    for _, direct, _, _ in results:
        units += [u for u in direct.units if u not in units]
    header = ["unit"]
    for n, _, _, _ in results:
        header += [f"{n}: direct", f"{n}: proxy passed / failed / not run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for unit in units:
        cells = [f"`{unit}`"]
        shown = False
        for _, direct, _, rows in results:
            ok = sum(direct.ok[unit].values())
            p, f, n, _ = rows.get(unit, (0, 0, 0, []))
            shown = shown or ok > 0
            cells += [str(ok), f"{p} / {f} / {n}"]
        if shown:
            lines.append("| " + " | ".join(cells) + " |")
    cells = ["**total**"]
    for _, direct, _, rows in results:
        ok = sum(sum(c.values()) for c in direct.ok.values())
        p = sum(r[0] for r in rows.values())
        f = sum(r[1] for r in rows.values())
        n = sum(r[2] for r in rows.values())
        cells += [f"**{ok}**", f"**{p} / {f} / {n}**"]
    lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)

    notes = []
    worse = False
    for name, direct, run, rows in results:
        failed = sorted(f"{u}: {n}" for u, c in direct.failed.items() for n in c)
        if failed:
            notes.append(f"{name}: failed directly too (not counted): " + "; ".join(failed))
        for e in direct.exceptions:
            notes.append(f"{name}: directly, exception in {e}")
        notes.append(
            f"{name}: time in the units (runtest's count): direct {direct.total_seconds()} s, "
            f"proxy {run.total_seconds()} s"
        )
        bad = [(u, m) for u, (_, _, _, ms) in rows.items() for m in ms]
        count = sum(f + n for _, f, n, _ in rows.values())
        for e in run.exceptions:
            notes.append(f"{name}: exception in {e}")
        if bad:
            worse = True
            notes.append(f"{name}: {count} test(s) that pass directly did not pass:")
            notes.extend(f"  {u}: {m}" for u, m in bad)
    print()
    print("\n".join(notes))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n\n" + "\n".join(notes) + "\n")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
