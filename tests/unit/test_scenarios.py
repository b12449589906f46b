"""Sequences (``responses:``) and scenarios (``scenario:``): the model, the rules file, and
the endpoint on the scripted clock, with parallel keys."""

from __future__ import annotations

import pytest
from helpers import request
from test_endpoint import UDP, codes

from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.rules_loader import load_rules
from sipresponder.core.scenarios import STARTED, KeySpec, Scenarios, ScenarioSpec, Sequence
from sipresponder.errors import RulesError
from sipresponder.sip.parser import parse_message


def test_a_sequence_repeats_then_stays_or_cycles() -> None:
    last = Sequence((0, 0, 1))
    assert [last.index(i) for i in range(5)] == [0, 0, 1, 1, 1]
    cycle = Sequence((0, 0, 1), cycle=True)
    assert [cycle.index(i) for i in range(7)] == [0, 0, 1, 0, 0, 1, 0]


def test_keys() -> None:
    req = parse_message(request("REGISTER", "x", extra=[("X-Test", " run-7 ")]))
    assert KeySpec.parse("from_user").of(req, "192.0.2.1:5062") == "caller"
    assert KeySpec.parse("global").of(req, "192.0.2.1:5062") == ""
    assert KeySpec.parse("source").of(req, "192.0.2.1:5062") == "192.0.2.1:5062"
    assert KeySpec.parse("header:x-test").of(req, "") == "run-7"
    assert str(KeySpec.parse("header: X-Test")) == "header:x-test"
    for bad in ("from", "header:", 3):
        with pytest.raises(ValueError, match="global, from_user, source or header:NAME"):
            KeySpec.parse(bad)


def test_the_store_is_bounded_the_least_recently_moved_first() -> None:
    store = Scenarios(limit=4)
    assert store.state("s", "a") == STARTED
    store.set_state("s", "a", "one")
    assert [store.advance(1, k) for k in ("a", "a", "b")] == [0, 1, 0]
    store.set_state("s", "b", "two")
    store.advance(1, "c")  # the fifth entry: the oldest goes
    assert store.evicted == 1 and store.state("s", "a") == "one"
    assert store.advance(1, "a") == 0  # its position was the one let go
    listing = store.listing(["s", "other"])
    assert {"name": "other", "key": None, "state": STARTED} in listing
    assert {"name": "s", "key": "b", "state": "two"} in listing
    store.clear()
    assert store.state("s", "b") == STARTED and store.listing([]) == []


def test_scenario_spec_parse() -> None:
    spec, key = ScenarioSpec.parse({"name": "reg", "when": "started", "set": "up"})
    assert (spec, key) == (ScenarioSpec("reg", "started", "up"), None)
    assert spec.describe() == "scenario 'reg' when 'started' sets 'up'"
    _, key = ScenarioSpec.parse({"name": "reg", "key": "source"})
    assert key == KeySpec("source")
    for raw, problem in (
        ("reg", ": must be a mapping"),
        ({"when": "x"}, ".name: give the scenario's name"),
        ({"name": "r", "state": "x"}, ".state: unknown field"),
        ({"name": "r", "set": ""}, ".set: must be a state's name"),
        ({"name": "r", "key": "nobody"}, ".key: must be global"),
    ):
        with pytest.raises(ValueError, match=problem):
            ScenarioSpec.parse(raw)


# ------------------------------------------------------------------ the file

RULES = """\
rules:
  - name: flaky registrar
    match: {method: REGISTER}
    responses:
      - {plan: 503, repeat: 2}
      - 200
  - match: {method: OPTIONS, user: cycling}
    responses: [486, 200]
    then: cycle
    key: global
  - name: not yet registered
    match: {method: INVITE}
    scenario: {name: registration, when: started}
    plan: 403
  - name: registered
    match: {method: MESSAGE, user: register-me}
    scenario: {name: registration, set: registered}
    plan: 202
  - match: {method: INVITE}
    scenario: {name: registration, when: registered}
    plan: 486
  - match: {method: OPTIONS, user: per-test}
    responses: [404, 200]
    key: "header:X-Test-Id"
"""


def test_the_rules_file_takes_sequences_and_scenarios() -> None:
    rules = load_rules(RULES, "lab.yaml")
    flaky, cycling, waiting, moving, registered, per_test = rules.rules
    assert flaky.sequence == Sequence((0, 0, 1)) and flaky.stateful and not flaky.weighted
    assert cycling.sequence is not None and cycling.sequence.cycle
    assert str(cycling.key) == "global" and str(flaky.key) == "from_user"
    assert waiting.scenario == ScenarioSpec("registration", "started", None)
    assert moving.scenario == ScenarioSpec("registration", None, "registered")
    assert rules.scenarios and rules.scenario_names == ["registration"]
    assert str(per_test.key) == "header:x-test-id"
    assert flaky.summary() == (
        "rule 1 'flaky registrar' (line 2): REGISTER -> in turn: 503 x2, 200, then the last "
        "(per from_user)"
    )
    assert registered.summary().endswith(
        "; scenario 'registration' when 'registered' (per from_user)"
    )


