"""asyncio glue of SIP over WebSocket (RFC 7118): the handshake and the frames of one
connection, over TCP (WS) or over TLS (WSS).

What belongs here: ``WsSessions`` (the listener's rules: the path, the allowed origins,
the largest message) and ``WsSession``, the WebSocket of one accepted ``TcpConnection``,
driven by the sans-IO ``websockets.server.ServerProtocol``.  The connection hands it what
it reads (after TLS, for WSS) and gets back whole SIP messages — one per WebSocket
message, text or binary, fragments joined (RFC 7118 §5: no Content-Length framing) — and
has each message it writes wrapped in a frame of its own: text when it is UTF-8, else
binary (§4.2).  The HTTP handshake is refused when it does not ask for the ``sip``
subprotocol (§4.1: 400), comes to another path (404) or from an origin not allowed
(403), each told once a minute per source.  Ping, pong and close are the protocol's.
No SIP decision.  Imports ``transport`` and ``guard``, and ``websockets``.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Final

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from ..core.guard import Guard
from .transport import TcpConnection

#: The protocol object's own logger: it says "connection open" at INFO for every one.
_QUIET: Final = logging.getLogger(__name__ + ".protocol")
_QUIET.setLevel(logging.WARNING)

#: RFC 7118 §4.1: the subprotocol a SIP WebSocket client must ask for.
SIP: Final = Subprotocol("sip")


class WsSessions:
    """Makes the WebSocket session of each accepted connection (``TcpConnection.framing``).

    ``origins``: the ``Origin`` values allowed (``scheme://host[:port]``); None allows
    any, an empty tuple only clients that send none (not a browser)."""

    def __init__(
        self, path: str, origins: tuple[str, ...] | None, max_size: int, guard: Guard
    ) -> None:
        self.path = path
        self.origins = origins
        self.max_size = max_size
        self.guard = guard

    def __call__(self, conn: TcpConnection) -> WsSession:
        return WsSession(conn, self)

    def refusal(self, request: Request) -> tuple[HTTPStatus, str] | None:
        """Why the upgrade ``request`` is refused, or None."""
        path = request.path.partition("?")[0]
        if path != self.path:
            return HTTPStatus.NOT_FOUND, f"no SIP WebSocket at {path} (it is at {self.path})"
        origin = request.headers.get("Origin")
        if self.origins is not None and origin is not None and origin not in self.origins:
            return HTTPStatus.FORBIDDEN, f"origin {origin} is not in --ws-origin"
        if SIP not in _offered(request.headers):
            return HTTPStatus.BAD_REQUEST, "the sip subprotocol is required (RFC 7118 §4.1)"
        return None

    def tell(self, conn: TcpConnection, what: str) -> None:
        if conn.flow is not None:
            now = conn.driver.loop.time()
            message = f"WebSocket from %s: {what.replace('%', '%%')}"
            self.guard.tell("ws", conn.flow.remote[0], now, message)


def _offered(headers: Headers) -> list[str]:
    return [
        name.strip()
        for value in headers.get_all("Sec-WebSocket-Protocol")
        for name in value.split(",")
    ]


class WsSession:
    """One connection's WebSocket (see the module's docstring).  Bounded: a message, its
    fragments joined, is at most ``max_size`` bytes (the protocol fails the connection
    with 1009 past it), and the handshake's request is bounded by ``websockets``."""

    __slots__ = ("conn", "owner", "parts", "proto")

    def __init__(self, conn: TcpConnection, owner: WsSessions) -> None:
        self.conn = conn
        self.owner = owner
        self.proto = ServerProtocol(subprotocols=[SIP], max_size=owner.max_size, logger=_QUIET)
        #: The fragments of a message still arriving.
        self.parts: list[bytes] | None = None

    def received(self, data: bytes) -> list[bytes]:
        """The SIP messages that ``data`` completes (none during the handshake)."""
        proto = self.proto
        proto.receive_data(data)
        messages: list[bytes] = []
        for event in proto.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                opcode = event.opcode
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    if event.fin:
                        messages.append(bytes(event.data))
                    else:
                        self.parts = [bytes(event.data)]
                elif opcode is Opcode.CONT and self.parts is not None:
                    self.parts.append(bytes(event.data))
                    if event.fin:
                        messages.append(b"".join(self.parts))
                        self.parts = None
                # PING is answered and CLOSE echoed by the protocol itself.
        if proto.handshake_exc is not None and proto.state.name == "CONNECTING":
            # Not even an HTTP request: the protocol answered 400 itself.  (A refusal of
            # ours said so already: told once a minute per source, this one is not.)
            self.owner.tell(self.conn, f"not a WebSocket handshake: {proto.handshake_exc}")
        self._flush()
        return messages

    def wrap(self, message: bytes) -> bytes:
        """``message`` as one WebSocket message: text when it is UTF-8 (RFC 7118 §4.2
        recommends it), else binary."""
        proto = self.proto
        if proto.state.name != "OPEN":
            return b""
        try:
            message.decode("utf-8")
        except UnicodeDecodeError:
            proto.send_binary(message)
        else:
            proto.send_text(message)
        return b"".join(proto.data_to_send())

    def going_away(self) -> None:
        """The server stops: a close frame with 1001 (RFC 6455 §7.4.1), so a client such
        as JsSIP knows to reconnect elsewhere rather than see the connection drop."""
        proto = self.proto
        if proto.state.name == "OPEN":
            proto.send_close(1001, "server stopping")
            self._flush()

    def _handshake(self, request: Request) -> None:
        proto = self.proto
        refusal = self.owner.refusal(request)
        if refusal is None:
            response = proto.accept(request)
        else:
            status, why = refusal
            response = proto.reject(status, why + "\n")
        if response.status_code != 101:
            why = refusal[1] if refusal is not None else str(proto.handshake_exc or response)
            self.owner.tell(self.conn, f"upgrade refused with {response.status_code}: {why}")
        proto.send_response(response)

    def _flush(self) -> None:
        conn = self.conn
        for data in self.proto.data_to_send():
            if data:
                conn.send_raw(data)
            else:  # the protocol's end of stream: after a close, a refusal, an error
                transport = conn.transport
                if transport is not None and not transport.is_closing():
                    transport.close()
