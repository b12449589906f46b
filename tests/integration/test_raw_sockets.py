"""The responder process on the wire: well-formed traffic over raw UDP and TCP sockets.

These tests build every byte themselves, so they can do what sipp does not: retransmit
on purpose, leave a final response unacknowledged, measure delays, bend the Via.
Malformed traffic and TCP framing are in ``test_raw_malformed.py``.
"""

from __future__ import annotations

import time

import pytest
from sipclient import Msg, Req, TcpClient, UdpClient, client
from sipprocs import Responder, StartResponder

TRANSPORTS = ["udp", "tcp"]

SDP_OFFER = (
    b"v=0\r\n"
    b"o=test 1 1 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)


def assert_echoes(resp: Msg, req: Req) -> None:
    """§8.2.6.2: the response copies Call-ID, CSeq, From and the top Via."""
    assert resp["Call-ID"] == req.call_id
    assert resp["CSeq"] == f"{req.cseq} {req.cseq_method or req.method}"
    assert f"tag={req.from_tag}" in resp["From"]
    assert f"branch={req.branch}" in resp["Via"]


# ------------------------------------------------------------------- the basics


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_options_gets_200_and_a_log_line(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        req = Req("OPTIONS")
        resp = c.request(req, 200)
        assert_echoes(resp, req)
        assert resp.to_tag
        assert "INVITE" in resp["Allow"]
        assert resp["Content-Length"] == "0"
        local_port = c.local[1]
    line = f"OPTIONS sip:bob@127.0.0.1:{responder.port} from 127.0.0.1:{local_port}/{transport}"
    log = responder.wait_for_log(line)
    assert f"{line} -> 200" in log, log[-2000:]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_default_invite_rings_then_answers_with_sdp(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        invite = Req(
            "INVITE", "alice", headers=[("Content-Type", "application/sdp")], body=SDP_OFFER
        )
        c.send(invite)
        trying, ringing, ok = c.expect_codes([100, 180, 200])
        assert trying.to_tag is None
        assert ringing.to_tag and ringing.to_tag == ok.to_tag
        assert_echoes(ok, invite)
        assert ok["Content-Type"] == "application/sdp"
        assert ok.body.startswith(b"v=0\r\n")
        assert b"\r\nm=audio " in ok.body and b" RTP/AVP 0" in ok.body
        assert b"\r\nc=IN IP4 127.0.0.1\r\n" in ok.body
        assert ok["Contact"].startswith("<sip:")
        c.send(invite.ack_2xx(ok.to_tag))
        c.expect_silence(0.7)  # the ACK is not answered and the 200 is not resent
        c.request(invite.in_dialog("BYE", ok.to_tag, 2), 200)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bye_gets_200_and_a_stray_ack_nothing(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        c.request(Req("BYE", to_tag="abc"), 200)
        c.send(Req("ACK", to_tag="abc"))
        c.expect_silence()
        c.request(Req("OPTIONS"), 200)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("user", "codes"),
    [
        ("486", [100, 486]),
        ("180-486", [100, 180, 486]),
        ("180486", [100, 180, 486]),  # keypad: three digits at a time
        ("180-183-603", [100, 180, 183, 603]),
        ("100-486", [100, 486]),  # the plan starts with 100: no second 100
        ("100180486", [100, 180, 486]),
        ("180-200", [100, 180, 200]),
    ],
)
def test_invite_plans(responder: Responder, transport: str, user: str, codes: list[int]) -> None:
    with client(transport, responder.addr) as c:
        invite = Req("INVITE", user)
        c.send(invite)
        msgs = c.expect_codes(codes)
        final = msgs[-1]
        assert msgs[0].to_tag is None  # 100 Trying has no To tag (§8.2.6.2)
        assert final.to_tag
        assert all(m.to_tag == final.to_tag for m in msgs[1:]), [m.to_tag for m in msgs]
        c.send(invite.ack_2xx(final.to_tag) if final.status < 300 else invite.ack(final.to_tag))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_other_methods_follow_the_plan_too(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        c.request(Req("OPTIONS", "486"), 486)
        c.request(Req("MESSAGE", "403"), 403)
        c.request(Req("REGISTER", "bob"), 200)
        c.request(Req("INFO", uri="tel:480"), 480)


@pytest.mark.parametrize(
    ("user", "transport"), [("180-1500ms-486", "udp"), ("180-1.5s-486", "tcp")]
)
def test_delay_between_steps(responder: Responder, transport: str, user: str) -> None:
    with client(transport, responder.addr) as c:
        invite = Req("INVITE", user)
        c.send(invite)
        _, ringing, busy = c.expect_codes([100, 180, 486])
        gap = busy.at - ringing.at
        assert 1.4 <= gap <= 2.5, f"{user}: the 486 came {gap:.2f} s after the 180"
        c.send(invite.ack(busy.to_tag))


def test_what_each_code_carries(start_responder_with: StartResponder) -> None:
    server = start_responder_with("--realm", "example.test")
    with UdpClient(server.addr) as c:
        www = c.request(Req("REGISTER", "401"), 401)["WWW-Authenticate"]
        assert www.startswith('Digest realm="example.test", nonce="')
        invite = Req("INVITE", "407")
        c.request(invite, 100)
        challenged = c.expect(407)
        assert challenged["Proxy-Authenticate"].startswith('Digest realm="example.test", nonce="')
        c.send(invite.ack(challenged.to_tag))
        assert "INVITE" in c.request(Req("MESSAGE", "405"), 405)["Allow"]
        assert c.request(Req("OPTIONS", "302"), 302)["Contact"].startswith("<sip:")
        assert c.request(Req("REGISTER", "423"), 423)["Min-Expires"].isdigit()


def test_too_many_transactions_get_503(start_responder_with: StartResponder) -> None:
    server = start_responder_with("--max-transactions", "1")
    with TcpClient(server.addr) as a, UdpClient(server.addr) as b:
        ringing = Req("INVITE", "180")
        a.send(ringing)
        a.expect_codes([100, 180])
        refused = b.request(Req("INVITE", "180"), 503)
        assert refused["Retry-After"].isdigit()
        b.request(Req("OPTIONS"), 200)  # stateless requests are still answered
        a.send(ringing.cancel())
        answers = {m.status: m for m in (a.expect_any(), a.expect_any())}
        assert sorted(answers) == [200, 487]
        # Over TCP the INVITE transaction ends at the ACK (Timer I is 0): room again.
        a.send(ringing.ack(answers[487].to_tag))
        a.expect_silence(0.2)
        b.request(Req("INVITE", "486"), 100)
        b.expect(486)


# ------------------------------------------------------------- retransmissions


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retransmitted_invite_gets_the_180_again(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        invite = Req("INVITE", "180-1s-486")
        data = c.build(invite)
        sent = time.monotonic()
        c.send(data)
        trying, ringing = c.expect_codes([100, 180])
        assert trying.to_tag is None
        assert ringing.to_tag
        c.send(data)  # the very same bytes: same branch, a retransmission (§17.2.1)
        again = c.expect(180, timeout=0.8)  # the last provisional, not a new 100
        assert again.to_tag == ringing.to_tag
        assert again.raw == ringing.raw
        busy = c.expect(486, timeout=2.0)
        assert busy.to_tag == ringing.to_tag
        assert 0.9 <= busy.at - sent <= 2.0
        c.send(invite.ack(busy.to_tag))
        c.expect_silence(0.7)  # the ACK stopped Timer G


def test_retransmitted_invite_after_the_final_gets_the_final(responder: Responder) -> None:
    with UdpClient(responder.addr) as c:
        invite = Req("INVITE", "486")
        data = c.build(invite)
        c.send(data)
        _, busy = c.expect_codes([100, 486])
        c.send(data)
        assert c.expect(486).raw == busy.raw
        c.send(invite.ack(busy.to_tag))
        c.send(data)  # §17.2.1: absorbed in Confirmed
        c.expect_silence()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retransmitted_options_gets_the_same_answer(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        data = c.build(Req("OPTIONS"))
        c.send(data)
        first = c.expect(200)
        c.send(data)
        assert c.expect(200).raw == first.raw


def test_unacknowledged_2xx_is_resent_until_the_ack(responder: Responder) -> None:
    with UdpClient(responder.addr) as c:
        invite = Req("INVITE", "200")
        c.send(invite)
        _, ok = c.expect_codes([100, 200])
        again = c.expect(200, timeout=1.5)  # T1 = 0.5 s later (§13.3.1.4)
        assert again.raw == ok.raw
        c.send(invite.ack_2xx(ok.to_tag))
        msg = c.recv(0.2)  # one may have crossed the ACK
        assert msg is None or msg.raw == ok.raw
        c.expect_silence(1.2)  # the next one would have come 1 s after the first


def test_unacknowledged_486_is_resent_until_the_ack(responder: Responder) -> None:
    with UdpClient(responder.addr) as c:
        invite = Req("INVITE", "486")
        c.send(invite)
        _, busy = c.expect_codes([100, 486])
        again = c.expect(486, timeout=1.5)  # Timer G (§17.2.1)
        assert again.raw == busy.raw
        c.send(invite.ack(busy.to_tag))
        msg = c.recv(0.2)
        assert msg is None or msg.raw == busy.raw
        c.expect_silence(1.2)


def test_retransmitted_invite_after_the_2xx_ack_is_absorbed(responder: Responder) -> None:
    with UdpClient(responder.addr) as c:
        invite = Req("INVITE", "bob")
        data = c.build(invite)
        c.send(data)
        ok = c.expect_codes([100, 180, 200])[-1]
        c.send(invite.ack_2xx(ok.to_tag))
        c.expect_silence(0.2)
        c.send(data)  # e.g. duplicated by the network, arriving late
        c.expect_silence()


# ---------------------------------------------------------------- Via, rport


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rport_is_filled_and_received_added(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        req = Req("OPTIONS")
        via = c.request(req, 200)["Via"]
        assert via == (
            f"SIP/2.0/{transport.upper()} 127.0.0.1:{c.local[1]};branch={req.branch}"
            f";rport={c.local[1]};received=127.0.0.1"
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_received_is_added_when_sent_by_is_not_the_source(
    responder: Responder, transport: str
) -> None:
    with client(transport, responder.addr) as c:
        req = Req("OPTIONS")
        req.via = f"SIP/2.0/{transport.upper()} client.invalid:5099;branch={req.branch};rport"
        via = c.request(req, 200)["Via"]  # rport: it comes back to our port, not to 5099
        assert via == (
            f"SIP/2.0/{transport.upper()} client.invalid:5099;branch={req.branch}"
            f";rport={c.local[1]};received=127.0.0.1"
        )


def test_without_rport_the_via_is_copied_as_is(responder: Responder) -> None:
    with UdpClient(responder.addr) as c:
        req = Req("OPTIONS", rport=False)
        via = c.request(req, 200)["Via"]
        assert via == f"SIP/2.0/UDP 127.0.0.1:{c.local[1]};branch={req.branch}"


def test_every_via_is_copied_in_order(responder: Responder) -> None:
    with UdpClient(responder.addr) as c:
        req = Req("OPTIONS")
        req.headers = [("Via", "SIP/2.0/UDP proxy.invalid:5060;branch=z9hG4bK-second")]
        vias = c.request(req, 200).get_all("Via")
        assert len(vias) == 2
        assert f"branch={req.branch}" in vias[0]
        assert vias[1] == "SIP/2.0/UDP proxy.invalid:5060;branch=z9hG4bK-second"


def test_udp_answers_go_to_each_source(responder: Responder) -> None:
    with UdpClient(responder.addr) as a, UdpClient(responder.addr) as b:
        ra, rb = Req("OPTIONS"), Req("OPTIONS", "486")
        a.send(ra)
        b.send(rb)
        assert a.expect(200)["Call-ID"] == ra.call_id
        assert b.expect(486)["Call-ID"] == rb.call_id


# --------------------------------------------------------------- CANCEL, ringing


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_of_a_ringing_invite(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        invite = Req("INVITE", "180")
        c.send(invite)
        _, ringing = c.expect_codes([100, 180])
        cancel = invite.cancel()
        c.send(cancel)
        got = {m["CSeq"]: m for m in (c.expect_any(), c.expect_any())}
        ok, terminated = got.get("1 CANCEL"), got.get("1 INVITE")
        assert ok is not None and ok.status == 200, got
        assert terminated is not None and terminated.status == 487, got
        assert_echoes(ok, cancel)
        assert ok.to_tag == terminated.to_tag == ringing.to_tag
        c.send(invite.ack(terminated.to_tag))
        c.expect_silence()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_that_matches_nothing_gets_481(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        req = Req("CANCEL", "180", headers=[("Require", "foo")])  # Require: not for CANCEL
        assert_echoes(c.request(req, 481), req)
        c.expect_silence()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_after_the_final_changes_nothing(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        invite = Req("INVITE", "486")
        c.send(invite)
        _, busy = c.expect_codes([100, 486])
        c.request(invite.cancel(), 200)  # §9.2: it matched a transaction; no 487 follows
        c.send(invite.ack(busy.to_tag))
        c.expect_silence()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invite_expires_ends_ringing_with_487(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        invite = Req("INVITE", "180", headers=[("Expires", "1")])
        sent = time.monotonic()
        c.send(invite)
        c.expect_codes([100, 180])
        terminated = c.expect(487, timeout=3.0)
        waited = terminated.at - sent
        assert 0.8 <= waited <= 2.0, f"487 after {waited:.2f} s"
        c.send(invite.ack(terminated.to_tag))
        c.expect_silence()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_max_ring_ends_ringing_with_408(
    start_responder_with: StartResponder, transport: str
) -> None:
    server = start_responder_with("--max-ring", "1")
    with client(transport, server.addr) as c:
        invite = Req("INVITE", "180")
        sent = time.monotonic()
        c.send(invite)
        c.expect_codes([100, 180])
        timeout = c.expect(408, timeout=3.0)
        waited = timeout.at - sent
        assert 0.8 <= waited <= 2.0, f"408 after {waited:.2f} s"
        c.send(invite.ack(timeout.to_tag))
        c.expect_silence()


def test_max_ring_ends_a_ringing_non_invite_with_408(
    start_responder_with: StartResponder,
) -> None:
    server = start_responder_with("--max-ring", "1")
    with UdpClient(server.addr) as c:
        c.request(Req("OPTIONS", "180"), 180)
        c.expect(408, timeout=2.5)


def test_cancel_finds_a_ringing_non_invite(responder: Responder) -> None:
    with UdpClient(responder.addr) as c:
        options = Req("OPTIONS", "180")
        c.request(options, 180)
        c.request(options.cancel(), 200)
