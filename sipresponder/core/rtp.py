"""RTP and RTCP packets on the wire (RFC 3550), and RFC 4733 telephone-events.

What belongs here: reading and writing the bytes of one RTP packet (§5.1), of an RTCP
compound packet (§6: SR, RR, SDES, BYE; other types skipped by their length), of one
telephone-event payload (RFC 4733 §2.3), the NTP timestamps an SR carries (§4), and
telling RTP from RTCP when both share one port (RFC 5761 §4).  Nothing here keeps state
across packets: the statistics of a stream are ``rtpstats``'s, the sockets and timers
are the media layer's.

Parsing never raises on what the network sent: a packet that is not valid gives None
(RTP, telephone-event) or an empty list (RTCP), and the caller counts it.  The builders
mask each value to its field's width; they raise ``ValueError`` only for what the caller
could not have meant (more than 31 report blocks, a CNAME or reason over 255 octets).

Standard library only (``struct``); no clock (the wall time an SR needs is an argument),
no randomness (SSRCs and initial sequence numbers are the caller's).  Imports nothing of
the project, and none of asyncio, socket, time, random, os, threading, selectors.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, TypeAlias

#: RTP version (§5.1): the two top bits of the first octet.
RTP_VERSION: Final = 2

#: The fixed RTP header (§5.1): V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
_RTP_HEADER: Final = struct.Struct("!BBHII")
RTP_HEADER_SIZE: Final = 12

#: The first octet of an RTP packet we write: version 2, no padding, extension or CSRC.
_FIRST_OCTET: Final = 0x80

_MASK16: Final = 0xFFFF
_MASK32: Final = 0xFFFFFFFF

#: RTCP packet types (§12.1).
RTCP_SR: Final = 200
RTCP_RR: Final = 201
RTCP_SDES: Final = 202
RTCP_BYE: Final = 203
RTCP_APP: Final = 204

#: SDES item types (§6.5).
SDES_END: Final = 0
SDES_CNAME: Final = 1

#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01), §4.
NTP_UNIX_OFFSET: Final = 2_208_988_800

_RTCP_HEADER: Final = struct.Struct("!BBH")
_SR_BODY: Final = struct.Struct("!IIIIII")  # SSRC, NTP msw, NTP lsw, RTP ts, packets, octets
_SSRC: Final = struct.Struct("!I")
_REPORT_BLOCK: Final = struct.Struct("!IIIIII")  # SSRC, fraction|lost, ext seq, J, LSR, DLSR
_REPORT_BLOCK_SIZE: Final = 24

#: RFC 4733 §2.3: event, E|R|volume, duration.
_EVENT: Final = struct.Struct("!BBH")

#: RFC 4733 §3.2 (table 1): the DTMF events, by event code.
EVENT_DIGITS: Final[dict[int, str]] = {
    **{code: str(code) for code in range(10)},
    10: "*",
    11: "#",
    12: "A",
    13: "B",
    14: "C",
    15: "D",
    16: "flash",
}


# --- RTP -------------------------------------------------------------------------------


class RtpPacket:
    """One RTP packet as read by ``parse_rtp``.  ``payload`` is the media alone: without
    the CSRC list, the header extension and the padding.  ``padding`` is the number of
    padding octets that were stripped (0 without the P bit)."""

    __slots__ = (
        "csrc_count",
        "has_extension",
        "marker",
        "padding",
        "payload",
        "payload_type",
        "sequence",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        marker: bool,
        payload_type: int,
        sequence: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        csrc_count: int = 0,
        has_extension: bool = False,
        padding: int = 0,
    ) -> None:
        self.marker = marker
        self.payload_type = payload_type
        self.sequence = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.csrc_count = csrc_count
        self.has_extension = has_extension
        self.padding = padding

    def __repr__(self) -> str:
        return (
            f"RtpPacket(pt={self.payload_type}, seq={self.sequence}, ts={self.timestamp}, "
            f"ssrc={self.ssrc:#010x}, marker={self.marker}, {len(self.payload)} octets)"
        )


def parse_rtp(data: bytes) -> RtpPacket | None:
    """The RTP packet in ``data`` (RFC 3550 §5.1), or None when it is not one: a version
    other than 2, shorter than its header with its CSRCs and extension (§5.3.1), a
    padding count of 0 or past the header (§5.1, A.1), or payload type 72–76, which is
    RTCP's SR..APP with the marker bit (RFC 5761 §4), so that RTCP multiplexed on the
    RTP port is never taken for media."""
    size = len(data)
    if size < RTP_HEADER_SIZE:
        return None
    first, second, sequence, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        return None
    payload_type = second & 0x7F
    if 72 <= payload_type <= 76:
        return None
    csrc_count = first & 0x0F
    start = RTP_HEADER_SIZE + 4 * csrc_count
    has_extension = bool(first & 0x10)
    if has_extension:
        # §5.3.1: 16 bits defined by profile, 16 bits length in 32-bit words, then words.
        if start + 4 > size:
            return None
        start += 4 + 4 * ((data[start + 2] << 8) | data[start + 3])
    if start > size:
        return None
    end = size
    padding = 0
    if first & 0x20:
        # §5.1: the last octet counts the padding octets, itself included.
        padding = data[-1]
        if padding == 0 or start + padding > size:
            return None
        end -= padding
    return RtpPacket(
        bool(second & 0x80),
        payload_type,
        sequence,
        timestamp,
        ssrc,
        data[start:end],
        csrc_count,
        has_extension,
        padding,
    )


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
) -> bytes:
    """An RTP packet (§5.1): version 2, no padding, extension or CSRC; every value is
    masked to the width of its field (7, 16, 32 and 32 bits)."""
    return (
        _RTP_HEADER.pack(
            _FIRST_OCTET,
            (0x80 if marker else 0) | (payload_type & 0x7F),
            sequence & _MASK16,
            timestamp & _MASK32,
            ssrc & _MASK32,
        )
        + payload
    )


def rewrite_header(data: bytes, sequence: int, timestamp: int, ssrc: int) -> bytes:
    """The RTP packet ``data`` with a new sequence number, timestamp and SSRC: its marker,
    payload type and payload unchanged, its CSRCs, extension and padding dropped.  Echo
    sends every packet through here, so the common case (a plain 12-octet header) is one
    ``pack`` and one slice.  ``data`` should be a packet ``parse_rtp`` accepted; for one it
    would not, the answer is ``b""`` (nothing to send)."""
    if len(data) >= RTP_HEADER_SIZE and data[0] == _FIRST_OCTET:
        return (
            _RTP_HEADER.pack(
                _FIRST_OCTET, data[1], sequence & _MASK16, timestamp & _MASK32, ssrc & _MASK32
            )
            + data[RTP_HEADER_SIZE:]
        )
    packet = parse_rtp(data)
    if packet is None:
        return b""
    return build_rtp(packet.payload_type, sequence, timestamp, ssrc, packet.payload, packet.marker)


def is_rtcp(data: bytes) -> bool:
    """Whether ``data``, received on a port RTP and RTCP share, is RTCP: version 2 and a
    second octet of 192..223 (RFC 5761 §4; RTP payload types 64..95 with the marker bit
    would look the same, which is why they are not to be used there)."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


