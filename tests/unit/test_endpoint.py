"""The sans-IO endpoint: bytes and a clock in, bytes out (no sockets, no sleeps)."""

from __future__ import annotations

import logging

import pytest
from helpers import SDP_OFFER, request

from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.flow import Flow, Send, TransactionRecord
from sipresponder.core.journal import Journal
from sipresponder.core.transaction import Timers
from sipresponder.core.wheel import TIMER_TICKS
from sipresponder.sip.message import Response
from sipresponder.sip.parser import FramingError, parse_message

UDP = Flow("udp", ("192.0.2.1", 5062), ("127.0.0.1", 5060), conn=None)
TCP = Flow("tcp", ("192.0.2.1", 40000), ("127.0.0.1", 5060), conn="conn-1")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0


def make(**kw: object) -> tuple[Endpoint, list[TransactionRecord]]:
    records: list[TransactionRecord] = []
    config = Config(secret=b"test-secret", **kw)  # type: ignore[arg-type]
    return Endpoint(config, records.append), records


def responses(out: list[Send]) -> list[Response]:
    result = []
    for data, _, _ in out:
        msg = parse_message(data)
        assert isinstance(msg, Response)
        result.append(msg)
    return result


def codes(out: list[Send]) -> list[int]:
    return [r.status for r in responses(out)]


def advance(ep: Endpoint, until: float) -> list[Send]:
    out: list[Send] = []
    for _ in range(100_000):
        deadline = ep.next_deadline()
        if deadline is None or deadline > until:
            break
        out += ep.handle_timers(deadline)
    return out


def test_options_is_answered_statelessly() -> None:
    ep, records = make()
    out = ep.receive(request("OPTIONS", "bob"), UDP, 0.0)
    assert codes(out) == [200]
    data, flow, dest = out[0]
    assert flow is UDP and dest == ("192.0.2.1", 5062)
    assert ep.table.transactions == {}
    # A retransmission gets the very same bytes (§17.2.2), still with nothing stored.
    assert ep.receive(request("OPTIONS", "bob"), UDP, 0.5)[0][0] == data
    assert records[0] == TransactionRecord(
        "OPTIONS", "sip:bob@127.0.0.1", "192.0.2.1:5062/udp", (200,)
    )


def test_busy_invite_ack_absorbed_and_state_expires() -> None:
    ep, records = make()
    out = ep.receive(request("INVITE", "486"), UDP, 0.0)
    assert codes(out) == [100, 486]
    r100, r486 = responses(out)
    assert r100.header("To") == "<sip:486@127.0.0.1>"
    tag = r486.header("To")
    assert tag is not None and ";tag=" in tag
    ack = request("ACK", "486", cseq="1 ACK", to=tag)
    assert ep.receive(ack, UDP, 0.1) == []  # never answered
    assert advance(ep, 60.0) == []  # the ACK stopped Timer G
    assert ep.table.transactions == {}
    assert records[-1].codes == (100, 486)


def test_busy_without_ack_is_retransmitted_then_dropped() -> None:
    ep, _ = make()
    ep.receive(request("INVITE", "486"), UDP, 0.0)
    out = advance(ep, 60.0)
    assert set(codes(out)) == {486} and len(out) >= 5
    assert ep.table.transactions == {}
    # Timer G's resends are counted apart from the first 486 (and from copies received).
    assert ep.stats["resent"] == len(out) and ep.stats["retransmissions"] == 0


def test_default_invite_plan_and_2xx_ack() -> None:
    ep, _ = make()
    invite = request("INVITE", "bob", extra=[("Content-Type", "application/sdp")], body=SDP_OFFER)
    out = ep.receive(invite, UDP, 0.0)
    assert codes(out) == [100, 180, 200]
    ok = responses(out)[2]
    assert ok.header("Content-Type") == "application/sdp" and b"m=audio" in ok.body
    assert responses(out)[1].header("To") == ok.header("To")
    # The ACK of a 2xx is a new transaction: another branch (§13.2.2.4).
    ack = request("ACK", "bob", branch="z9hG4bK-ack", cseq="1 ACK", to=ok.header("To"))
    assert ep.receive(ack, UDP, 0.2) == []
    assert ep.table.transactions == {} and ep.table.accepted == {}
    assert advance(ep, 60.0) == []
    bye = request("BYE", "sipresponder", branch="z9hG4bK-bye", cseq="2 BYE", to=ok.header("To"))
    byes = responses(ep.receive(bye, UDP, 1.0))
    assert [r.status for r in byes] == [200]
    assert byes[0].header("To") == ok.header("To")  # in-dialog: the tag is kept


