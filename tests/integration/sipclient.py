"""A small SIP client for the integration tests: requests to send, responses read back.

``Req`` builds a request (every field can be bent to make it malformed), ``Msg`` is a
response as it arrived, and ``UdpClient`` / ``TcpClient`` send the one and read the other
over loopback: every socket read has a timeout and every loop is bounded by a deadline.
Standard library only and no sibling module: ``test_plugin.py`` copies this file beside
its inner tests.  Starting the responder and running sipp is ``sipprocs.py``'s.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

#: Default wait for a response that must come.
RECV_TIMEOUT = 3.0
#: How long we listen to conclude that nothing is coming.
SILENCE = 0.3


# ------------------------------------------------------------------ SIP messages


def new_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class Req:
    """A SIP request to send; every field can be bent to make it malformed."""

    method: str = "OPTIONS"
    user: str | None = "bob"
    uri: str | None = None  # overrides user
    version: str = "SIP/2.0"
    branch: str = field(default_factory=lambda: f"z9hG4bK-{new_id()}")
    call_id: str = field(default_factory=lambda: f"{new_id()}@test")
    from_tag: str = field(default_factory=new_id)
    to_tag: str | None = None
    cseq: int = 1
    cseq_method: str | None = None  # defaults to method
    via: str | None = None  # a whole Via value, overriding the built one
    rport: bool = True
    headers: list[tuple[str, str]] = field(default_factory=list)
    omit: tuple[str, ...] = ()  # header names to leave out
    body: bytes = b""
    content_length: int | str | None = "auto"  # None: no Content-Length header

    def encode(self, transport: str, local: tuple[str, int], remote: tuple[str, int]) -> bytes:
        rhost = _hostport(*remote)
        uri = self.uri or (f"sip:{self.user}@{rhost}" if self.user else f"sip:{rhost}")
        via = self.via
        if via is None:
            via = f"SIP/2.0/{transport.upper()} {_hostport(*local)};branch={self.branch}"
            if self.rport:
                via += ";rport"
        to_uri = f"sip:{self.user}@{rhost}" if self.user else f"sip:{rhost}"
        to = f"<{to_uri}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        lines = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"<sip:test@{_hostport(*local)}>;tag={self.from_tag}"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} {self.cseq_method or self.method}"),
            *self.headers,
        ]
        if self.content_length == "auto":
            lines.append(("Content-Length", str(len(self.body))))
        elif self.content_length is not None:
            lines.append(("Content-Length", str(self.content_length)))
        omit = {name.lower() for name in self.omit}
        head = f"{self.method} {uri} {self.version}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in lines if name.lower() not in omit
        )
        return head.encode() + b"\r\n" + self.body

    def ack(self, to_tag: str | None) -> Req:
        """The ACK of a non-2xx final to this INVITE (same branch, RFC 3261 §17.1.1.3)."""
        return Req(
            method="ACK",
            user=self.user,
            uri=self.uri,
            branch=self.branch,
            call_id=self.call_id,
            from_tag=self.from_tag,
            to_tag=to_tag,
            cseq=self.cseq,
            rport=self.rport,
        )

    def ack_2xx(self, to_tag: str | None) -> Req:
        """The ACK of a 2xx to this INVITE: a transaction of its own (§13.2.2.4)."""
        return self.in_dialog("ACK", to_tag, self.cseq)

    def in_dialog(self, method: str, to_tag: str | None, cseq: int) -> Req:
        """A new request in the dialog this request's 2xx set up (new branch)."""
        return Req(
            method=method,
            user=self.user,
            uri=self.uri,
            call_id=self.call_id,
            from_tag=self.from_tag,
            to_tag=to_tag,
            cseq=cseq,
            rport=self.rport,
        )

    def cancel(self) -> Req:
        """The CANCEL of this request (RFC 3261 §9.1): same branch, CSeq number, tags."""
        return Req(
            method="CANCEL",
            user=self.user,
            uri=self.uri,
            branch=self.branch,
            call_id=self.call_id,
            from_tag=self.from_tag,
            to_tag=self.to_tag,
            cseq=self.cseq,
            rport=self.rport,
        )


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Msg:
    """A SIP message as received: start line, headers (in order), body and raw bytes."""

    start: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    at: float  # time.monotonic() when it arrived

    @property
    def status(self) -> int:
        parts = self.start.split(" ", 2)
        assert parts[0] == "SIP/2.0" and len(parts) >= 2, f"not a response: {self.start!r}"
        return int(parts[1])

    @property
    def reason(self) -> str:
        return self.start.split(" ", 2)[2] if self.start.count(" ") >= 2 else ""

    def get(self, name: str) -> str | None:
        for hname, value in self.headers:
            if hname.lower() == name.lower():
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for h, v in self.headers if h.lower() == name.lower()]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        assert value is not None, f"no {name} header in:\n{self.text}"
        return value

    @property
    def to_tag(self) -> str | None:
        to = self["To"]
        m = re.search(r";\s*tag=([^;\s>]+)", to[to.rfind(">") + 1 :])
        return m.group(1) if m else None

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Msg {self.start!r}>"


