"""The processes of one run, free ports, bounded waits, the log line format, the descriptor limit.

Every process is started with PR_SET_PDEATHSIG (it dies with the script, even on SIGKILL) and
stopped in the caller's `finally` by Procs.kill_all(), paused ones getting SIGCONT first.
"""

import ctypes
import datetime
import os
import resource
import shutil
import signal
import socket
import subprocess
import time

HOST = "127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def now():
    return time.monotonic()


def wall():
    return time.time()


def log(msg):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), msg), flush=True)


_libc = None


def _die_with_parent():
    # Runs in the child between fork and exec: if this script dies (even by SIGKILL),
    # the kernel kills the child too.
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class Procs:
    """Every process of one run, by name, each logging to <tmp>/<name>.log; kill_all() is
    called from a finally."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.items = {}
        self.stopped = set()

    def logpath(self, name):
        return os.path.join(self.tmp, name + ".log")

    def start(self, name, argv, env=None):
        f = open(self.logpath(name), "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 env=env, preexec_fn=_die_with_parent, cwd=self.tmp)
        finally:
            f.close()
        self.items[name] = p
        return p

    def logtail(self, name, n=2000):
        try:
            with open(self.logpath(name), "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_lines(self, name):
        try:
            with open(self.logpath(name), "rb") as f:
                return f.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def alive(self, name):
        p = self.items.get(name)
        return p is not None and p.poll() is None

    def pid(self, name):
        return self.items[name].pid

    def signal(self, name, sig):
        p = self.items[name]
        if p.poll() is None:
            os.kill(p.pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped.add(name)
        elif sig == signal.SIGCONT:
            self.stopped.discard(name)

    def kill(self, name):
        p = self.items.get(name)
        if p is None:
            return
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except OSError:
                pass
            try:
                p.kill()
            except OSError:
                pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.stopped.discard(name)

    def terminate(self, name, timeout=15):
        """SIGTERM and wait (a graceful shutdown); SIGKILL after the timeout. Returns the exit
        status, or None when it had to be killed."""
        p = self.items.get(name)
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        try:
            os.kill(p.pid, signal.SIGCONT)
            p.terminate()
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(name)
            return None

    def kill_all(self):
        # SIGCONT first for paused ones so that SIGKILL is delivered promptly.
        for p in self.items.values():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except OSError:
                    pass
        for name in reversed(list(self.items)):
            self.kill(name)

    def logtails(self, n=1500):
        """The end of every process's log, by name (for a failed run's report)."""
        return {name: self.logtail(name, n) for name in self.items}

    def close(self, threads=(), keep=False, join_timeout=3):
        """The end of a run: stops the observer threads, kills every process, joins the threads
        and removes the temp dir, or keeps it and returns its path."""
        for t in threads:
            t.stop_evt.set()
        self.kill_all()
        for t in threads:
            t.join(timeout=join_timeout)
        if keep:
            return self.tmp
        shutil.rmtree(self.tmp, ignore_errors=True)
        return None


def sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt in the main thread, so every finally runs."""
    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)


def free_ports(n):
    """n distinct loopback ports that were free a moment ago."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def wait_until(pred, timeout, what, interval=0.1, proc=None):
    """pred()'s first true value within `timeout` seconds (an exception counts as not yet);
    RuntimeError after that, or as soon as `proc` (a Popen) has exited."""
    deadline = now() + timeout
    last_exc = None
    while now() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("exited (code %s) while waiting for %s" % (proc.returncode, what))
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        time.sleep(interval)
    raise RuntimeError("timed out after %.0f s waiting for %s%s" % (
        timeout, what, (" (last error: %r)" % last_exc) if last_exc else ""))


def raise_nofile(want=None):
    """Raise the soft RLIMIT_NOFILE to `want` (default: the hard limit), and the hard limit too
    when `want` is above it and this process may (CAP_SYS_RESOURCE). Children inherit it.
    Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if want is None:
        want = (1 << 20) if hard == resource.RLIM_INFINITY else hard
    new_hard = hard if hard == resource.RLIM_INFINITY else max(hard, want)
    for limits in ((want, new_hard), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)
