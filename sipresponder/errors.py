"""One error hierarchy for the whole package.

What belongs here: the exception types, nothing else, each importable from the module
that raises it too.  A ParseError carries the status code to answer with (``status``) and
a reason phrase that says what is wrong; the endpoint turns it into a response at exactly
one boundary (``endpoint.Endpoint.receive``).  A FramingError is what the TCP framer
hands on when a stream can be framed no further.  Imports nothing from the package.
"""

from __future__ import annotations

from typing import Any


class SipError(Exception):
    """Base of every error this package raises on purpose."""


class ParseError(SipError):
    """A message that could not be accepted as it is.

    ``status`` is the response code to answer with (400, 505, 513, ...), ``reason`` the
    reason phrase that says what is wrong.  ``request`` is the partially parsed request when
    enough of it was read to address a response to its sender, else ``None``: such a message
    can only be dropped and logged.
    """

    def __init__(self, reason: str, status: int = 400, request: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.request = request


class ConfigError(SipError):
    """A bad flag or setting: the CLI prints it as one line and exits with code 2."""


class FramingError(SipError):
    """A stream that cannot be framed any further: answer ``status`` if possible, then
    close.  ``data`` is what was read of the offending message (its header section at
    least), so that an error response can still be addressed to its sender.  The framer
    returns it among the messages it framed rather than raising it."""

    def __init__(self, status: int, reason: str, data: bytes) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.data = data

    def __repr__(self) -> str:
        return f"FramingError({self.status}, {self.reason!r}, {len(self.data)} bytes)"


class RulesError(ConfigError):
    """A rules file that cannot be used; the message names file, rule, field, problem.

    The parts are kept too, for callers that report them structured (the admin API):
    ``rule`` is the 1-based index (0 for the default rule, None outside any rule).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        rule: int | None = None,
        line: int | None = None,
        field: str = "",
        problem: str = "",
    ) -> None:
        super().__init__(message)
        self.source = source
        self.rule = rule
        self.line = line
        self.field = field
        self.problem = problem or message


class PlanError(ValueError):
    """A plan that cannot be followed; the message says why."""


class FaultSpecError(ValueError):
    """A ``faults:`` list that cannot be used: ``field`` is where in the list (``[2].omit``,
    ``probability``; "" for the list itself), ``problem`` what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class SdpError(ValueError):
    """The offer is not a usable session description."""


class ApiError(Exception):
    """An admin API answer other than success: the status, a message, further fields."""

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields
