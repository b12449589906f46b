"""The media sessions of the calls in progress: opened, found, timed, ended, bounded.

What belongs here: ``MediaTable`` — a session per answered call, keyed by Call-ID, at
most ``limit`` of them; their ports, taken from and given back to a ``PortSource`` that
the glue provides (it binds the sockets); their deadlines in one heap, so the glue arms
one timer; the ends of a session (BYE, CANCEL, Timer H, a final non-2xx after early
media, inactivity, the longest call allowed) and its linger after the end, during which
late packets are only counted (RTP after the BYE is a verdict); and the verdicts on what
the client did with its media (``judge``).  No sockets, no clock, no randomness: the
glue passes ``now`` and a source of random 32-bit numbers.  Imports ``sdp``, ``media``
and ``mediaplan``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Final, Protocol

from ..sip.sdp import Stream
from .media import Address, Datagram, MediaSession
from .mediaplan import MediaMode

#: A datagram to send: from the session's port (RTCP: the port above), to where.
Out = tuple[int, bool, bytes, Address]


def _from(port: int, rtcp: bool, datagrams: list[Datagram], out: list[Out]) -> None:
    for data, dest in datagrams:
        out.append((port, rtcp, data, dest))


#: A session lingers this long after its end: packets then are counted, not answered,
#: and the port is not given to another call while the client may still send to it.
LINGER: Final = 2.0
#: Inactivity and length are looked at this often, seconds.
SWEEP: Final = 1.0


class PortSource(Protocol):
    """The glue's side: a port pair bound for a session, and given back."""

    def take(self) -> int | None:
        """An even port whose pair (it and the next) is bound and read, or None."""

    def give_back(self, port: int) -> None:
        """The session on ``port`` is over: close its sockets."""


