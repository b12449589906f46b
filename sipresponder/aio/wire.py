"""asyncio glue: sending a response the way a fault says (``core.faults.Wire``).

What belongs here: ``WireSender``, which the ``Driver`` hands every response that is a
``Wire`` instead of plain bytes — from another UDP port of ours (one socket per local
address, made when first needed), over TCP in slow pieces, then a reset (RST: linger 0,
then abort) or a close (FIN) of the connection.  The core decided all of it; this only
does it, bounded (at most ``MAX_PIECES`` pieces a response, the pieces of a connection
gone are dropped).  Imports ``core.faults``, ``core.flow`` and ``transport``.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
from typing import Any, Final, cast

from ..core.faults import MAX_PIECES
from ..core.flow import Flow
from ..core.shaping import Wire
from .transport import Driver, TcpConnection

log = logging.getLogger(__name__)

#: SO_LINGER on, 0 s: close() sends RST and drops what is unsent (a reset on purpose).
_LINGER_RESET: Final = struct.pack("ii", 1, 0)
#: A reset waits for what was written to leave, this often and at most this many times.
_RESET_POLL: Final = 0.01
_RESET_TRIES: Final = 100


class WireSender:
    """Does what a ``Wire`` asks, for one ``Driver``."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        #: Local address -> the UDP socket ``wrong_source_port`` sends from.
        self._other: dict[str, socket.socket] = {}

    def __call__(self, data: Wire, flow: Flow, dest: tuple[str, int]) -> None:
        raw = bytes(data)
        conn: Any = flow.conn
        if flow.transport == "udp":
            if data.other_port:
                self._from_other_port(raw, flow, dest)
            else:
                conn.sendto(raw, dest)
            return
        tcp = cast(TcpConnection, conn)
        if data.pieces is not None:
            size, interval = data.pieces
            self._in_pieces(tcp, raw, size, interval, data.after)
            return
        tcp.write(raw)
        if data.after:
            self._end(tcp, data.after)

    def close(self) -> None:
        for sock in self._other.values():
            sock.close()
        self._other.clear()

    # ------------------------------------------------------------------- UDP

    def _from_other_port(self, raw: bytes, flow: Flow, dest: tuple[str, int]) -> None:
        local = flow.local[0]
        sock = self._other.get(local)
        if sock is None:
            family = socket.AF_INET6 if ":" in local else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((local, 0))
            except OSError as exc:
                sock.close()
                log.warning("wrong_source_port: cannot bind a UDP socket on %s: %s", local, exc)
                return
            self._other[local] = sock
        try:
            sock.sendto(raw, dest)
        except OSError as exc:  # a full buffer, an unreachable peer: as a lost datagram
            log.debug("wrong_source_port: a response to %s was not sent: %s", dest, exc)

    # ------------------------------------------------------------------- TCP

    def _in_pieces(
        self, tcp: TcpConnection, raw: bytes, size: int, interval: float, after: str
    ) -> None:
        """``raw`` in pieces of ``size`` bytes (more when it would take over
        ``MAX_PIECES``), ``interval`` seconds apart, then ``after``."""
        tcp.flush()
        size = max(size, math.ceil(len(raw) / MAX_PIECES))
        pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
        loop = self.driver.loop

        def next_piece(index: int) -> None:
            if tcp.closed or tcp.transport is None or tcp.transport.is_closing():
                return  # the connection is gone: the rest with it
            tcp.write(pieces[index])
            if index + 1 < len(pieces):
                loop.call_later(interval, next_piece, index + 1)
            elif after:
                self._end(tcp, after)

        next_piece(0)

    def _end(self, tcp: TcpConnection, how: str) -> None:
        """Close (FIN, once what was written is sent) or reset (RST) the connection."""
        tcp.flush()
        transport = tcp.transport
        if transport is None or transport.is_closing():
            return
        if how == "close":
            transport.close()
            return
        self._reset(tcp, _RESET_TRIES)

    def _reset(self, tcp: TcpConnection, tries: int) -> None:
        transport = tcp.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() and tries > 0:
            # What was written goes first: the reset comes after the response, not instead.
            self.driver.loop.call_later(_RESET_POLL, self._reset, tcp, tries - 1)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError as exc:
                log.debug("reset_after: SO_LINGER refused (%s): closing instead", exc)
        transport.abort()
