"""The assertions on calls, and the failure messages that carry their SIP ladders.

What belongs here: ``assert_call`` and ``assert_no_violations`` (an ``AssertionError``
listing every mismatch, then the ladder of the call), ``format_calls`` (the ladders of the
newest calls, for failure messages and the pytest plugin's report) and ``describe`` (what
a ``wait_for_call`` was waiting for, for its timeout).  The helpers hide their own frames
from pytest's tracebacks (``__tracebackhide__``), so that a failure points at the test's
line.  Reads calls only; starts nothing.  Imports ``journal`` only: the responders import
it, so it takes them by what they have (``Journaled``), not by their class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

from ..core.calls import Call

#: A test on a call, for ``wait_for_call(predicate=...)``.
Predicate: TypeAlias = Callable[[Call], bool]

#: How many calls a timeout message or a failure report shows (the newest).
LADDER_LIMIT = 20


@runtime_checkable
class Journaled(Protocol):
    """What ``assert_no_violations`` reads the calls of: ``Responder`` and
    ``ThreadedResponder`` (anything with their ``calls()``)."""

    def calls(self) -> list[Call]: ...


def format_calls(calls: Sequence[Call], limit: int = LADDER_LIMIT) -> str:
    """The ladders of the newest ``limit`` calls, for failure messages."""
    if not calls:
        return "(no calls recorded)"
    shown = calls[-limit:]
    parts = [call.ladder() for call in shown]
    if len(calls) > len(shown):
        parts.insert(0, f"({len(calls) - len(shown)} earlier calls not shown)")
    return "\n\n".join(parts)


def describe(
    method: str | None,
    user: str | None,
    status: int | None,
    predicate: Predicate | None,
    final: bool,
    acked: bool | None,
) -> str:
    """What a ``wait_for_call`` waits for, in words: for its timeout's message."""
    parts = []
    if method is not None:
        parts.append(f"method={method.upper()}")
    if user is not None:
        parts.append(f"user={user!r}")
    if status is not None:
        parts.append(f"status={status}")
    elif final:
        parts.append("with a final response")
    if acked is not None:
        parts.append("ACKed" if acked else "not ACKed")
    if predicate is not None:
        parts.append(f"predicate={getattr(predicate, '__name__', repr(predicate))}")
    return ", ".join(parts) or "any call"


def assert_call(
    call: Call | None,
    *,
    status: int | None = None,
    codes: Sequence[int] | None = None,
    acked: bool | None = None,
    no_violations: bool = False,
    method: str | None = None,
    user: str | None = None,
) -> Call:
    """Check a call; on failure raise ``AssertionError`` listing every mismatch, followed
    by the call's SIP ladder (who sent what, when) and its RFC violations.

    ``status`` is the final status (of the INVITE, else of the first request), ``codes``
    every code it got (``[100, 180, 486]``), ``acked`` whether the INVITE's final was
    ACKed, ``no_violations`` that the client broke no RFC rule the responder checks.
    Returns the call, for chaining.
    """
    __tracebackhide__ = True  # pytest: show the test's line, not this one
    if call is None:
        raise AssertionError("expected a call, got None (no such Call-ID in the journal)")
    problems = []
    if method is not None and call.method != method.upper():
        problems.append(f"method is {call.method or '(none)'}, expected {method.upper()}")
    if user is not None and call.user != user:
        problems.append(f"user is {call.user!r}, expected {user!r}")
    if status is not None and call.final_status != status:
        got = call.final_status if call.final_status is not None else "none (no final yet)"
        problems.append(f"final status is {got}, expected {status}")
    if codes is not None and call.codes != list(codes):
        problems.append(f"codes are {call.codes}, expected {list(codes)}")
    if acked is not None and call.acked != acked:
        problems.append(
            "the final response was not ACKed" if acked else "the final response was ACKed"
        )
    if no_violations and call.violations:
        count = len(call.violations)
        problems.append(f"{count} RFC violation{'' if count == 1 else 's'}")
    if problems:
        raise AssertionError(
            f"call {call.call_id}: " + "; ".join(problems) + "\nSIP ladder:\n" + call.ladder()
        )
    return call


def assert_no_violations(calls: Journaled | Iterable[Call]) -> None:
    """No call (of a responder's journal, or of the calls given) has an RFC violation;
    else ``AssertionError`` with the ladders of the offending calls."""
    __tracebackhide__ = True
    if isinstance(calls, Journaled):
        calls = calls.calls()
    bad = [call for call in calls if call.violations]
    if bad:
        count = sum(len(call.violations) for call in bad)
        raise AssertionError(
            f"{count} RFC violation{'' if count == 1 else 's'} in {len(bad)} "
            f"call{'' if len(bad) == 1 else 's'}:\n" + format_calls(bad)
        )
