"""The journal and the client verdicts, on a scripted clock (no sockets)."""

from __future__ import annotations

import json

from helpers import request
from test_endpoint import TCP, UDP, advance, codes, responses

from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.journal import Journal
from sipresponder.core.verdicts import Verdicts
from sipresponder.sip.message import Request
from sipresponder.sip.parser import parse_message


def make(**kw: object) -> tuple[Endpoint, Journal, list[dict[str, object]]]:
    lines: list[dict[str, object]] = []
    journal = Journal(max_calls=50, sink=lines.append)
    ep = Endpoint(Config(secret=b"k", **kw), journal=journal)  # type: ignore[arg-type]
    return ep, journal, lines


def rules_of(journal: Journal, call_id: str = "call-1@test") -> list[str]:
    call = journal.get(call_id)
    assert call is not None
    return [v.rule for v in call.violations]


def test_journal_groups_a_busy_call() -> None:
    ep, journal, lines = make()
    out = ep.receive(request("INVITE", "180-486"), UDP, 0.0)
    tag = responses(out)[-1].header("To")
    ep.receive(request("ACK", "180-486", cseq="1 ACK", to=tag), UDP, 0.1)
    call = journal.get("call-1@test")
    assert call is not None
    assert [e.summary.split(" ")[0] for e in call.entries] == ["INVITE", "100", "180", "486", "ACK"]
    assert call.final_status == 486 and call.acked and call.codes == [100, 180, 486]
    assert call.method == "INVITE" and call.user == "180-486"
    assert not call.violations
    assert "-> responder  INVITE sip:180-486@127.0.0.1" in call.ladder()
    assert [line["type"] for line in lines] == ["message"] * 5
    json.dumps(lines)  # the --journal-file lines are JSON-ready
    assert journal.calls(method="INVITE", status=486) == [call]
    assert journal.calls(user="nobody") == []


def test_retransmissions_are_marked() -> None:
    ep, journal, _ = make()
    ep.receive(request("INVITE", "486"), UDP, 0.0)
    advance(ep, 0.6)  # Timer G resends the 486
    call = journal.get("call-1@test")
    assert call is not None
    assert [e.retransmission for e in call.entries] == [False, False, False, True]
    assert call.codes == [100, 486]


def test_the_ring_is_bounded() -> None:
    ep, journal, _ = make()
    for i in range(120):
        ep.receive(request("OPTIONS", "x", call_id=f"c{i}", branch=f"z9hG4bK-{i}"), UDP, 0.0)
    assert len(journal) == 50
    assert journal.get("c0") is None and journal.get("c119") is not None
    journal.clear()
    assert len(journal) == 0


def test_no_ack_within_timer_h() -> None:
    ep, journal, lines = make()
    ep.receive(request("INVITE", "486"), UDP, 0.0)
    advance(ep, 40.0)
    assert rules_of(journal) == ["RFC 3261 §17.1.1.3"]
    assert "no ACK for the 486 within Timer H" in str(journal.get("call-1@test").violations[0])  # type: ignore[union-attr]
    assert lines[-1]["type"] == "violation"
    assert ep.verdicts.by_rule == {"RFC 3261 §17.1.1.3": 1}


def test_no_ack_for_a_2xx() -> None:
    ep, journal, _ = make()
    ep.receive(request("INVITE", "200"), TCP, 0.0)
    advance(ep, 40.0)
    assert rules_of(journal) == ["RFC 3261 §13.2.2.4"]


def test_ack_for_a_1xx() -> None:
    ep, journal, _ = make()
    ep.receive(request("INVITE", "180"), UDP, 0.0)
    ep.receive(request("ACK", "180", cseq="1 ACK"), UDP, 0.1)
    assert rules_of(journal) == ["RFC 3261 §17.1.1.3"]
    assert "1xx is never acknowledged" in journal.get("call-1@test").violations[0].message  # type: ignore[union-attr]


