"""A call's media session on a scripted clock: echo, generated audio, latching, hold,
RTCP, DTMF, and the table's bounds, ends and verdicts."""

from __future__ import annotations

import itertools

import pytest

from sipresponder.core.audio import dominant_frequency
from sipresponder.core.codecs import ulaw_decode
from sipresponder.core.media import MAX_BURST, MediaSession
from sipresponder.core.mediaplan import ECHO, SILENCE, TONE, MediaMode
from sipresponder.core.mediatable import LINGER, MediaTable
from sipresponder.core.rtcp import Bye, SenderReport, parse_rtcp
from sipresponder.core.rtp import build_event, build_rtp, parse_rtp
from sipresponder.sip.sdp import Stream

CLIENT = ("127.0.0.5", 30000)


def stream(direction: str = "sendrecv", encoding: str = "pcmu", pt: int = 0) -> Stream:
    return Stream(CLIENT[0], CLIENT[1], CLIENT[1] + 1, pt, encoding, 8000, 101, 20, direction)


def session(mode: MediaMode = ECHO, direction: str = "sendrecv", now: float = 0.0) -> MediaSession:
    return MediaSession(
        "call-1",
        20000,
        stream(direction),
        mode,
        "127.0.0.9",
        now,
        ssrc=0x11223344,
        seq=65530,
        timestamp=1000,
    )


def rtp(
    seq: int, ts: int, payload: bytes = b"\xff" * 160, pt: int = 0, marker: bool = False
) -> bytes:
    return build_rtp(pt, seq, ts, 0xCAFE, payload, marker=marker)


# ---------------------------------------------------------------------- echo


def test_echo_sends_each_packet_back_with_our_header_and_their_payload() -> None:
    s = session()
    sent = []
    for i in range(10):
        payload = bytes([i]) * 160
        out = s.rtp(rtp(100 + i, 5000 + 160 * i, payload, marker=i == 0), CLIENT, i * 0.02)
        assert len(out) == 1
        data, dest = out[0]
        assert dest == CLIENT
        packet = parse_rtp(data)
        assert packet is not None and packet.payload == payload
        sent.append(packet)
    assert [p.ssrc for p in sent] == [0x11223344] * 10
    # Our sequence from our start, across the wrap; their spacing in our timestamps.
    assert [p.sequence for p in sent] == [65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3]
    assert [p.timestamp for p in sent] == [1000 + 160 * i for i in range(10)]
    assert [p.marker for p in sent] == [True] + [False] * 9  # RFC 3550 §5.1: the first
    assert s.packets_in == s.packets_out == 10
    assert s.summary()["nat"] is False


def test_echo_never_sends_more_than_it_received() -> None:
    s = session()
    total = 0
    for i in range(50):
        total += len(s.rtp(rtp(i, i * 160), CLIENT, i * 0.02))
        s.tick(i * 0.02)  # echo generates nothing on its own
        assert s.packets_out <= s.packets_in
    assert total == 50


def test_dtmf_events_are_echoed_and_decoded() -> None:
    s = session()
    out = []
    for i, end in enumerate([False, False, True, True, True]):
        payload = build_event(1, end, 10, 160 * (i + 1))
        out += s.rtp(rtp(i, 8000, payload, pt=101, marker=i == 0), CLIENT, i * 0.02)
    for i, end in enumerate([False, True, True, True]):
        payload = build_event(11, end, 10, 160 * (i + 1))
        out += s.rtp(rtp(10 + i, 16000, payload, pt=101), CLIENT, 1 + i * 0.02)
    assert len(out) == 9
    assert s.summary()["dtmf"] == "1#"


def test_a_payload_type_not_agreed_is_counted_not_echoed() -> None:
    s = session()
    assert s.rtp(rtp(1, 160, pt=8), CLIENT, 0.0) == []
    assert s.foreign_types == {8: 1}


# ---------------------------------------------------------------------- latching


def test_latching_follows_the_client_behind_nat_and_ignores_others() -> None:
    s = session()
    stranger = ("192.0.2.7", 4000)
    assert s.rtp(rtp(1, 160), stranger, 0.0) == []  # not the SDP's nor the signalling's
    assert s.ignored == 1 and not s.latched
    natted = ("127.0.0.9", 41234)  # the signalling's address, another port
    out = s.rtp(rtp(2, 320), natted, 0.02)
    assert s.latched and out[0][1] == natted  # RFC 4961: send where it comes from
    assert s.rtp(rtp(3, 480), CLIENT, 0.04) == []  # once latched, the others are ignored
    assert s.summary()["client"] == "127.0.0.9:41234"
    assert s.summary()["nat"] is True  # informational: not where its SDP said


