"""The endpoint with a rules file's faults, on the scripted clock: what goes out, when, and
what the journal says was done on purpose."""

from __future__ import annotations

from typing import Any

from helpers import SDP_OFFER, request
from test_endpoint import TCP, UDP, advance, codes, responses

from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.journal import Journal
from sipresponder.core.rules_loader import load_rules
from sipresponder.core.shaping import other_tag
from sipresponder.sip.message import Request
from sipresponder.sip.parser import parse_message

RULES = """\
seed: 7
rules:
  - match: {user: silent}
    faults: [no_trying]
    plan: [{code: 180, after: 1s}, 486]
  - match: {user: lossy}
    faults: [{drop_requests: 2}]
    plan: 486
  - match: {user: deaf}
    faults: [ignore_ack]
    plan: 486
  - match: {user: deaf200}
    faults: [ignore_ack]
    plan: 200
  - match: {method: INVITE, user: forked}
    faults: [{fork: 3}]
    plan: [180, 200]
  - match: {method: INVITE, user: hangs-up}
    faults: [{bye_after: 5s}]
    plan: 200
  - match: {method: INVITE, user: retag-and-hang-up}
    faults: [{bye_after: 0s}, {to_tag: change}]
    plan: [180, 200]
  - match: {user: twice}
    faults: [duplicate]
    plan: [180, 486]
  - match: {user: backwards}
    faults: [final_first]
    plan: [180, {code: 486, after: 1s}]
  - match: {method: INVITE, user: retag}
    faults: [{to_tag: change}]
    plan: [180, 200]
  - match: {user: bare}
    plan:
      - 180
      - code: 200
        faults: [{omit: [Contact, sdp]}]
  - match: {user: half}
    faults: [duplicate]
    fault_probability: 0.5
    plan: 486
"""


def make(text: str = RULES, **kw: object) -> tuple[Endpoint, Journal]:
    journal = Journal()
    config = Config(secret=b"k", **kw)  # type: ignore[arg-type]
    return Endpoint(config, rules=load_rules(text), journal=journal), journal


def invite(user: str, i: int = 1, sdp: bool = False) -> bytes:
    extra = [("Content-Type", "application/sdp")] if sdp else None
    return request(
        "INVITE",
        user,
        branch=f"z9hG4bK-{i}",
        call_id=f"c{i}",
        extra=extra,
        body=SDP_OFFER if sdp else b"",
    )


def ack(user: str, to: str, i: int = 1, branch: str | None = None) -> bytes:
    return request(
        "ACK", user, branch=branch or f"z9hG4bK-{i}", call_id=f"c{i}", cseq="1 ACK", to=to
    )


def test_no_trying_leaves_the_100_out_and_says_so() -> None:
    ep, journal = make()
    assert ep.receive(invite("silent"), UDP, 0.0) == []
    assert ep.receive(invite("silent"), UDP, 0.5) == []  # Timer A: the client resends
    assert codes(advance(ep, 1.0)) == [180, 486]
    call = journal.get("c1")
    assert call is not None and call.codes == [180, 486]
    assert [(f.kind, f.message) for f in call.faults] == [("no_trying", "no 100 Trying sent")]
    assert "fault: no_trying: no 100 Trying sent" in call.ladder()
    assert call.violations == []


def test_no_trying_judges_a_client_that_waits_without_retransmitting() -> None:
    ep, journal = make()
    assert ep.receive(invite("silent"), UDP, 0.0) == []
    assert codes(advance(ep, 1.0)) == [180, 486]
    call = journal.get("c1")
    assert call is not None and [v.rule for v in call.violations] == ["RFC 3261 §17.1.1.2"]
    assert call.violations[0].message == (
        "no_trying: the INVITE was not retransmitted in the 1000 ms before the first "
        "response (Timer A fires at T1, 500 ms)"
    )
    # Over TCP nothing is retransmitted: nothing to judge.
    ep, journal = make()
    assert ep.receive(invite("silent"), TCP, 0.0) == []
    advance(ep, 1.0)
    assert ep.stats["violations"] == 0


def test_drop_requests_answers_the_third_copy() -> None:
    ep, journal = make()
    assert ep.receive(invite("lossy"), UDP, 0.0) == []
    assert ep.receive(invite("lossy"), UDP, 0.5) == []
    assert codes(ep.receive(invite("lossy"), UDP, 1.5)) == [100, 486]
    assert codes(ep.receive(invite("lossy"), UDP, 1.6)) == [486]  # a fourth: Completed's
    call = journal.get("c1")
    assert call is not None
    assert [f.message for f in call.faults] == [
        "copy 1 of the request dropped (2 will be)",
        "copy 2 of the request dropped",
    ]
    assert len(ep.faulting.dropping) == 0 and len(ep.table.transactions) == 1