# --- RTCP ------------------------------------------------------------------------------


class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1): what we received from ``ssrc``.
    ``fraction_lost`` is 0..255 (lost/expected since the previous report, times 256),
    ``cumulative_lost`` a signed 24-bit count, ``highest_sequence`` the extended highest
    sequence number, ``jitter`` in timestamp units, ``last_sr`` the middle 32 bits of the
    last SR's NTP timestamp and ``delay_since_last_sr`` in units of 1/65536 s."""

    __slots__ = (
        "cumulative_lost",
        "delay_since_last_sr",
        "fraction_lost",
        "highest_sequence",
        "jitter",
        "last_sr",
        "ssrc",
    )

    def __init__(
        self,
        ssrc: int,
        fraction_lost: int = 0,
        cumulative_lost: int = 0,
        highest_sequence: int = 0,
        jitter: int = 0,
        last_sr: int = 0,
        delay_since_last_sr: int = 0,
    ) -> None:
        self.ssrc = ssrc
        self.fraction_lost = fraction_lost
        self.cumulative_lost = cumulative_lost
        self.highest_sequence = highest_sequence
        self.jitter = jitter
        self.last_sr = last_sr
        self.delay_since_last_sr = delay_since_last_sr

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReportBlock):
            return NotImplemented
        return self._fields() == other._fields()

    def _fields(self) -> tuple[int, int, int, int, int, int, int]:
        return (
            self.ssrc,
            self.fraction_lost,
            self.cumulative_lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )

    def __repr__(self) -> str:
        return f"ReportBlock{self._fields()}"


