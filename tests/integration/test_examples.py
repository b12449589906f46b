"""The rule files in ``examples/``, each driven by the real sipp over UDP and TCP.

Every example is started as its top comment says (``--rules examples/NAME.yaml``) and a
scenario from ``scenarios/`` plays the caller; sipp exits 0 only when the call went as
the scenario says.  What the file promises beyond that (codes, Retry-After, Contact,
SDP, timing) is checked on sipp's message trace (``-trace_msg``) and on the
responder's log.  Also here: two responder bugs found on the way (now fixed:
TCP_NODELAY, the stateful challenge).  ``--check`` on the examples is
test_examples_check.py's, SIGHUP reloads are test_reload.py's.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from examplekit import (
    EXAMPLE_FILES,
    first,
    received,
    sent,
    sipp_ok,
    start_example,
    transactions,
    wait_for_count,
)
from sipclient import RECV_TIMEOUT, Msg, Req, TcpClient, UdpClient, client
from sipprocs import StartResponder, run_sipp

from sipresponder.sip.digest import credentials

TRANSPORTS = ["udp", "tcp"]

#: Every example and the sipp scenario that plays its caller (the tests below).
EXAMPLE_SCENARIOS = {
    "busy": "uac_busy",
    "no-answer": "uac_no_answer",
    "redirect": "uac_redirect",
    "auth": "uac_register_auth, uac_invite_auth",
    "flaky-trunk": "uac_flaky",
    "early-media": "uac_early_media",
    "slow-answer": "uac_slow_answer",
    "lossy-network": "uac_call",
    "flaky-registrar": "uac_register_flaky",
    "hangs-up": "uac_remote_bye",
    "forking-proxy": "uac_fork",
}


def test_every_example_has_a_sipp_test() -> None:
    assert {p.stem for p in EXAMPLE_FILES} == set(EXAMPLE_SCENARIOS)


# --------------------------------------------------------------------- busy


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_busy(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "busy")
    result, trace = sipp_ok(responder, "uac_busy", "1001", transport, tmp_path)
    ringing, busy = first(trace, 180), first(trace, 486)
    assert busy.msg.reason == "Busy Here"
    assert busy.msg["Retry-After"] == "300"
    assert busy.msg["Reason"] == 'Q.850;cause=17;text="User busy"'
    assert busy.at - ringing.at >= 0.95, "the 486 came less than 1 s after the 180"
    assert result.elapsed < 5, result.report()
    assert transactions(responder, "INVITE") == [
        (f"sip:1001@{responder.host}:{responder.port}", "100 180 486")
    ]


# ---------------------------------------------------------------- no answer


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_answer_rings_until_the_caller_cancels(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "no-answer")
    # -d 1000: sipp rings for a second, and nothing may arrive meanwhile.
    _, trace = sipp_ok(responder, "uac_no_answer", "1001", transport, tmp_path, "-d", "1000")
    ringing = first(trace, 180)
    cancel = sent(trace, "CANCEL")
    assert len(cancel) == 1
    assert cancel[0].at - ringing.at >= 0.95
    between = [t.msg.start for t in trace if not t.sent and ringing.at < t.at < cancel[0].at]
    assert between == [], f"the ringing was interrupted by {between}"
    assert first(trace, 487).msg["CSeq"] == "1 INVITE"
    assert first(trace, 200).msg["CSeq"] == "1 CANCEL"
    responder.wait_for_log("INVITE sip:1001")
    assert transactions(responder, "INVITE") == [
        (f"sip:1001@{responder.host}:{responder.port}", "100 180 487")
    ]
    assert [codes for _, codes in transactions(responder, "CANCEL")] == ["200"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_answer_gives_up_after_max_ring(
    start_responder_with: StartResponder, transport: str
) -> None:
    # The example's comment: --max-ring seconds of ringing end in 408.
    responder = start_example(start_responder_with, "no-answer", "--max-ring", "0.5")
    with client(transport, responder.addr) as c:
        invite = Req(method="INVITE", user="1001")
        c.send(invite)
        c.expect(100)
        ringing = c.expect(180)
        timeout = c.expect(408, timeout=RECV_TIMEOUT + 1)
        assert timeout.at - ringing.at >= 0.45
        c.send(invite.ack(timeout.to_tag))
        c.expect_silence()


# ----------------------------------------------------------------- redirect


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redirect_302_is_followed_to_the_mobile(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "redirect")
    _, trace = sipp_ok(responder, "uac_redirect", "1001", transport, tmp_path)
    moved = first(trace, 302).msg
    hostport = f"{responder.host}:{responder.port}"
    target = f"sip:mobile-1001@{hostport};transport={transport}"
    assert moved.reason == "Moved Temporarily"
    assert moved.get_all("Contact") == [f"<{target}>"]
    assert moved["Diversion"] == f"<sip:1001@{responder.host}>;reason=unconditional"
    # sipp followed the Contact; the responder answered it with the dial-the-code default.
    assert [t.msg.start for t in sent(trace, "INVITE")] == [
        f"INVITE sip:1001@{hostport} SIP/2.0",
        f"INVITE {target} SIP/2.0",
    ]
    responder.wait_for_log("BYE ")
    assert transactions(responder, "INVITE") == [
        (f"sip:1001@{hostport}", "100 302"),
        (target, "100 180 200"),
    ]


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redirect_301_for_the_other_user(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "redirect")
    _, trace = sipp_ok(responder, "uac_redirect", "1002", transport, tmp_path)
    moved = first(trace, 301).msg
    assert moved.reason == "Moved Permanently"
    assert moved.get_all("Contact") == ["<sip:1002@new-office.example.com>"]
    assert moved.get("Diversion") is None
    assert received(trace, 302) == []
    assert len(sent(trace, "INVITE")) == 1


# --------------------------------------------------------------------- auth


def single_md5_challenge(msg: Msg, header: str) -> dict[str, str]:
    """The one challenge ``header`` of ``msg``, as parameters; it must be MD5 only."""
    values = msg.get_all(header)
    assert len(values) == 1, f"expected one {header}, got {values}"
    value = values[0]
    assert value.startswith("Digest "), value
    params = dict(re.findall(r'([a-z]+)=("[^"]*"|[^,\s]+)', value))
    assert params["realm"] == '"lab.example"'
    assert params["algorithm"] == "MD5"
    assert params["qop"] == '"auth"'
    return params


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_register_is_challenged_then_accepted(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "auth")
    _, trace = sipp_ok(
        responder,
        "uac_register_auth",
        "alice",
        transport,
        tmp_path,
        "-au",
        "alice",
        "-ap",
        "secret",
    )
    challenge = first(trace, 401).msg
    nonce = single_md5_challenge(challenge, "WWW-Authenticate")["nonce"]
    registers = sent(trace, "REGISTER")
    assert len(registers) == 2
    answer = registers[1].msg["Authorization"]
    assert 'username="alice"' in answer and f"nonce={nonce}" in answer
    ok = first(trace, 200).msg
    assert ok["CSeq"] == "2 REGISTER"
    assert ok["Contact"].endswith(";expires=3600")
    responder.wait_for_log("-> 200")
    assert [codes for _, codes in transactions(responder, "REGISTER")] == ["401", "200"]


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_invite_is_challenged_by_the_proxy_then_answered(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "auth")
    _, trace = sipp_ok(
        responder,
        "uac_invite_auth",
        "1001",
        transport,
        tmp_path,
        "-au",
        "bob",
        "-ap",
        "hunter2",
    )
    challenge = first(trace, 407).msg
    assert challenge.get("WWW-Authenticate") is None
    single_md5_challenge(challenge, "Proxy-Authenticate")
    invites = sent(trace, "INVITE")
    assert len(invites) == 2
    assert invites[0].msg.get("Proxy-Authorization") is None
    assert 'username="bob"' in invites[1].msg["Proxy-Authorization"]
    answer = first(trace, 200).msg
    assert answer["CSeq"] == "2 INVITE"
    assert answer["Content-Type"] == "application/sdp"
    responder.wait_for_log("BYE ")
    assert [codes for _, codes in transactions(responder, "INVITE")] == ["407", "100 180 200"]
    assert [codes for _, codes in transactions(responder, "BYE")] == ["200"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_wrong_password_or_unknown_user_is_forbidden(
    start_responder_with: StartResponder, transport: str
) -> None:
    responder = start_example(start_responder_with, "auth")
    with client(transport, responder.addr) as c:
        for username, password in (("alice", "wrong"), ("mallory", "secret")):
            first_try = Req(method="REGISTER", user="alice")
            challenge = c.request(first_try, 401)
            params = single_md5_challenge(challenge, "WWW-Authenticate")
            uri = f"sip:alice@{responder.host}:{responder.port}"
            value = credentials(
                username,
                password,
                "lab.example",
                params["nonce"].strip('"'),
                "REGISTER",
                uri,
            )
            retry = Req(
                method="REGISTER",
                user="alice",
                call_id=first_try.call_id,
                from_tag=first_try.from_tag,
                cseq=2,
                headers=[("Authorization", value)],
            )
            c.request(retry, 403)
        # The right password still works on the same connection.
        again = Req(method="REGISTER", user="alice")
        challenge = c.request(again, 401)
        nonce = single_md5_challenge(challenge, "WWW-Authenticate")["nonce"].strip('"')
        value = credentials(
            "alice",
            "secret",
            "lab.example",
            nonce,
            "REGISTER",
            f"sip:alice@{responder.host}:{responder.port}",
        )
        c.request(
            Req(
                method="REGISTER",
                user="alice",
                call_id=again.call_id,
                from_tag=again.from_tag,
                cseq=2,
                headers=[("Authorization", value)],
            ),
            200,
        )


# -------------------------------------------------------------- flaky trunk

FLAKY_CALLS = 100


def flaky_run(start: StartResponder, transport: str, workdir: Path) -> tuple[int, int]:
    """FLAKY_CALLS calls on a fresh responder -> (answered, unavailable)."""
    # --log-rate: one log line per transaction even at 200 calls/s.
    responder = start_example(start, "flaky-trunk", "--log-rate", "100000")
    _, trace = sipp_ok(
        responder,
        "uac_flaky",
        "0123456789",
        transport,
        workdir,
        "-m",
        str(FLAKY_CALLS),
        "-l",
        "20",
        "-r",
        "200",
    )
    for traced in received(trace, 503):
        assert traced.msg["Retry-After"] == "30"
        assert traced.msg["Reason"] == 'Q.850;cause=34;text="No circuit/channel available"'
    logged = wait_for_count(responder, " INVITE ", FLAKY_CALLS)
    outcomes = [codes for _, codes in transactions(responder, "INVITE")]
    assert len(outcomes) == FLAKY_CALLS, logged[-3000:]
    assert set(outcomes) <= {"100 180 200", "100 503"}, set(outcomes)
    answered = outcomes.count("100 180 200")
    unavailable = outcomes.count("100 503")
    # Every 503 that sipp saw first is one call (UDP may repeat a 503 until the ACK).
    call_ids = {t.msg["Call-ID"] for t in received(trace, 503)}
    assert len(call_ids) == unavailable
    return answered, unavailable


@pytest.mark.sipp
def test_flaky_trunk_is_flaky_at_the_configured_ratio_and_reproducible(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path
) -> None:
    udp = flaky_run(start_responder_with, "udp", tmp_path / "udp")
    tcp = flaky_run(start_responder_with, "tcp", tmp_path / "tcp")
    answered, unavailable = udp
    # Weights 4:1 -> 20 % of 100; allow three standard deviations (binomial: 4 calls).
    assert 8 <= unavailable <= 32, udp
    assert answered + unavailable == FLAKY_CALLS
    # seed: 42 -> a fresh responder picks the same sequence, whatever the transport.
    assert tcp == udp


# -------------------------------------------------------------- early media


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_early_media_then_answer(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "early-media")
    _, trace = sipp_ok(responder, "uac_early_media", "1001", transport, tmp_path)
    progress, answer = first(trace, 183), first(trace, 200)
    assert progress.msg.reason == "Session Progress"
    assert progress.msg["Content-Type"] == "application/sdp"
    assert b"\r\nm=audio " in progress.msg.body
    assert answer.msg["Content-Type"] == "application/sdp"
    assert answer.msg.body == progress.msg.body, "the 200 carries another SDP than the 183"
    assert received(trace, 180) == []
    assert answer.at - progress.at >= 1.95, "the 200 came less than 2 s after the 183"
    responder.wait_for_log("BYE ")
    assert [codes for _, codes in transactions(responder, "INVITE")] == ["100 183 200"]


# ------------------------------------------------------------- slow answer


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_slow_answer_takes_five_seconds(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "slow-answer")
    result, trace = sipp_ok(responder, "uac_slow_answer", "1001", transport, tmp_path)
    ringing, answer = first(trace, 180), first(trace, 200)
    assert 4.95 <= answer.at - ringing.at < 6.5, answer.at - ringing.at
    assert result.elapsed >= 5.0, result.report()
    assert b"\r\nm=audio " in answer.msg.body
    responder.wait_for_log("BYE ")
    assert [codes for _, codes in transactions(responder, "INVITE")] == ["100 180 200"]


# ------------------------------------------------------------- lossy network

LOSSY_CALLS = 30


@pytest.mark.sipp
def test_lossy_network_is_survived_by_a_client_that_retransmits(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path
) -> None:
    responder = start_example(start_responder_with, "lossy-network", "--log-rate", "100000")
    args = ("-m", str(LOSSY_CALLS), "-l", "10", "-r", "10")
    result, trace = sipp_ok(responder, "uac_call", "1000", "udp", tmp_path, *args)
    invites, byes = sent(trace, "INVITE"), sent(trace, "BYE")
    # Each request whose first copy was dropped was sent again (500 ms later, T1), and the
    # call went through: about a third of each (binomial, n = 30: 2 to 18 either way).
    resent_invites, resent_byes = len(invites) - LOSSY_CALLS, len(byes) - LOSSY_CALLS
    assert 2 <= resent_invites <= 18 and 2 <= resent_byes <= 18, result.report()
    wait_for_count(responder, " BYE ", LOSSY_CALLS)
    assert len(transactions(responder, "INVITE")) == LOSSY_CALLS
    # seed: 3 -> a fresh responder drops the copies of the same calls (by arrival order).
    again = start_example(start_responder_with, "lossy-network", "--log-rate", "100000")
    _, trace = sipp_ok(again, "uac_call", "1000", "udp", tmp_path / "again", *args)
    assert len(sent(trace, "INVITE")) - LOSSY_CALLS == resent_invites


# ----------------------------------------------------------- flaky registrar


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_flaky_registrar_fails_twice_then_accepts_each_user(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "flaky-registrar")
    _, trace = sipp_ok(responder, "uac_register_flaky", "alice", transport, tmp_path / "alice")
    assert [t.status for t in trace if not t.sent] == [503, 503, 200]
    assert all(t.msg["Retry-After"] == "5" for t in received(trace, 503))
    # Another user starts a sequence of its own...
    _, trace = sipp_ok(responder, "uac_register_flaky", "bob", transport, tmp_path / "bob")
    assert [t.status for t in trace if not t.sent] == [503, 503, 200]
    # ... and alice's stays on its last plan: her next REGISTER gets 200 at once.
    (tmp_path / "again").mkdir()
    result = run_sipp(responder, "uac_register_flaky", "alice", transport, tmp_path / "again")
    assert result.returncode != 0 and "200" in result.errors, result.report()


# ------------------------------------------------------------------ hangs up


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hangs_up_five_seconds_after_the_ack(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "hangs-up")
    result, trace = sipp_ok(responder, "uac_remote_bye", "1000", transport, tmp_path)
    ack = sent(trace, "ACK")[0]
    bye = next(t for t in trace if not t.sent and t.msg.start.startswith("BYE "))
    assert 4.95 <= bye.at - ack.at < 6.5, bye.at - ack.at
    assert bye.msg["CSeq"] == "1 BYE" and bye.msg["Max-Forwards"] == "70"
    assert result.elapsed >= 5.0


# ------------------------------------------------------------- forking proxy


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_forking_proxy_two_dialogs_each_acked(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "forking-proxy")
    _, trace = sipp_ok(responder, "uac_fork", "1000", transport, tmp_path)
    oks = [t for t in received(trace, 200) if t.msg["CSeq"] == "1 INVITE"]
    tags = {t.msg.to_tag for t in oks}
    assert len(tags) == 2, [t.msg["To"] for t in oks]
    acks = sent(trace, "ACK")
    assert {t.msg.to_tag for t in acks} == tags  # an ACK for each 2xx
    assert {t.msg.to_tag for t in sent(trace, "BYE")} == tags


# -------------------------------------------------------- found on the way


def test_tcp_responses_in_a_row_are_not_held_back(
    start_responder_with: StartResponder,
) -> None:
    # Seen with the flaky trunk over TCP: 100 Trying goes out, the 180 and 200 (or the
    # 503) written a few microseconds later arrive ~40 ms after it.
    responder = start_example(start_responder_with, "flaky-trunk")
    gaps = []
    with TcpClient(responder.addr) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # not our side
        for _ in range(9):
            invite = Req(method="INVITE", user="0123456789")
            c.send(invite)
            trying = c.expect(100)
            final = c.expect_any()
            gaps.append(final.at - trying.at)
            if final.status == 180:
                final = c.expect(200)
                c.send(invite.ack_2xx(final.to_tag))
            else:
                c.send(invite.ack(final.to_tag))
    gaps.sort()
    median = gaps[len(gaps) // 2]
    assert median < 0.015, f"responses after the 100 came {median * 1000:.0f} ms later"


def test_auth_challenge_to_a_retransmitted_register_is_the_same(
    start_responder_with: StartResponder,
) -> None:
    responder = start_example(start_responder_with, "auth")
    with UdpClient(responder.addr) as c:
        register = Req(method="REGISTER", user="alice")
        data = c.build(register)
        c.send(data)
        first_401 = c.expect(401)
        time.sleep(0.02)
        c.send(data)  # the very same bytes: a retransmission
        second_401 = c.expect(401)
    assert second_401.get_all("WWW-Authenticate") == first_401.get_all("WWW-Authenticate")
    assert second_401.raw == first_401.raw
