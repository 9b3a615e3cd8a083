"""A minimal blocking RESP2 client over a raw TCP socket, and the one-shot calls built on it.

Replies are returned as Python values; error replies are returned (not raised) as
RespError so that callers can classify them. Transport problems raise the usual
OSError subclasses (ConnectionRefusedError, ConnectionResetError, TimeoutError...)
or ConnectionClosed when the peer closes the connection.
"""

import socket

from .procs import HOST


class RespError(str):
    """An error reply such as '-READONLY You can't write against a read only replica.'"""

    @property
    def prefix(self):
        return self.split(" ", 1)[0] if self else ""


class ConnectionClosed(Exception):
    """The peer closed the connection (EOF) before a full reply arrived."""


class ProtocolError(Exception):
    pass


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, host, port, timeout=1.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def settimeout(self, timeout):
        self.sock.settimeout(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, *args):
        self.sock.sendall(encode(*args))

    def call(self, *args):
        self.send(*args)
        return self.read_reply()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed()
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[: n + 2]
        return data

    def read_reply(self):
        line = self._line()
        if not line:
            raise ProtocolError("empty line")
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode(errors="replace")
        if t == b"-":
            return RespError(rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            return self._exact(n).decode(errors="replace")
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read_reply() for _ in range(n)]
        raise ProtocolError("unexpected reply type %r" % t)


def parse_info(text):
    """Parse an INFO reply into a dict (section headers and blank lines skipped)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        out[k.strip()] = v.strip()
    return out


def call_once(host, port, *args, timeout=1.0):
    """Open a connection, run one command, close. Raises on transport errors."""
    c = Conn(host, port, timeout=timeout)
    try:
        return c.call(*args)
    finally:
        c.close()


def redis_call(port, *args, timeout=1.0):
    """One command to the node on 127.0.0.1:`port`, on a connection of its own."""
    return call_once(HOST, port, *args, timeout=timeout)


def info_repl(port, timeout=1.0):
    r = redis_call(port, "INFO", "replication", timeout=timeout)
    if isinstance(r, RespError):
        raise RuntimeError(r)
    return parse_info(r)


def pairs_to_dict(lst):
    """A flat [key, value, key, value, ...] reply (SENTINEL MASTER, CONFIG GET) as a dict."""
    return {lst[i]: lst[i + 1] for i in range(0, len(lst) - 1, 2)}
