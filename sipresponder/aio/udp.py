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
import errno
import logging
import operator
import socket
from collections.abc import Callable
from typing import Any, Final, cast

from ..core.flow import Flow
from ..sip._speedups import twin
from .transport import Driver

log = logging.getLogger(__name__)

#: A datagram and its peer's address, ``(host, port)`` or ``(host, port, flowinfo,
#: scope_id)``, as the socket module's ``recvfrom`` gives them and ``sendto`` takes them.
Datagram = tuple[bytes, tuple[Any, ...]]

# C twins of the _py_* functions here, or None (loaded by sip/_speedups.py).
_c_recv_batch: Final[Callable[[int, int], list[Datagram]] | None] = twin(__name__, "recv_batch")
_c_send_to: Final[Callable[[int, int, bytes, tuple[Any, ...]], bool] | None] = twin(
    __name__, "send_to"
)
_c_send_batch: Final[Callable[[int, int, list[Datagram], int], int] | None] = twin(
    __name__, "send_batch"
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


# ------------------------------------------------ the socket calls, defined in Python
#
# What the C functions of ``aio/_c/udp.c`` do, with the socket module on a descriptor it
# does not own (a socket object made on it, detached again in ``finally``): the same
# arguments, results and exceptions.  They stay the definitions, compared with the C on
# loopback sockets (tests/unit/test_speedups.py); the server uses the C ones alone.  Their
# arguments are typed Any, their types checked here: compiled, a typed argument is checked
# before the first line, which would refuse a bad one out of the C's order.

#: At most this many datagrams read (``recv_batch``) and sent (``send_batch``) a call,
#: and the room for each one read: as ``aio/_c/udp.c`` has them.
_MAX_BATCH: Final = 32
_MAX_SEND: Final = 64
_SLOT: Final = 65536
#: What a send that found the socket's buffer full fails with: nothing was sent.
_FULL: Final = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS))
_INT_MAX: Final = (1 << 31) - 1
_LONG_MIN: Final = -(1 << 63)
_LONG_MAX: Final = (1 << 63) - 1

#: The address tuple of the last peer read: handed out again while the peer stays.
_last_peer: tuple[Any, ...] = ()


def _c_long(value: Any) -> int:
    """``value`` as the C reads an int argument (``__index__``): TypeError for any other
    value, OverflowError beyond a C ``long``."""
    number = operator.index(value)
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise OverflowError("Python int too large to convert to C long")
    return number


def _int_argument(value: Any, what: str) -> int:
    """An fd or an address family: ValueError outside 0 to ``INT_MAX``."""
    number = _c_long(value)
    if not 0 <= number <= _INT_MAX:
        raise ValueError(f"{what} out of range")
    return number


def _unsigned(value: object) -> int:
    """A flowinfo or scope id as the C reads it: an int (TypeError), from 0 to 2**64 - 1
    (OverflowError)."""
    if not isinstance(value, int):
        raise TypeError("an integer is required")
    if value < 0:
        raise OverflowError("can't convert negative value to unsigned int")
    if value >= 1 << 64:
        raise OverflowError("Python int too large to convert to C unsigned long")
    return value


def _destination(family: int, address: Any) -> tuple[Any, ...]:
    """The address ``sendto`` is given for ``address`` on a socket of ``family``: a numeric
    host only (ValueError), a port from 0 to 65535 (OverflowError); on an IPv6 socket an
    IPv4 host is sent to IPv4-mapped, a host's scope (``fe80::1%lo``) is kept unless the
    tuple's scope id, when not 0, replaces it, and flowinfo is at most 20 bits."""
    if not isinstance(address, tuple) or len(address) < 2 or not isinstance(address[0], str):
        raise TypeError("address must be a (host, port, ...) tuple")
    host: str = address[0]
    port = _c_long(address[1])
    flowinfo = _unsigned(address[2]) if len(address) > 2 else 0
    scope = _unsigned(address[3]) if len(address) > 3 else 0
    host.encode()  # UnicodeEncodeError for a lone surrogate, as the C's UTF-8 view
    if not 0 <= port <= 65535:
        raise OverflowError("port must be 0-65535")
    if family == socket.AF_INET:
        if not _numeric(socket.AF_INET, host):
            raise ValueError(f"not a numeric address: {host!r}")
        return host, port
    if family != socket.AF_INET6:
        raise ValueError(f"address family {family}")
    if flowinfo > 0xFFFFF:
        raise OverflowError("flowinfo must be 0-1048575")
    scope_id = 0
    if _numeric(socket.AF_INET6, host):
        plain = host
    elif "%" in host:
        try:
            found = socket.getaddrinfo(
                host, None, socket.AF_INET6, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST
            )
        except (OSError, UnicodeError):
            raise ValueError(f"not a numeric address: {host!r}") from None
        scoped: tuple[Any, ...] = found[0][4]  # (host%scope, port, flowinfo, scope_id)
        plain = str(scoped[0]).partition("%")[0]
        scope_id = int(scoped[3])
    elif _numeric(socket.AF_INET, host):
        plain = "::ffff:" + host
    else:
        raise ValueError(f"not a numeric address: {host!r}")
    if scope:
        scope_id = scope & 0xFFFFFFFF
    return plain, port, flowinfo, scope_id