@pytest.mark.parametrize(
    ("rule", "field", "problem"),
    [
        ("responses: []", "responses", "non-empty list"),
        ("responses: [{plan: 200, repeat: 0}]", "responses[0].repeat", "from 1 to 10000"),
        ("responses: [200, 99]", "responses[1]", "three digits"),
        ("responses: [200]\n    then: again", "then", "last or cycle"),
        ("plan: 200\n    then: cycle", "then", "given without 'responses'"),
        (
            "plan: 200\n    responses: [200]",
            "plan",
            "exactly one of 'plan', 'choose' and 'responses'",
        ),
        ("plan: 200\n    key: source", "key", "given without 'responses' or 'scenario'"),
        ("responses: [200]\n    key: nobody", "key", "global, from_user, source or header:NAME"),
        ("plan: 200\n    scenario: {name: s, when: [1]}", "scenario.when", "a state's name"),
    ],
)
def test_what_the_file_refuses(rule: str, field: str, problem: str) -> None:
    text = f"rules:\n  - match: {{method: OPTIONS}}\n    {rule}\n"
    with pytest.raises(RulesError) as info:
        load_rules(text, "lab.yaml")
    assert info.value.field == field and problem in info.value.problem, str(info.value)


# -------------------------------------------------------------- the endpoint


def make() -> Endpoint:
    return Endpoint(Config(secret=b"k"), rules=load_rules(RULES))


def send(ep: Endpoint, method: str, user: str, i: int, **kw: object) -> list[int]:
    data = request(method, user, branch=f"z9hG4bK-{i}", call_id=f"c{i}", **kw)  # type: ignore[arg-type]
    return codes(ep.receive(data, UDP, i * 0.01))


def as_bob(data: bytes) -> bytes:
    return data.replace(b"<sip:caller@192.0.2.1>", b"<sip:bob@192.0.2.1>")


def test_a_flaky_registrar_fails_twice_then_accepts_per_user() -> None:
    ep = make()
    alice = [send(ep, "REGISTER", "r", i, from_tag=f"a{i}")[-1] for i in range(4)]
    assert alice == [503, 503, 200, 200]
    # Bob's registrations are his own sequence (key: from_user), interleaved or not.
    bob = [
        codes(
            ep.receive(
                as_bob(request("REGISTER", "r", branch=f"z9hG4bK-b{i}", call_id=f"b{i}")), UDP, 1.0
            )
        )[-1]
        for i in range(3)
    ]
    assert bob == [503, 503, 200]


def test_a_retransmission_does_not_move_the_sequence() -> None:
    ep = make()
    assert send(ep, "REGISTER", "r", 1) == [503]
    assert send(ep, "REGISTER", "r", 1) == [503]  # the same request again: absorbed, same
    assert send(ep, "REGISTER", "r", 2) == [503]
    assert send(ep, "REGISTER", "r", 3) == [200]


def test_cycle_and_a_global_key() -> None:
    ep = make()
    got = [send(ep, "OPTIONS", "cycling", i, from_tag=f"t{i}")[-1] for i in range(5)]
    assert got == [486, 200, 486, 200, 486]


def test_a_header_key_keeps_parallel_tests_apart() -> None:
    ep = make()

    def options(i: int, test: str) -> int:
        return send(ep, "OPTIONS", "per-test", i, extra=[("X-Test-Id", test)])[-1]

    assert [options(1, "t1"), options(2, "t2"), options(3, "t1"), options(4, "t2")] == [
        404,
        404,
        200,
        200,
    ]


def test_a_scenario_moves_from_state_to_state() -> None:
    ep = make()
    assert send(ep, "INVITE", "bob", 1)[-1] == 403  # not registered yet
    assert send(ep, "MESSAGE", "register-me", 2) == [202]
    assert send(ep, "INVITE", "bob", 3)[-1] == 486  # registered now
    listing = ep.planner.scenarios.listing(["registration"])
    assert {"name": "registration", "key": "caller", "state": "registered"} in listing
    # Another caller has a scenario of its own, still in "started".
    other = request("INVITE", "bob", branch="z9hG4bK-o", call_id="o1")
    other = other.replace(b"<sip:caller@192.0.2.1>", b"<sip:dave@192.0.2.1>")
    assert codes(ep.receive(other, UDP, 1.0))[-1] == 403
    # New rules start everything afresh.
    ep.set_rules(load_rules(RULES))
    assert send(ep, "INVITE", "bob", 9)[-1] == 403
