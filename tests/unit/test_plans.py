"""Dial-the-code grammar and plan validation."""

from __future__ import annotations

import pytest

from sipresponder.core.plans import (
    DEFAULT_INVITE,
    DEFAULT_OTHER,
    PlanError,
    Step,
    default_plan,
    dial_plan,
    parse_plan,
)


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("486", [(486, 0.0)]),
        ("180-486", [(180, 0.0), (486, 0.0)]),
        ("180-2s-486", [(180, 0.0), (486, 2.0)]),
        ("180-1500ms-486", [(180, 0.0), (486, 1.5)]),
        ("180-0.25s-183-1s-200", [(180, 0.0), (183, 0.25), (200, 1.25)]),
        ("180486", [(180, 0.0), (486, 0.0)]),
        ("100180183200", [(100, 0.0), (180, 0.0), (183, 0.0), (200, 0.0)]),
        ("2s-486", [(486, 2.0)]),
        ("180", [(180, 0.0)]),
        ("699", [(699, 0.0)]),
        ("499", [(499, 0.0)]),
    ],
)
def test_valid_plans(text: str, steps: list[tuple[int, float]]) -> None:
    plan = parse_plan(text)
    assert [(s.code, s.at) for s in plan.steps] == steps
    assert str(plan) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("999", "not a response code"),
        ("099", "not a response code"),
        ("1001", "three digits"),
        ("486-200", "nothing can follow"),
        ("200486", "nothing can follow"),
        ("180-100", "100 Trying can only be the first"),
        ("180-2s", "cannot end with a delay"),
        ("180--486", "empty step"),
        ("180-2x-486", "neither a code nor a delay"),
        ("180-4000s-486", "longer than"),
        ("", "empty step"),
    ],
)
def test_invalid_plans_say_why(text: str, why: str) -> None:
    with pytest.raises(PlanError, match=why):
        parse_plan(text)


def test_plan_properties() -> None:
    assert parse_plan("180").rings and parse_plan("180").final is None
    assert parse_plan("180-486").final == 486 and not parse_plan("180-486").rings
    assert parse_plan("180-486").immediate and not parse_plan("180-1s-486").immediate
    assert parse_plan("100-486").starts_with_100


@pytest.mark.parametrize("user", [None, "", "alice", "1001", "999", "486-200", "+15551234"])
def test_dial_plan_falls_back_to_none(user: str | None) -> None:
    assert dial_plan(user) is None


def test_default_plans() -> None:
    assert default_plan("INVITE") is DEFAULT_INVITE
    assert [s.code for s in DEFAULT_INVITE.steps] == [180, 200]
    assert default_plan("OPTIONS") is DEFAULT_OTHER
    assert DEFAULT_OTHER.steps == (Step(200),)
