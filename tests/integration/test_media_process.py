"""Media with the real process: a call's RTP is echoed, a dialled tone has its pitch,
DTMF is decoded, and the admin API's call says what the client sent.

The client is this test: SIP from ``sipclient`` and RTP from a UDP socket of its own,
on loopback, every read with a timeout and every loop bounded.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import stop_and_check
from sipclient import RECV_TIMEOUT, Req, UdpClient
from sipprocs import Responder, free_port, run_sipp, start_responder

from sipresponder.core.audio import dominant_frequency
from sipresponder.core.codecs import ulaw_decode
from sipresponder.core.rtp import build_event, build_rtp, parse_rtp


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Responder]:
    workdir = tmp_path_factory.mktemp("media")
    server = start_responder(
        workdir, "--admin", "127.0.0.1:0", "--rtp-ports", "31000-31099", "--rtp-wait", "1"
    )
    try:
        yield server
    finally:
        stop_and_check(server)


def offer(port: int) -> bytes:
    return (
        "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
    ).encode()


class Call:
    """One call placed by the test: its INVITE, its 200's media port, its RTP socket."""

    def __init__(self, server: Responder, user: str) -> None:
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp_port: int = self.rtp.getsockname()[1]
        self.sip = UdpClient(server.addr)
        self.invite = Req(
            method="INVITE",
            user=user,
            headers=[("Content-Type", "application/sdp")],
            body=offer(self.rtp_port),
        )
        self.sip.send(self.invite)
        ok = self.sip.expect_any()
        for _ in range(5):  # 100 Trying (and any provisional) first
            if ok.status >= 200:
                break
            ok = self.sip.expect_any()
        assert ok.status == 200, ok.text
        self.to_tag = ok.to_tag
        found = re.search(rb"m=audio (\d+) ", ok.body)
        assert found is not None, ok.text
        self.port = int(found.group(1))
        self.sip.send(self.invite.ack_2xx(self.to_tag))

    def send_rtp(self, packets: list[bytes]) -> None:
        for packet in packets:
            self.rtp.sendto(packet, ("127.0.0.1", self.port))
            time.sleep(0.002)

    def receive(self, count: int, timeout: float = RECV_TIMEOUT) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            self.rtp.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = self.rtp.recvfrom(2048)
            except TimeoutError:
                break
            if len(data) > 1 and 200 <= data[1] <= 204:
                continue  # RTCP, when the RTCP port is the same (it is not here)
            out.append(data)
        return out

    def bye(self) -> None:
        self.sip.send(self.invite.in_dialog("BYE", self.to_tag, self.invite.cseq + 1))
        self.sip.expect(200)

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()


def call_json(server: Responder, call_id: str, want: str = "ended") -> dict[str, Any]:
    """The admin API's call, once its media session says ``want`` is set."""
    url = f"{server.admin_url}/api/calls/{urllib.parse.quote(call_id)}"
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=RECV_TIMEOUT) as resp:
                data: dict[str, Any] = json.loads(resp.read())
            if data["media"] and data["media"][0].get(want):
                return data
        except urllib.error.HTTPError:
            pass
        assert time.monotonic() < deadline, f"no media {want!r} for {call_id}"
        time.sleep(0.1)


def test_echo_sends_back_each_packet_and_the_journal_counts_them(media: Responder) -> None:
    call = Call(media, "200")
    try:
        payloads = [bytes([i]) * 160 for i in range(50)]
        packets = [
            build_rtp(0, 1000 + i, 160 * i, 0xABCD, p, marker=i == 0)
            for i, p in enumerate(payloads)
        ]
        call.send_rtp(packets)
        echoed = [parse_rtp(d) for d in call.receive(50)]
        assert len(echoed) == 50
        assert [p.payload for p in echoed if p is not None] == payloads
        assert {p.ssrc for p in echoed if p is not None} != {0xABCD}  # our own SSRC
        call.bye()
        data = call_json(media, call.invite.call_id)
    finally:
        call.close()
    (stream,) = data["media"]
    assert stream["mode"] == "echo" and stream["codec"] == "pcmu/8000"
    assert stream["packets_in"] == 50 and stream["packets_out"] == 50
    assert stream["loss"] == 0 and stream["ended"] == "bye"
    assert stream["client"] == f"127.0.0.1:{call.rtp_port}"
    assert data["violations"] == []


