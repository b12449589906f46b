"""A received stream's statistics (RFC 3550 appendix A) and its DTMF (RFC 4733), fed
scripted packets and a scripted clock (sipresponder.core.rtpstats)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipresponder.core.rtcp import SenderReport, middle_32
from sipresponder.core.rtp import RtpPacket, build_event
from sipresponder.core.rtpstats import MAX_DROPOUT, MAX_SSRCS, DtmfReceiver, ReceiverStats

CLOCK = 8000
STEP = 160  # 20 ms of 8 kHz audio
PTIME = 0.02
SIZE = 172


def pkt(
    seq: int, ts: int | None = None, ssrc: int = 0xA, pt: int = 0, marker: bool = False
) -> RtpPacket:
    """Packet ``seq`` of a 20 ms stream (its timestamp follows from it unless given)."""
    if ts is None:
        ts = seq * STEP
    return RtpPacket(marker, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, b"\xff" * 160)


def feed(
    stats: ReceiverStats, seqs: list[int], start: float = 100.0, ssrc: int = 0xA
) -> list[bool]:
    """Packets ``seqs`` of ``ssrc``, each on time (``start`` is when seqs[0] comes)."""
    first = seqs[0]
    return [stats.update(pkt(s, ssrc=ssrc), start + (s - first) * PTIME, SIZE) for s in seqs]


# --- ReceiverStats: A.1 and A.3 --------------------------------------------------------


def test_a_clean_paced_stream_has_no_loss_and_no_jitter() -> None:
    stats = ReceiverStats(CLOCK)
    accepted = feed(stats, list(range(1000, 1500)))
    assert accepted[0] is False and all(accepted[1:])  # A.1: probation of the first
    assert (stats.received, stats.expected, stats.lost) == (500, 500, 0)
    assert stats.bytes == 500 * SIZE
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    figures = stats.to_dict()
    assert figures["packets"] == 500 and figures["loss"] == 0.0
    assert figures["jitter_ms"] == 0.0
    assert stats.first_arrival == 100.0
    assert stats.last_arrival == pytest.approx(109.98)


def test_dropping_every_tenth_packet_is_ten_percent_loss() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, [s for s in range(1000) if s % 10 != 5])
    assert (stats.expected, stats.received, stats.lost) == (1000, 900, 100)
    assert stats.to_dict()["loss"] == 0.1
    block = stats.report(200.0)
    assert block.fraction_lost == 25  # int(0.1 * 256)
    assert block.cumulative_lost == 100 and block.highest_sequence == 999


@settings(max_examples=100)
@given(st.sets(st.integers(2, 799), max_size=200))
def test_lost_counts_exactly_the_missing_packets(missing: set[int]) -> None:
    stats = ReceiverStats(CLOCK)
    present = [s for s in range(800) if s not in missing]
    feed(stats, present)
    assert stats.expected == present[-1] + 1
    assert stats.lost == len([m for m in missing if m < present[-1]])


def test_jitter_of_alternating_arrival_offsets_follows_a8() -> None:
    # Arrivals alternately on time and 10 ms late: every transit difference D is 10 ms,
    # 80 units at 8 kHz, and A.8's J += (|D| - J)/16 from 0 gives 80 * (1 - (15/16)^n)
    # after n differences.
    stats = ReceiverStats(CLOCK)
    count = 50
    for i in range(count):
        stats.update(pkt(i), 10.0 + i * PTIME + (0.01 if i % 2 else 0.0), SIZE)
    expected = 80 * (1 - (15 / 16) ** (count - 1))
    assert stats.jitter == pytest.approx(expected, rel=1e-9)
    assert stats.jitter_ms == pytest.approx(expected / 8, rel=1e-9)
    assert stats.to_dict()["jitter_ms"] == round(expected / 8, 2)
    assert stats.report(20.0).jitter == int(expected)


def test_jitter_of_one_late_packet() -> None:
    # Three packets on time, the fourth 5 ms late: D = 40 units once, J = 40/16 = 2.5.
    stats = ReceiverStats(CLOCK)
    for i, late in enumerate([0.0, 0.0, 0.0, 0.005]):
        stats.update(pkt(i), i * PTIME + late, SIZE)
    assert stats.jitter == pytest.approx(2.5)


def test_timestamps_wrapping_at_2_32_are_no_jitter() -> None:
    stats = ReceiverStats(CLOCK)
    base = 0xFFFFFFFF - 3 * STEP
    for i in range(8):
        stats.update(pkt(i, ts=base + i * STEP), i * PTIME, SIZE)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6) and stats.timestamp_errors == 0


def test_sequence_wrap_counts_a_cycle() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, list(range(65000, 67000)))
    assert stats.cycles == 1 and stats.max_seq == 66999 - 65536
    assert stats.extended_max == 66999
    assert (stats.expected, stats.received, stats.lost) == (2000, 2000, 0)
    assert stats.report(1000.0).highest_sequence == 66999


def test_a_probation_run_that_wraps_is_counted() -> None:
    stats = ReceiverStats(CLOCK)
    assert feed(stats, [65535, 65536, 65537]) == [False, True, True]
    assert (stats.expected, stats.received, stats.cycles) == (3, 3, 0)


def test_probation_restarts_on_a_packet_out_of_sequence() -> None:
    stats = ReceiverStats(CLOCK)
    results = [stats.update(pkt(s), 1.0 + i * PTIME, SIZE) for i, s in enumerate([10, 50, 51])]
    assert results == [False, False, True]
    assert (stats.expected, stats.received, stats.lost) == (2, 2, 0)
    assert stats.bytes == 2 * SIZE and stats.rejected == 2


def test_a_large_jump_resyncs_after_two_sequential_packets() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, list(range(100, 110)))
    jump = 109 + MAX_DROPOUT + 500
    ts = 0x7000_0000  # the sender restarted: a new timestamp base too, paced as before
    assert stats.update(pkt(jump, ts=ts), 100.2, SIZE) is False  # A.1: not yet believed
    assert (stats.expected, stats.received) == (10, 10)
    assert stats.update(pkt(jump + 1, ts=ts + STEP), 100.22, SIZE) is True  # resync
    assert stats.update(pkt(jump + 2, ts=ts + 2 * STEP), 100.24, SIZE) is True
    assert (stats.expected, stats.received, stats.lost) == (13, 13, 0)
    assert stats.extended_max == jump + 2
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)  # the restart is no transit jump


def test_a_lone_stray_packet_does_not_disturb_the_stream() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, list(range(100, 110)))
    assert stats.update(pkt(40_000), 5.0, SIZE) is False
    assert stats.update(pkt(110), 5.02, SIZE) is True
    assert (stats.expected, stats.received, stats.max_seq) == (11, 11, 110)


def test_a_gap_below_max_dropout_is_loss() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, [1, 2, 3])
    assert stats.update(pkt(3 + MAX_DROPOUT - 1), 9.0, SIZE) is True
    assert stats.lost == MAX_DROPOUT - 2


def test_late_and_duplicate_packets() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, [0, 1, 2, 4, 5])
    assert stats.lost == 1
    assert stats.update(pkt(3), 1.0, SIZE) is True  # late, within MAX_MISORDER
    assert stats.lost == 0 and stats.max_seq == 5
    assert stats.update(pkt(5), 1.0, SIZE) is True  # duplicate
    assert stats.lost == -1  # A.3: duplicates count
    assert stats.to_dict()["loss"] == 0.0


def test_a_new_ssrc_restarts_the_sequence_and_is_counted() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, list(range(0, 50)), ssrc=0xA)
    accepted = feed(stats, list(range(30_000, 30_050)), start=200.0, ssrc=0xB)
    assert accepted[0] is False and all(accepted[1:])
    assert stats.ssrc == 0xB and stats.ssrcs == [0xA, 0xB] and stats.ssrc_changes == 1
    assert (stats.expected, stats.received, stats.lost) == (100, 100, 0)
    figures = stats.to_dict()
    assert figures["ssrc"] == 0xB and figures["ssrc_changes"] == 1
    assert stats.report(300.0).ssrc == 0xB
    assert stats.report(300.0).highest_sequence == 30_049


def test_the_ssrcs_kept_are_bounded() -> None:
    stats = ReceiverStats(CLOCK)
    for n in range(MAX_SSRCS + 4):
        stats.update(pkt(n, ssrc=n + 1), float(n), SIZE)
    assert len(stats.ssrcs) == MAX_SSRCS and stats.ssrc_changes == MAX_SSRCS + 3


def test_report_fraction_lost_is_per_interval() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, list(range(100)))
    first = stats.report(10.0)
    assert (first.fraction_lost, first.cumulative_lost) == (0, 0)
    feed(stats, [s for s in range(100, 200) if s % 4 != 1], start=12.0)  # 25 of 100 lost
    second = stats.report(20.0)
    assert (second.fraction_lost, second.cumulative_lost) == (64, 25)  # 25/100 * 256
    third = stats.report(30.0)  # nothing new
    assert (third.fraction_lost, third.cumulative_lost) == (0, 25)
    stats.update(pkt(150), 31.0, SIZE)  # a duplicate: more received than expected
    assert stats.report(32.0).fraction_lost == 0


def test_report_carries_lsr_and_dlsr_of_the_senders_last_sr() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, [1, 2, 3])
    assert stats.report(9.0).last_sr == 0 and stats.report(9.0).delay_since_last_sr == 0
    ntp = 0x0123456789ABCDEF
    stats.sender_report(SenderReport(0xA, ntp, 0, 3, 500), 10.0)
    block = stats.report(10.5)
    assert block.last_sr == middle_32(ntp) == 0x456789AB
    assert block.delay_since_last_sr == 32768  # half a second in 1/65536 s
    stats.sender_report(SenderReport(0xBAD, ntp, 0, 3, 500), 11.0)  # another source's
    assert stats.report(11.0).last_sr == 0


def test_report_before_any_packet() -> None:
    stats = ReceiverStats(CLOCK)
    assert not stats.received_any
    assert stats.report(1.0).ssrc == 0
    figures = stats.to_dict()
    assert figures["packets"] == 0 and figures["ssrc"] is None and figures["loss"] == 0.0
    assert figures["first_marker"] is None


# --- ReceiverStats: the faults ---------------------------------------------------------


def test_timestamp_going_back_while_sequence_goes_on_is_an_error() -> None:
    stats = ReceiverStats(CLOCK)
    for i, ts in enumerate([0, 160, 320, 160, 480, 480, 640]):
        stats.update(pkt(i, ts=ts), i * PTIME, SIZE)
    assert stats.timestamp_errors == 1  # 320 -> 160; an equal one is allowed
    assert stats.to_dict()["timestamp_errors"] == 1


def test_a_reordered_packet_is_no_timestamp_error() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, [0, 1, 3, 2, 4])
    assert stats.timestamp_errors == 0


def test_telephone_events_are_left_out_of_jitter_and_timestamps() -> None:
    stats = ReceiverStats(CLOCK, telephone_event=101)
    now = 0.0
    seq = 0
    for i in range(10):  # audio, then an event started at ts 1600 while audio goes on
        stats.update(pkt(seq, ts=i * STEP), now, SIZE)
        seq += 1
        if i >= 5:
            stats.update(pkt(seq, ts=5 * STEP, pt=101), now, 16)
            seq += 1
        now += PTIME
    assert stats.timestamp_errors == 0
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    assert stats.payload_types == {0, 101} and stats.lost == 0
    plain = ReceiverStats(CLOCK)  # not told: the event's packets look wrong
    now, seq = 0.0, 0
    for i in range(10):
        plain.update(pkt(seq, ts=i * STEP), now, SIZE)
        seq += 1
        if i >= 5:
            plain.update(pkt(seq, ts=5 * STEP, pt=101), now, 16)
            seq += 1
        now += PTIME
    assert plain.timestamp_errors > 0


def test_first_marker_and_payload_types() -> None:
    stats = ReceiverStats(CLOCK)
    stats.update(pkt(1, marker=True), 1.0, SIZE)
    stats.update(pkt(2, pt=13), 1.02, SIZE)
    assert stats.first_marker is True and stats.payload_types == {0, 13}
    other = ReceiverStats(CLOCK)
    other.update(pkt(1), 1.0, SIZE)
    other.update(pkt(2, marker=True), 1.02, SIZE)
    assert other.first_marker is False


def test_to_dict_is_json_ready() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, [1, 2, 4])
    figures = stats.to_dict()
    assert json.loads(json.dumps(figures)) == figures
    assert figures == {
        "packets": 3,
        "bytes": 3 * SIZE,
        "expected": 4,
        "lost": 1,
        "loss": 0.25,
        "jitter_ms": 0.0,
        "ssrc": 0xA,
        "ssrc_changes": 0,
        "timestamp_errors": 0,
        "first_marker": False,
        "payload_types": [0],
    }


def test_a_clock_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReceiverStats(0)


# --- DtmfReceiver ----------------------------------------------------------------------


class Sender:
    """Telephone-event packets as RFC 4733 sends them: one timestamp per event, the
    duration growing, the end packet three times."""

    def __init__(self, ssrc: int = 0x5) -> None:
        self.seq = 0
        self.ssrc = ssrc

    def packet(self, code: int, ts: int, duration: int, end: bool = False) -> RtpPacket:
        self.seq += 1
        payload = build_event(code, end, 10, duration)
        return RtpPacket(duration == STEP, 101, self.seq, ts, self.ssrc, payload)

    def event(self, code: int, ts: int, packets: int) -> list[RtpPacket]:
        out = [self.packet(code, ts, STEP * n) for n in range(1, packets)]
        out += [self.packet(code, ts, STEP * packets, end=True) for _ in range(3)]
        return out


def test_digits_one_two_one_with_repeated_end_packets() -> None:
    sender = Sender()
    packets = sender.event(1, 8000, 4) + sender.event(2, 16000, 3) + sender.event(1, 24000, 2)
    dtmf = DtmfReceiver()
    now = 50.0
    seen: list[str] = []
    for packet in packets:
        digit = dtmf.receive(packet, now)
        if digit is not None:
            seen.append(digit)
        now += 0.05
    assert seen == ["1", "2", "1"]
    assert dtmf.text == "121"
    assert [d for d, _, _ in dtmf.digits] == ["1", "2", "1"]
    assert [n for _, _, n in dtmf.digits] == [640, 480, 320]
    # The time of each event's first packet: 6 packets for the first event, 5 for the 2nd.
    assert [t for _, t, _ in dtmf.digits] == pytest.approx([50.0, 50.3, 50.55])


def test_an_event_whose_start_was_lost_still_counts() -> None:
    sender = Sender()
    dtmf = DtmfReceiver()
    ends = [sender.packet(9, 4000, 800, end=True) for _ in range(3)]
    assert [dtmf.receive(p, 7.0 + i) for i, p in enumerate(ends)] == ["9", None, None]
    assert dtmf.digits == [("9", 7.0, 800)]


def test_duration_is_the_largest_seen_and_late_packets_change_nothing() -> None:
    sender = Sender()
    dtmf = DtmfReceiver()
    first = sender.packet(3, 100, 160)
    second = sender.packet(3, 100, 320)
    end = sender.packet(3, 100, 480, end=True)
    for p in (first, end, second):  # the middle one arrives last
        dtmf.receive(p, 1.0)
    assert dtmf.digits == [("3", 1.0, 480)]
    dtmf.receive(sender.packet(4, 900, 160), 2.0)
    assert dtmf.receive(sender.packet(3, 100, 480, end=True), 2.1) is None  # straggler
    assert dtmf.text == "34"


def test_the_same_digit_again_is_a_new_event() -> None:
    sender = Sender()
    dtmf = DtmfReceiver()
    assert dtmf.receive(sender.packet(5, 1000, 160, end=True), 1.0) == "5"
    assert dtmf.receive(sender.packet(5, 1000, 160, end=True), 1.1) is None
    assert dtmf.receive(sender.packet(5, 2000, 160, end=True), 1.2) == "5"
    other = Sender(ssrc=0x99)  # a new source may reuse a timestamp
    assert dtmf.receive(other.packet(5, 2000, 160, end=True), 1.3) == "5"
    assert dtmf.text == "555"


def test_a_long_event_goes_on_in_a_new_segment() -> None:
    sender = Sender()
    dtmf = DtmfReceiver()
    start = 0xFFFF_0000  # the timestamp wraps between the segments
    assert dtmf.receive(sender.packet(0, start, 160), 1.0) == "0"
    assert dtmf.receive(sender.packet(0, start, 0xFFFF), 9.0) is None
    next_start = (start + 0xFFFF) & 0xFFFFFFFF
    assert dtmf.receive(sender.packet(0, next_start, 160), 9.1) is None
    assert dtmf.receive(sender.packet(0, next_start, 800, end=True), 9.2) is None
    assert dtmf.receive(sender.packet(0, start, 0xFFFF), 9.3) is None  # late, 1st segment
    assert dtmf.digits == [("0", 1.0, 0xFFFF + 800)]


def test_an_event_that_ended_at_the_longest_duration_is_not_continued() -> None:
    sender = Sender()
    dtmf = DtmfReceiver()
    assert dtmf.receive(sender.packet(7, 1000, 0xFFFF, end=True), 1.0) == "7"
    assert dtmf.receive(sender.packet(7, 1000 + 0xFFFF, 160), 9.0) == "7"
    assert dtmf.digits == [("7", 1.0, 0xFFFF), ("7", 9.0, 160)]


def test_the_digits_kept_are_bounded() -> None:
    sender = Sender()
    dtmf = DtmfReceiver(limit=3)
    got = [dtmf.receive(sender.packet(n, 1000 * n, 160, end=True), float(n)) for n in range(5)]
    assert got == ["0", "1", "2", "3", "4"]
    assert dtmf.text == "012" and dtmf.dropped == 2


def test_events_that_are_not_dtmf_and_short_payloads() -> None:
    sender = Sender()
    dtmf = DtmfReceiver()
    assert dtmf.receive(sender.packet(70, 100, 160), 1.0) is None
    assert dtmf.ignored == 1
    short = RtpPacket(False, 101, 9, 200, 5, b"\x01\x80")
    assert dtmf.receive(short, 1.1) is None and dtmf.invalid == 1
    assert dtmf.receive(sender.packet(16, 300, 160), 1.2) == "flash"
    assert dtmf.text == "flash"
