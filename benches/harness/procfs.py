"""/proc readings of a process: descriptors (total and by kind), RSS, CPU time, threads, limits."""

import os
import time

from .procs import now, wall

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid):
    """Descriptors (total and by kind), RSS, CPU time and threads of a process."""
    fd_dir = "/proc/%d/fd" % pid
    kinds = {"socket": 0, "pipe": 0, "anon_inode": 0, "other": 0}
    total = 0
    for fd in os.listdir(fd_dir):
        total += 1
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:"):
            kinds["socket"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds["anon_inode"] += 1
        else:
            kinds["other"] += 1
    rss_kib = rss_anon_kib = threads = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                # The heap and the allocator's arenas; the rest of VmRSS is the mapped binary
                # and libraries (file pages), which do not grow with use.
                rss_anon_kib = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return {"t": wall(), "fds": total, "fd_kinds": kinds, "rss_kib": rss_kib, "rss_anon_kib": rss_anon_kib,
            "threads": threads,
            "cpu_user_s": utime / CLK_TCK, "cpu_sys_s": stime / CLK_TCK}


def smaps_rollup(pid):
    """/proc/PID/smaps_rollup as {field: KiB} (Rss, Anonymous, Private_Dirty, ...)."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def settled_sample(pid, seconds=3.0, every=0.25):
    """Samples over `seconds`; the minimum descriptor count and the last RSS (a health check
    or sentinel query in flight holds a socket for a moment, so one sample may be one high)."""
    samples = []
    deadline = now() + seconds
    while True:
        samples.append(proc_sample(pid))
        if now() >= deadline:
            break
        time.sleep(every)
    best = min(samples, key=lambda s: s["fds"])
    out = dict(samples[-1])
    out["fds"] = best["fds"]
    out["fd_kinds"] = best["fd_kinds"]
    out["fds_max_in_window"] = max(s["fds"] for s in samples)
    out["rss_kib_min_in_window"] = min(s["rss_kib"] for s in samples)
    return out


def read_stat(pid):
    """(utime+stime ticks, ppid) of one process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14, stime field 15, ppid field 4.
    return int(fields[11]) + int(fields[12]), int(fields[1])


def process_tree(pid):
    """pid plus all its descendants (HAProxy in master-worker mode forks)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = read_stat(int(entry))
        if st is not None:
            children.setdefault(st[1], []).append(int(entry))
    out, todo = [], [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    """user+sys CPU seconds of a process tree; /proc/PID/stat already includes all threads."""
    if pid is None:
        return None
    total = 0
    for p in process_tree(pid):
        st = read_stat(p)
        if st is not None:
            total += st[0]
    return total / CLK_TCK


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def mem_snapshot(pid):
    """RSS, peak RSS (VmHWM), descriptors and threads; None for what cannot be read."""
    st = proc_status(pid)

    def kib(key):
        v = st.get(key, "")
        return int(v.split()[0]) if v else None

    try:
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        fds = None
    return {
        "rss_kib": kib("VmRSS"),
        "hwm_kib": kib("VmHWM"),
        "fds": fds,
        "threads": int(st["Threads"]) if "Threads" in st else None,
    }


def nofile_limits(pid):
    """(soft, hard) RLIMIT_NOFILE of a process; hard None when unlimited."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                parts = line.split()
                return int(parts[3]), (None if parts[4] == "unlimited" else int(parts[4]))
    return None, None