def test_a_dialled_tone_has_its_frequency(media: Responder) -> None:
    call = Call(media, "200*02440")
    try:
        # Latching: our first packet tells the responder where we are.
        call.send_rtp([build_rtp(0, 1, 0, 0x1234, b"\xff" * 160, marker=True)])
        packets = [parse_rtp(d) for d in call.receive(50)]
        call.bye()
    finally:
        call.close()
    assert len(packets) == 50
    stamps = [p.timestamp for p in packets if p is not None]
    assert all(b - a == 160 for a, b in itertools.pairwise(stamps))
    pcm = b"".join(ulaw_decode(p.payload) for p in packets if p is not None)
    assert abs(dominant_frequency(pcm, 8000) - 440) <= 10


def test_dtmf_digits_are_decoded_into_the_journal(media: Responder) -> None:
    call = Call(media, "200")
    try:
        packets = []
        seq = 0
        for n, digit in enumerate((1, 2, 11)):
            for i, end in enumerate([False, False, True, True, True]):
                payload = build_event(digit, end, 10, 160 * (i + 1))
                packets.append(build_rtp(101, seq, 8000 * (n + 1), 0x77, payload, marker=i == 0))
                seq += 1
        call.send_rtp(packets)
        call.receive(len(packets), timeout=2)
        call.bye()
        data = call_json(media, call.invite.call_id)
    finally:
        call.close()
    assert data["media"][0]["dtmf"] == "12#"


def test_a_client_that_sends_no_rtp_gets_the_verdict(media: Responder) -> None:
    call = Call(media, "200")
    try:
        time.sleep(1.3)  # --rtp-wait 1
        call.bye()
        data = call_json(media, call.invite.call_id)
    finally:
        call.close()
    rules = [v["message"] for v in data["violations"]]
    assert any("no RTP from the client within 1 s of the ACK" in m for m in rules), rules


def test_record_writes_the_clients_audio_to_a_wav(tmp_path: Path, start_responder_with) -> None:  # type: ignore[no-untyped-def]
    from sipresponder.core.audio import read_wav

    server = start_responder_with("--media", f"record:{tmp_path}", "--rtp-ports", "31200-31299")
    call = Call(server, "200")
    try:
        from sipresponder.core.audio import Tone
        from sipresponder.core.codecs import ulaw_encode

        tone = Tone(600.0, 8000)
        packets = [
            build_rtp(0, i, 160 * i, 0x55, ulaw_encode(tone.samples(160)), marker=i == 0)
            for i in range(50)
        ]
        call.send_rtp(packets)
        call.bye()
    finally:
        call.close()
    wav = tmp_path / f"{call.invite.call_id.replace('@', '@')}.wav"
    deadline = time.monotonic() + 10
    while not wav.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    rate, pcm = read_wav(wav.read_bytes())
    assert rate == 8000 and len(pcm) == 50 * 160 * 2
    assert abs(dominant_frequency(pcm, 8000) - 600) <= 10


def _calls(server: Responder) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{server.admin_url}/api/calls", timeout=RECV_TIMEOUT) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    calls: list[dict[str, Any]] = data["calls"]
    return calls


