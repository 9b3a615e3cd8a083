"""What a run needs before it starts: the tools on the PATH (installed once by benches/install.sh,
never by a run), the proxy binary (built, then run from a private copy), the versions a report
names, and the Python that draws the charts."""

import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile

from .procs import REPO, log, raise_nofile, sigterm_interrupts

INSTALL = "benches/install.sh"
DEFAULT_BIN = os.path.join(REPO, "target", "release", "redis-master-proxy")
VENV = os.path.join(REPO, "benches", ".venv")


def require_tools(names, install=INSTALL):
    """Stops with the command that installs them when a tool is missing; installs nothing."""
    missing = [b for b in names if shutil.which(b) is None]
    if missing:
        sys.exit("error: missing %s; install once with `%s`" % (", ".join(missing), install))


def build_release():
    """cargo build --release of the proxy in this checkout."""
    log("cargo build --release")
    r = subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "redis-master-proxy"],
                       cwd=REPO)
    if r.returncode != 0:
        sys.exit("error: cargo build --release failed")


def private_copy(binary):
    """Copies the binary to a new temp dir, so a rebuild during the run cannot swap it
    underneath. Returns (the dir, to remove at the end; the copy)."""
    if not os.access(binary, os.X_OK):
        sys.exit("error: %s not found; build it with `cargo build --release` (or drop --no-build)" % binary)
    d = tempfile.mkdtemp(prefix="rmp-bin-")
    dst = os.path.join(d, "redis-master-proxy")
    shutil.copy2(binary, dst)
    return d, dst


def run_with_proxy(args, tools, run, install=INSTALL):
    """An entry point that tests the proxy: SIGTERM interrupts, the tools are checked, the proxy
    is built (unless args.no_build) and copied, the descriptor limit raised; returns
    run(args, binary), removing the copy afterwards."""
    sigterm_interrupts()
    require_tools(tools, install)
    if not args.no_build:
        build_release()
    bin_dir, binary = private_copy(os.path.abspath(args.proxy_bin))
    raise_nofile()
    try:
        return run(args, binary)
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)


def write_report(out, stem, res, md, also=()):
    """<out>/<stem>.json (everything measured) and <stem>.md (the report, also printed)."""
    with open(os.path.join(out, stem + ".json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    with open(os.path.join(out, stem + ".md"), "w") as f:
        f.write(md)
    print()
    print(md)
    log("wrote %s" % ", ".join([os.path.join(out, stem + ".json"), stem + ".md"] + list(also)))


def first_line(argv):
    """The first line a command prints (a version), or why it could not run."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        out = (r.stdout or r.stderr).strip()
        return out.splitlines()[0] if out else ""
    except Exception as e:  # noqa: BLE001
        return "unavailable (%s)" % e


def src_dirty():
    """Whether the work tree has uncommitted changes in what the binary is built from."""
    return bool(subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml",
                                "Cargo.lock"], capture_output=True, text=True).stdout.strip())


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_versions(binary_source, binary):
    """What a soak report names: commit, proxy build, Redis, Python, kernel, CPUs, limits."""
    commit = first_line(["git", "-C", REPO, "rev-parse", "HEAD"])
    if not commit or commit.startswith("fatal:"):
        commit = "unknown (not a git checkout)"
    return {
        "git_commit": commit + (" (work tree with uncommitted changes in src/ or Cargo.*)"
                                if src_dirty() else ""),
        "proxy_version": first_line([binary, "--version"]),
        "proxy_binary": binary_source,
        "proxy_sha256": sha256_file(binary),
        "proxy_built_utc": datetime.datetime.fromtimestamp(
            os.path.getmtime(binary_source), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "redis": first_line(["redis-server", "--version"]),
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "nproc": os.cpu_count(),
        "nofile_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def chart_python():
    """A Python that can import matplotlib: this one, or benches/.venv (made by
    benches/install.sh). RuntimeError naming the install step otherwise."""
    candidates = [sys.executable, os.path.join(VENV, "bin", "python")]
    for py in candidates:
        if os.path.exists(py) and subprocess.run([py, "-c", "import matplotlib"],
                                                 capture_output=True, timeout=60).returncode == 0:
            return py
    raise RuntimeError("no matplotlib here nor in %s: run `%s` once" % (VENV, INSTALL))


def run_chart(script, *args, timeout=300):
    """Runs a chart script (matplotlib) with chart_python(); RuntimeError when it fails."""
    r = subprocess.run([chart_python(), script] + [str(a) for a in args], timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s failed" % os.path.basename(script))
