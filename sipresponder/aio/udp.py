"""asyncio glue: the UDP side, the socket and the protocol that feed the sans-IO endpoint.

What belongs here: ``UdpProtocol`` (a flow kept per source address; the guard's screening
and anti-amplification proof; each datagram handed to the ``Driver``), ``DatagramSocket``
(the socket read and written in batches by the C functions ``recv_batch``, ``send_to``
and ``send_batch``: ``recvmmsg`` and ``sendmmsg``, with a bounded backlog while the kernel's
buffer is full) and ``udp_calls``, which hands those C functions over (or says they are not
there: then asyncio's datagram transport carries ``UdpProtocol``).  No protocol decisions
are made here.  Imports ``transport`` (``Driver``), ``core.flow`` (``Flow``) and
``sip._speedups`` (``twin``, which loads the C functions); only ``server`` imports it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Callable
from typing import Any, Final, cast

from ..core.flow import Flow
from ..sip._speedups import twin
from .transport import Driver

log = logging.getLogger(__name__)

# C twins of the _py_* functions here, or None (loaded by sip/_speedups.py).
_c_recv_batch: Final[Callable[[int, int], list[tuple[bytes, tuple[Any, ...]]]] | None] = twin(
    __name__, "recv_batch"
)
_c_send_to: Final[Callable[[int, int, bytes, tuple[Any, ...]], bool] | None] = twin(
    __name__, "send_to"
)
_c_send_batch: Final[Callable[[int, int, list[tuple[bytes, tuple[Any, ...]]], int], int] | None] = (
    twin(__name__, "send_batch")
)

#: UDP flows remembered per source address; the table is emptied when it fills.
MAX_UDP_FLOWS: Final = 4096


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.long_message = driver.guard.long_message
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        #: The flow of each recent source address: a flow is made once per peer, not per
        #: datagram (its address texts are computed when it is made).
        self._flows: dict[tuple[Any, ...], Flow] = {}
        #: The last source address and its flow: a load generator sends from one address,
        #: and comparing two tuples costs a quarter of hashing a new one for the lookup.
        #: (``DatagramSocket`` hands over the very same tuple while the peer stays.)
        self._last_addr: tuple[Any, ...] = ()
        self._last_flow: Flow | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        flow = self._last_flow
        if flow is None or (addr is not self._last_addr and addr != self._last_addr):
            flow = self._flows.get(addr)
            if flow is None:
                if len(self._flows) >= MAX_UDP_FLOWS:
                    self._flows.clear()
                flow = Flow("udp", (addr[0], addr[1]), self.local, self.transport)
                self._flows[addr] = flow
            self._last_addr = addr
            self._last_flow = flow
        driver = self.driver
        screen = driver.screen
        now = None
        proof = None
        if screen is not None:
            now = driver.loop.time()
            src = screen.admit(addr[0], len(data), now)
            if src is None:
                return  # not allowed, or over its rate: ignored (counted by the guard)
            if not src.verified and screen.caps and data[:4] == b"ACK ":
                proof = src  # the endpoint reads the ACK; then it is asked about its tag
                driver.endpoint.last_ack = None
        if len(data) > self.long_message and driver.check_headers(data, flow):
            return  # over a header limit: answered 513
        driver.receive(data, flow, now)
        if proof is not None:
            endpoint = driver.endpoint
            ack = endpoint.last_ack
            if ack is not None and endpoint.our_tag(ack):
                assert screen is not None
                screen.verify(proof)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like, from an earlier sendto: nothing to do.
        log.debug("UDP error: %s", exc)


#: Datagrams read in one ``recvmmsg`` call, at most (the C module's ``MAX_BATCH``): about what
#: uvloop reads in one turn of the loop too, before other sockets and timers get theirs.
UDP_BATCH: Final = 32

#: Bytes of responses held while the socket's send buffer is full; past it they are
#: dropped (and counted), as the kernel drops datagrams it has no room for.
MAX_UDP_BACKLOG: Final = 1 << 20


#: What ``send_to`` and ``send_batch`` raise for a datagram they cannot send (an error
#: from the kernel, an address that is not numeric, a port out of range, a wrong type):
#: that one is dropped and counted, the rest go on.
_SEND_ERRORS: Final = (OSError, ValueError, TypeError, OverflowError)

#: ``recv_batch``, ``send_to`` and ``send_batch`` (see ``udp_calls``).
UdpCalls = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]


def udp_calls() -> UdpCalls | None:
    """The C functions ``recv_batch``, ``send_to`` and ``send_batch``, or None: not built,
    or the pure-Python core runs (then asyncio's datagram transport is used)."""
    if _c_recv_batch is None or _c_send_to is None or _c_send_batch is None:
        return None
    return _c_recv_batch, _c_send_to, _c_send_batch


class DatagramSocket:
    """A UDP socket driven straight from the event loop's reader callback: asyncio's
    datagram transport as far as ``UdpProtocol`` and ``Driver`` use it (``sendto``,
    ``get_extra_info``, ``close``), with the socket calls in C (``udp_calls``).

    Each time the socket is readable, one ``recv_batch`` call reads up to ``UDP_BATCH``
    waiting datagrams (one ``recvmmsg`` system call, where uvloop makes one ``recvmsg``
    call and one callback per datagram) and hands each to the protocol.  The responses to
    them are held until the last is handled, then sent together, in order, with one
    ``sendmmsg`` call (``send_batch``); a response sent at any other time (a timer's) goes
    at once (``send_to``).  Only when the socket's send buffer is full do responses wait,
    in order, bounded by ``MAX_UDP_BACKLOG`` bytes, for the socket to be writable again.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: UdpProtocol,
        calls: UdpCalls,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._family = int(sock.family)
        self._protocol = protocol
        self._recv_batch, self._send_to, self._send_batch = calls
        #: While a batch of datagrams is handled, the responses to them, to send together.
        self._holding = False
        self._out: list[tuple[bytes, tuple[Any, ...]]] = []
        self._backlog: collections.deque[tuple[bytes, tuple[Any, ...]]] = collections.deque()
        self._backlog_bytes = 0
        self._closing = False
        #: Responses dropped because the backlog was full, or failed to send.
        self.dropped = 0
        loop.add_reader(self._fd, self._readable)
        protocol.connection_made(cast(asyncio.BaseTransport, self))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._sock.getsockname()
        if name == "socket":
            return self._sock
        return default

    def is_closing(self) -> bool:
        return self._closing

    def _readable(self) -> None:
        try:
            batch: list[tuple[bytes, tuple[Any, ...]]] = self._recv_batch(self._fd, UDP_BATCH)
        except OSError as exc:  # cleared by the read that reports it: no busy loop
            self._protocol.error_received(exc)
            return
        protocol = self._protocol
        self._holding = True
        try:
            for data, addr in batch:
                try:
                    protocol.datagram_received(data, addr)
                except Exception:  # as asyncio's transports do: logged, the next one read
                    log.exception("error handling a datagram from %s", addr)
        finally:
            self._holding = False
        if self._out:
            self._flush()

    def sendto(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._holding:
            self._out.append((data, addr))
            return
        if not self._backlog:
            try:
                if self._send_to(self._fd, self._family, data, addr):
                    return
            except _SEND_ERRORS as exc:
                self._failed(exc)
                return
            self._wait_writable()
        self._hold(data, addr)

    def _flush(self) -> None:
        """Send the responses held while a batch was handled."""
        out = self._out
        self._out = []
        start = 0
        if not self._backlog:  # else they go behind what already waits
            while start < len(out):
                try:
                    sent: int = self._send_batch(self._fd, self._family, out, start)
                except _SEND_ERRORS as exc:  # that one alone
                    self._failed(exc)
                    start += 1
                    continue
                if sent == 0:
                    self._wait_writable()
                    break
                start += sent
        for i in range(start, len(out)):
            data, addr = out[i]
            self._hold(data, addr)

    def _failed(self, exc: Exception) -> None:
        self.dropped += 1
        self._protocol.error_received(exc)

    def _wait_writable(self) -> None:
        if not self._closing:
            self._loop.add_writer(self._fd, self._writable)

    def _hold(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._closing:
            return
        if self._backlog_bytes + len(data) > MAX_UDP_BACKLOG:
            self.dropped += 1
            log.debug("UDP send buffer full: a %d-byte response to %s dropped", len(data), addr)
            return
        self._backlog.append((data, addr))
        self._backlog_bytes += len(data)

    def _writable(self) -> None:
        backlog = self._backlog
        while backlog:
            data, addr = backlog[0]
            try:
                if not self._send_to(self._fd, self._family, data, addr):
                    return  # still full: wait for the next writable
            except _SEND_ERRORS as exc:
                self._failed(exc)
            backlog.popleft()
            self._backlog_bytes -= len(data)
        self._loop.remove_writer(self._fd)

    def close(self) -> None:
        """Stop reading and close the socket; what still waits to be sent is dropped."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self.dropped += len(self._backlog) + len(self._out)
        self._backlog.clear()
        self._out.clear()
        self._backlog_bytes = 0
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)