def test_a_dropped_request_waits_for_its_copies() -> None:
    ep, _ = make()
    assert ep.receive(invite("lossy"), UDP, 0.0) == []
    # Held until the copies come (over TCP none does: the client's Timer B ends it).
    assert len(ep.faulting.dropping) == 1 and ep.table.transactions == {}
    assert advance(ep, 60.0) == [] and len(ep.faulting.dropping) == 1


def resends_acked(ep: Endpoint, user: str, to: str, until: float, *, every: bool) -> list[int]:
    """Run the timers to ``until``; the client ACKs each copy that comes (``every``) or
    none.  -> the codes of the copies."""
    seen: list[int] = []
    now = 0.1
    while (deadline := ep.next_deadline()) is not None and deadline <= until:
        now = deadline
        out = [sent for sent in ep.handle_timers(now) if not sent[0].startswith(b"BYE ")]
        seen += codes(out)
        if out and every:
            branch = "z9hG4bK-1" if seen[-1] >= 300 else "z9hG4bK-a"
            assert ep.receive(ack(user, to, branch=branch), UDP, now + 0.01) == []
    return seen


def test_ignore_ack_keeps_timer_g_running_until_timer_h() -> None:
    ep, journal = make()
    out = ep.receive(invite("deaf"), UDP, 0.0)
    to = responses(out)[-1].header("To") or ""
    assert ep.receive(ack("deaf", to), UDP, 0.1) == []
    resent = resends_acked(ep, "deaf", to, 40.0, every=True)
    assert set(resent) == {486} and len(resent) >= 7  # Timer G: T1 doubling to T2
    assert ep.table.transactions == {}  # Timer H ended it
    call = journal.get("c1")
    assert call is not None and {f.kind for f in call.faults} == {"ignore_ack"}
    assert len(call.faults) == len(resent) + 1  # every ACK, paid no heed
    # A client that ACKed every copy did right; nor is "no ACK" held against it.
    assert call.violations == [] and ep.stats["violations"] == 0


def test_ignore_ack_judges_a_client_that_acks_only_the_first_copy() -> None:
    ep, journal = make()
    out = ep.receive(invite("deaf"), UDP, 0.0)
    to = responses(out)[-1].header("To") or ""
    assert ep.receive(ack("deaf", to), UDP, 0.1) == []
    assert len(resends_acked(ep, "deaf", to, 40.0, every=False)) >= 7
    call = journal.get("c1")
    assert call is not None and len(call.violations) == 1  # once, not per copy
    assert call.violations[0].rule == "RFC 3261 §17.1.1.2"
    assert call.violations[0].message.startswith("ignore_ack: the 486 came again, 1.50 s in")


def test_ignore_ack_after_a_2xx_resends_it_for_64_t1() -> None:
    ep, journal = make()
    out = ep.receive(invite("deaf200", sdp=True), UDP, 0.0)
    ok = responses(out)[-1]
    assert ok.status == 200
    to = ok.header("To") or ""
    assert ep.receive(ack("deaf200", to, branch="z9hG4bK-a"), UDP, 0.1) == []
    resent = resends_acked(ep, "deaf200", to, 40.0, every=True)
    assert set(resent) == {200} and len(resent) >= 9
    assert ep.stats["resent"] == len(resent) and ep.stats["violations"] == 0
    ep, journal = make()
    ep.receive(invite("deaf200", sdp=True), UDP, 0.0)
    resends_acked(ep, "deaf200", to, 40.0, every=False)  # never ACKed at all
    call = journal.get("c1")
    assert call is not None
    assert [v.rule for v in call.violations] == ["RFC 3261 §13.2.2.4"]
    assert "ignore_ack" not in call.violations[0].message  # the plain "no ACK" verdict


def test_duplicate_sends_each_response_again_and_marks_the_copies() -> None:
    ep, journal = make()
    out = ep.receive(invite("twice"), UDP, 0.0)
    assert codes(out) == [100, 100, 180, 180, 486, 486]
    assert out[1][0] is out[0][0]  # byte-identical
    call = journal.get("c1")
    assert call is not None
    out_entries = [e for e in call.entries if e.direction == "out"]
    assert [(e.status, e.fault, e.retransmission) for e in out_entries] == [
        (100, "duplicate: 1", False),
        (100, "duplicate", True),
        (180, "duplicate: 1", False),
        (180, "duplicate", True),
        (486, "duplicate: 1", False),
        (486, "duplicate", True),
    ]
    assert out_entries[1].to_dict()["fault"] == "duplicate"
    assert "[fault: duplicate]" in call.ladder()


