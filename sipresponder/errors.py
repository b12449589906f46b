"""One error hierarchy for the whole package.

What belongs here: the exception types, nothing else. A ParseError carries the status
code to answer with (``status``) and a reason phrase that says what is wrong; the endpoint
turns it into a response at exactly one boundary (``endpoint.Endpoint.receive``).
Imports nothing from the package.
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