def test_ack_with_wrong_to_tag_wrong_cseq_or_branch() -> None:
    ep, journal, _ = make()
    ep.receive(request("INVITE", "486"), UDP, 0.0)
    ep.receive(request("ACK", "486", cseq="1 ACK", to="<sip:486@127.0.0.1>;tag=bogus"), UDP, 0.1)
    assert "To tag bogus" in journal.get("call-1@test").violations[0].message  # type: ignore[union-attr]

    ep, journal, _ = make()
    out = ep.receive(request("INVITE", "486"), UDP, 0.0)
    tag = responses(out)[-1].header("To")
    ep.receive(request("ACK", "486", branch="z9hG4bK-new", cseq="1 ACK", to=tag), UDP, 0.1)
    assert "does not carry the INVITE's Via branch" in str(
        journal.get("call-1@test").violations  # type: ignore[union-attr]
    )

    ep, journal, _ = make()
    out = ep.receive(request("INVITE", "200"), UDP, 0.0)
    tag = responses(out)[-1].header("To")
    ep.receive(request("ACK", "200", branch="z9hG4bK-a", cseq="2 ACK", to=tag), UDP, 0.1)
    assert "CSeq number 2 is not the INVITE's 1" in str(
        journal.get("call-1@test").violations  # type: ignore[union-attr]
    )


def test_early_cancel() -> None:
    ep, journal, _ = make()
    assert codes(ep.receive(request("INVITE", "2s-100-486"), UDP, 0.0)) == []
    ep.receive(request("CANCEL", "2s-100-486", cseq="1 CANCEL"), UDP, 0.1)
    assert "RFC 3261 §9.1" in rules_of(journal)


def test_cancel_after_a_provisional_is_fine() -> None:
    ep, journal, _ = make()
    out = ep.receive(request("INVITE", "180"), UDP, 0.0)
    ep.receive(request("CANCEL", "180", cseq="1 CANCEL"), UDP, 0.5)
    tag = responses(out)[-1].header("To")
    ep.receive(request("ACK", "180", cseq="1 ACK", to=tag), UDP, 0.6)
    assert rules_of(journal) == []


def test_retransmission_timing() -> None:
    # Too early: 100 ms instead of Timer A's 500 ms (the plan delays every response).
    ep, journal, _ = make()
    ep.receive(request("INVITE", "2s-100-486"), UDP, 0.0)
    ep.receive(request("INVITE", "2s-100-486"), UDP, 0.1)
    assert "Timer A wants 500 ms" in str(journal.get("call-1@test").violations)  # type: ignore[union-attr]
    # On time: 0.5, 1.5, 3.5 s — no violation.
    ep, journal, _ = make()
    for t in (0.0, 0.5, 1.5):
        ep.receive(request("INVITE", "2s-100-486"), UDP, t)
    assert rules_of(journal) == []
    # After a provisional the INVITE is not retransmitted.
    ep, journal, _ = make()
    ep.receive(request("INVITE", "180-5s-486"), UDP, 0.0)
    ep.receive(request("INVITE", "180-5s-486"), UDP, 0.5)
    assert "after a provisional response" in str(journal.get("call-1@test").violations)  # type: ignore[union-attr]
    # Over TCP there are no retransmissions at all.
    ep, journal, _ = make()
    ep.receive(request("INVITE", "180"), TCP, 0.0)
    ep.receive(request("INVITE", "180"), TCP, 0.5)
    assert "reliable transport" in str(journal.get("call-1@test").violations)  # type: ignore[union-attr]


def test_branch_without_magic_cookie() -> None:
    ep, journal, _ = make()
    ep.receive(request("OPTIONS", "x", branch="1234"), UDP, 0.0)
    assert rules_of(journal) == ["RFC 3261 §8.1.1.7"]


def test_bye_for_a_call_that_never_got_a_2xx() -> None:
    ep, journal, _ = make()
    out = ep.receive(request("INVITE", "486"), UDP, 0.0)
    tag = responses(out)[-1].header("To")
    ep.receive(request("ACK", "486", cseq="1 ACK", to=tag), UDP, 0.1)
    bye = request("BYE", "sipresponder", branch="z9hG4bK-bye", cseq="2 BYE", to=tag)
    assert codes(ep.receive(bye, UDP, 0.2)) == [200]
    assert rules_of(journal) == ["RFC 3261 §15"]


