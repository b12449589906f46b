"""The test API's former home, kept so that ``from sipresponder.api import ...`` works:
it moved to ``sipresponder.testing`` (CHANGELOG.md).  New code imports from
``sipresponder`` itself (``Responder``, ``ThreadedResponder``, ``assert_call``)."""

from __future__ import annotations

from .testing.responder import (
    LADDER_LIMIT,
    Responder,
    RulesLike,
    ThreadedResponder,
    assert_call,
    assert_no_violations,
    format_calls,
    make_rules,
)

__all__ = [
    "LADDER_LIMIT",
    "Responder",
    "RulesLike",
    "ThreadedResponder",
    "assert_call",
    "assert_no_violations",
    "format_calls",
    "make_rules",
]
