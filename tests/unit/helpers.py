"""What the unit tests share: message builders, the bench scripts and the C modules loaded
from their files, and loopback UDP sockets with the socket calls of either kind."""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from sipresponder import native
from sipresponder.aio import udp as glue
from sipresponder.sip.serializer import serialize_request


def request(
    method: str = "OPTIONS",
    user: str = "alice",
    *,
    branch: str = "z9hG4bK-1",
    via: str | None = None,
    call_id: str = "call-1@test",
    cseq: str | None = None,
    from_tag: str = "ft1",
    to: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    uri: str | None = None,
) -> bytes:
    headers = [
        ("Via", via or f"SIP/2.0/UDP 192.0.2.1:5062;branch={branch}"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:caller@192.0.2.1>;tag={from_tag}"),
        ("To", to or f"<sip:{user}@127.0.0.1>"),
        ("Call-ID", call_id),
        ("CSeq", cseq or f"1 {method}"),
    ]
    headers += extra or []
    return serialize_request(method, uri or f"sip:{user}@127.0.0.1", headers, body)


SDP_OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 96 0 8 101\r\n"
    b"a=rtpmap:96 L16/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=sendonly\r\n"
    b"m=video 51372 RTP/AVP 31\r\n"
)


#: The bench scripts, which are no package: tests load them by path.
BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_script(name: str) -> ModuleType:
    """``bench/<name>.py`` as a module, imported by its own name with bench/ first on
    sys.path for the while, as ``python bench/run.py`` has it: so that a script's imports
    of its sibling modules (``from harness_sipp import Cell``) find them, and the test
    and the script share one copy of each module (and of its classes)."""
    path = str(BENCH)
    added = path not in sys.path
    if added:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(name)
    finally:
        if added:
            sys.path.remove(path)
    assert Path(module.__file__ or "").resolve() == BENCH / f"{name}.py", module
    return module


@functools.cache
def load_c_module(name: str) -> ModuleType | None:
    """The C module ``name`` (dotted, as in ``native.C_MODULES``) loaded from its built
    file, or None when it was not built: so that its tests run in the pure-Python test run
    too, where the package itself ignores it."""
    path = native.extensions().get(name)
    if path is None:
        return None
    full = f"sipresponder.{name}"
    loader = importlib.machinery.ExtensionFileLoader(full, str(path))
    spec = importlib.util.spec_from_file_location(full, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def bound(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    """A non-blocking UDP socket bound to ``host`` (``::`` takes IPv4 too) at a free port."""
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6 and host == "::":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def drain(sock: socket.socket, count: int) -> list[tuple[bytes, Any]]:
    """``count`` datagrams by the socket module (waiting a little for each)."""
    sock.settimeout(2.0)
    try:
        return [sock.recvfrom(65536) for _ in range(count)]
    finally:
        sock.setblocking(False)


class SocketCalls(NamedTuple):
    """The UDP socket calls of one kind, in C (``aio/_c/udp.c``) or their Python twins
    (``aio/udp.py``), and their bounds."""

    kind: str
    recv_batch: Callable[..., Any]
    send_to: Callable[..., Any]
    send_batch: Callable[..., Any]
    MAX_BATCH: int
    MAX_SEND: int

    @property
    def calls(self) -> glue.UdpCalls:
        """What ``DatagramSocket`` takes."""
        return self.recv_batch, self.send_to, self.send_batch


def socket_calls(kind: str) -> SocketCalls | None:
    """The C calls (``kind`` "c"; None when they were not built) or the Python ones."""
    if kind == "python":
        return SocketCalls(
            kind,
            glue._py_recv_batch,
            glue._py_send_to,
            glue._py_send_batch,
            glue._MAX_BATCH,
            glue._MAX_SEND,
        )
    module = load_c_module("aio._c.udp")
    if module is None:
        return None
    return SocketCalls(
        kind,
        module.recv_batch,
        module.send_to,
        module.send_batch,
        module.MAX_BATCH,
        module.MAX_SEND,
    )