def test_final_first_sends_the_provisionals_after_the_final() -> None:
    ep, _ = make()
    assert ep.receive(invite("backwards"), UDP, 0.0) == []
    # A copy of the INVITE while held: Timer A goes on (no provisional was heard), and no
    # verdict says the client should have stopped.
    assert ep.receive(invite("backwards"), UDP, 0.5) == []
    assert codes(advance(ep, 1.0)) == [486, 100, 180]
    assert ep.stats["violations"] == 0


def test_to_tag_change_gives_the_2xx_another_tag() -> None:
    ep, _ = make()
    ringing, ok = responses(ep.receive(invite("retag", sdp=True), UDP, 0.0))[1:]
    tag_180 = (ringing.header("To") or "").split(";tag=")[1]
    tag_200 = (ok.header("To") or "").split(";tag=")[1]
    assert tag_200 == other_tag(tag_180) != tag_180
    # The ACK carries the 2xx's tag, as it should: the 2xx's transaction ends.
    assert ep.receive(ack("retag", ok.header("To") or "", branch="z9hG4bK-a"), UDP, 0.1) == []
    assert ep.table.accepted == {}
    bye = request(
        "BYE", "retag", branch="z9hG4bK-b", call_id="c1", cseq="2 BYE", to=ok.header("To")
    )
    assert codes(ep.receive(bye, UDP, 1.0)) == [200]
    assert ep.stats["violations"] == 0


def test_to_tag_change_judges_a_client_that_keeps_the_provisionals_tag() -> None:
    ep, journal = make()
    ringing, ok = responses(ep.receive(invite("retag", sdp=True), UDP, 0.0))[1:]
    old_to = ringing.header("To") or ""
    assert ep.receive(ack("retag", old_to, branch="z9hG4bK-a"), UDP, 0.1) == []
    bye = request("BYE", "retag", branch="z9hG4bK-b", call_id="c1", cseq="2 BYE", to=old_to)
    ep.receive(bye, UDP, 1.0)
    call = journal.get("c1")
    assert call is not None
    assert [v.rule for v in call.violations] == ["RFC 3261 §13.2.2.4", "RFC 3261 §12.1.2"]
    assert (ok.header("To") or "").split(";tag=")[1] in call.violations[0].message
    assert call.violations[0].message.startswith(
        "to_tag: change: the ACK carries the provisionals'"
    )
    assert call.violations[1].message.startswith(
        "to_tag: change: the BYE carries the provisionals'"
    )


def test_a_step_fault_acts_on_its_response_alone() -> None:
    ep, journal = make()
    ringing, ok = responses(ep.receive(invite("bare", sdp=True), UDP, 0.0))[1:]
    assert ringing.header("Contact") is not None
    assert ok.header("Contact") is None and ok.body == b""
    call = journal.get("c1")
    assert call is not None
    assert [e.fault for e in call.entries if e.direction == "out"] == [
        "",
        "",
        "omit: contact, sdp",
    ]


def test_fault_probability_applies_to_its_share_reproducibly() -> None:
    def run() -> list[bool]:
        ep, _ = make()
        return [len(ep.receive(invite("half", i), UDP, i * 0.01)) == 4 for i in range(200)]

    first = run()
    assert 70 < sum(first) < 130
    assert run() == first  # the seed and the arrival order decide
    other, _ = make(RULES.replace("seed: 7", "seed: 8"))
    assert [len(other.receive(invite("half", i), UDP, i * 0.01)) == 4 for i in range(200)] != first


def test_stateless_pays_no_heed_to_faults() -> None:
    ep, journal = make(stateless=True)
    assert codes(ep.receive(invite("twice"), UDP, 0.0)) == [486]
    call = journal.get("c1")
    assert call is not None and call.faults == []


def test_a_rule_without_faults_journals_nothing_of_them() -> None:
    ep, journal = make()
    assert codes(ep.receive(invite("486"), UDP, 0.0)) == [100, 486]  # dialled: no rule
    call = journal.get("c1")
    assert call is not None and call.faults == []
    assert all(e.fault == "" for e in call.entries)
    assert "fault" not in call.entries[0].to_dict()