def test_hold_stops_our_sending_but_not_the_counting() -> None:
    s = session(direction="recvonly")  # the client offered sendonly: it holds the call
    assert s.rtp(rtp(1, 160), CLIENT, 0.0) == []
    assert s.packets_in == 1 and s.packets_out == 0
    t = session(TONE, direction="inactive")
    rtp_out, _ = t.tick(1.0)
    assert rtp_out == [] and t.packets_out == 0


# ---------------------------------------------------------------------- generated


def _play(s: MediaSession, until: float, step: float = 0.02) -> list[bytes]:
    out: list[bytes] = []
    now = 0.0
    while now <= until + 1e-9:
        packets, _ = s.tick(now)
        out += [data for data, _ in packets]
        now += step
    return out


def test_a_tone_is_paced_by_the_clock_and_has_its_frequency() -> None:
    s = session(MediaMode("tone", frequency=1000.0))
    packets = [parse_rtp(d) for d in _play(s, 0.98)]
    assert len(packets) == 50
    assert all(p is not None for p in packets)
    stamps = [p.timestamp for p in packets if p is not None]
    assert stamps == [1000 + 160 * i for i in range(50)]
    pcm = b"".join(ulaw_decode(p.payload) for p in packets if p is not None)
    assert abs(dominant_frequency(pcm, 8000) - 1000) <= 10


def test_a_late_tick_catches_up_a_few_packets_and_skips_the_rest() -> None:
    s = session(SILENCE)
    first, _ = s.tick(0.0)
    assert len(first) == 1
    late, _ = s.tick(1.0)  # 50 packets are due: only MAX_BURST go, the rest are skipped
    assert len(late) == MAX_BURST
    stamps = [p.timestamp for p in (parse_rtp(d) for d, _ in late) if p is not None]
    assert stamps[-1] == 1000 + 160 * 50  # the clock did not drift for the skipped ones
    assert s.next_deadline() == pytest.approx(1.02)


def test_a_mode_that_sends_says_when_it_cannot_encode_the_codec() -> None:
    s = MediaSession(
        "c",
        20000,
        stream(encoding="g729", pt=18),
        TONE,
        "127.0.0.9",
        0.0,
        ssrc=1,
        seq=1,
        timestamp=1,
    )
    assert "cannot encode g729" in s.summary()["note"]
    assert s.tick(1.0)[0] == []


# ---------------------------------------------------------------------- RTCP


def test_rtcp_reports_about_every_five_seconds_and_a_bye_at_the_end() -> None:
    s = session()
    for i in range(100):
        s.rtp(rtp(i, i * 160), CLIENT, i * 0.02)
    deadline = s.next_deadline()
    assert deadline is not None and 2.5 <= deadline <= 7.5  # §6.3.1: 0.5–1.5 × 5 s
    _, rtcp = s.tick(deadline)
    assert len(rtcp) == 1 and rtcp[0][1] == (CLIENT[0], CLIENT[1] + 1)
    items = parse_rtcp(rtcp[0][0])
    report = items[0]
    assert isinstance(report, SenderReport) and report.packet_count == 100
    assert report.reports and report.reports[0].ssrc == 0xCAFE
    bye = s.close(10.0, "bye")
    assert any(isinstance(i, Bye) and i.ssrcs == [0x11223344] for i in parse_rtcp(bye[0][0]))
    assert s.close(11.0, "bye") == []  # once
    assert s.rtp(rtp(200, 200 * 160), CLIENT, 10.5) == [] and s.after_close == 1


# ---------------------------------------------------------------------- the table


class Ports:
    def __init__(self, count: int) -> None:
        self.free = [20000 + 2 * i for i in range(count)]
        self.taken: list[int] = []

    def take(self) -> int | None:
        if not self.free:
            return None
        port = self.free.pop(0)
        self.taken.append(port)
        return port

    def give_back(self, port: int) -> None:
        self.taken.remove(port)
        self.free.append(port)


def table(ports: Ports, **kw: float) -> MediaTable:
    counter = itertools.count(1)
    return MediaTable(ports, lambda: next(counter), **kw)  # type: ignore[arg-type]


