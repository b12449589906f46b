"""RTP packets on the wire (RFC 3550 §5.1), and RFC 4733 telephone-events.

What belongs here: reading and writing the bytes of one RTP packet (§5.1) and of one
telephone-event payload (RFC 4733 §2.3), and telling RTP from RTCP when both share one
port (RFC 5761 §4).  RTCP's packets are ``rtcp``'s.  Nothing here keeps state across
packets: the statistics of a stream are ``rtpstats``'s, the sockets and timers are the
media layer's.

Parsing never raises on what the network sent: a packet that is not valid gives None,
and the caller counts it.  The builders mask each value to its field's width.  Standard
library only (``struct``); no randomness (SSRCs and initial sequence numbers are the
caller's).  Imports nothing of the project, and none of asyncio, socket, time, random,
os, threading, selectors.
"""

from __future__ import annotations

import struct
from typing import Final

#: RTP version (§5.1): the two top bits of the first octet.
RTP_VERSION: Final = 2

#: The fixed RTP header (§5.1): V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
_RTP_HEADER: Final = struct.Struct("!BBHII")
RTP_HEADER_SIZE: Final = 12

#: The first octet of an RTP packet we write: version 2, no padding, extension or CSRC.
_FIRST_OCTET: Final = 0x80

_MASK16: Final = 0xFFFF
_MASK32: Final = 0xFFFFFFFF


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
    first = data[0]
    if first >> 6 != RTP_VERSION:
        return None
    # The fixed header read octet by octet: compiled, cheaper than a Struct's tuple.
    second = data[1]
    sequence = (data[2] << 8) | data[3]
    timestamp = (data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7]
    ssrc = (data[8] << 24) | (data[9] << 16) | (data[10] << 8) | data[11]
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