def parse(data: bytes, at: float) -> Msg:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no end of headers in {data[:200]!r}"
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return Msg(lines[0], headers, body, data, at)


# --------------------------------------------------------------------- sockets


class Client:
    """A SIP peer on a raw socket: builds, sends and receives whole messages."""

    transport = ""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.sock: socket.socket

    @property
    def local(self) -> tuple[str, int]:
        name = self.sock.getsockname()
        return (name[0], name[1])

    def build(self, req: Req) -> bytes:
        return req.encode(self.transport, self.local, self.server)

    def send(self, req: Req | bytes) -> None:
        raise NotImplementedError

    def recv(self, timeout: float = RECV_TIMEOUT) -> Msg | None:
        raise NotImplementedError

    def expect(self, code: int, timeout: float = RECV_TIMEOUT) -> Msg:
        """The next message, which must be a response with ``code``."""
        msg = self.recv(timeout)
        assert msg is not None, f"no response within {timeout} s (expected {code})"
        assert msg.status == code, f"expected {code}, got:\n{msg.text}"
        return msg

    def expect_any(self, timeout: float = RECV_TIMEOUT) -> Msg:
        """The next message, whatever it is; it must come within ``timeout``."""
        msg = self.recv(timeout)
        assert msg is not None, f"no message within {timeout} s"
        return msg

    def expect_codes(self, codes: Iterable[int], timeout: float = RECV_TIMEOUT) -> list[Msg]:
        return [self.expect(code, timeout) for code in codes]

    def expect_silence(self, timeout: float = SILENCE) -> None:
        msg = self.recv(timeout)
        assert msg is None, f"expected no answer, got:\n{msg.text}"

    def request(self, req: Req, code: int, timeout: float = RECV_TIMEOUT) -> Msg:
        self.send(req)
        return self.expect(code, timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UdpClient(Client):
    transport = "udp"

    def __init__(self, server: tuple[str, int]) -> None:
        super().__init__(server)
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        self.sock.bind((server[0], 0))

    def send(self, req: Req | bytes) -> None:
        data = self.build(req) if isinstance(req, Req) else req
        self.sock.sendto(data, self.server)

    def recv(self, timeout: float = RECV_TIMEOUT) -> Msg | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        return parse(data, time.monotonic())


class TcpClient(Client):
    transport = "tcp"

    def __init__(self, server: tuple[str, int]) -> None:
        super().__init__(server)
        self.sock = socket.create_connection(server, timeout=RECV_TIMEOUT)
        self.buf = b""
        self.eof = False

    def send(self, req: Req | bytes) -> None:
        data = self.build(req) if isinstance(req, Req) else req
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into the buffer until ``deadline``; False on timeout or EOF."""
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def recv_raw(self, size: int, timeout: float = RECV_TIMEOUT) -> bytes:
        """Up to ``size`` bytes exactly as they come (for keep-alive pongs)."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < size and self._fill(deadline):
            pass
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def recv(self, timeout: float = RECV_TIMEOUT) -> Msg | None:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                return None
        head_end = self.buf.index(b"\r\n\r\n") + 4
        m = re.search(rb"(?im)^content-length\s*:\s*(\d+)\s*$", self.buf[:head_end])
        assert m is not None, f"response without Content-Length: {self.buf[:head_end]!r}"
        total = head_end + int(m.group(1))
        while len(self.buf) < total:
            if not self._fill(deadline):
                return None
        data, self.buf = self.buf[:total], self.buf[total:]
        return parse(data, time.monotonic())

    def closed_by_peer(self, timeout: float = RECV_TIMEOUT) -> bool:
        """Whether the server closes the connection within ``timeout`` (data is kept)."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        return self.eof


class TlsClient(TcpClient):
    """A TLS client (``ssl``): trusts ``cafile`` when given, else any certificate (or
    ``context`` as given)."""

    transport = "tls"

    def __init__(
        self,
        server: tuple[str, int],
        cafile: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        Client.__init__(self, server)
        if context is None:
            context = ssl.create_default_context(cafile=cafile)
            if cafile is None:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(server, timeout=RECV_TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname=server[0])
        self.buf = b""
        self.eof = False


def client(transport: str, server: tuple[str, int]) -> Client:
    if transport == "tls":
        return TlsClient(server)
    return UdpClient(server) if transport == "udp" else TcpClient(server)


def ipv6_loopback() -> bool:
    """Whether this machine has an IPv6 loopback to bind to."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