def _numeric(family: int, host: str) -> bool:
    try:
        socket.inet_pton(family, host)
    except (OSError, ValueError):
        return False
    return True


def _py_recv_batch(fd: Any, count: Any) -> list[Datagram]:
    """The datagrams waiting on the socket ``fd``, at most ``count`` (1 to ``_MAX_BATCH``),
    oldest first, each with its peer's address as ``recvfrom`` gives it (the same tuple
    object again while the peer stays the same); [] when none is waiting.  Any other
    failure raises OSError, unless datagrams came before it: then it waits for the next
    call."""
    global _last_peer
    fd = _int_argument(fd, "fd")
    count = _c_long(count)
    if not 1 <= count <= _MAX_BATCH:
        raise ValueError(f"recv_batch: count from 1 to {_MAX_BATCH}")
    batch: list[Datagram] = []
    # Its family and type read from the descriptor; with no default timeout set, the
    # socket module leaves the descriptor's mode alone, and MSG_DONTWAIT never waits.
    sock = socket.socket(fileno=fd)
    try:
        while len(batch) < count:
            try:
                data, peer = sock.recvfrom(_SLOT, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if batch:
                    break
                raise
            if peer == _last_peer:
                peer = _last_peer
            else:
                _last_peer = peer
            batch.append((data, peer))
    finally:
        sock.detach()
    return batch


def _py_send_to(fd: Any, family: Any, data: Any, address: Any) -> bool:
    """Send ``data`` in one datagram on the socket ``fd`` of ``family`` to ``address``
    (``_destination``): True once sent, False when the socket's send buffer is full
    (nothing was sent).  Any other failure raises OSError."""
    fd = _int_argument(fd, "fd")
    family = _int_argument(family, "family")
    if not isinstance(data, bytes):
        raise TypeError("send_to: data must be bytes")
    destination = _destination(family, address)
    sock = socket.socket(family, socket.SOCK_DGRAM, 0, fd)
    try:
        sock.sendto(data, socket.MSG_DONTWAIT, destination)
    except OSError as exc:
        if exc.errno in _FULL:
            return False
        raise
    finally:
        sock.detach()
    return True


def _py_send_batch(fd: Any, family: Any, items: Any, start: Any) -> int:
    """Send the datagrams ``items[start:]``, each a (data, address) tuple as ``send_to``
    takes them, on the socket ``fd`` of ``family``, in order, at most ``_MAX_SEND``: how
    many were sent, 0 when the send buffer is full.  An item that cannot be sent raises
    when it comes first (``start``), else ends the batch before it."""
    fd = _int_argument(fd, "fd")
    family = _int_argument(family, "family")
    if not isinstance(items, list):
        raise TypeError("send_batch: items must be a list")
    start = _c_long(start)
    if not 0 <= start < len(items):
        raise IndexError("send_batch: start out of range")
    # Read one by one: reading an address can run Python code (a port's __index__) that
    # changes the list, so its length is read afresh for every item.
    listed: list[Any] = items
    batch: list[tuple[bytes, tuple[Any, ...]]] = []
    while len(batch) < _MAX_SEND and start + len(batch) < len(listed):
        item = listed[start + len(batch)]
        try:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes)):
                raise TypeError("send_batch: items must be (bytes, address)")
            batch.append((item[0], _destination(family, item[1])))
        except Exception:
            if not batch:
                raise  # the first item is refused: the caller drops it
            break  # it will come first in the next call, and raise then
    sent = 0
    sock = socket.socket(family, socket.SOCK_DGRAM, 0, fd)
    try:
        for data, destination in batch:
            try:
                sock.sendto(data, socket.MSG_DONTWAIT, destination)
            except OSError as exc:
                if sent:
                    break  # the next call meets it first
                if exc.errno in _FULL:
                    return 0
                raise
            sent += 1
    finally:
        sock.detach()
    return sent


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