def test_2xx_retransmitted_until_ack() -> None:
    ep, _ = make()
    ep.receive(request("INVITE", "200"), UDP, 0.0)
    assert codes(advance(ep, 2.0)) == [200, 200]
    ack = request("ACK", "200", branch="z9hG4bK-ack", cseq="1 ACK")
    ep.receive(ack, UDP, 2.0)
    assert advance(ep, 60.0) == []
    assert ep.stats["resent"] == 2  # at T1 and 2·T1 (0.5 s, 1.5 s): the ACK stopped them


def test_retransmitted_invite_gets_latest_provisional_then_final() -> None:
    ep, _ = make()
    first = ep.receive(request("INVITE", "180-1s-486"), UDP, 0.0)
    assert codes(first) == [100, 180]
    again = ep.receive(request("INVITE", "180-1s-486"), UDP, 0.5)
    assert again[0][0] == first[1][0]  # the 180, byte for byte
    final = advance(ep, 1.0)
    assert codes(final) == [486]
    assert responses(final)[0].header("To") == responses(first)[1].header("To")
    assert ep.receive(request("INVITE", "180-1s-486"), UDP, 1.2)[0][0] == final[0][0]


def test_cancel_pending_invite() -> None:
    ep, records = make()
    out = ep.receive(request("INVITE", "180"), UDP, 0.0)
    tag = responses(out)[1].header("To")
    cancel = request("CANCEL", "180", cseq="1 CANCEL")
    out = ep.receive(cancel, UDP, 3.0)
    assert codes(out) == [200, 487]
    ok, terminated = responses(out)
    assert ok.header("CSeq") == "1 CANCEL" and terminated.header("CSeq") == "1 INVITE"
    assert ok.header("To") == terminated.header("To") == tag  # same To tag (§9.2)
    # A retransmitted CANCEL gets its 200 again; the INVITE stays at 487.
    assert codes(ep.receive(cancel, UDP, 3.1)) == [200]
    ack = request("ACK", "180", cseq="1 ACK", to=tag)
    assert ep.receive(ack, UDP, 3.2) == []
    assert {r.codes for r in records} >= {(200,), (100, 180, 487)}


def test_cancel_matching_nothing_gets_481() -> None:
    ep, _ = make()
    assert codes(ep.receive(request("CANCEL", "180", cseq="1 CANCEL"), UDP, 0.0)) == [481]


def test_cancel_after_final_only_gets_200() -> None:
    ep, _ = make()
    ep.receive(request("INVITE", "486"), UDP, 0.0)
    assert codes(ep.receive(request("CANCEL", "486", cseq="1 CANCEL"), UDP, 0.1)) == [200]


def test_cancel_of_a_pending_non_invite_has_no_effect() -> None:
    ep, _ = make()
    assert ep.receive(request("OPTIONS", "2s-200"), UDP, 0.0) == []
    assert codes(ep.receive(request("CANCEL", "2s-200", cseq="1 CANCEL"), UDP, 0.5)) == [200]
    assert codes(advance(ep, 2.0)) == [200]


def test_stray_ack_is_absorbed() -> None:
    ep, _ = make()
    assert ep.receive(request("ACK", "x", cseq="1 ACK"), UDP, 0.0) == []
    assert ep.stats["stray_acks"] == 1 and ep.stats["recognised_acks"] == 0


def test_a_stray_ack_to_another_workers_response_is_recognised_by_its_to_tag() -> None:
    worker0, _ = make()
    worker1, _ = make()  # the same secret, as --workers gives every worker
    out = responses(worker0.receive(request("INVITE", "486"), UDP, 0.0))
    ack = request("ACK", "486", cseq="1 ACK", to=out[-1].header("To"))
    assert worker1.receive(ack, UDP, 0.1) == []
    assert worker1.stats["recognised_acks"] == 1