def test_the_table_is_bounded_and_gives_ports_back_after_the_linger() -> None:
    ports = Ports(10)
    t = table(ports, limit=2)
    for name in ("a", "b"):
        port = t.take_port()
        assert port is not None
        t.open(name, port, stream(), ECHO, "127.0.0.9", 0.0)
    assert t.take_port() is None and t.stats["refused"] == 1
    t.end("a", 1.0, "bye")
    t.tick(1.0 + LINGER - 0.01)
    assert len(t) == 2 and len(ports.taken) == 2  # lingering: late packets are counted
    t.tick(1.0 + LINGER)
    assert len(t) == 1 and ports.taken == [20002]
    done = t.done()
    assert [s.call_id for s in done] == ["a"] and done[0].ended == "bye"


def test_a_silent_session_ends_after_the_timeout_and_a_long_one_at_the_longest() -> None:
    t = table(Ports(4), timeout=10.0, longest=30.0)
    port = t.take_port()
    assert port is not None
    s = t.open("quiet", port, stream(), ECHO, "127.0.0.9", 0.0)
    port = t.take_port()
    assert port is not None
    chatty = t.open("chatty", port, stream(), ECHO, "127.0.0.9", 0.0)
    now = 0.0
    while now < 40.0:
        chatty.rtp(rtp(int(now * 50), int(now * 8000)), CLIENT, now)
        t.tick(now)
        now += 0.5
    assert s.ended == "timeout" and chatty.ended == "longest"


def test_verdicts_on_the_clients_media() -> None:
    t = table(Ports(4), no_rtp_after=5.0)
    port = t.take_port()
    assert port is not None
    mute = t.open("mute", port, stream(), ECHO, "127.0.0.9", 0.0)
    t.acked("mute", 0.1)
    t.end("mute", 8.0, "bye")
    ((_rule, message),) = t.judge(mute)
    assert "no RTP from the client within 5 s of the ACK: none came" in message

    port = t.take_port()
    assert port is not None
    odd = t.open("odd", port, stream(), ECHO, "127.0.0.9", 0.0)
    t.acked("odd", 0.0)
    odd.rtp(rtp(1, 160, marker=True), CLIENT, 0.1)
    odd.rtp(rtp(2, 320, pt=96), CLIENT, 0.12)
    t.end("odd", 1.0, "bye")
    odd.rtp(rtp(3, 480), CLIENT, 1.1)
    messages = [m for _, m in t.judge(odd) + t.judge_after(odd)]
    assert any("payload type 96" in m for m in messages)
    assert any("after the call's BYE" in m for m in messages)
    assert not any("no RTP" in m for m in messages)


# ---------------------------------------------------------------------- the endpoint

OFFER = (
    b"v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 18 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"m=audio 49180 RTP/AVP 0\r\n"
)


def _endpoint(ports: Ports, rules: str | None = None, **config: object):  # type: ignore[no-untyped-def]
    from sipresponder.core.config import Config
    from sipresponder.core.endpoint import Endpoint
    from sipresponder.core.journal import Journal
    from sipresponder.core.rules_loader import load_rules

    ep = Endpoint(
        Config(secret=b"k" * 16, **config),  # type: ignore[arg-type]
        rules=None if rules is None else load_rules(rules),
        journal=Journal(100),
    )
    ep.use_media(table(ports))
    return ep


def _invite(user: str, body: bytes = OFFER, call_id: str = "m-1") -> bytes:
    from helpers import request

    return request(
        "INVITE",
        user,
        call_id=call_id,
        branch=f"z9hG4bK-{call_id}",
        body=body,
        extra=[("Content-Type", "application/sdp")],
    )


def _sdp_of(out: list) -> bytes:  # type: ignore[type-arg]
    from test_endpoint import responses

    (final,) = [r for r in responses(out) if r.status == 200]
    return final.body