def test_dialled_faults() -> None:
    ep, journal = make()
    out = ep.receive(invite("486*4"), UDP, 0.0)
    assert codes(out) == [100, 100, 486, 486]
    assert codes(ep.receive(invite("180486*1", 2), UDP, 0.0)) == [180, 486]
    assert ep.receive(invite("486*22", 3), UDP, 0.0) == []  # *2: the first copies dropped
    assert ep.receive(invite("486*22", 3), UDP, 0.5) == []
    assert codes(ep.receive(invite("486*22", 3), UDP, 1.5)) == [100, 486]
    data = ep.receive(invite("486*9*8", 4), UDP, 0.0)[-1][0]
    busy = responses([(data, UDP, ("192.0.2.1", 5062))])[0]
    assert busy.header("To") == "<sip:486*9*8@127.0.0.1>" and len(data) == 4000
    call = journal.get("c4")
    assert call is not None and call.entries[-1].fault == "omit: to_tag, oversize: 4000 bytes"
    # Not a keypad fault: not a plan either, so the default plan answers.
    assert codes(ep.receive(invite("486*0", 5), UDP, 0.0)) == [100, 180, 200]


CONTACT = [("Contact", "<sip:caller@192.0.2.1:5062>"), ("Content-Type", "application/sdp")]


def bye_of(out: list[Any]) -> Request:
    byes = [parse_message(data) for data, _, _ in out if data.startswith(b"BYE ")]
    assert len(byes) == 1, out
    assert isinstance(byes[0], Request)
    return byes[0]