class SenderReport:
    """An SR (RFC 3550 §6.4.1).  ``ntp`` is the 64-bit NTP timestamp (32.32 fixed point,
    seconds since 1900); ``ntp_seconds`` the same as a float."""

    __slots__ = ("ntp", "octet_count", "packet_count", "reports", "rtp_timestamp", "ssrc")

    def __init__(
        self,
        ssrc: int,
        ntp: int,
        rtp_timestamp: int,
        packet_count: int,
        octet_count: int,
        reports: list[ReportBlock] | None = None,
    ) -> None:
        self.ssrc = ssrc
        self.ntp = ntp
        self.rtp_timestamp = rtp_timestamp
        self.packet_count = packet_count
        self.octet_count = octet_count
        self.reports: list[ReportBlock] = [] if reports is None else reports

    @property
    def ntp_seconds(self) -> float:
        """The NTP timestamp in seconds since 1900-01-01."""
        return self.ntp / 4294967296.0

    def __repr__(self) -> str:
        return (
            f"SenderReport(ssrc={self.ssrc:#010x}, ntp={self.ntp:#018x}, "
            f"rtp_timestamp={self.rtp_timestamp}, packet_count={self.packet_count}, "
            f"octet_count={self.octet_count}, reports={self.reports!r})"
        )


class ReceiverReport:
    """An RR (RFC 3550 §6.4.2): the reporter's SSRC and its report blocks."""

    __slots__ = ("reports", "ssrc")

    def __init__(self, ssrc: int, reports: list[ReportBlock] | None = None) -> None:
        self.ssrc = ssrc
        self.reports: list[ReportBlock] = [] if reports is None else reports

    def __repr__(self) -> str:
        return f"ReceiverReport(ssrc={self.ssrc:#010x}, reports={self.reports!r})"


class Sdes:
    """An SDES packet (RFC 3550 §6.5): per chunk, the SSRC and its items as (item type,
    text) in the order sent; text decoded as UTF-8, undecodable octets replaced."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: list[tuple[int, list[tuple[int, str]]]] | None = None) -> None:
        self.chunks: list[tuple[int, list[tuple[int, str]]]] = [] if chunks is None else chunks

    def cnames(self) -> dict[int, str]:
        """SSRC -> CNAME, for the chunks that carry one."""
        found: dict[int, str] = {}
        for ssrc, items in self.chunks:
            for kind, text in items:
                if kind == SDES_CNAME:
                    found[ssrc] = text
                    break
        return found

    def __repr__(self) -> str:
        return f"Sdes(chunks={self.chunks!r})"


class Bye:
    """A BYE (RFC 3550 §6.6): the SSRCs that leave, and the reason if one was given."""

    __slots__ = ("reason", "ssrcs")

    def __init__(self, ssrcs: list[int], reason: str = "") -> None:
        self.ssrcs = ssrcs
        self.reason = reason

    def __repr__(self) -> str:
        return f"Bye(ssrcs={[hex(s) for s in self.ssrcs]}, reason={self.reason!r})"


#: What ``parse_rtcp`` returns, packet by packet.
RtcpPacket: TypeAlias = SenderReport | ReceiverReport | Sdes | Bye


def _report_blocks(data: bytes, offset: int, count: int) -> list[ReportBlock]:
    blocks: list[ReportBlock] = []
    for _ in range(count):
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:  # §6.4.1: a signed 24-bit count
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr))
        offset += _REPORT_BLOCK_SIZE
    return blocks


def _sdes(data: bytes, offset: int, end: int, count: int) -> Sdes | None:
    """The chunks of an SDES body in ``data[offset:end]`` (§6.5), None if one runs past
    ``end``.  Each chunk's items end with a null octet, then nulls to a 32-bit boundary."""
    chunks: list[tuple[int, list[tuple[int, str]]]] = []
    for _ in range(count):
        if offset + 4 > end:
            return None
        ssrc = _SSRC.unpack_from(data, offset)[0]
        offset += 4
        items: list[tuple[int, str]] = []
        while True:
            if offset >= end:
                return None
            kind = data[offset]
            if kind == SDES_END:
                offset += 1
                break
            if offset + 2 > end:
                return None
            length = data[offset + 1]
            stop = offset + 2 + length
            if stop > end:
                return None
            items.append((kind, data[offset + 2 : stop].decode("utf-8", "replace")))
            offset = stop
        offset = (offset + 3) & ~3
        chunks.append((ssrc, items))
    return Sdes(chunks)