def test_an_answered_call_gets_a_session_named_in_its_sdp_and_loses_it_with_its_bye() -> None:
    from helpers import request
    from test_endpoint import UDP

    ports = Ports(4)
    ep = _endpoint(ports)
    sdp = _sdp_of(ep.receive(_invite("200"), UDP, 0.0))
    # The first stream we can serve gets the session's port; the second is refused, as
    # one session serves one stream (RFC 3264 §6).
    # Echo sends back what comes, in any codec: the first offered that we support.
    assert b"m=audio 20000 RTP/AVP 18 101\r\n" in sdp
    assert b"m=audio 0 RTP/AVP 0\r\n" in sdp
    assert ports.taken == [20000]
    assert ep.media is not None
    session = ep.media.table.get("m-1")
    assert session is not None and session.stream.payload_type == 18
    assert (session.stream.address, session.stream.port) == ("192.0.2.1", 49170)
    bye = request(
        "BYE",
        "200",
        call_id="m-1",
        branch="z9hG4bK-bye",
        cseq="2 BYE",
        to="<sip:200@127.0.0.1>;tag=x",
    )
    ep.receive(bye, UDP, 1.0)
    assert session.ended == "bye"
    ep.media.tick(1.0 + LINGER)
    ep.media.finish(1.0 + LINGER)
    assert ports.taken == []
    call = ep.journal.get("m-1") if ep.journal is not None else None
    assert call is not None and call.media[0]["ended"] == "bye"


def test_a_mode_that_sends_prefers_a_codec_it_can_encode() -> None:
    from test_endpoint import UDP

    ep = _endpoint(Ports(4), media=TONE)
    sdp = _sdp_of(ep.receive(_invite("200"), UDP, 0.0))
    assert b"m=audio 20000 RTP/AVP 8 101\r\n" in sdp  # not G.729, which it cannot encode


def test_dialled_and_rule_media_override_the_default() -> None:
    from test_endpoint import UDP

    ports = Ports(4)
    ep = _endpoint(ports, media=MediaMode("none"))
    sdp = _sdp_of(ep.receive(_invite("200", call_id="plain"), UDP, 0.0))
    assert b"m=audio 40000 " in sdp and ports.taken == []  # none: today's placeholder
    ep.receive(_invite("200*02440", call_id="dialled"), UDP, 0.0)
    assert ep.media is not None
    session = ep.media.table.get("dialled")
    assert session is not None and session.mode.kind == "tone"
    assert session.mode.frequency == 440.0

    rules = "rules:\n  - match: {user: tone}\n    plan: 200\n    media: {tone: 425}\n"
    ep = _endpoint(Ports(4), rules, media=MediaMode("none"))
    ep.receive(_invite("tone", call_id="ruled"), UDP, 0.0)
    assert ep.media is not None
    ruled = ep.media.table.get("ruled")
    assert ruled is not None and ruled.mode.frequency == 425.0


def test_no_free_port_answers_the_call_without_media() -> None:
    from test_endpoint import UDP

    ep = _endpoint(Ports(0))
    sdp = _sdp_of(ep.receive(_invite("200"), UDP, 0.0))
    assert b"m=audio 40000 " in sdp
    assert ep.media is not None and ep.media.table.stats["refused"] == 1


def test_hold_and_resume_by_reinvite_and_update() -> None:
    from helpers import request
    from test_endpoint import UDP, responses

    from sipresponder.sip.message import tag_of

    ep = _endpoint(Ports(4))
    out = ep.receive(_invite("200", body=OFFER.replace(b"49180", b"0")), UDP, 0.0)
    (ok,) = [r for r in responses(out) if r.status == 200]
    to = ok.header("to")
    tag = tag_of(to or "")
    assert ep.media is not None
    session = ep.media.table.get("m-1")
    assert session is not None and session.stream.direction == "sendrecv"
    held = OFFER.replace(b"m=audio 49180 RTP/AVP 0\r\n", b"a=sendonly\r\n")
    for method, cseq, body, direction in (
        ("INVITE", 2, held, "recvonly"),  # RFC 3264 §8.4: the client holds the call
        ("UPDATE", 3, OFFER, "sendrecv"),  # and resumes it (RFC 3311)
    ):
        data = request(
            method,
            "200",
            call_id="m-1",
            branch=f"z9hG4bK-{method}",
            cseq=f"{cseq} {method}",
            to=f"<sip:200@127.0.0.1>;tag={tag}",
            body=body,
            extra=[("Content-Type", "application/sdp")],
        )
        (answer,) = [r for r in responses(ep.receive(data, UDP, float(cseq))) if r.status == 200]
        assert b"m=audio 20000 " in answer.body  # the same session, the same port
        assert session.stream.direction == direction
        packet = rtp(cseq, cseq * 160, pt=18)
        echoed = session.rtp(packet, ("192.0.2.1", 49170), float(cseq))
        assert bool(echoed) == (direction == "sendrecv")
    assert ep.media.table.stats["opened"] == 1