def test_expires_and_max_ring() -> None:
    ep, _ = make(max_ring=10.0)
    ep.receive(request("INVITE", "180", extra=[("Expires", "3")]), UDP, 0.0)
    ep.receive(request("INVITE", "180", branch="z9hG4bK-2", call_id="c2"), UDP, 0.0)
    out = advance(ep, 10.0)
    finals = {r.header("Call-ID"): r.status for r in responses(out) if r.status >= 200}
    assert finals == {"call-1@test": 487, "c2": 408}


def test_plan_starting_with_100_sends_no_extra_100() -> None:
    ep, _ = make()
    assert codes(ep.receive(request("INVITE", "100-486"), UDP, 0.0)) == [100, 486]
    assert codes(ep.receive(request("INVITE", "2s-100-486", branch="z9hG4bK-b"), UDP, 0.0)) == []


def test_non_invite_gets_no_automatic_100() -> None:
    ep, _ = make()
    assert codes(ep.receive(request("REGISTER", "180-486"), UDP, 0.0)) == [180, 486]


def test_re_invite_is_answered_without_ringing() -> None:
    ep, _ = make()
    data = request("INVITE", "sipresponder", to="<sip:sipresponder@127.0.0.1>;tag=abc")
    assert codes(ep.receive(data, UDP, 0.0)) == [100, 200]


def test_a_to_tag_that_is_not_utf8_is_answered_with_it() -> None:
    # A re-INVITE's 200 carries an SDP offer whose session id is made from the To tag:
    # a tag with a byte that is not UTF-8 must not make that an internal error.
    ep, _ = make()
    data = request("INVITE", "sipresponder", to="<sip:sipresponder@127.0.0.1>;tag=abc")
    out = ep.receive(data.replace(b";tag=abc", b";tag=\x80abc"), UDP, 0.0)
    assert codes(out) == [100, 200] and ep.stats["internal_errors"] == 0
    assert b";tag=\x80abc\r\n" in out[1][0] and b"\r\no=sipresponder " in out[1][0]


@pytest.mark.parametrize(
    ("data", "status", "header"),
    [
        (request("FOO", "x"), 501, ("Allow", "INVITE")),
        (request("OPTIONS", uri="http://example.com/"), 416, None),
        (request("INVITE", extra=[("Require", "foo, path")]), 420, ("Unsupported", "foo")),
        (
            request("INVITE", extra=[("Content-Type", "text/plain")], body=b"hi"),
            415,
            ("Accept", "application/sdp"),
        ),
        (request("INVITE", extra=[("Content-Type", "application/sdp")], body=b"junk"), 400, None),
        (request("OPTIONS", cseq="1 INVITE"), 400, None),
        (request().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505, None),
    ],
)
def test_rejections(data: bytes, status: int, header: tuple[str, str] | None) -> None:
    ep, _ = make()
    out = responses(ep.receive(data, UDP, 0.0))
    assert [r.status for r in out] == [status]
    if header is not None:
        value = out[0].header(header[0])
        assert value is not None and header[1] in value


def test_400_reason_names_the_problem_and_keeps_tag_rules() -> None:
    ep, _ = make()
    out = responses(ep.receive(request().replace(b"CSeq: 1 OPTIONS\r\n", b""), UDP, 0.0))
    assert (out[0].status, out[0].reason) == (400, "Missing CSeq Header")