def _bye(data: bytes, offset: int, end: int, count: int) -> Bye | None:
    """A BYE body in ``data[offset:end]`` (§6.6), None if its SSRCs or reason run past."""
    if offset + 4 * count > end:
        return None
    ssrcs = [_SSRC.unpack_from(data, offset + 4 * i)[0] for i in range(count)]
    offset += 4 * count
    reason = ""
    if offset < end:
        length = data[offset]
        if offset + 1 + length > end:
            return None
        reason = data[offset + 1 : offset + 1 + length].decode("utf-8", "replace")
    return Bye(ssrcs, reason)


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """The SR, RR, SDES and BYE packets of the compound RTCP packet ``data`` (§6.1), in
    order; other types (APP, XR, feedback) are skipped by their length.  An empty list
    when the compound is malformed (A.2): a version other than 2, a length field past
    the end of the datagram, lengths that do not add up to it, a padding count that does
    not fit, or a packet whose counted contents do not fit its length.  The rule that
    the first packet is an SR or RR is not enforced (reduced-size RTCP, RFC 5506)."""
    found: list[RtcpPacket] = []
    size = len(data)
    offset = 0
    if size < 4:
        return found
    while offset < size:
        if offset + 4 > size:
            return []
        first, kind, words = _RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != RTP_VERSION:
            return []
        length = 4 * (words + 1)
        end = offset + length
        if end > size:
            return []
        if first & 0x20:
            # §6.4.1 P bit: the last octet of this packet counts the padding, itself
            # included (only the last packet of a compound should have any, A.2).
            padding = data[end - 1]
            if padding == 0 or padding > length - 4:
                return []
            end -= padding
        count = first & 0x1F
        body = offset + 4
        packet: RtcpPacket | None
        if kind == RTCP_SR:
            if body + 24 + _REPORT_BLOCK_SIZE * count > end:
                return []
            ssrc, msw, lsw, rtp_ts, packets, octets = _SR_BODY.unpack_from(data, body)
            packet = SenderReport(
                ssrc,
                (msw << 32) | lsw,
                rtp_ts,
                packets,
                octets,
                _report_blocks(data, body + 24, count),
            )
        elif kind == RTCP_RR:
            if body + 4 + _REPORT_BLOCK_SIZE * count > end:
                return []
            ssrc = _SSRC.unpack_from(data, body)[0]
            packet = ReceiverReport(ssrc, _report_blocks(data, body + 4, count))
        elif kind == RTCP_SDES:
            packet = _sdes(data, body, end, count)
            if packet is None:
                return []
        elif kind == RTCP_BYE:
            packet = _bye(data, body, end, count)
            if packet is None:
                return []
        else:
            packet = None
        if packet is not None:
            found.append(packet)
        offset += length
    return found


