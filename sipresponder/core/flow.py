"""Where a message came from and how to answer it, and what the endpoint hands out.

What belongs here: ``Flow`` (a peer, our socket, the transport and the connection, as
the glue reports them), ``Send`` (what to send, where), ``TransactionRecord`` (one
transaction's codes, for the log line) and the two questions every answer asks of a
flow: where responses go (``reply_to``, RFC 3261 §18.2.2) and which of our addresses the
peer reached (``answering``, for Contact and SDP).  Sans-IO; imports ``sip`` only.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import Final

from ..sip.message import Request
from ..sip.responses import Local, response_destination
from ..sip.uri import hostport, is_ip, plain_ip, uri_host


class Flow:
    """Where a message came from and how to answer it.

    ``remote`` is the peer address as the socket reported it; ``conn`` is an opaque handle
    of the TCP connection (``None`` for UDP) that the transport adapter maps back.  The
    text forms of the addresses are made once, with the flow: the transport keeps a flow
    per peer, so the per-message path (logs, journal) only reads them.

    A plain class with ``Final`` attributes rather than a frozen dataclass: mypyc compiles
    it to a native class, and a dataclass with derived (``init=False``) fields it does not.
    Equal flows (transport, addresses, connection) hash alike.
    """

    __slots__ = (
        "answering",
        "conn",
        "local",
        "local_text",
        "peer",
        "reliable",
        "remote",
        "remote_text",
        "stream",
        "transport",
    )

    def __init__(
        self,
        transport: str,  # "udp" | "tcp" | "tls" | "ws" | "wss"
        remote: tuple[str, int],
        local: tuple[str, int],
        conn: object = None,
    ) -> None:
        self.transport: Final = transport
        self.remote: Final = remote
        self.local: Final = local
        self.conn: Final = conn
        text = hostport(plain_ip(remote[0]), remote[1])
        #: ``host:port`` of the peer and of our socket, for the journal.
        self.remote_text: Final = text
        self.local_text: Final = hostport(plain_ip(local[0]), local[1])
        #: ``host:port/transport`` of the peer, for logs.
        self.peer: Final = f"{text}/{transport}"
        self.reliable: Final = transport != "udp"
        #: Whether messages were cut from a byte stream (TCP, TLS), where each must say
        #: its length; a datagram and a WebSocket message (RFC 7118 §5) come whole.
        self.stream: Final = transport == "tcp" or transport == "tls"
        #: Our address as this flow reaches it (``answering``), once worked out.
        self.answering: Local | None = None

    def _key(self) -> tuple[str, tuple[str, int], tuple[str, int], object]:
        return (self.transport, self.remote, self.local, self.conn)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Flow):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Flow(transport={self.transport!r}, remote={self.remote!r}, "
            f"local={self.local!r}, conn={self.conn!r})"
        )


#: What to send: the bytes, the flow to send on (its ``conn`` for TCP), the UDP address.
Send = tuple[bytes, Flow, tuple[str, int]]


class TransactionRecord:
    """One finished transaction, for the per-transaction log line.  Made once per
    transaction: a plain class, which mypyc builds natively (a NamedTuple's ``__new__``
    stays interpreted, about 0.3 µs a record)."""

    __slots__ = ("codes", "method", "peer", "uri")

    def __init__(self, method: str, uri: str, peer: str, codes: tuple[int, ...]) -> None:
        self.method = method
        self.uri = uri
        self.peer = peer
        self.codes = codes

    def _key(self) -> tuple[str, str, str, tuple[int, ...]]:
        return (self.method, self.uri, self.peer, self.codes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TransactionRecord):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"TransactionRecord(method={self.method!r}, uri={self.uri!r}, "
            f"peer={self.peer!r}, codes={self.codes!r})"
        )


Reporter = Callable[[TransactionRecord], None]


def reply_to(req: Request, flow: Flow) -> tuple[str, int]:
    """Where responses to ``req`` go: back on the connection, or over UDP by its Via
    (RFC 3261 §18.2.2).  The source is passed as two arguments: a starred call is a
    generic call for compiled code (about 1.7k instructions)."""
    remote = flow.remote
    return remote if flow.reliable else response_destination(req, remote[0], remote[1])


def answering(req: Request, flow: Flow) -> Local:
    """Our address as the peer reached it, for Contact and SDP."""
    local = flow.answering
    if local is not None:
        return local  # the usual case: kept on the flow, which the transport keeps
    host = plain_ip(flow.local[0])
    if _unspecified(host):
        # A wildcard socket: the Request-URI says which of our addresses was used.
        uri_h = uri_host(req.uri)
        host = uri_h if uri_h is not None and is_ip(uri_h) else "127.0.0.1"
        return Local(host, flow.local[1], flow.transport)
    local = Local(host, flow.local[1], flow.transport)
    flow.answering = local
    return local


@functools.lru_cache(maxsize=64)
def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