def test_unanswerable_input_and_responses_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    ep, _ = make()
    caplog.set_level(logging.INFO)
    assert ep.receive(b"\x00\x01garbage", UDP, 0.0) == []
    assert (
        ep.receive(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK-1\r\n\r\n", UDP, 0.0) == []
    )
    bad_ack = request("ACK", cseq="1 INVITE")
    assert ep.receive(bad_ack, UDP, 0.0) == []  # an ACK is never answered, even a bad one
    assert ep.stats["dropped"] >= 2
    assert "dropped a message" in caplog.text and "dropped a 200 response" in caplog.text
    caplog.clear()
    ep.receive(b"\x00\x01garbage", UDP, 0.0)
    assert "dropped" not in caplog.text  # told once per source, not per message
    assert codes(ep.receive(request(), UDP, 0.0)) == [200]


def test_internal_error_never_escapes() -> None:
    # A bug on the request's path (here the transaction reporter, called once the answer
    # is built) is counted and logged; the message is dropped, and the endpoint goes on.
    # Injected through the reporter, not by patching a class: the core may be compiled
    # (mypyc), and a compiled class calls its own methods directly.
    def boom(_: TransactionRecord) -> None:
        raise RuntimeError("bug")

    ep = Endpoint(Config(secret=b"test-secret"), boom)
    assert ep.receive(request(), UDP, 0.0) == []
    assert ep.stats["dropped"] == 1 and ep.stats["internal_errors"] == 1
    ep.report = None
    assert codes(ep.receive(request(), UDP, 0.0)) == [200]


def test_transaction_cap_answers_503() -> None:
    ep, _ = make(max_transactions=2)
    for i in range(2):
        ep.receive(request("INVITE", "180", branch=f"z9hG4bK-{i}", call_id=f"c{i}"), UDP, 0.0)
    out = responses(ep.receive(request("INVITE", "180", branch="z9hG4bK-x", call_id="x"), UDP, 0.0))
    assert [r.status for r in out] == [503]
    assert out[0].header("Retry-After") == "5"


def test_tcp_answers_on_the_connection_without_retransmissions() -> None:
    ep, _ = make()
    out = ep.receive(request("INVITE", "486"), TCP, 0.0)
    assert codes(out) == [100, 486]
    assert all(flow is TCP and dest == TCP.remote for _, flow, dest in out)
    assert advance(ep, 100.0) == []
    assert ep.table.transactions == {}
    assert codes(ep.receive(request().replace(b"Content-Length: 0\r\n", b""), TCP, 0.0)) == [400]


def test_memory_stays_flat_over_many_calls() -> None:
    ep, _ = make(timers=Timers())
    now = 0.0
    for i in range(3000):
        branch = f"z9hG4bK-{i}"
        out = ep.receive(request("INVITE", "486", branch=branch, call_id=f"c{i}"), UDP, now)
        tag = responses(out)[1].header("To")
        ep.receive(
            request("ACK", "486", branch=branch, call_id=f"c{i}", cseq="1 ACK", to=tag), UDP, now
        )
        now += 0.01
        ep.handle_timers(now)
    advance(ep, now + 100.0)
    assert ep.table.transactions == {} and ep.table.accepted == {}
    assert len(ep.table.wheel) == 0 and ep.table.wheel.next_deadline() is None


def test_a_timer_fires_at_the_end_of_its_slot_never_before_its_deadline() -> None:
    ep, _ = make()
    start = 0.001  # off the 1/TIMER_TICKS s grid: its deadlines are too
    assert codes(ep.receive(request("INVITE", "180-1s-486"), UDP, start)) == [100, 180]
    due = ep.next_deadline()
    assert due is not None and start + 1.0 <= due < start + 1.0 + 1 / TIMER_TICKS
    assert ep.handle_timers(start + 0.999) == []
    assert codes(ep.handle_timers(due)) == [486]
    # On the grid, a deadline keeps its exact time: Timer G, T1 after the 486.
    assert ep.next_deadline() == pytest.approx(due + 0.5, abs=1 / TIMER_TICKS)


def test_a_timer_moved_or_ended_leaves_nothing_due_behind() -> None:
    ep, _ = make()
    invite = request("INVITE", "bob")
    ok = responses(ep.receive(invite, UDP, 0.0))[-1]
    assert ok.status == 200 and ep.next_deadline() == 0.5  # the 2xx again after T1
    ack = request("ACK", "bob", branch="z9hG4bK-ack", cseq="1 ACK", to=ok.header("To"))
    ep.receive(ack, UDP, 0.1)
    # The ACK ended the transaction: its slot is dropped, no wake-up is asked for.
    assert ep.next_deadline() is None and len(ep.table.wheel) == 0
    # A ringing INVITE, cancelled: its ring limit (120 s) gives way to Timer G.
    ringing = request("INVITE", "180", branch="z9hG4bK-r", call_id="r")
    tag = responses(ep.receive(ringing, UDP, 1.0))[1].header("To")
    assert ep.next_deadline() == 61.0  # §13.3.1.1: the 180 again after a minute
    cancel = request("CANCEL", "180", branch="z9hG4bK-r", call_id="r", cseq="1 CANCEL")
    assert codes(ep.receive(cancel, UDP, 2.0)) == [200, 487]
    assert ep.next_deadline() == 2.5
    assert codes(ep.handle_timers(2.5)) == [487]  # Timer G: once, not twice
    ack = request("ACK", "180", branch="z9hG4bK-r", call_id="r", cseq="1 ACK", to=tag)
    ep.receive(ack, UDP, 2.6)
    assert ep.handle_timers(10.0) == []  # Timer I ended it
    assert ep.table.transactions == {} and ep.next_deadline() is None


def test_challenge_carries_realm_and_a_nonce() -> None:
    ep, _ = make(realm="lab")
    out = responses(ep.receive(request("REGISTER", "401"), UDP, 0.0))
    www = out[0].header("WWW-Authenticate")
    assert www is not None and www.startswith('Digest realm="lab", nonce="')
    nonce = www.split('nonce="')[1].split('"')[0]
    assert len(nonce) == 32
    out = responses(ep.receive(request("INVITE", "407", branch="z9hG4bK-p"), UDP, 0.0))
    assert out[1].header("Proxy-Authenticate") is not None


def test_ringing_non_invite_keeps_a_transaction_until_max_ring() -> None:
    ep, _ = make(max_ring=5.0)
    assert codes(ep.receive(request("OPTIONS", "180"), UDP, 0.0)) == [180]
    assert codes(ep.receive(request("OPTIONS", "180"), UDP, 1.0)) == [180]  # retransmission
    # §9.2: the CANCEL finds it (200) but does not end a non-INVITE.
    assert codes(ep.receive(request("CANCEL", "180", cseq="1 CANCEL"), UDP, 2.0)) == [200]
    assert codes(advance(ep, 5.0)) == [408]


def test_late_invite_after_the_2xx_ack_is_absorbed() -> None:
    ep, _ = make()
    invite = request("INVITE", "bob")
    ok = responses(ep.receive(invite, UDP, 0.0))[-1]
    ack = request("ACK", "bob", branch="z9hG4bK-ack", cseq="1 ACK", to=ok.header("To"))
    ep.receive(ack, UDP, 0.1)
    assert ep.receive(invite, UDP, 5.0) == []  # RFC 6026 §8.7
    assert advance(ep, 100.0) == []
    # Remembered for Timer L (64*T1) at least, and not forever: two generations.
    for i in range(3):
        other = request("INVITE", "bob", branch=f"z9hG4bK-o{i}", call_id=f"o{i}")
        ok = responses(ep.receive(other, UDP, 40.0 * (i + 1)))[-1]
        ep.receive(
            request(
                "ACK",
                "bob",
                branch=f"z9hG4bK-a{i}",
                call_id=f"o{i}",
                cseq="1 ACK",
                to=ok.header("To"),
            ),
            UDP,
            40.0 * (i + 1),
        )
    assert codes(ep.receive(invite, UDP, 130.0)) == [100, 180, 200]


def test_missing_max_forwards_is_tolerated_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    ep, _ = make()
    caplog.set_level(logging.INFO)
    data = request().replace(b"Max-Forwards: 70\r\n", b"")
    assert codes(ep.receive(data, UDP, 0.0)) == [200]
    assert "without Max-Forwards" in caplog.text


def test_stateless_mode_sends_only_the_last_response_and_keeps_nothing() -> None:
    ep, records = make(stateless=True)
    out = responses(ep.receive(request("INVITE", "180-2s-486"), UDP, 0.0))
    assert [r.status for r in out] == [486]
    tag = out[0].header("To")
    assert ep.table.transactions == {} and ep.next_deadline() is None  # no timers at all
    assert ep.receive(request("ACK", "180-2s-486", cseq="1 ACK", to=tag), UDP, 0.1) == []
    assert ep.receive(request("CANCEL", "180", cseq="1 CANCEL"), UDP, 0.1) == []
    again = responses(ep.receive(request("INVITE", "180-2s-486"), UDP, 0.5))
    assert again[0].header("To") == tag  # deterministic To tag
    ok = responses(ep.receive(request("INVITE", "bob", branch="z9hG4bK-2"), UDP, 0.0))
    assert [r.status for r in ok] == [200] and b"m=audio" in ok[0].body
    assert codes(ep.receive(request("OPTIONS", "180"), UDP, 0.0)) == [180]
    assert records[0].codes == (486,)


def test_shedding_answers_new_requests_503_but_serves_dialogs() -> None:
    ep, _ = make()
    ep.shedding = True
    out = responses(ep.receive(request("INVITE", "180"), UDP, 0.0))
    assert [r.status for r in out] == [503] and out[0].header("Retry-After") == "5"
    assert ep.table.transactions == {} and ep.stats["overload"] == 1
    bye = request("BYE", "sipresponder", to="<sip:x@127.0.0.1>;tag=ours")
    assert codes(ep.receive(bye, UDP, 0.0)) == [200]
    ep.shedding = False
    assert codes(ep.receive(request("INVITE", "180", branch="z9hG4bK-n"), UDP, 1.0)) == [100, 180]


def test_an_unaddressable_framing_error_is_dropped_and_counted() -> None:
    # Nothing of the message could be read (no request to answer): dropped, never an
    # internal error — compiled, a None request must not fail a typed assignment.
    ep, _ = make()
    err = FramingError(400, "Missing Content-Length", b"\x00\x01 garbage")
    assert ep.reject_framing(err, TCP) == []
    assert ep.stats["parse_errors"] == 1 and ep.stats["internal_errors"] == 0


@pytest.mark.parametrize("reason", ["Busy Here", "Ünïcode reason", "x" * 300])
def test_the_journal_reads_code_and_reason_off_our_status_line(reason: str) -> None:
    ep = Endpoint(Config(secret=b"test-secret"), journal=Journal(10))
    data = f"SIP/2.0 486 {reason}\r\nCall-ID: c1\r\n\r\n".encode()
    ep.recorder.outgoing(data, UDP, UDP.remote, "c1", "INVITE", 1, 0.0)
    call = ep.journal.get("c1") if ep.journal is not None else None
    assert call is not None
    entry = call.entries[-1]
    assert (entry.status, entry.reason) == (486, reason)


def test_contact_follows_the_socket_or_on_a_wildcard_socket_the_request_uri() -> None:
    # Our address is kept on the flow once worked out; on a wildcard socket it is not
    # ours to keep: each request's Request-URI says which of our addresses it reached.
    ep, _ = make()
    wildcard = Flow("udp", ("192.0.2.1", 5062), ("0.0.0.0", 5060), conn=None)
    for n, host in enumerate(["127.0.0.2", "127.0.0.3", "127.0.0.2"]):
        uri = f"sip:200@{host}"
        invite = request("INVITE", "200", branch=f"z9hG4bK-w{n}", call_id=f"w{n}", uri=uri)
        [ok] = [r for r in responses(ep.receive(invite, wildcard, 0.0)) if r.status == 200]
        assert ok.header("Contact") == f"<sip:sipresponder@{host}:5060>"
    plain = Flow("udp", ("192.0.2.1", 5062), ("127.0.0.9", 5060), conn=None)
    for n, host in enumerate(["127.0.0.2", "127.0.0.3"]):
        uri = f"sip:200@{host}"
        invite = request("INVITE", "200", branch=f"z9hG4bK-p{n}", call_id=f"p{n}", uri=uri)
        [ok] = [r for r in responses(ep.receive(invite, plain, 0.0)) if r.status == 200]
        assert ok.header("Contact") == "<sip:sipresponder@127.0.0.9:5060>"


def test_a_request_uri_with_a_bare_ipv6_host_gets_400_saying_so() -> None:
    ep, _ = make()
    out = responses(ep.receive(request("REGISTER", uri="sip:2001:db8::10"), UDP, 0.0))
    assert [r.status for r in out] == [400]
    assert out[0].reason == "Malformed Request-URI: an IPv6 address must be in brackets"
    out = responses(ep.receive(request("REGISTER", uri="sip:[2001:db8::10]"), UDP, 0.0))
    assert [r.status for r in out] == [200]