def _header(kind: int, count: int, body_size: int) -> bytes:
    """The common RTCP header (§6.4.1): version 2, no padding, ``count`` in the five-bit
    field, and the length in 32-bit words minus one (the body is a whole number of
    words)."""
    return _RTCP_HEADER.pack(0x80 | count, kind, body_size // 4)


def _pack_blocks(reports: Sequence[ReportBlock]) -> bytes:
    if len(reports) > 31:
        raise ValueError("an RTCP report carries at most 31 report blocks (§6.4.1)")
    parts: list[bytes] = []
    for block in reports:
        # A.3: the cumulative count is clamped to what 24 signed bits hold.
        lost = min(max(block.cumulative_lost, -0x800000), 0x7FFFFF) & 0xFFFFFF
        parts.append(
            _REPORT_BLOCK.pack(
                block.ssrc & _MASK32,
                ((block.fraction_lost & 0xFF) << 24) | lost,
                block.highest_sequence & _MASK32,
                block.jitter & _MASK32,
                block.last_sr & _MASK32,
                block.delay_since_last_sr & _MASK32,
            )
        )
    return b"".join(parts)


def build_sender_report(
    ssrc: int,
    ntp: int,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    reports: Sequence[ReportBlock] = (),
) -> bytes:
    """An SR (§6.4.1); ``ntp`` is the 64-bit NTP timestamp (``ntp_timestamp``)."""
    blocks = _pack_blocks(reports)
    body = (
        _SR_BODY.pack(
            ssrc & _MASK32,
            (ntp >> 32) & _MASK32,
            ntp & _MASK32,
            rtp_timestamp & _MASK32,
            packet_count & _MASK32,
            octet_count & _MASK32,
        )
        + blocks
    )
    return _header(RTCP_SR, len(reports), len(body)) + body


def build_receiver_report(ssrc: int, reports: Sequence[ReportBlock] = ()) -> bytes:
    """An RR (§6.4.2); with no blocks it is the empty RR a compound starts with when
    nothing was received (§6.1)."""
    body = _SSRC.pack(ssrc & _MASK32) + _pack_blocks(reports)
    return _header(RTCP_RR, len(reports), len(body)) + body


def build_sdes(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one chunk holding ``cname`` (§6.5.1).  The item list ends with
    a null octet, and nulls follow to the next 32-bit boundary (§6.5): one to four."""
    text = cname.encode("utf-8")
    if len(text) > 255:
        raise ValueError("an SDES item holds at most 255 octets (§6.5)")
    chunk = _SSRC.pack(ssrc & _MASK32) + bytes((SDES_CNAME, len(text))) + text
    chunk += bytes(4 - len(chunk) % 4)
    return _header(RTCP_SDES, 1, len(chunk)) + chunk


def build_bye(ssrcs: Sequence[int], reason: str = "") -> bytes:
    """A BYE for ``ssrcs`` (§6.6), with ``reason`` if one is given: its length octet, its
    text, and nulls to the next 32-bit boundary (none if the text ends on one)."""
    if len(ssrcs) > 31:
        raise ValueError("a BYE names at most 31 SSRCs (§6.6)")
    body = b"".join(_SSRC.pack(s & _MASK32) for s in ssrcs)
    if reason:
        text = reason.encode("utf-8")
        if len(text) > 255:
            raise ValueError("a BYE reason holds at most 255 octets (§6.6)")
        tail = bytes((len(text),)) + text
        body += tail + bytes(-len(tail) % 4)
    return _header(RTCP_BYE, len(ssrcs), len(body)) + body


def ntp_timestamp(wall: float) -> int:
    """The 64-bit NTP timestamp (§4: seconds since 1900 in the high 32 bits, the fraction
    in the low 32) of the Unix time ``wall``; the seconds wrap in 2036 (era 1), as on the
    wire."""
    seconds = int(wall // 1)
    fraction = int((wall - seconds) * 4294967296.0)
    return (((seconds + NTP_UNIX_OFFSET) & _MASK32) << 32) | (fraction & _MASK32)


def ntp_to_unix(ntp: int) -> float:
    """The Unix time of a 64-bit NTP timestamp (era 0, 1900..2036)."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & _MASK32) / 4294967296.0


def middle_32(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp: an RR's LSR field (§6.4.1), in units
    of 1/65536 s."""
    return (ntp >> 16) & _MASK32


# --- RFC 4733 telephone-event ------------------------------------------------------------


class DtmfEvent:
    """One telephone-event (RFC 4733 §2.3): the event code (§3.2: 0..16 are DTMF), the
    E (end) bit, the volume (0..63, in -dBm0) and the duration so far, in timestamp
    units from the event's RTP timestamp (§2.3.5)."""

    __slots__ = ("duration", "end", "event", "volume")

    def __init__(self, event: int, end: bool, volume: int, duration: int) -> None:
        self.event = event
        self.end = end
        self.volume = volume
        self.duration = duration

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DtmfEvent):
            return NotImplemented
        return (self.event, self.end, self.volume, self.duration) == (
            (other.event, other.end, other.volume, other.duration)
        )

    def __repr__(self) -> str:
        return (
            f"DtmfEvent(event={self.event}, end={self.end}, volume={self.volume}, "
            f"duration={self.duration})"
        )


def parse_event(payload: bytes) -> DtmfEvent | None:
    """The telephone-event in an RTP payload (RFC 4733 §2.3), None if shorter than its
    four octets.  A payload holding several events (§2.5.1.5) gives the first; the R bit
    is ignored (§2.3.3: reserved)."""
    if len(payload) < 4:
        return None
    event, flags, duration = _EVENT.unpack_from(payload)
    return DtmfEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def build_event(event: int, end: bool, volume: int, duration: int) -> bytes:
    """A telephone-event payload (RFC 4733 §2.3), each value masked to its field."""
    return _EVENT.pack(event & 0xFF, (0x80 if end else 0) | (volume & 0x3F), duration & _MASK16)
