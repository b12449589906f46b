"""The test API's former home, kept so that ``from sipresponder.api import ...`` works:
it moved to ``sipresponder.testing`` (CHANGELOG.md).  New code imports from
``sipresponder`` itself (``Responder``, ``ThreadedResponder``, ``assert_call``)."""

from __future__ import annotations

from .testing.assertions import LADDER_LIMIT, assert_call, assert_no_violations, format_calls
from .testing.responder import Responder, RulesLike, make_rules
from .testing.threaded import ThreadedResponder

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
