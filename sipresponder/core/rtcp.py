"""RTCP packets on the wire (RFC 3550 §6): SR, RR, SDES, BYE, and the NTP time an SR carries.

What belongs here: reading an RTCP compound packet (§6: SR, RR, SDES, BYE; other types
skipped by their length) and writing each of those packets, the NTP timestamps of an SR
(§4) and the middle 32 bits its receivers report (LSR).  Nothing here keeps state across
packets: what a receiver reports is ``rtpstats``'s, when to report is the session's.

Parsing never raises on what the network sent: a compound that is not valid gives an
empty list, and the caller counts it.  The builders mask each value to its field's width;
they raise ``ValueError`` only for what the caller could not have meant (more than 31
report blocks, a CNAME or reason over 255 octets).  Standard library only (``struct``);
no clock (the wall time is an argument).  Imports nothing of the project, and none of
asyncio, socket, time, random, os, threading, selectors.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, TypeAlias

#: RTP's version (§5.1), which RTCP's packets carry too.
RTP_VERSION: Final = 2
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
