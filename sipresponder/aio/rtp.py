"""asyncio glue for media: the RTP and RTCP sockets of the sessions, and their timer.

What belongs here: ``RtpPorts`` (the ``PortSource`` of ``core.mediatable``: binds an even
port and the next one in ``--rtp-ports``, non-blocking; gives them back by closing them),
``Conduit`` (one pair's sockets: what is read on them goes into their session, which says
what to send back), ``read_ready`` (one read from each ready RTP socket, in C with the
compiled core: ``aio/_c/rtp.c``) and ``MediaDriver`` (watches every RTP socket in one
epoll set of its own, arms one timer for the table's next deadline, sends what is due,
writes the recordings of the sessions that ended).  No media decision is made here: what
to send, when, and to whom is the core's.  Imports ``core.mediatable``,
``core.mediahand``, ``core.media``, ``core.audio`` (to write a recording's WAV) and
``sip._speedups`` (``twin``).

Why one epoll set: with a reader per socket, the event loop makes a callback, a
``recvfrom`` and an address tuple for each packet.  Here the loop watches the set as one
descriptor, and one call reads a packet from each ready socket (up to ``READY_LIMIT``),
handing out the same address tuple while a socket's peer stays: an echoed stream costs
about a tenth less CPU a packet (``make bench-media``).  RTCP, a packet every few
seconds, keeps a reader per socket.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import operator
import os
import select
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ..core.audio import write_wav
from ..core.media import Address, Datagram, MediaSession
from ..core.mediahand import MediaHand
from ..core.mediatable import MediaTable, Out
from ..sip._speedups import twin

log = logging.getLogger(__name__)

#: Bytes read per datagram: RTP over UDP on a LAN stays well under it.
MAX_DATAGRAM: Final = 2048
_write: Final = os.write

#: At most this many sockets read a wake-up: the rest wait for the next turn of the loop,
#: so that signalling is not kept waiting behind a media burst.
READY_LIMIT: Final = 64


#: What ``read_ready`` gives for each socket read: its conduit, the datagram, its source
#: (host, port).
Ready = tuple["Conduit", bytes, tuple[Any, ...]]

# The C twin of ``_py_read_ready``, or None (loaded by sip/_speedups.py).
_c_read_ready: Final[Callable[[Any, Any, Any], list[Ready]] | None] = twin(__name__, "read_ready")


def read_ready(poller: select.epoll, conduits: dict[int, Conduit], limit: int) -> list[Ready]:
    """``_py_read_ready``, in C with the compiled core."""
    if _c_read_ready is not None:
        return _c_read_ready(poller, conduits, limit)
    return _py_read_ready(poller, conduits, limit)


#: The room for each datagram read, and the most sockets read a call: as
#: ``aio/_c/rtp.c`` has them.
_MAX_READY: Final = 256
#: The last peer read on each descriptor, handed out again while it stays the same (typed
#: as any tuple: compiled, a ``tuple[str, int]`` would be unboxed and boxed anew).
_peers: dict[int, tuple[Any, ...]] = {}


def _recvfrom(fd: int) -> tuple[bytes, Any] | None:
    """One datagram of the socket ``fd`` (a socket object made on it, detached again), or
    None when its read fails."""
    sock = socket.socket(fileno=fd)
    try:
        return sock.recvfrom(MAX_DATAGRAM, socket.MSG_DONTWAIT)
    except OSError:
        return None
    finally:
        sock.detach()


def _py_read_ready(poller: Any, conduits: Any, limit: Any) -> list[Ready]:
    """The sockets of the epoll set ``poller`` that are readable now, at most ``limit``
    (1 to ``_MAX_READY``), each read once: for each whose descriptor is a key of the dict
    ``conduits``, (its conduit, the datagram, its source as (host, port)), the same tuple
    object as the last time while that socket's peer stays the same.  A socket with
    nothing to read after all, or whose read fails (an ICMP error of an earlier send), is
    skipped."""
    if not isinstance(poller, select.epoll):
        raise TypeError("read_ready: poller must be an epoll set")
    if not isinstance(conduits, dict):
        raise TypeError("read_ready: conduits must be a dict")
    limit = operator.index(limit)
    if not 1 <= limit <= _MAX_READY:
        raise ValueError(f"read_ready: limit from 1 to {_MAX_READY}")
    out: list[Ready] = []
    for fd, _ in poller.poll(0, limit):
        conduit = conduits.get(fd)
        if conduit is None:
            continue
        read = _recvfrom(fd)
        if read is None:
            continue  # nothing after all, or an ICMP error of an earlier send
        data, address = read
        peer: tuple[Any, ...] = (address[0], address[1])
        last = _peers.get(fd)
        if last == peer:
            assert last is not None
            peer = last
        else:
            _peers[fd] = peer
        out.append((conduit, data, peer))
    return out


class Conduit:
    """The two sockets of one session's port pair: the RTP one in the driver's epoll set,
    the RTCP one read with ``add_reader``.  One object per pair, so a packet finds its
    socket and its session with no lookup."""

    __slots__ = (
        "_fd",
        "driver",
        "loop",
        "peer",
        "port",
        "rtcp",
        "rtp",
        "session",
    )

    def __init__(
        self, port: int, rtp: socket.socket, rtcp: socket.socket, driver: MediaDriver
    ) -> None:
        self.port = port
        self.rtp = rtp
        self.rtcp = rtcp
        self.driver = driver
        self.loop = driver.loop
        # The RTP socket's descriptor: once it is connected, an echo is one ``write``
        # (cheaper to call than ``socket.send``, whose arguments are parsed each time).
        self._fd = rtp.fileno()
        #: Found in the table at the first packet (the session is opened after its port).
        self.session: MediaSession | None = None
        #: The latched client the RTP socket is connected to: the kernel then delivers
        #: that client's packets alone (the session would ignore the others anyway), and
        #: each read and send skips an address's conversion and a route lookup.
        self.peer: tuple[str, int] | None = None

    def take(self, data: bytes, source: Address, now: float) -> None:
        """One datagram read on the RTP socket (by the driver's ``read_ready``), from
        ``source``: into the session, and what it answers sent back."""
        session = self.session or self._find()
        if session is None:
            return
        echo = session.receive(data, source, now)
        if self.peer is None:
            remote = session.remote
            if session.latched and remote is not None:
                try:
                    self.rtp.connect(remote)
                    self.peer = remote
                except OSError:
                    pass
            if echo is not None and remote is not None:
                self.send(False, [(echo, remote)])
            return
        if echo is not None:
            # Connected to the latched client, which is where an echo goes (the session
            # latches once).
            try:
                _write(self._fd, echo)
            except OSError as exc:  # a full buffer loses the packet: RTP is not resent
                log.debug("media send to %s failed: %s", self.peer, exc)

    def read_rtcp(self) -> None:
        try:
            data, address = self.rtcp.recvfrom(MAX_DATAGRAM)
        except OSError:
            return
        session = self.session or self._find()
        if session is not None:
            session.rtcp(data, (address[0], address[1]), self.loop.time())

    def _find(self) -> MediaSession | None:
        table = self.driver.table
        self.session = None if table is None else table.by_port.get(self.port)
        return self.session

    def send(self, rtcp: bool, datagrams: list[Datagram]) -> None:
        sock = self.rtcp if rtcp else self.rtp
        peer = None if rtcp else self.peer
        for data, dest in datagrams:
            try:
                if dest == peer:
                    sock.send(data)
                else:
                    sock.sendto(data, dest)
            except (BlockingIOError, InterruptedError):
                pass  # the socket's buffer is full: RTP is not resent, the packet is lost
            except OSError as exc:
                log.debug("media send to %s failed: %s", dest, exc)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        self.driver.unwatch(self.rtp)
        loop.remove_reader(self.rtcp.fileno())
        self.rtp.close()
        self.rtcp.close()


class RtpPorts:
    """Port pairs for sessions: an even port for RTP, the next for RTCP, both bound."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, host: str, low: int, high: int, driver: MediaDriver
    ) -> None:
        self.loop = loop
        self.host = host
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.low = low + (low & 1)
        self.high = high
        self.driver = driver
        self._next = self.low
        self.bound: dict[int, Conduit] = {}

    def take(self) -> int | None:
        """The next pair free in the range (in turn, so a port is not reused at once)."""
        span = (self.high - self.low) // 2 + 1
        for _ in range(min(span, 4096)):
            port = self._next
            self._next = port + 2 if port + 2 <= self.high - 1 else self.low
            if port in self.bound or port + 1 > self.high:
                continue
            pair = self._bind(port)
            if pair is not None:
                conduit = Conduit(port, pair[0], pair[1], self.driver)
                self.bound[port] = conduit
                self.driver.watch(conduit)
                self.loop.add_reader(pair[1].fileno(), conduit.read_rtcp)
                return port
        return None

    def _bind(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        socks: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(self.family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
                socks.append(sock)
                sock.setblocking(False)
                sock.bind((self.host, p))
        except OSError as exc:
            for sock in socks:
                sock.close()
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                log.warning("cannot bind media port %d: %s", port, exc.strerror)
            return None
        return socks[0], socks[1]

    def give_back(self, port: int) -> None:
        conduit = self.bound.pop(port, None)
        if conduit is not None:
            conduit.close(self.loop)

    def send(self, port: int, rtcp: bool, datagrams: list[Datagram]) -> None:
        conduit = self.bound.get(port)
        if conduit is not None:
            conduit.send(rtcp, datagrams)

    def close(self) -> None:
        for port in list(self.bound):
            self.give_back(port)


class MediaDriver:
    """Runs the media table on an event loop: its sockets, its timer, its recordings."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, low: int, high: int) -> None:
        self.loop = loop
        self.ports = RtpPorts(loop, host, low, high, self)
        self.table: MediaTable | None = None
        self.hand: MediaHand | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        # Every session's RTP socket in one epoll set of ours, which the loop watches as
        # one descriptor: a wake-up reads what is ready on all of them in one call.
        self._poller = select.epoll()
        self._by_fd: dict[int, Conduit] = {}
        loop.add_reader(self._poller.fileno(), self._pump)

    def watch(self, conduit: Conduit) -> None:
        fd = conduit.rtp.fileno()
        self._poller.register(fd, select.EPOLLIN)
        self._by_fd[fd] = conduit

    def unwatch(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if self._by_fd.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def _pump(self) -> None:
        """The RTP sockets that have a datagram: one read from each, into its session.
        The set is level-triggered, so a socket with more waiting wakes it again."""
        now = self.loop.time()
        for conduit, data, source in read_ready(self._poller, self._by_fd, READY_LIMIT):
            conduit.take(data, source, now)

    def attach(self, table: MediaTable, hand: MediaHand) -> None:
        """The core's table (made with ``ports``) and the endpoint's hand."""
        self.table = table
        self.hand = hand

    def kick(self) -> None:
        """After signalling: send the RTCP BYEs of calls that ended, arm for new ones."""
        hand = self.hand
        if hand is not None and hand.outbox:
            self._run()
        else:
            self.arm()

    def arm(self) -> None:
        table = self.table
        deadline = None if table is None else table.next_deadline()
        if deadline is None:
            return
        if self._handle is not None:
            if self._armed is not None and self._armed <= deadline:
                return
            self._handle.cancel()
        self._armed = deadline
        self._handle = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = None
        self._run()

    def _run(self) -> None:
        hand = self.hand
        if hand is None:
            return
        now = self.loop.time()
        self._send(hand.tick(now))
        for session in hand.finish(now):
            self._save(session)
        self.arm()

    def _send(self, out: list[Out]) -> None:
        ports = self.ports
        for port, rtcp, data, dest in out:
            ports.send(port, rtcp, [(data, dest)])

    def _save(self, session: MediaSession) -> None:
        """A recording's WAV file, named after the call."""
        directory = session.mode.directory
        if session.mode.kind != "record" or not directory:
            return
        pcm = session.take_recording()
        safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in session.call_id)[:120]
        path = Path(directory) / f"{safe or 'call'}.wav"
        try:
            tmp = path.with_suffix(".wav.part")
            tmp.write_bytes(write_wav(pcm, session.recording_rate))
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write the recording %s: %s", path, exc.strerror)
            return
        log.info("recorded %s: %.1f s", path, len(pcm) / 2 / session.recording_rate)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        hand = self.hand
        if hand is not None and self.table is not None:
            now = self.loop.time()
            self._send(self.table.close_all(now))
            for session in hand.finish(now):
                self._save(session)
        self.ports.close()
        self.loop.remove_reader(self._poller.fileno())
        self._poller.close()