def answer(bye: Request, status: int) -> bytes:
    """The client's response to our BYE: its Via, From, To, Call-ID and CSeq copied."""
    lines = [f"SIP/2.0 {status} Whatever"]
    lines += [
        f"{name}: {bye.headers.first(name)}" for name in ("via", "from", "to", "call-id", "cseq")
    ]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def test_bye_after_hangs_up_in_the_dialog_after_the_ack() -> None:
    ep, journal = make()
    rr = [("Record-Route", "<sip:p2.example;lr>, <sip:p1.example;lr>")]
    req = request("INVITE", "hangs-up", call_id="c1", extra=CONTACT + rr, body=SDP_OFFER)
    ok = responses(ep.receive(req, UDP, 0.0))[-1]
    assert ok.status == 200
    assert ep.receive(ack("hangs-up", ok.header("To") or "", branch="z9hG4bK-a"), UDP, 0.1) == []
    assert ep.next_deadline() == 5.1  # 5 s after the ACK
    bye = bye_of(ep.handle_timers(5.1))
    assert bye.uri == "sip:caller@192.0.2.1:5062"  # the INVITE's Contact: the remote target
    assert bye.headers.get_all("route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert bye.from_ == ok.header("To") and bye.to == "<sip:caller@192.0.2.1>;tag=ft1"
    assert bye.call_id == "c1" and bye.cseq == "1 BYE" and bye.headers.first("max-forwards") == "70"
    assert (bye.top_via.branch or "").startswith("z9hG4bK")
    # Over UDP, Timer E resends it until an answer: T1, then 2·T1.
    assert bye_of(ep.handle_timers(5.6)).raw == bye.raw
    assert ep.receive(answer(bye, 200), UDP, 5.7) == []
    assert ep.handle_timers(60.0) == [] and not ep.faulting.hangups.busy
    call = journal.get("c1")
    assert call is not None and call.violations == [] and ep.stats["dropped"] == 0
    byes = [(e.direction, e.method, e.status) for e in call.entries if e.method == "BYE"]
    assert byes == [("out", "BYE", None), ("out", "BYE", None), ("in", "BYE", 200)]
    assert call.entries[-2].retransmission and not call.entries[-3].retransmission


def test_a_bye_of_ours_refused_or_unanswered_is_a_verdict() -> None:
    ep, journal = make()
    for i in (1, 2):
        req = request(
            "INVITE",
            "hangs-up",
            branch=f"z9hG4bK-{i}",
            call_id=f"c{i}",
            extra=CONTACT,
            body=SDP_OFFER,
        )
        ok = responses(ep.receive(req, UDP, 0.0))[-1]
        ep.receive(ack("hangs-up", ok.header("To") or "", i, branch=f"z9hG4bK-a{i}"), UDP, 0.1)
    out = ep.handle_timers(5.1)
    first, second = (parse_message(data) for data, _, _ in out)
    assert isinstance(first, Request) and isinstance(second, Request)
    assert ep.receive(answer(first, 481), UDP, 5.2) == []
    advance(ep, 60.0)  # no answer to the second: Timer F
    one, two = journal.get("c1"), journal.get("c2")
    assert one is not None and two is not None
    assert [v.message for v in one.violations] == [
        "our BYE (bye_after) was answered 481: a BYE in its dialog gets a 2xx"
    ]
    assert [v.message for v in two.violations] == [
        "our BYE (bye_after) got no final response within 64*T1 (32 s)"
    ]


def test_ignore_ack_after_a_2xx_ends_with_a_bye() -> None:
    ep, journal = make()
    req = request("INVITE", "deaf200", call_id="c1", extra=CONTACT, body=SDP_OFFER)
    ok = responses(ep.receive(req, UDP, 0.0))[-1]
    sent: list[bytes] = []
    now = 0.0
    while (deadline := ep.next_deadline()) is not None and deadline <= 33.0:
        now = deadline
        for data, _, _ in ep.handle_timers(now):
            sent.append(data)
            if data.startswith(b"SIP/2.0 200"):
                ep.receive(ack("deaf200", ok.header("To") or "", branch="z9hG4bK-a"), UDP, now)
    byes = [data for data in sent if data.startswith(b"BYE ")]
    # After 64*T1 of unheeded ACKs (§13.3.1.4), one BYE (and Timer E's copy of it).
    assert len(set(byes)) == 1 and now >= 32.0
    call = journal.get("c1")
    assert call is not None and call.violations == []  # every copy was ACKed


def test_a_response_to_nothing_of_ours_is_still_dropped() -> None:
    ep, _ = make()
    stray = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-x\r\n"
        b"CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    assert ep.receive(stray, UDP, 0.0) == [] and ep.stats["dropped"] == 1


def fork_call(ep: Endpoint) -> list[Any]:
    req = request("INVITE", "forked", call_id="c1", extra=CONTACT, body=SDP_OFFER)
    return responses(ep.receive(req, UDP, 0.0))


def test_fork_sends_a_2xx_per_fork_and_resends_those_not_acked() -> None:
    ep, journal = make()
    got = fork_call(ep)
    assert [r.status for r in got] == [100, 180, 200, 200, 200]
    tags = [(r.header("To") or "").split(";tag=")[1] for r in got[2:]]
    assert len(set(tags)) == 3 and tags[0] == (got[1].header("To") or "").split(";tag=")[1]
    assert got[2].body == got[3].body and b"m=audio" in got[4].body
    # The client ACKs the second fork only: the others keep coming, on the 2xx's timer.
    to = got[3].header("To") or ""
    assert ep.receive(ack("forked", to, branch="z9hG4bK-a2"), UDP, 0.1) == []
    again = responses(ep.handle_timers(0.5))
    assert sorted((r.header("To") or "") for r in again) == sorted(
        [got[2].header("To") or "", got[4].header("To") or ""]
    )
    call = journal.get("c1")
    assert call is not None
    labels = [e.fault for e in call.entries if e.direction == "out" and e.status == 200]
    assert labels[:3] == ["fork 1 of 3", "fork 2 of 3", "fork 3 of 3"]


def test_fork_a_client_that_acks_each_and_ends_the_extra_dialogs_does_right() -> None:
    ep, journal = make()
    got = fork_call(ep)
    for i, ok in enumerate(got[2:]):
        ep.receive(ack("forked", ok.header("To") or "", branch=f"z9hG4bK-a{i}"), UDP, 0.1)
    for i, ok in enumerate(got[3:]):  # keeps the first, ends the other two
        bye = request(
            "BYE", "forked", branch=f"z9hG4bK-b{i}", call_id="c1", cseq="2 BYE", to=ok.header("To")
        )
        assert codes(ep.receive(bye, UDP, 0.2)) == [200]
    assert [r for r in advance(ep, 40.0)] == []  # every 2xx was ACKed: nothing resent
    call = journal.get("c1")
    assert call is not None and call.violations == [] and ep.table.transactions == {}


def test_fork_judges_a_client_that_acks_one_and_ends_none() -> None:
    ep, journal = make()
    got = fork_call(ep)
    ep.receive(ack("forked", got[2].header("To") or "", branch="z9hG4bK-a"), UDP, 0.1)
    advance(ep, 40.0)
    call = journal.get("c1")
    assert call is not None
    assert [v.message.split(" (")[0] for v in call.violations] == [
        "fork: 2 of the 3 2xx got no ACK",
        "fork: 3 of the 3 dialogs were not ended with a BYE",
    ]


def test_bye_after_a_changed_to_tag_comes_from_the_2xx_s_tag() -> None:
    ep, _ = make()
    req = request("INVITE", "retag-and-hang-up", call_id="c1", extra=CONTACT, body=SDP_OFFER)
    ok = responses(ep.receive(req, UDP, 0.0))[-1]
    ep.receive(ack("retag-and-hang-up", ok.header("To") or "", branch="z9hG4bK-a"), UDP, 0.1)
    bye = bye_of(ep.handle_timers(0.1))
    assert bye.from_ == ok.header("To")
