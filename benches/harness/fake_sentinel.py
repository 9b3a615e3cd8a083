"""A sentinel that lies, for the lying-sentinel trust mode: a small RESP server on a loopback port
that answers like a sentinel and announces failovers that never happen."""

import select
import socket
import threading

from .cluster import MASTER_NAME, sentinel_master_port
from .procs import HOST, now
from .resp import encode


class FakeSentinel(threading.Thread):
    """A sentinel that lies: it answers PING and `SENTINEL get-master-addr-by-name` with the
    real master (asked from a real sentinel), accepts SUBSCRIBE/PSUBSCRIBE, and once lying()
    is called publishes `+selected-slave` and `+failover-state-send-slaveof-noone` for the
    current master every `lie_every` seconds, with no failover behind them."""

    def __init__(self, port, real_sentinel, master_port, replica_port, lie_every=8.0):
        super().__init__(daemon=True)
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((HOST, port))
        self.srv.listen(16)
        self.port = port
        self.real = real_sentinel
        self.master_port = master_port
        self.replica_port = replica_port
        self.lie_every = lie_every
        self.stop_evt = threading.Event()
        self.lie_from = None
        self.published = []   # (t, channel, payload, receivers)
        self.commands = {}    # command name -> count

    def lying(self):
        self.lie_from = now()

    def current_master(self):
        try:
            return sentinel_master_port(self.real, timeout=0.3) or self.master_port
        except Exception:  # noqa: BLE001
            return self.master_port

    def run(self):
        conns = {}  # socket -> {"buf": bytearray, "subs": set}
        next_lie = None
        deadline = now() + 600
        try:
            while not self.stop_evt.is_set() and now() < deadline:
                rl, _, _ = select.select([self.srv] + list(conns), [], [], 0.05)
                for s in rl:
                    if s is self.srv:
                        c, _ = self.srv.accept()
                        conns[c] = {"buf": bytearray(), "subs": set()}
                        continue
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        s.close()
                        del conns[s]
                        continue
                    st = conns[s]
                    st["buf"] += data
                    for cmd in parse_commands(st["buf"]):
                        self.reply(s, st, cmd)
                if self.lie_from is not None:
                    if next_lie is None:
                        next_lie = self.lie_from
                    if now() >= next_lie:
                        self.lie(conns)
                        next_lie += self.lie_every
        finally:
            for s in conns:
                s.close()
            self.srv.close()

    def reply(self, s, st, cmd):
        name = cmd[0].upper() if cmd else ""
        self.commands[name] = self.commands.get(name, 0) + 1
        out = b""
        if name == "PING":
            out = b"+PONG\r\n"
        elif name == "AUTH":
            out = b"+OK\r\n"
        elif name == "SENTINEL" and len(cmd) >= 3 and cmd[1].lower() == "get-master-addr-by-name":
            out = encode(HOST, str(self.current_master()))
        elif name in ("SUBSCRIBE", "PSUBSCRIBE"):
            for ch in cmd[1:]:
                st["subs"].add(ch)
                out += b"*3\r\n" + encode(name.lower())[4:] + encode(ch)[4:] + b":%d\r\n" % len(st["subs"])
        else:
            out = b"-ERR unknown command '%s'\r\n" % name.encode()
        try:
            s.sendall(out)
        except OSError:
            pass

    def lie(self, conns):
        mp, rp = self.current_master(), self.replica_port
        payload = "slave %s:%d %s %d @ %s %s %d" % (HOST, rp, HOST, rp, MASTER_NAME, HOST, mp)
        for ch in ("+selected-slave", "+failover-state-send-slaveof-noone"):
            n = 0
            for s, st in conns.items():
                if ch in st["subs"] or "*" in st["subs"]:
                    kind = "pmessage" if "*" in st["subs"] and ch not in st["subs"] else "message"
                    msg = (b"*4\r\n" + encode(kind)[4:] + encode("*")[4:] if kind == "pmessage"
                           else b"*3\r\n" + encode(kind)[4:])
                    msg += encode(ch)[4:] + encode(payload)[4:]
                    try:
                        s.sendall(msg)
                        n += 1
                    except OSError:
                        pass
            self.published.append((now(), ch, payload, n))


def parse_commands(buf):
    """Complete RESP arrays of bulk strings at the start of buf (consumed); inline commands too."""
    out = []
    while buf:
        if buf[:1] != b"*":
            i = buf.find(b"\r\n")
            if i < 0:
                break
            line = bytes(buf[:i]).decode(errors="replace").split()
            del buf[:i + 2]
            if line:
                out.append(line)
            continue
        pos = buf.find(b"\r\n")
        if pos < 0:
            break
        n = int(buf[1:pos])
        args, p, ok = [], pos + 2, True
        for _ in range(n):
            e = buf.find(b"\r\n", p)
            if e < 0 or buf[p:p + 1] != b"$":
                ok = False
                break
            ln = int(buf[p + 1:e])
            if len(buf) < e + 2 + ln + 2:
                ok = False
                break
            args.append(bytes(buf[e + 2:e + 2 + ln]).decode(errors="replace"))
            p = e + 2 + ln + 2
        if not ok:
            break
        del buf[:p]
        out.append(args)
    return out
