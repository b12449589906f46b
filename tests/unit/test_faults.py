"""The model of a faults list, its refusals, and what each kind does to a response's bytes."""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import pytest
from helpers import SDP_OFFER, request

from sipresponder.core.faults import (
    EXTRA_LENGTH,
    MAX_DROPPING,
    FaultPlan,
    Faults,
    chance,
    dialled_faults,
    drop_again,
    drop_first,
    nonsense,
    parse_faults,
    transport_warning,
)
from sipresponder.core.plans import Step, dial_plan
from sipresponder.core.rules_loader import load_rules
from sipresponder.core.shaping import FaultBuilder, FaultState, Wire, mangle, other_tag
from sipresponder.errors import FaultSpecError, ParseError, RulesError
from sipresponder.sip.message import Response
from sipresponder.sip.parser import parse_message
from sipresponder.sip.responses import Answers, Local

TAG = "a1b2c3"


def response(code: int = 200, sdp: bool = True) -> bytes:
    """A response as the builder makes it, To tag ``TAG``, with SDP for an INVITE's 2xx."""
    req = parse_message(
        request(
            "INVITE",
            "bob",
            extra=[("Content-Type", "application/sdp")] if sdp else None,
            body=SDP_OFFER if sdp else b"",
        )
    )
    local = Local("127.0.0.1", 5060, "udp")
    answers = Answers(req, to_tag=TAG, source=("192.0.2.1", 5062), local=local)  # type: ignore[arg-type]
    return answers.render(code)