@pytest.mark.skipif(
    not Path("/usr/share/sip-tester/g711a.pcap").exists(), reason="sip-tester's pcaps missing"
)
def test_sipp_plays_audio_and_a_digit_and_the_journal_has_them(tmp_path: Path) -> None:
    server = start_responder(tmp_path, "--admin", "127.0.0.1:0", "--rtp-ports", "31400-31499")
    try:
        result = run_sipp(
            server, "uac_media", "200", "udp", tmp_path, extra=["-mp", str(free_port())]
        )
        assert result.returncode == 0, result.report()
        deadline = time.monotonic() + 10
        while True:
            calls = [c for c in _calls(server) if c["media"]]
            if calls and calls[0]["media"][0]["ended"]:
                break
            assert time.monotonic() < deadline, "the call's media session never ended"
            time.sleep(0.1)
    finally:
        stop_and_check(server)
    (stream,) = calls[0]["media"]
    # g711a.pcap: 236 packets of PCMA; dtmf_2833_1.pcap: 10 telephone-events, digit 1.
    assert stream["codec"] == "pcma/8000" and stream["telephone_event"] == 101
    assert stream["packets_in"] == 246 and stream["packets_out"] == 246  # all echoed
    assert stream["dtmf"] == "1" and stream["ended"] == "bye"
    assert stream["first_packet_delay"] is not None and stream["first_packet_delay"] < 1
    assert calls[0]["violations"] == []


# ------------------------------------------------------------------------- pyVoIP

PYVOIP = """\
import math, sys, time
from pyVoIP.VoIP import CallState, VoIPPhone
host, port, sip_port, rtp, number, mode = sys.argv[1:7]
phone = VoIPPhone(host, int(port), "alice", "x", myIP="127.0.0.1", sipPort=int(sip_port),
                  rtpPortLow=int(rtp), rtpPortHigh=int(rtp) + 10)
phone.start()
try:
    call = phone.call(number)
    deadline = time.monotonic() + 10
    while call.state != CallState.ANSWERED and time.monotonic() < deadline:
        time.sleep(0.05)
    print("state", call.state.name, flush=True)
    if mode == "echo":  # 2 s of 700 Hz, 8-bit unsigned at 8 kHz (pyVoIP's audio)
        call.write_audio(bytes(int(128 + 60 * math.sin(2 * math.pi * 700 * n / 8000))
                               for n in range(16000)))
    got = b""
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        got += call.read_audio(160, blocking=True)
    print("audio", got.hex(), flush=True)
    call.hangup()
finally:
    phone.stop()
"""


@pytest.mark.parametrize(
    ("number", "mode", "hertz"), [("200*02440", "tone", 440), ("200", "echo", 700)]
)
def test_pyvoip_hears_the_tone_and_its_own_echo(
    media: Responder, tmp_path: Path, number: str, mode: str, hertz: int
) -> None:
    """pyVoIP 1.6 (PyPI) places a call that sends audio: it hears a dialled 440 Hz tone,
    and, calling the echo, the 700 Hz tone it sends."""
    import importlib.util
    import subprocess
    import sys

    from required import missing

    if importlib.util.find_spec("pyVoIP") is None:
        missing("pyVoIP is not installed (PyPI; make test installs it)")
    script = tmp_path / "pyvoip_media.py"
    script.write_text(PYVOIP)
    argv = [sys.executable, str(script), media.host, str(media.port)]
    argv += [str(free_port()), str(free_port()), number, mode]
    proc = subprocess.run(
        argv, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=40
    )
    said = proc.stdout + proc.stderr
    assert "state ANSWERED" in said, said[-3000:]
    found = re.search(r"^audio ([0-9a-f]*)$", proc.stdout, re.M)
    assert found is not None, said[-3000:]
    heard = bytes.fromhex(found.group(1))
    assert len(heard) >= 8000, len(heard)
    pcm = b"".join(((b - 128) << 8).to_bytes(2, "little", signed=True) for b in heard)
    # The second half: the echo's round trip and pyVoIP's buffering are behind us.
    assert abs(dominant_frequency(pcm[len(pcm) // 2 :], 8000) - hertz) <= 10


def test_stateless_opens_no_media_session(tmp_path: Path, start_responder_with) -> None:  # type: ignore[no-untyped-def]
    server = start_responder_with("--stateless")
    with UdpClient(server.addr) as sip:
        sip.send(
            Req(
                method="INVITE",
                user="200",
                headers=[("Content-Type", "application/sdp")],
                body=offer(4000),
            )
        )
        ok = sip.expect(200)  # stateless: the plan's last response alone
    assert b"m=audio 40000 RTP/AVP 0 101" in ok.body  # the placeholder: no session