# ---------------------------------------------------------------------- modes


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("loud", "'loud' is not a media mode"),
        ("play", "play needs a path"),
        ({"tone": 5}, "from 20 to 7000"),
        ({"tone": True}, "from 20 to 7000"),
        ({"play": "missing.wav"}, "missing.wav: No such file"),
        ({"record": "missing-folder"}, "not a folder"),
        ({"echo": 1}, "'echo' is not a media mode"),
        ([1, 2], "must be echo, tone"),
    ],
)
def test_a_bad_media_value_is_one_line_naming_the_field(value: object, problem: str) -> None:
    from sipresponder.core.mediaplan import parse_media
    from sipresponder.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^media") as info:
        parse_media(value, "media")
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_the_keypad_forms() -> None:
    from sipresponder.core.mediaplan import dialled_media
    from sipresponder.errors import ConfigError

    assert dialled_media("0").kind == "none" and dialled_media("1").kind == "echo"
    assert dialled_media("2").frequency == 1000.0 and dialled_media("2425").frequency == 425.0
    assert dialled_media("3").kind == "silence"
    for bad in ("", "4", "1x", "31", "29"):
        with pytest.raises(ConfigError):
            dialled_media(bad)


def test_a_played_file_is_encoded_once_and_loops(tmp_path: object) -> None:
    from pathlib import Path

    from sipresponder.core.audio import Tone, write_wav
    from sipresponder.core.mediaplan import parse_media

    folder = Path(str(tmp_path))
    (folder / "prompt.wav").write_bytes(
        write_wav(Tone(300.0, 16000).samples(16000 // 10 * 3), 16000)
    )
    mode = parse_media({"play": "prompt.wav"}, "media", folder)
    frames = mode.frames("pcmu", 20)
    assert len(frames) == 15 and mode.frames("pcmu", 20) is frames  # 0.3 s at 8 kHz, once
    s = session(mode)
    sent = [parse_rtp(d) for d in _play(s, 0.58)]  # 30 packets: the file twice
    payloads = [p.payload for p in sent if p is not None]
    assert payloads == frames + frames
    pcm = b"".join(ulaw_decode(p) for p in payloads)
    assert abs(dominant_frequency(pcm, 8000) - 300) <= 10


def test_g722_tone_and_recording_keep_their_16_khz_audio() -> None:
    from sipresponder.core.audio import Tone
    from sipresponder.core.codecs import G722Decoder, G722Encoder

    wide = Stream(CLIENT[0], CLIENT[1], CLIENT[1] + 1, 9, "g722", 8000, None, 20, "sendrecv")
    tone = MediaSession(
        "c",
        20000,
        wide,
        MediaMode("tone", frequency=5000.0),
        "127.0.0.9",
        0.0,
        ssrc=1,
        seq=1,
        timestamp=0,
    )
    packets = [parse_rtp(d) for d in _play(tone, 0.98)]
    # RFC 3551 §4.5.2: 160 timestamp units (an 8 kHz clock) and 160 bytes per 20 ms.
    assert [p.timestamp for p in packets[:3] if p is not None] == [0, 160, 320]
    assert all(p is not None and len(p.payload) == 160 for p in packets)
    decoder = G722Decoder()
    pcm = b"".join(decoder.decode(p.payload) for p in packets if p is not None)
    # 5 kHz is above what 8 kHz audio can carry: it is G.722's upper band at work.
    assert abs(dominant_frequency(pcm[len(pcm) // 2 :], 16000, 100, 7000) - 5000) <= 20

    recorder = MediaSession(
        "r",
        20002,
        wide,
        MediaMode("record", directory="/nowhere"),
        "127.0.0.9",
        0.0,
        ssrc=2,
        seq=2,
        timestamp=2,
    )
    encoder, source = G722Encoder(), Tone(3000.0, 16000)
    for i in range(50):
        payload = encoder.encode(source.samples(320))
        recorder.rtp(build_rtp(9, i, 160 * i, 0x99, payload, marker=i == 0), CLIENT, i * 0.02)
    assert recorder.recording_rate == 16000
    heard = recorder.take_recording()
    assert len(heard) == 50 * 320 * 2 and recorder.take_recording() == b""
    assert abs(dominant_frequency(heard[len(heard) // 2 :], 16000, 100, 7000) - 3000) <= 20
