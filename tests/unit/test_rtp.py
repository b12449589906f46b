"""RTP, RTCP and telephone-event packets on the wire (sipresponder.core.rtp)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipresponder.core.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    Sdes,
    SenderReport,
    build_bye,
    build_receiver_report,
    build_sdes,
    build_sender_report,
    middle_32,
    ntp_timestamp,
    ntp_to_unix,
    parse_rtcp,
)
from sipresponder.core.rtp import (
    EVENT_DIGITS,
    DtmfEvent,
    build_event,
    build_rtp,
    is_rtcp,
    parse_event,
    parse_rtp,
    rewrite_header,
)

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
RTP_TYPES = st.integers(0, 127).filter(lambda pt: not 72 <= pt <= 76)


def raw_rtp(
    *,
    first: int = 0x80,
    second: int = 0,
    csrcs: tuple[int, ...] = (),
    extension: bytes | None = None,
    payload: bytes = b"abcd",
    padding: bytes = b"",
) -> bytes:
    """An RTP packet assembled field by field (the first octet's flags are the caller's)."""
    head = struct.pack("!BBHII", first | len(csrcs), second, 7, 1000, 0xCAFE)
    head += b"".join(struct.pack("!I", c) for c in csrcs)
    if extension is not None:
        head += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    return head + payload + padding


# --- RTP -------------------------------------------------------------------------------


@settings(max_examples=300)
@given(RTP_TYPES, U16, U32, U32, st.binary(max_size=200), st.booleans())
def test_build_then_parse_gives_back_every_field(
    pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool
) -> None:
    data = build_rtp(pt, seq, ts, ssrc, payload, marker)
    assert len(data) == 12 + len(payload)
    packet = parse_rtp(data)
    assert packet is not None
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (
        pt,
        seq,
        ts,
        ssrc,
    )
    assert packet.marker is marker and packet.payload == payload
    assert (packet.csrc_count, packet.has_extension, packet.padding) == (0, False, 0)


def test_build_masks_each_value_to_its_field() -> None:
    packet = parse_rtp(build_rtp(0x80 | 8, 0x1_0005, 0x1_0000_0007, -1, b"x"))
    assert packet is not None
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (
        8,
        5,
        7,
        0xFFFFFFFF,
    )
    assert packet.marker is False


def test_parse_strips_csrcs_extension_and_padding() -> None:
    data = raw_rtp(
        first=0x80 | 0x20 | 0x10,
        second=0x80 | 0,
        csrcs=(1, 2, 3),
        extension=b"\x11\x22\x33\x44" * 2,
        payload=b"media",
        padding=b"\x00\x00\x03",
    )
    packet = parse_rtp(data)
    assert packet is not None
    assert packet.payload == b"media"
    assert packet.csrc_count == 3 and packet.has_extension and packet.padding == 3
    assert packet.marker and packet.payload_type == 0
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (7, 1000, 0xCAFE)


def test_an_empty_extension_and_an_empty_payload_are_valid() -> None:
    packet = parse_rtp(raw_rtp(first=0x90, extension=b"", payload=b""))
    assert packet is not None and packet.has_extension and packet.payload == b""


def test_padding_may_take_the_whole_payload() -> None:
    packet = parse_rtp(raw_rtp(first=0xA0, payload=b"", padding=b"\x00\x00\x00\x04"))
    assert packet is not None and packet.payload == b"" and packet.padding == 4


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(build_rtp(0, 1, 2, 3, b"")[:11], id="shorter-than-header"),
        pytest.param(raw_rtp(first=0x40), id="version-1"),
        pytest.param(raw_rtp(first=0xC0), id="version-3"),
        pytest.param(raw_rtp(first=0x00), id="version-0"),
        pytest.param(raw_rtp(csrcs=(1, 2), payload=b"")[:-1], id="csrcs-past-end"),
        pytest.param(raw_rtp(first=0x90, extension=b"", payload=b"")[:-1], id="ext-header-cut"),
        pytest.param(
            raw_rtp(first=0x90, extension=b"12345678", payload=b"")[:-1], id="ext-words-cut"
        ),
        pytest.param(raw_rtp(first=0xA0, payload=b"ab", padding=b"\x00"), id="padding-zero"),
        pytest.param(raw_rtp(first=0xA0, payload=b"ab", padding=b"\x04"), id="padding-past"),
        pytest.param(raw_rtp(first=0xA0, payload=b"", padding=b"\x05"), id="padding-in-header"),
    ],
)
def test_an_invalid_packet_parses_to_none(data: bytes) -> None:
    assert parse_rtp(data) is None


@pytest.mark.parametrize("pt", [72, 73, 74, 75, 76])
@pytest.mark.parametrize("marker", [False, True])
def test_rtcp_payload_types_are_not_rtp(pt: int, marker: bool) -> None:
    assert parse_rtp(build_rtp(pt, 1, 2, 3, b"x" * 20, marker)) is None


@pytest.mark.parametrize("pt", [71, 77, 96, 101, 127])
def test_payload_types_next_to_rtcps_range_are_rtp(pt: int) -> None:
    packet = parse_rtp(build_rtp(pt, 1, 2, 3, b"x"))
    assert packet is not None and packet.payload_type == pt


@given(st.binary(max_size=64))
def test_parse_never_raises(data: bytes) -> None:
    packet = parse_rtp(data)
    if packet is not None:
        assert len(packet.payload) <= len(data) - 12


@given(RTP_TYPES, st.booleans(), st.binary(max_size=300), U16, U32, U32)
def test_rewrite_header_keeps_type_marker_and_payload(
    pt: int, marker: bool, payload: bytes, seq: int, ts: int, ssrc: int
) -> None:
    data = build_rtp(pt, 1234, 5678, 0x1111, payload, marker)
    out = rewrite_header(data, seq, ts, ssrc)
    assert out == build_rtp(pt, seq, ts, ssrc, payload, marker)


def test_rewrite_header_drops_csrcs_extension_and_padding() -> None:
    data = raw_rtp(
        first=0xB0,
        second=0x80 | 96,
        csrcs=(9,),
        extension=b"\x00" * 4,
        payload=b"voice",
        padding=b"\x00\x02",
    )
    out = rewrite_header(data, 0x1_0001, 0x1_0000_0002, 42)
    assert out == build_rtp(96, 1, 2, 42, b"voice", marker=True)


def test_rewrite_header_of_a_non_rtp_packet_is_empty() -> None:
    assert rewrite_header(b"\x40" + bytes(20), 1, 2, 3) == b""
    assert rewrite_header(b"\x80\x00", 1, 2, 3) == b""


def test_is_rtcp_tells_rtcp_from_rtp() -> None:
    assert is_rtcp(build_receiver_report(1))
    assert is_rtcp(build_sdes(1, "a@b"))
    assert not is_rtcp(build_rtp(0, 1, 2, 3, b"x"))
    assert not is_rtcp(build_rtp(96, 1, 2, 3, b"x", marker=True))  # second octet 224
    assert not is_rtcp(b"\x40\xc8" + bytes(6))  # version 1
    assert not is_rtcp(b"\x80")
    assert is_rtcp(b"\x80\xc0") and is_rtcp(b"\x80\xdf") and not is_rtcp(b"\x80\xbf")


# --- RTCP ------------------------------------------------------------------------------


def block(ssrc: int = 0x1234, lost: int = 5, fraction: int = 12) -> ReportBlock:
    return ReportBlock(ssrc, fraction, lost, 70_000, 33, 0xAABBCCDD, 65536)


def test_compound_sr_sdes_bye_round_trip() -> None:
    ntp = ntp_timestamp(1_700_000_000.25)
    data = (
        build_sender_report(0xDEADBEEF, ntp, 160_000, 1000, 172_000, [block(), block(7, -3)])
        + build_sdes(0xDEADBEEF, "sipresponder@40000")
        + build_bye([0xDEADBEEF, 5], "bye")
    )
    assert len(data) % 4 == 0
    sr, sdes, bye = parse_rtcp(data)
    assert isinstance(sr, SenderReport)
    assert (sr.ssrc, sr.ntp, sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (
        0xDEADBEEF,
        ntp,
        160_000,
        1000,
        172_000,
    )
    assert sr.reports == [block(), block(7, -3)]
    assert ntp_to_unix(sr.ntp) == pytest.approx(1_700_000_000.25)
    assert sr.ntp_seconds == pytest.approx(1_700_000_000.25 + 2_208_988_800)
    assert isinstance(sdes, Sdes)
    assert sdes.chunks == [(0xDEADBEEF, [(1, "sipresponder@40000")])]
    assert sdes.cnames() == {0xDEADBEEF: "sipresponder@40000"}
    assert isinstance(bye, Bye)
    assert bye.ssrcs == [0xDEADBEEF, 5] and bye.reason == "bye"


def test_receiver_report_with_blocks_round_trip() -> None:
    blocks = [
        ReportBlock(1, 255, 0x7FFFFF, 0xFFFFFFFF, 0, 0, 0),
        ReportBlock(2, 0, -0x800000, 0, 0xFFFFFFFF, 1, 2),
    ]
    (rr,) = parse_rtcp(build_receiver_report(0xFEED, blocks))
    assert isinstance(rr, ReceiverReport)
    assert rr.ssrc == 0xFEED and rr.reports == blocks


def test_an_empty_rr_is_eight_octets() -> None:
    data = build_receiver_report(9)
    assert data == b"\x80\xc9\x00\x01\x00\x00\x00\x09"
    (rr,) = parse_rtcp(data)
    assert isinstance(rr, ReceiverReport) and rr.reports == []


def test_cumulative_lost_is_clamped_to_24_signed_bits() -> None:
    (rr,) = parse_rtcp(build_receiver_report(1, [block(lost=10**9), block(lost=-(10**9))]))
    assert isinstance(rr, ReceiverReport)
    assert [b.cumulative_lost for b in rr.reports] == [0x7FFFFF, -0x800000]


@given(
    st.lists(
        st.builds(
            ReportBlock,
            U32,
            st.integers(0, 255),
            st.integers(-0x800000, 0x7FFFFF),
            U32,
            U32,
            U32,
            U32,
        ),
        max_size=31,
    ),
    U32,
)
def test_report_blocks_round_trip(blocks: list[ReportBlock], ssrc: int) -> None:
    (sr,) = parse_rtcp(build_sender_report(ssrc, 1 << 63, 1, 2, 3, blocks))
    assert isinstance(sr, SenderReport) and sr.reports == blocks


def test_more_than_31_blocks_is_refused() -> None:
    with pytest.raises(ValueError):
        build_receiver_report(1, [block()] * 32)


@pytest.mark.parametrize("size", range(12))
def test_sdes_is_padded_to_32_bits_with_at_least_one_null(size: int) -> None:
    cname = "x" * size
    data = build_sdes(7, cname)
    assert len(data) % 4 == 0
    words = struct.unpack_from("!H", data, 2)[0]
    assert len(data) == 4 * (words + 1)
    tail = data[8 + 2 + size :]
    assert 1 <= len(tail) <= 4 and tail == bytes(len(tail))
    (sdes,) = parse_rtcp(data)
    assert isinstance(sdes, Sdes) and sdes.cnames() == {7: cname}


@pytest.mark.parametrize("reason", ["", "a", "ab", "abc", "abcd", "timeout"])
def test_bye_reason_is_padded_to_32_bits(reason: str) -> None:
    data = build_bye([1], reason)
    assert len(data) % 4 == 0
    if reason == "abc":  # length octet and three: a whole word, no null
        assert data.endswith(b"\x03abc")
    (bye,) = parse_rtcp(data)
    assert isinstance(bye, Bye) and bye.ssrcs == [1] and bye.reason == reason


def test_unknown_types_are_skipped_by_their_length() -> None:
    app = b"\x81\xcc\x00\x03" + b"\x00\x00\x00\x01" + b"NAME" + b"data"
    xr = b"\x80\xcf\x00\x01" + b"\x00\x00\x00\x01"
    data = build_receiver_report(1) + app + xr + build_sdes(1, "c")
    rr, sdes = parse_rtcp(data)
    assert isinstance(rr, ReceiverReport) and isinstance(sdes, Sdes)


def test_sdes_with_several_chunks_and_items() -> None:
    chunk1 = b"\x00\x00\x00\x01" + b"\x01\x01c" + b"\x02\x03bob" + b"\x00" + b"\x00\x00\x00"  # 16
    chunk2 = b"\x00\x00\x00\x02" + b"\x00\x00\x00\x00"  # no items
    body = chunk1 + chunk2
    data = struct.pack("!BBH", 0x82, 202, len(body) // 4) + body
    (sdes,) = parse_rtcp(data)
    assert isinstance(sdes, Sdes)
    assert sdes.chunks == [(1, [(1, "c"), (2, "bob")]), (2, [])]


def test_a_padded_last_packet_is_read() -> None:
    body = b"\x00\x00\x00\x01" + b"\x00\x00\x00\x04"  # SSRC, then 4 octets of padding
    data = struct.pack("!BBH", 0xA0 | 1, 203, 2) + body
    (bye,) = parse_rtcp(data)
    assert isinstance(bye, Bye) and bye.ssrcs == [1] and bye.reason == ""


GOOD = build_receiver_report(1) + build_sdes(1, "c")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x80\xc9", id="shorter-than-header"),
        pytest.param(b"\x40" + GOOD[1:], id="version-1"),
        pytest.param(GOOD[:4] + b"\x00\x00\x00", id="cut"),
        pytest.param(GOOD + b"\x80\xca", id="trailing-octets"),
        pytest.param(GOOD + b"\x80\xca\x00\x05\x00\x00\x00\x01", id="length-past-end"),
        pytest.param(GOOD + b"\x40\xca\x00\x00", id="second-packet-version-1"),
        pytest.param(b"\x81\xc9\x00\x01\x00\x00\x00\x01", id="rr-count-past-length"),
        pytest.param(b"\x81\xc8\x00\x06" + bytes(24), id="sr-count-past-length"),
        pytest.param(b"\x80\xc8\x00\x01" + bytes(4), id="sr-too-short"),
        pytest.param(b"\x81\xca\x00\x01\x00\x00\x00\x01", id="sdes-no-end-of-items"),
        pytest.param(b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09ab\x00", id="sdes-item-past"),
        pytest.param(b"\x82\xcb\x00\x01\x00\x00\x00\x01", id="bye-ssrcs-past-length"),
        pytest.param(b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09abc", id="bye-reason-past"),
        pytest.param(b"\xa0\xc9\x00\x01\x00\x00\x00\x00", id="padding-zero"),
        pytest.param(b"\xa0\xc9\x00\x01\x00\x00\x00\x09", id="padding-past"),
    ],
)
def test_a_malformed_compound_parses_to_nothing(data: bytes) -> None:
    assert parse_rtcp(data) == []


@given(st.binary(max_size=80))
def test_parse_rtcp_never_raises(data: bytes) -> None:
    assert isinstance(parse_rtcp(b"\x80\xc9" + data), list)


def test_ntp_of_known_instants() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32  # 1970-01-01 in NTP (0x83AA7E80)
    assert ntp_timestamp(0.0) >> 32 == 0x83AA7E80
    # 2000-01-01T00:00:00Z is 946684800 Unix, 3155673600 (0xBC17C200) NTP.
    assert ntp_timestamp(946_684_800.5) == (0xBC17C200 << 32) | 0x80000000
    assert ntp_timestamp(1.25) & 0xFFFFFFFF == 0x40000000
    # Era 1 begins at 2036-02-07T06:28:16Z: the seconds wrap to 0.
    assert ntp_timestamp(2_085_978_496.0) == 0
    assert ntp_to_unix(ntp_timestamp(1_234_567_890.75)) == 1_234_567_890.75
    # Before 1970: the fraction still counts up from the whole second below.
    assert ntp_timestamp(-0.5) == ((2_208_988_800 - 1) << 32) | 0x80000000


def test_middle_32_is_lsr() -> None:
    assert middle_32(0x0123456789ABCDEF) == 0x456789AB
    # LSR counts 1/65536 s: half a second past a whole one.
    assert middle_32(ntp_timestamp(0.5)) & 0xFFFF == 0x8000


# --- RFC 4733 --------------------------------------------------------------------------


def test_event_of_known_octets() -> None:
    assert build_event(5, True, 10, 800) == b"\x05\x8a\x03\x20"
    assert parse_event(b"\x0b\x0a\x00\xa0") == DtmfEvent(11, False, 10, 160)
    assert parse_event(b"\x01\x40\x00\x00") == DtmfEvent(1, False, 0, 0)  # R bit ignored


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), U16)
def test_event_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    assert parse_event(build_event(event, end, volume, duration)) == DtmfEvent(
        event, end, volume, duration
    )


def test_a_short_event_payload_is_none() -> None:
    assert parse_event(b"\x01\x80\x00") is None
    assert parse_event(b"") is None


def test_event_digits() -> None:
    assert "".join(EVENT_DIGITS[i] for i in range(16)) == "0123456789*#ABCD"
    assert EVENT_DIGITS[16] == "flash" and 17 not in EVENT_DIGITS
