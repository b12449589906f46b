"""asyncio glue for media: the RTP and RTCP sockets of the sessions, and their timer.

What belongs here: ``RtpPorts`` (the ``PortSource`` of ``core.mediatable``: binds an even
port and the next one in ``--rtp-ports``, non-blocking, read with ``add_reader``; gives
them back by closing them) and ``MediaDriver`` (reads each socket dry into its session,
sends what the session returns, arms one timer for the table's next deadline, writes the
recordings of the sessions that ended).  No media decision is made here: what to send,
when, and to whom is the core's.  Imports ``core.mediatable``, ``core.mediahand``,
``core.media`` and ``core.audio`` (to write a recording's WAV).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from pathlib import Path
from typing import Final

from ..core.audio import write_wav
from ..core.media import Datagram, MediaSession
from ..core.mediahand import MediaHand
from ..core.mediatable import MediaTable, Out

log = logging.getLogger(__name__)

#: Datagrams read from one socket per wake-up, at most (then the loop moves on).
READ_BATCH: Final = 64
#: Bytes read per datagram: RTP over UDP on a LAN stays well under it.
MAX_DATAGRAM: Final = 2048


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
        #: port -> (RTP socket, RTCP socket)
        self.bound: dict[int, tuple[socket.socket, socket.socket]] = {}

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
                self.bound[port] = pair
                self.loop.add_reader(pair[0].fileno(), self.driver.read_rtp, port)
                self.loop.add_reader(pair[1].fileno(), self.driver.read_rtcp, port)
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
        pair = self.bound.pop(port, None)
        if pair is None:
            return
        for sock in pair:
            self.loop.remove_reader(sock.fileno())
            sock.close()

    def send(self, port: int, rtcp: bool, datagrams: list[Datagram]) -> None:
        pair = self.bound.get(port)
        if pair is None:
            return
        sock = pair[1] if rtcp else pair[0]
        for data, dest in datagrams:
            try:
                sock.sendto(data, dest)
            except (BlockingIOError, InterruptedError):
                pass  # the socket's buffer is full: RTP is not resent, the packet is lost
            except OSError as exc:
                log.debug("media send to %s failed: %s", dest, exc)

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

    def attach(self, table: MediaTable, hand: MediaHand) -> None:
        """The core's table (made with ``ports``) and the endpoint's hand."""
        self.table = table
        self.hand = hand

    def read_rtp(self, port: int) -> None:
        self._read(port, False)

    def read_rtcp(self, port: int) -> None:
        self._read(port, True)

    def _read(self, port: int, rtcp: bool) -> None:
        ports = self.ports
        pair = ports.bound.get(port)
        table = self.table
        if pair is None or table is None:
            return
        sock = pair[1] if rtcp else pair[0]
        session = table.by_port.get(port)
        now = self.loop.time()
        out: list[Datagram] = []
        for _ in range(READ_BATCH):
            try:
                data, source = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # an ICMP error of an earlier send: nothing to read
            if session is None:
                continue
            address = (source[0], source[1])
            if rtcp:
                session.rtcp(data, address, now)
            else:
                out.extend(session.rtp(data, address, now))
        if out:
            ports.send(port, False, out)

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