def parsed(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


# ------------------------------------------------------------------- parsing


def test_names_and_mappings_make_one_list() -> None:
    f = parse_faults(
        ["no_trying", {"duplicate": 2}, {"omit": ["Contact", "to_tag"]}, "final_first"]
    )
    assert f.no_trying and f.final_first and f.duplicate == 2
    assert f.omit == ("contact", "to_tag")
    assert f.items == ("no_trying", "duplicate: 2", "omit: [Contact, to_tag]", "final_first")
    assert f.probability == 1.0 and f.mangles
    # A kind alone takes its default value; a single name or mapping is a list of one.
    assert parse_faults("duplicate").duplicate == 1
    assert parse_faults({"drop_requests": 2}).drop_requests == 2
    assert parse_faults("to_tag").change_to_tag
    assert parse_faults({"omit": "i"}).omit == ("call-id",)  # compact forms expanded
    assert parse_faults(["ignore_ack"], 0.25).describe() == "ignore_ack (0.25 of requests)"


@pytest.mark.parametrize(
    ("raw", "probability", "field", "problem"),
    [
        ([], None, "", "must be a list"),
        (["nap"], None, "[0]", "unknown kind 'nap'"),
        ([{"duplicate": 1, "omit": ["To"]}], None, "[0]", "one key"),
        ([{"duplicate": 0}], None, "[0].duplicate", "from 1 to 10"),
        ([{"duplicate": True}], None, "[0].duplicate", "whole number"),
        ([{"drop_requests": 11}], None, "[0].drop_requests", "from 1 to 10"),
        ([{"no_trying": 3}], None, "[0].no_trying", "takes no value"),
        ([{"to_tag": "keep"}], None, "[0].to_tag", "'change'"),
        (["oversize"], None, "[0].oversize", "size in bytes"),
        ([{"oversize": 70000}], None, "[0].oversize", "from 200 to 65000"),
        (["malformed"], None, "[0].malformed", "status_line, content_length"),
        ([{"malformed": "wobbly"}], None, "[0].malformed", "must be one of"),
        ([{"omit": []}], None, "[0].omit", "give a list"),
        ([{"omit": ["Con tact"]}], None, "[0].omit", "not a header name"),
        (["duplicate", "duplicate"], None, "[1].duplicate", "given twice"),
        ([42], None, "[0]", "a kind's name"),
        (["duplicate"], 0, "probability", "above 0, up to 1"),
        (["duplicate"], 1.5, "probability", "above 0, up to 1"),
        (["duplicate"], "half", "probability", "above 0, up to 1"),
    ],
)
def test_what_is_refused(raw: object, probability: object, field: str, problem: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_faults(raw, probability)
    assert info.value.field == field and problem in info.value.problem


def test_a_step_takes_only_the_kinds_that_act_on_one_response() -> None:
    assert parse_faults(["duplicate", {"malformed": "truncate"}], on_step=True).duplicate == 1
    for kind in ("no_trying", "drop_requests", "ignore_ack", "final_first"):
        with pytest.raises(FaultSpecError, match="give it in the rule's faults"):
            parse_faults([kind], on_step=True)


def test_faults_that_make_no_sense_for_the_rule() -> None:
    assert nonsense(parse_faults("no_trying"), frozenset({"REGISTER"}), [[200]]).startswith(
        "no_trying acts on an INVITE"
    )
    assert nonsense(parse_faults("ignore_ack"), frozenset({"OPTIONS"}), [[200]])
    assert nonsense(parse_faults("no_trying"), None, [[180, 486]]) == ""
    assert "final_first needs" in nonsense(parse_faults("final_first"), None, [[486]])
    assert "final_first needs" in nonsense(parse_faults("final_first"), None, [[180]])
    assert "to_tag: change acts on the final" in nonsense(parse_faults("to_tag"), None, [[180]])
    assert nonsense(parse_faults("to_tag"), None, [[180, 200]]) == ""


def test_the_rules_file_names_rule_line_and_field() -> None:
    text = """\
rules:
  - match: {method: REGISTER}
    faults: [no_trying]
    plan: 200
"""
    with pytest.raises(RulesError) as info:
        load_rules(text, "lab.yaml")
    assert str(info.value) == (
        "lab.yaml: rule 1 (line 2): faults: no_trying acts on an INVITE, and the rule "
        "matches no INVITE"
    )
    text = """\
rules:
  - match: {method: INVITE}
    plan:
      - code: 180
      - code: 200
        faults: [{duplicate: 99}]
"""
    with pytest.raises(RulesError) as info:
        load_rules(text, "lab.yaml")
    assert info.value.field == "plan[1].faults[0].duplicate" and info.value.line == 5
    text = """\
rules:
  - match: {method: INVITE}
    fault_probability: 0.5
    plan: 486
"""
    with pytest.raises(RulesError, match="fault_probability: given without 'faults'"):
        load_rules(text)
    text = """\
default:
  plan: 486
  faults: [duplicate]
  fault_probability: 2
"""
    with pytest.raises(RulesError, match=r"default rule .* fault_probability: must be a number"):
        load_rules(text)


def test_a_loaded_rule_says_its_faults() -> None:
    rules = load_rules(
        """\
rules:
  - match: {method: INVITE}
    faults: [no_trying, {duplicate: 2}]
    fault_probability: 0.5
    plan:
      - code: 180
        faults: [{omit: [Contact]}]
      - 486
  - match: {method: OPTIONS}
    plan: 200
"""
    )
    first, second = rules.rules
    assert first.faulty and not second.faulty and second.faults is None
    assert first.summary() == (
        "rule 1 (line 2): INVITE -> 180 [omit: [Contact]]-486 with faults no_trying, "
        "duplicate: 2 (0.5 of requests)"
    )


# ------------------------------------------------------------------ the draw


def test_the_draw_follows_from_the_seed_and_the_salt() -> None:
    assert chance(b"seed", "1:0:rule") == chance(b"seed", "1:0:rule")
    assert chance(b"seed", "1:0:rule") != chance(b"seed", "1:1:rule")
    assert chance(b"seed", "1:0:rule") != chance(b"other", "1:0:rule")
    share = sum(chance(b"seed", f"1:{i}:rule") < 0.3 for i in range(4000)) / 4000
    assert 0.27 < share < 0.33


def test_a_fault_plan_holds_the_lists_drawn() -> None:
    rule = parse_faults("duplicate")
    own = parse_faults({"malformed": "garbage"}, on_step=True)
    steps = (Step(180), Step(486, faults=own))
    both = FaultPlan.draw(rule, steps, lambda salt, p: True)
    assert both is not None
    assert both.for_step(steps[0]) == (rule,) and both.for_step(steps[1]) == (rule, own)
    assert both.describe() == ["duplicate", "malformed: garbage"]
    steps_only = FaultPlan.draw(rule, steps, lambda salt, p: salt != "rule")
    assert steps_only is not None and steps_only.for_step(steps[0]) == ()
    assert FaultPlan.draw(rule, steps, lambda salt, p: False) is None
    assert FaultPlan.draw(None, (Step(486),), lambda salt, p: True) is None


# ---------------------------------------------------------------- the bytes


def test_to_tag_change_acts_on_a_final_response_alone() -> None:
    labels: list[str] = []
    data = mangle(response(), parse_faults("to_tag"), TAG, final=True, labels=labels)
    assert parsed(data).header("To").endswith(f";tag={other_tag(TAG)}")
    assert other_tag(TAG) != TAG and other_tag(TAG) == other_tag(TAG)
    assert labels == ["to_tag: changed"]
    ringing = response(180, sdp=False)
    assert mangle(ringing, parse_faults("to_tag"), TAG, final=False, labels=[]) is ringing


def test_omit_headers_the_to_tag_and_the_sdp() -> None:
    labels: list[str] = []
    data = mangle(
        response(),
        parse_faults({"omit": ["Contact", "to_tag", "sdp"]}),
        TAG,
        final=True,
        labels=labels,
    )
    msg = parsed(data)
    assert msg.header("Contact") is None and ";tag=" not in msg.header("To")
    assert msg.body == b"" and msg.header("Content-Type") is None
    assert msg.header("Content-Length") == "0"
    assert labels == ["omit: contact, to_tag, sdp"]
    # A mandatory header left out (RFC 3261 §8.2.6.2 says a response copies Call-ID).
    data = mangle(response(), parse_faults({"omit": ["Call-ID"]}), TAG, final=True, labels=[])
    assert b"\r\nCall-ID:" not in data and b"\r\nCSeq: 1 INVITE\r\n" in data


def test_oversize_pads_to_the_size_with_a_harmless_header() -> None:
    labels: list[str] = []
    data = mangle(response(), parse_faults({"oversize": 4000}), TAG, final=True, labels=labels)
    assert len(data) == 4000 and labels == ["oversize: 4000 bytes"]
    msg = parsed(data)
    assert msg.header("X-Padding") == "x" * len(msg.header("X-Padding") or "")
    assert b"m=audio" in msg.body  # the body and its length untouched
    big = response()
    assert mangle(big, parse_faults({"oversize": 200}), TAG, final=True, labels=[]) == big


@pytest.mark.parametrize("how", ["status_line", "content_length", "truncate", "garbage"])
def test_each_malformed_response_is_broken_in_its_own_way(how: str) -> None:
    good = response()
    labels: list[str] = []
    bad = mangle(good, parse_faults({"malformed": how}), TAG, final=True, labels=labels)
    assert labels == [f"malformed: {how}"] and bad != good
    if how in ("status_line", "garbage"):
        with pytest.raises(ParseError):
            parse_message(bad)
    if how == "status_line":
        assert bad.startswith(b"SIP/2.0 2x0 OK\r\n") and bad[15:] == good[15:]
    if how == "content_length":
        # RFC 3261 §18.3: a datagram that ends before the body does is to be discarded.
        length = int(bad.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        assert length == len(parsed(good).body) + EXTRA_LENGTH
        assert bad.split(b"\r\n\r\n", 1)[1] == parsed(good).body
    if how == "truncate":
        assert good.startswith(bad) and len(bad) == len(good) // 2
        assert b"\r\n\r\n" not in bad  # cut in the headers: no end of them
    if how == "garbage":
        assert len(bad) == len(good) and all(b >= 0x80 for b in bad)


# ------------------------------------------------------- sending and ordering


def test_duplicates_and_labels_follow_each_built_response() -> None:
    plan = FaultPlan(parse_faults({"duplicate": 2}), {})
    state = FaultState(plan)
    build = FaultBuilder(lambda step: response(step.code, sdp=False), state, TAG)
    trying, busy = build(Step(100)), build(Step(486))
    shaped = state.shape([trying, busy])
    assert [(code, label) for _, code, label in shaped] == [
        (100, "duplicate: 2"),
        (100, "duplicate"),
        (100, "duplicate"),
        (486, "duplicate: 2"),
        (486, "duplicate"),
        (486, "duplicate"),
    ]
    assert all(data is busy for data, code, _ in shaped if code == 486)


def test_final_first_holds_the_provisionals_until_the_final() -> None:
    state = FaultState(FaultPlan(parse_faults("final_first"), {}))
    build = FaultBuilder(lambda step: response(step.code, sdp=False), state, TAG)
    trying, ringing = build(Step(100)), build(Step(180))
    assert state.shape([trying, ringing]) == [] and state.holding
    assert state.shape([ringing]) == []  # a copy of the INVITE: still held, once
    busy = build(Step(486))
    shaped = state.shape([busy])
    assert [(code, label) for _, code, label in shaped] == [
        (486, ""),
        (100, "final_first: after the final"),
        (180, "final_first: after the final"),
    ]
    assert not state.holding and state.shape([busy]) == [(busy, 486, "")]


def test_dropped_requests_are_bounded_and_give_back_the_first_choice() -> None:
    dropping: dict[Hashable, list[Any]] = {}
    drop_first(dropping, "k", 2, "choice")
    assert "k" in dropping and drop_again(dropping, "k") == (2, None)
    assert drop_again(dropping, "k") == (3, "choice") and "k" not in dropping
    for i in range(MAX_DROPPING + 5):
        drop_first(dropping, i, 1, i)
    assert len(dropping) == MAX_DROPPING and 0 not in dropping and MAX_DROPPING + 4 in dropping


def test_faults_is_a_value() -> None:
    assert parse_faults("duplicate") == Faults(("duplicate",), duplicate=1)


def test_dialled_faults_are_a_keypad_s_digits() -> None:
    assert dialled_faults(["4"]).items == ("duplicate: 1",)
    assert dialled_faults(["43", "1"]).items == ("duplicate: 3", "no_trying")
    assert dialled_faults(["74"]).malformed == "garbage"
    assert dialled_faults(["8"]).oversize == 4000 and dialled_faults(["81500"]).oversize == 1500
    assert dialled_faults(["9"]).omit == ("to_tag",) and dialled_faults(["6"]).change_to_tag
    for bad, problem in (
        ("0", "a digit from 1 to 9"),
        ("", "a digit"),
        ("7", "*71 to *74"),
        ("12", "takes no digits"),
        ("4x", "a digit"),
    ):
        with pytest.raises(FaultSpecError, match=re.escape(problem)):
            dialled_faults([bad])
    plan = dial_plan("180486*4")
    assert plan is not None and [s.code for s in plan.steps] == [180, 486]
    assert plan.faults == dialled_faults(["4"]) and str(plan) == "180486*4"
    assert dial_plan("486*0") is None and dial_plan("486*41") is not None


# ------------------------------------------------------------- on the wire


def test_the_wire_kinds_parse_and_warn() -> None:
    f = parse_faults([{"reset_after": "final"}, "coalesce", {"split_writes": {"size": 64}}])
    assert f.reset_after == "final" and f.coalesce and f.split_writes == (64, 0.2) and f.wire
    assert parse_faults(
        [{"split_writes": {"size": 8, "interval": "1.5s"}}], on_step=True
    ).split_writes == (8, 1.5)
    for raw, problem in (
        ([{"reset_after": "early"}], "provisional or final"),
        ([{"close_after": "provisional"}], "'final'"),
        ([{"split_writes": 64}], "{size: BYTES"),
        ([{"split_writes": {"size": 0}}], "1 to 65000"),
        ([{"split_writes": {"size": 9, "interval": "11s"}}], "up to 10s"),
        ([{"split_writes": {"size": 9, "pace": 1}}], "unknown field"),
        ([{"wrong_source_port": 1}], "takes no value"),
    ):
        with pytest.raises(FaultSpecError, match=re.escape(problem)):
            parse_faults(raw)
    with pytest.raises(FaultSpecError, match="rule's faults"):
        parse_faults(["coalesce"], on_step=True)
    assert transport_warning(parse_faults("coalesce"), None).startswith(
        "coalesce acts over TCP only"
    )
    assert transport_warning(parse_faults("coalesce"), frozenset({"tcp"})) == ""
    assert transport_warning(parse_faults("wrong_source_port"), frozenset({"udp"})) == ""
    assert "over UDP only" in transport_warning(parse_faults("wrong_source_port"), None)
    assert "close_after: final acts after" in nonsense(
        parse_faults({"close_after": "final"}), None, [[180]]
    )


def test_the_wire_says_how_each_response_goes() -> None:
    def state(raw: list[object], reliable: bool) -> tuple[FaultState, FaultBuilder]:
        s = FaultState(FaultPlan(parse_faults(raw), {}), reliable)
        return s, FaultBuilder(lambda step: response(step.code, sdp=False), s, TAG)

    s, build = state(["wrong_source_port"], reliable=False)
    (sent,) = s.wire(s.shape([build(Step(486))]))
    assert isinstance(sent, Wire) and sent.other_port and sent.after == ""
    s, build = state(["wrong_source_port"], reliable=True)  # over TCP: nothing to do
    assert type(s.wire(s.shape([build(Step(486))]))[0]) is bytes
    s, build = state([{"reset_after": "provisional"}], reliable=True)
    sent = s.wire(s.shape([build(Step(100)), build(Step(180))]))
    assert len(sent) == 1 and isinstance(sent[0], Wire) and sent[0].after == "reset"
    assert s.wire(s.shape([build(Step(486))])) == []  # nothing after the reset
    s, build = state([{"close_after": "final"}, {"split_writes": {"size": 100}}], reliable=True)
    trying, busy = s.wire(s.shape([build(Step(100)), build(Step(486))]))
    assert isinstance(trying, Wire) and trying.pieces == (100, 0.2) and trying.after == ""
    assert isinstance(busy, Wire) and busy.after == "close"
    s, build = state(["coalesce", {"reset_after": "final"}], reliable=True)
    first = [build(Step(100)), build(Step(180))]
    assert s.wire(s.shape(first)) == []  # held until the final
    busy = build(Step(486))
    shaped = s.shape([busy])
    assert [(code, label) for _, code, label in shaped] == [
        (100, "coalesce"),
        (180, "coalesce"),
        (486, "reset_after: final, coalesce"),
    ]
    (joined,) = s.wire(shaped)
    assert joined == first[0] + first[1] + busy and isinstance(joined, Wire)
    assert joined.after == "reset"


def test_a_fault_for_one_transport_on_a_rule_for_both_is_a_warning() -> None:
    rules = load_rules(
        """\
rules:
  - match: {method: INVITE}
    faults: [coalesce]
    plan: 486
  - match: {method: INVITE, transport: tcp}
    faults: [coalesce]
    plan: 486
  - match: {method: OPTIONS}
    plan:
      - code: 200
        faults: [wrong_source_port]
""",
        "lab.yaml",
    )
    assert rules.warnings == (
        "lab.yaml: rule 1 (line 2): faults: coalesce acts over TCP only; requests over UDP "
        "get no such fault",
        "lab.yaml: rule 3 (line 8): faults: wrong_source_port acts over UDP only; requests "
        "over TCP get no such fault",
    )


def test_bye_after_reads_a_delay_and_wants_a_2xx_to_an_invite() -> None:
    assert parse_faults([{"bye_after": "5s"}]).bye_after == 5.0
    assert parse_faults([{"bye_after": "250ms"}]).bye_after == 0.25
    assert parse_faults([{"bye_after": 0}]).bye_after == 0.0
    for raw in (["bye_after"], [{"bye_after": "soon"}], [{"bye_after": 7200}]):
        with pytest.raises(FaultSpecError, match="a delay like 5s"):
            parse_faults(raw)
    f = parse_faults([{"bye_after": "1s"}])
    assert "bye_after hangs up a call answered with a 2xx" in nonsense(f, None, [[180, 486]])
    assert nonsense(f, frozenset({"OPTIONS"}), [[200]]).startswith("bye_after acts on an INVITE")
    assert nonsense(f, frozenset({"INVITE"}), [[180, 200]]) == ""


def test_fork_counts_2xx_and_wants_a_2xx_to_an_invite() -> None:
    assert parse_faults("fork").fork == 2 and parse_faults([{"fork": 4}]).fork == 4
    for bad in (1, 11, "two"):
        with pytest.raises(FaultSpecError, match="from 2 to 10"):
            parse_faults([{"fork": bad}])
    f = parse_faults("fork")
    assert nonsense(f, None, [[180, 486]]).startswith("fork sends the 2xx from several forks")
    assert nonsense(f, frozenset({"REGISTER"}), [[200]]).startswith("fork acts on an INVITE")