class MediaTable:
    """Every media session in progress, and those lingering after their end."""

    def __init__(
        self,
        ports: PortSource,
        random32: Callable[[], int],
        *,
        limit: int = 1000,
        timeout: float = 60.0,
        longest: float = 3600.0,
        no_rtp_after: float = 5.0,
        wall_offset: float = 0.0,
    ) -> None:
        self.ports = ports
        self.random32 = random32
        self.limit = limit
        #: A session that gets no packet for this long ends ("timeout").
        self.timeout = timeout
        #: A session ends this long after it began, whatever happens ("longest").
        self.longest = longest
        #: The verdict "no RTP from the client" is given when none came this long after
        #: the ACK (or after the session began, when the ACK was not seen).
        self.no_rtp_after = no_rtp_after
        self.wall_offset = wall_offset
        self.sessions: dict[str, MediaSession] = {}
        #: The same sessions by their RTP port, for the glue's reads.
        self.by_port: dict[int, MediaSession] = {}
        #: Sessions that ended and are done lingering: the owner takes them (``done``)
        #: to journal their figures and verdicts, and to write their recordings.
        self.finished: list[MediaSession] = []
        self.stats = {"opened": 0, "refused": 0, "ended": 0}
        self._heap: list[tuple[float, int, MediaSession]] = []
        self._count = 0
        self._next_sweep: float | None = None

    def __len__(self) -> int:
        return len(self.sessions)

    # ------------------------------------------------------------------ calls

    def take_port(self) -> int | None:
        """A port for a new session, or None when the table or the ports are full."""
        port = None if len(self.sessions) >= self.limit else self.ports.take()
        if port is None:
            self.stats["refused"] += 1
        return port

    def give_back(self, port: int) -> None:
        """A port taken for a session that was not opened after all."""
        self.ports.give_back(port)

    def open(
        self,
        call_id: str,
        port: int,
        stream: Stream,
        mode: MediaMode,
        signalling: str,
        now: float,
    ) -> MediaSession:
        """A session for a call's answer, on ``port`` (from ``take_port``)."""
        session = MediaSession(
            call_id,
            port,
            stream,
            mode,
            signalling,
            now,
            ssrc=self.random32(),
            seq=self.random32(),
            timestamp=self.random32(),
            wall_offset=self.wall_offset,
        )
        self.sessions[call_id] = session
        self.by_port[port] = session
        self.stats["opened"] += 1
        self._schedule(session)
        if self._next_sweep is None:
            self._next_sweep = now + SWEEP
        return session

    def get(self, call_id: str) -> MediaSession | None:
        return self.sessions.get(call_id)

    def acked(self, call_id: str, now: float) -> None:
        session = self.sessions.get(call_id)
        if session is not None and session.acked_at is None:
            session.acked_at = now

    def end(self, call_id: str, now: float, why: str) -> list[Out]:
        """The call ended (``why``): the session's RTCP BYE; it lingers for ``LINGER``."""
        session = self.sessions.get(call_id)
        out: list[Out] = []
        if session is None or session.closed_at is not None:
            return out
        _from(session.port, True, session.close(now, why), out)
        self._push(now + LINGER, session)
        return out

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        heap = self._heap
        first = heap[0][0] if heap else None
        sweep = self._next_sweep
        if first is None:
            return sweep
        return first if sweep is None else min(first, sweep)

    def tick(self, now: float) -> list[Out]:
        """Everything due at ``now``: generated packets, reports, ends and frees."""
        out: list[Out] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, session = heapq.heappop(heap)
            if session.closed_at is not None:
                if (
                    now >= session.closed_at + LINGER
                    and self.sessions.get(session.call_id) is session
                ):
                    self._free(session)
                continue
            rtp, rtcp = session.tick(now)
            _from(session.port, False, rtp, out)
            _from(session.port, True, rtcp, out)
            self._schedule(session)
        sweep = self._next_sweep
        if sweep is not None and sweep <= now:
            out.extend(self._sweep(now))
            self._next_sweep = now + SWEEP if self.sessions else None
        return out

    def _sweep(self, now: float) -> list[Out]:
        """End the sessions silent for ``timeout`` or older than ``longest``."""
        out: list[Out] = []
        for session in list(self.sessions.values()):
            if session.closed_at is not None:
                continue
            last = session.stats.last_arrival or session.started
            if now - session.started >= self.longest:
                out.extend(self.end(session.call_id, now, "longest"))
            elif now - last >= self.timeout:
                out.extend(self.end(session.call_id, now, "timeout"))
        return out

    def _schedule(self, session: MediaSession) -> None:
        deadline = session.next_deadline()
        if deadline is not None:
            self._push(deadline, session)

    def _push(self, deadline: float, session: MediaSession) -> None:
        self._count += 1
        heapq.heappush(self._heap, (deadline, self._count, session))

    def _free(self, session: MediaSession) -> None:
        del self.sessions[session.call_id]
        del self.by_port[session.port]
        self.ports.give_back(session.port)
        self.stats["ended"] += 1
        self.finished.append(session)

    def done(self) -> list[MediaSession]:
        """The sessions freed since the last call, for the journal and the recordings."""
        finished = self.finished
        self.finished = []
        return finished

    def close_all(self, now: float) -> list[Out]:
        """The responder stops: every session ends and is freed at once (the caller sends
        the RTCP BYEs before it closes the sockets)."""
        out: list[Out] = []
        for session in list(self.sessions.values()):
            _from(session.port, True, session.close(now, "stop"), out)
            self._free(session)
        self._heap.clear()
        return out

    # ------------------------------------------------------------------ verdicts

    def judge(self, session: MediaSession) -> list[tuple[str, str]]:
        """What the client did wrong with its media, as (rule, message) pairs: given once,
        when the session ends (what came after its end is ``judge_after``'s)."""
        out: list[tuple[str, str]] = []
        if session.judged:
            return out
        session.judged = True
        stream = session.stream
        since = session.acked_at if session.acked_at is not None else session.started
        first = session.first_at
        ended = session.closed_at if session.closed_at is not None else since
        sends = stream.direction in ("sendrecv", "recvonly")  # ours: the client sends
        if (
            sends
            and ended - since >= self.no_rtp_after
            and (first is None or first - since > self.no_rtp_after)
        ):
            when = "none came" if first is None else f"the first came after {first - since:.1f} s"
            out.append(
                (
                    "RFC 3264 §5.1",
                    f"no RTP from the client within {self.no_rtp_after:g} s of the ACK: {when}",
                )
            )
        for pt, count in sorted(session.foreign_types.items()):
            out.append(
                (
                    "RFC 3264 §5.1",
                    f"{count} RTP packets of payload type {pt}, which the answer did not agree "
                    f"(agreed: {stream.payload_type}"
                    + (f", {stream.dtmf}" if stream.dtmf is not None else "")
                    + ")",
                )
            )
        stats = session.stats
        if stats.timestamp_errors:
            out.append(
                (
                    "RFC 3550 §5.1",
                    f"{stats.timestamp_errors} RTP packets whose timestamp went back while "
                    "the sequence went on",
                )
            )
        if stats.received and stats.first_marker is False:
            out.append(("RFC 3551 §4.1", "the first RTP packet of the stream has no marker bit"))
        return out

    def judge_after(self, session: MediaSession) -> list[tuple[str, str]]:
        """What the client sent after the call's BYE, once the session is freed."""
        if session.after_close and session.ended == "bye":
            return [("RFC 3550 §6.6", f"{session.after_close} RTP packets after the call's BYE")]
        return []