def test_a_well_behaved_call_has_no_violation() -> None:
    ep, journal, _ = make()
    out = ep.receive(request("INVITE", "bob"), UDP, 0.0)
    tag = responses(out)[-1].header("To")
    ep.receive(request("ACK", "bob", branch="z9hG4bK-ack", cseq="1 ACK", to=tag), UDP, 0.1)
    ep.receive(request("BYE", "bob", branch="z9hG4bK-bye", cseq="2 BYE", to=tag), UDP, 1.0)
    advance(ep, 100.0)
    call = journal.get("call-1@test")
    assert call is not None and call.violations == [] and call.acked
    assert [t.method for t in call.transactions] == ["INVITE", "BYE"]
    assert ep.stats["violations"] == 0


def test_the_verdicts_need_no_journal() -> None:
    """What the ACK and BYE verdicts must know of a call, the verdicts keep themselves."""
    ep = Endpoint(Config(secret=b"k"), journal=None)
    out = ep.receive(request("INVITE", "486"), TCP, 0.0)
    tag = responses(out)[-1].header("To")
    ep.receive(request("ACK", "486", cseq="1 ACK", to=tag), TCP, 0.1)  # ends it (TCP)
    stray = request("ACK", "486", branch="z9hG4bK-other", cseq="7 ACK", to=tag)
    ep.receive(stray, TCP, 0.2)
    bye = request("BYE", "sipresponder", branch="z9hG4bK-bye", cseq="2 BYE", to=tag)
    assert codes(ep.receive(bye, TCP, 0.3)) == [200]
    assert ep.verdicts.by_rule == {"RFC 3261 §17.1.1.3": 1, "RFC 3261 §15": 1}
    assert ep.stats["violations"] == 2 and ep.stats["stray_acks"] == 1


def test_the_calls_the_verdicts_remember_are_bounded() -> None:
    ep = Endpoint(Config(secret=b"k"), journal=None)
    verdicts = Verdicts(ep.timers, ep.stats, ep.recorder, calls=3)
    for i in range(10):
        verdicts.answered_at_once(f"c{i}", 1, 486)
    # Past twice the bound, the older half went: what is held stays within [3, 6).
    assert sorted(verdicts._calls) == ["c6", "c7", "c8", "c9"]
    forgotten = parse_message(request("BYE", "x", call_id="c0", cseq="2 BYE"), stream=False)
    assert isinstance(forgotten, Request)
    verdicts.bye(forgotten, 1.0)  # its INVITE's outcome has gone: no verdict
    assert verdicts.by_rule == {}
    kept = parse_message(request("BYE", "x", call_id="c9", cseq="2 BYE"), stream=False)
    assert isinstance(kept, Request)
    verdicts.bye(kept, 1.0)
    assert verdicts.by_rule == {"RFC 3261 §15": 1}


def test_a_bye_while_a_refused_call_tries_again_is_not_judged() -> None:
    """401, then the INVITE again with credentials, pending: a BYE may end its early
    dialog (RFC 3261 §15); refused again, a BYE has no dialog to end."""
    ep = Endpoint(Config(secret=b"k"), journal=None)
    verdicts = ep.verdicts
    bye = parse_message(request("BYE", "x", call_id="c1", cseq="3 BYE"), stream=False)
    assert isinstance(bye, Request)
    verdicts.answered_at_once("c1", 1, 401)
    verdicts.invite("c1", 2)
    verdicts.bye(bye, 1.0)
    assert verdicts.by_rule == {}
    verdicts.answered("c1", 2, 486)
    verdicts.bye(bye, 2.0)
    assert verdicts.by_rule == {"RFC 3261 §15": 1}
    verdicts.invite("c1", 3)
    verdicts.answered("c1", 3, 200)
    verdicts.bye(bye, 3.0)  # a dialog now
    assert verdicts.by_rule == {"RFC 3261 §15": 1}
