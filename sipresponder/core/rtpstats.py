"""What a received RTP stream was like: RFC 3550 appendix A's statistics, and its DTMF.

What belongs here: ``ReceiverStats``, the figures of the one stream a media session
receives (sequence validation A.1, loss A.3, interarrival jitter A.8, the report block
of §6.4.1 that sums them up, and the faults a test endpoint reports: SSRC changes,
timestamps that go back, a first packet without its marker); and ``DtmfReceiver``, the
digits of RFC 4733 telephone-events.  Both are fed parsed packets (``rtp.RtpPacket``)
and ``now``, the monotonic time of arrival in seconds; neither sends anything.

Pure bookkeeping: no clock (every call takes ``now``), no randomness, no I/O.  Imports
``rtp`` only; none of asyncio, socket, time, random, os, threading, selectors.
"""

from __future__ import annotations

from typing import Final

from .rtcp import ReportBlock, SenderReport, middle_32
from .rtp import EVENT_DIGITS, RtpPacket, parse_event

#: A.1: a new source is valid once this many packets in sequence have come.
MIN_SEQUENTIAL: Final = 2
#: A.1: a forward jump of less than this is a gap (packets lost), not a restart.
MAX_DROPOUT: Final = 3000
#: A.1: a backward step of up to this is a late (reordered or duplicate) packet.
MAX_MISORDER: Final = 100
RTP_SEQ_MOD: Final = 1 << 16

#: The distinct SSRCs kept in ``ReceiverStats.ssrcs`` (the changes are all counted).
MAX_SSRCS: Final = 16
#: The events a ``DtmfReceiver`` keeps by default (later ones are counted as dropped).
MAX_DIGITS: Final = 256
#: The recent events a ``DtmfReceiver`` remembers to recognise their later packets.
_RECENT_EVENTS: Final = 32

_MASK32: Final = 0xFFFFFFFF
#: RFC 4733 §2.3.5: the largest duration a packet can carry.
_MAX_DURATION: Final = 0xFFFF


def _signed32(value: int) -> int:
    """A difference of two 32-bit RTP timestamps, modulo 2^32, as a signed number."""
    value &= _MASK32
    return value - (1 << 32) if value & 0x80000000 else value


class ReceiverStats:
    """The statistics of one received RTP stream (RFC 3550 appendix A), from ``update``
    on each packet and ``sender_report`` on each SR of its sender.

    Sequence numbers are validated as in A.1 (probation of ``MIN_SEQUENTIAL`` packets,
    ``MAX_DROPOUT``, ``MAX_MISORDER``, resynchronisation after two sequential packets
    past a large jump), with one difference: the packets of a probation or of a
    resynchronisation are counted once it succeeds (A.1 counts only from the last of
    them), so that a clean stream of N packets shows N received, N expected.

    A new SSRC starts the sequence state afresh (a new source, §8.2) and is counted in
    ``ssrc_changes``; ``received``, ``expected``, ``lost`` and ``bytes`` add up over all
    the SSRCs of the stream, while ``report`` and ``jitter`` are the current source's.

    ``telephone_event``, the payload type of RFC 4733 events, if the stream has one:
    those packets count in the sequence and the loss, but not in the jitter nor the
    timestamp check, since all the packets of an event carry its start time (§2.5.1.2),
    not the time they were sent.
    """

    __slots__ = (
        "_bad_bytes",
        "_bad_seq",
        "_base_seq",
        "_closed_expected",
        "_expected_prior",
        "_has_reference",
        "_has_top",
        "_in_segment",
        "_lsr",
        "_prior_expected",
        "_prior_received",
        "_probation",
        "_received",
        "_received_prior",
        "_reference_now",
        "_reference_ts",
        "_run_bytes",
        "_sr_at",
        "_sr_ssrc",
        "_top_ts",
        "bytes",
        "clock_rate",
        "cycles",
        "first_arrival",
        "first_marker",
        "jitter",
        "last_arrival",
        "max_seq",
        "payload_types",
        "rejected",
        "sender_reports",
        "ssrc",
        "ssrc_changes",
        "ssrcs",
        "telephone_event",
        "timestamp_errors",
    )

    def __init__(self, clock_rate: int, telephone_event: int | None = None) -> None:
        if clock_rate <= 0:
            raise ValueError("an RTP clock rate is a positive number of units per second")
        self.clock_rate = clock_rate
        self.telephone_event = telephone_event
        #: The current source; None until the first packet.
        self.ssrc: int | None = None
        #: The distinct SSRCs seen, in order, at most ``MAX_SSRCS``.
        self.ssrcs: list[int] = []
        self.ssrc_changes = 0
        #: Octets (as ``size`` told ``update``) of the packets counted as received.
        self.bytes = 0
        #: Packets whose timestamp went back while their sequence number went on.
        self.timestamp_errors = 0
        #: The marker bit of the stream's first packet (RFC 3551 §4.1 wants it set on the
        #: first packet of a talkspurt, hence of the stream); None before any packet.
        self.first_marker: bool | None = None
        self.payload_types: set[int] = set()
        self.first_arrival: float | None = None
        self.last_arrival: float | None = None
        #: Packets ``update`` answered False for (some are counted later, see the class).
        self.rejected = 0
        self.sender_reports = 0
        #: A.8's estimate, in timestamp units, for the current source.
        self.jitter = 0.0
        #: A.1: the highest sequence number, and how many times it wrapped.
        self.max_seq = 0
        self.cycles = 0
        # The expected and received counts of the SSRCs before the current one.
        self._prior_expected = 0
        self._prior_received = 0
        # The last SR (its SSRC, LSR and arrival), for the LSR and DLSR fields.
        self._sr_ssrc = -1
        self._lsr = 0
        self._sr_at = 0.0
        self._new_source(0)

    def _new_source(self, seq: int) -> None:
        """A.1 ``init_seq`` for the first packet of a source, then probation."""
        self.max_seq = (seq - 1) & 0xFFFF
        self._probation = MIN_SEQUENTIAL
        self._run_bytes = 0
        self._in_segment = False
        self._base_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1  # matches no sequence number
        self._bad_bytes = 0
        self.cycles = 0
        # This source's counts: received, the expected of its segments before the last
        # resynchronisation, and the counts at the previous report (A.3).
        self._received = 0
        self._closed_expected = 0
        self._expected_prior = 0
        self._received_prior = 0
        self.jitter = 0.0
        self._has_reference = False
        self._reference_now = 0.0
        self._reference_ts = 0
        self._has_top = False
        self._top_ts = 0

    def _start_segment(self, seq: int, run: int, run_bytes: int) -> None:
        """A.1 ``init_seq`` once a source is valid (``seq`` the last of ``run`` packets in
        sequence, all now counted), or resynchronised after a jump."""
        self._closed_expected += self._segment_expected()
        self._base_seq = seq - (run - 1)  # may be below 0 when the run wrapped
        self.max_seq = seq
        self.cycles = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._in_segment = True
        self._received += run
        self.bytes += run_bytes

    def _segment_expected(self) -> int:
        if not self._in_segment:
            return 0
        return (self.cycles << 16) + self.max_seq - self._base_seq + 1

    # ------------------------------------------------------------------ packets

    def update(self, packet: RtpPacket, now: float, size: int) -> bool:
        """Account for ``packet`` (``size`` octets on the wire) arrived at ``now``; False
        when A.1 does not (yet) take it as valid: a packet of a probation, or the first
        past a large jump in sequence numbers."""
        if self.first_arrival is None:
            self.first_arrival = now
            self.first_marker = packet.marker
        self.last_arrival = now
        self.payload_types.add(packet.payload_type)
        ssrc = packet.ssrc
        if ssrc != self.ssrc:
            if self.ssrc is not None:
                self.ssrc_changes += 1
                self._prior_expected += self._source_expected()
                self._prior_received += self._received
            self.ssrc = ssrc
            if len(self.ssrcs) < MAX_SSRCS and ssrc not in self.ssrcs:
                self.ssrcs.append(ssrc)
            self._new_source(packet.sequence)
        media = packet.payload_type != self.telephone_event
        seq = packet.sequence
        if self._probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self._probation -= 1
                self.max_seq = seq
                self._run_bytes += size
                if media:
                    self._check_timestamp(packet.timestamp)
                    self._jitter(packet.timestamp, now)
                if self._probation == 0:
                    self._start_segment(seq, MIN_SEQUENTIAL, self._run_bytes)
                    return True
            else:
                # Out of sequence: this packet starts the probation's run again.
                self._probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
                self._run_bytes = size
                if media:
                    self._top(packet.timestamp)
                    self._jitter(packet.timestamp, now)
            self.rejected += 1
            return False
        udelta = (seq - self.max_seq) & 0xFFFF
        if udelta < MAX_DROPOUT:
            # In order, with a permissible gap (or a duplicate of the highest).
            if udelta:
                if seq < self.max_seq:
                    self.cycles += 1  # the sequence number wrapped
                self.max_seq = seq
                if media:
                    self._check_timestamp(packet.timestamp)
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A very large jump.  Two sequential packets: the other side restarted without
            # telling us; start over from them.
            if seq != self._bad_seq:
                self._bad_seq = (seq + 1) & 0xFFFF
                self._bad_bytes = size
                self.rejected += 1
                return False
            self._start_segment(seq, 2, self._bad_bytes + size)
            self._has_reference = False
            if media:
                self._top(packet.timestamp)
                self._jitter(packet.timestamp, now)
            return True
        # else: a duplicate or a reordered packet, counted (A.3: lost may go negative).
        self._received += 1
        self.bytes += size
        if media:
            self._jitter(packet.timestamp, now)
        return True

    def _top(self, timestamp: int) -> None:
        self._has_top = True
        self._top_ts = timestamp

    def _check_timestamp(self, timestamp: int) -> None:
        """The packet with the highest sequence number so far: its timestamp may not be
        before the previous highest's (§5.1: it grows with the sampling instant; equal
        is allowed, several packets may share one)."""
        if self._has_top and _signed32(timestamp - self._top_ts) < 0:
            self.timestamp_errors += 1
        self._has_top = True
        self._top_ts = timestamp

    def _jitter(self, timestamp: int, now: float) -> None:
        """A.8: D(i-1, i) is the difference of the two packets' transit times (arrival
        in timestamp units minus RTP timestamp), here taken as the difference of their
        arrivals minus that of their timestamps (modulo 2^32, so a wrap is no jump);
        J += (|D| - J) / 16."""
        if self._has_reference:
            d = (now - self._reference_now) * self.clock_rate - _signed32(
                timestamp - self._reference_ts
            )
            if d < 0:
                d = -d
            self.jitter += (d - self.jitter) / 16.0
        self._has_reference = True
        self._reference_now = now
        self._reference_ts = timestamp

    def sender_report(self, sr: SenderReport, now: float) -> None:
        """Note an SR from the sender (§6.4.1): the next report's LSR and DLSR."""
        self.sender_reports += 1
        self._sr_ssrc = sr.ssrc
        self._lsr = middle_32(sr.ntp)
        self._sr_at = now

    # ------------------------------------------------------------------ figures

    def _source_expected(self) -> int:
        return self._closed_expected + self._segment_expected()

    @property
    def received_any(self) -> bool:
        """Whether a packet came, so that there is a source to report on."""
        return self.ssrc is not None

    @property
    def received(self) -> int:
        """Packets received and counted valid, duplicates included (A.3)."""
        return self._prior_received + self._received

    @property
    def expected(self) -> int:
        """Packets expected: per source, extended highest less base plus one (A.3)."""
        return self._prior_expected + self._source_expected()

    @property
    def lost(self) -> int:
        """Expected less received: negative when duplicates outnumber losses (A.3)."""
        return self.expected - self._prior_received - self._received

    @property
    def extended_max(self) -> int:
        """The current source's extended highest sequence number (A.1)."""
        return (self.cycles << 16) + self.max_seq

    @property
    def jitter_ms(self) -> float:
        """The current source's interarrival jitter (A.8), in milliseconds."""
        return self.jitter * 1000.0 / self.clock_rate

    def report(self, now: float) -> ReportBlock:
        """The report block on the current source for our next SR or RR (§6.4.1), which
        starts the next interval: ``fraction_lost`` is over the packets since the last
        call (A.3), the others since the source began."""
        if self.ssrc is None:
            return ReportBlock(0)
        expected = self._source_expected()
        received = self._received
        expected_interval = expected - self._expected_prior
        received_interval = received - self._received_prior
        self._expected_prior = expected
        self._received_prior = received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min((lost_interval << 8) // expected_interval, 255)
        # A.3: the cumulative count is clamped to what 24 signed bits hold.
        lost = min(max(expected - received, -0x800000), 0x7FFFFF)
        last_sr = 0
        delay = 0
        if self._sr_ssrc == self.ssrc:
            # §6.4.1: LSR, and the delay since it came, in units of 1/65536 s.
            last_sr = self._lsr
            delay = min(max(int((now - self._sr_at) * 65536.0), 0), _MASK32)
        return ReportBlock(
            self.ssrc,
            fraction,
            lost,
            self.extended_max & _MASK32,
            int(self.jitter) & _MASK32,
            last_sr,
            delay,
        )

    def to_dict(self) -> dict[str, object]:
        """The stream's figures, JSON-ready: ``loss`` is the fraction (0..1) of the
        expected packets that never came, over the whole stream."""
        expected = self.expected
        lost = self.lost
        loss = 0.0
        if expected > 0 and lost > 0:
            loss = round(min(lost / expected, 1.0), 4)
        return {
            "packets": self.received,
            "bytes": self.bytes,
            "expected": expected,
            "lost": lost,
            "loss": loss,
            "jitter_ms": round(self.jitter_ms, 2),
            "ssrc": self.ssrc,
            "ssrc_changes": self.ssrc_changes,
            "timestamp_errors": self.timestamp_errors,
            "first_marker": self.first_marker,
            "payload_types": sorted(self.payload_types),
        }


class _Event:
    """One telephone-event being received: where its digit is in ``digits`` (-1 if not
    kept), and its duration so far (earlier segments of a long event, plus this one)."""

    __slots__ = ("base", "code", "duration", "ended", "index", "segment", "ssrc", "timestamp")

    def __init__(self, ssrc: int, timestamp: int, code: int, index: int) -> None:
        self.ssrc = ssrc
        self.timestamp = timestamp
        self.code = code
        self.index = index
        self.base = 0
        self.segment = 0
        self.duration = 0
        self.ended = False


class DtmfReceiver:
    """The digits of the RFC 4733 telephone-events of a stream, given its packets of the
    telephone-event payload type.

    An event is one key press.  All its packets carry the RTP timestamp of its start
    (§2.5.1.2), its final packet (E bit) is sent three times (§2.5.1.4), and the next
    event has a new timestamp, even for the same key: a digit is counted the first time
    a packet comes with a timestamp (and SSRC and event code) not seen before, whichever
    packet of the event that is, so an event whose first packets were lost still
    counts.  An event longer than the duration field holds goes on in a new segment with
    a new timestamp (§2.5.1.3, §2.5.2.3), which is not a new digit.

    ``digits`` holds (digit, ``now`` of the event's first packet, its duration in
    timestamp units: the largest seen so far, the final one once the event ended), at
    most ``limit`` of them; later events are counted in ``dropped``.  Events that are not
    DTMF (codes above 16, §3.2) are counted in ``ignored``.
    """

    __slots__ = ("_events", "_last", "digits", "dropped", "ignored", "invalid", "limit")

    def __init__(self, limit: int = MAX_DIGITS) -> None:
        self.limit = limit
        self.digits: list[tuple[str, float, int]] = []
        self.dropped = 0
        self.ignored = 0
        #: Packets whose payload is too short for an event.
        self.invalid = 0
        # Recent events by (ssrc, timestamp, code), oldest first, and the latest event.
        self._events: dict[tuple[int, int, int], _Event] = {}
        self._last: _Event | None = None

    @property
    def text(self) -> str:
        """The digits kept, as one string ("flash" counts as one)."""
        return "".join(digit for digit, _, _ in self.digits)

    def receive(self, packet: RtpPacket, now: float) -> str | None:
        """The digit of ``packet`` when it is the first seen of a new event, else None."""
        event = parse_event(packet.payload)
        if event is None:
            self.invalid += 1
            return None
        key = (packet.ssrc, packet.timestamp, event.event)
        known = self._events.get(key)
        if known is not None:
            if known.timestamp == packet.timestamp:  # not a late packet of a past segment
                self._extend(known, event.duration, event.end)
            return None
        last = self._last
        if (
            last is not None
            and not last.ended
            and last.code == event.event
            and last.ssrc == packet.ssrc
            and last.segment == _MAX_DURATION
            and (packet.timestamp - last.timestamp) & _MASK32 == _MAX_DURATION
        ):
            # §2.5.2.3: the next segment of a long event, reported from its new start.
            last.base += _MAX_DURATION
            last.timestamp = packet.timestamp
            last.segment = 0
            self._remember(key, last)
            self._extend(last, event.duration, event.end)
            return None
        digit = EVENT_DIGITS.get(event.event)
        index = -1
        if digit is None:
            self.ignored += 1
        elif len(self.digits) < self.limit:
            index = len(self.digits)
            self.digits.append((digit, now, 0))
        else:
            self.dropped += 1
        entry = _Event(packet.ssrc, packet.timestamp, event.event, index)
        self._remember(key, entry)
        self._last = entry
        self._extend(entry, event.duration, event.end)
        return digit

    def _remember(self, key: tuple[int, int, int], entry: _Event) -> None:
        events = self._events
        events[key] = entry
        if len(events) > _RECENT_EVENTS:
            del events[next(iter(events))]

    def _extend(self, entry: _Event, duration: int, end: bool) -> None:
        """A packet of ``entry``'s current segment: its duration is the largest reported
        (a late packet reports less), and the E bit ends the event (§2.3.2)."""
        if duration > entry.segment:
            entry.segment = duration
        if end:
            entry.ended = True
        total = entry.base + entry.segment
        if total != entry.duration:
            entry.duration = total
            if entry.index >= 0:
                digit, first, _ = self.digits[entry.index]
                self.digits[entry.index] = (digit, first, total)
