"""The pytest plugin: a SIP responder as a fixture.

What belongs here: the fixtures ``sip_responder`` (a fresh ``ThreadedResponder`` per
test), ``sip_responder_session`` (one for the session, reset before each test) and
``sip_responder_factory`` (responders with your own rules or settings, all stopped at
teardown); the options ``--sip-responder-host`` and ``--sip-responder-transport``; and a
report section with the SIP ladders of the responder's calls under a failed test.
Registered through the ``pytest11`` entry point, so it loads in every pytest run where the
package is installed: importing it starts nothing and imports nothing of the package
(``threaded`` is imported when a fixture is first used, ``assertions`` when its helpers
are), and it does nothing for tests that use none of its fixtures.  Async tests can use
``sipresponder.Responder`` directly.  Imports ``threaded`` and ``assertions`` only (and,
for types, ``responder`` and ``config``).
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from ..core.config import Config
    from .assertions import assert_call, assert_no_violations
    from .responder import RulesLike
    from .threaded import ThreadedResponder

__all__ = [
    "ResponderFactory",
    "assert_call",
    "assert_no_violations",
    "sip_responder",
    "sip_responder_factory",
    "sip_responder_session",
]

#: The test API's modules, which the failure report reads from ``sys.modules`` and never
#: imports: a run that made no responder pays nothing for them.  ``responder`` is there
#: whenever a responder was made (``threaded`` imports it), and it imports ``assertions``.
_API = "sipresponder.testing.responder"
_THREADED = "sipresponder.testing.threaded"
_ASSERTIONS = "sipresponder.testing.assertions"
#: The responders a test used, for the failure report.
_USED = pytest.StashKey[list["ThreadedResponder"]]()


def __getattr__(name: str) -> object:
    """``assert_call`` and ``assert_no_violations``, imported on first use."""
    if name == "assert_call":
        from .assertions import assert_call

        return assert_call
    if name == "assert_no_violations":
        from .assertions import assert_no_violations

        return assert_no_violations
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sipresponder", "SIP responder fixtures (sipresponder)")
    group.addoption(
        "--sip-responder-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the sip_responder fixtures listen on (default: 127.0.0.1; ::1 for IPv6)",
    )
    group.addoption(
        "--sip-responder-transport",
        default="udp,tcp",
        metavar="LIST",
        help="transports of the sip_responder fixtures, comma-separated: udp, tcp, tls, ws, "
        "wss (default udp,tcp)",
    )


class ResponderFactory(Protocol):
    """What ``sip_responder_factory`` yields: makes and starts a ``ThreadedResponder``
    (host and transports default to the command-line options)."""

    def __call__(
        self,
        rules: RulesLike = None,
        *,
        host: str | None = None,
        transports: str | None = None,
        config: Config | None = None,
    ) -> ThreadedResponder: ...


def _start(
    pytestconfig: pytest.Config,
    rules: RulesLike = None,
    host: str | None = None,
    transports: str | None = None,
    config: Config | None = None,
) -> ThreadedResponder:
    from .threaded import ThreadedResponder

    responder = ThreadedResponder(
        rules,
        host=host or pytestconfig.getoption("sip_responder_host"),
        transports=transports or pytestconfig.getoption("sip_responder_transport"),
        config=config,
    )
    return responder.start()


def _used(request: pytest.FixtureRequest, responder: ThreadedResponder) -> None:
    request.node.stash.setdefault(_USED, []).append(responder)


@pytest.fixture
def sip_responder_factory(request: pytest.FixtureRequest) -> Iterator[ResponderFactory]:
    """A factory of responders for this test: ``sip_responder_factory(rules, host=...,
    transports=..., config=...)``; every one it made is stopped at teardown."""
    made: list[ThreadedResponder] = []

    def make(
        rules: RulesLike = None,
        *,
        host: str | None = None,
        transports: str | None = None,
        config: Config | None = None,
    ) -> ThreadedResponder:
        responder = _start(request.config, rules, host, transports, config)
        made.append(responder)
        _used(request, responder)
        return responder

    try:
        yield make
    finally:
        errors: list[Exception] = []
        for responder in made:
            try:
                responder.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def sip_responder(request: pytest.FixtureRequest) -> Iterator[ThreadedResponder]:
    """A fresh ``ThreadedResponder`` on a free port, dial-the-code rules, stopped after
    the test.  It runs in its own thread, so plain and async tests alike can use it."""
    responder = _start(request.config)
    _used(request, responder)
    try:
        yield responder
    finally:
        responder.stop()


@pytest.fixture(scope="session")
def _sip_responder_session_instance(
    pytestconfig: pytest.Config,
) -> Iterator[ThreadedResponder]:
    responder = _start(pytestconfig)
    try:
        yield responder
    finally:
        responder.stop()


@pytest.fixture
def sip_responder_session(
    request: pytest.FixtureRequest, _sip_responder_session_instance: ThreadedResponder
) -> ThreadedResponder:
    """One ``ThreadedResponder`` for the whole session (same port throughout), reset
    before each test that asks for it: empty journal, dial-the-code rules."""
    responder = _sip_responder_session_instance
    responder.reset()
    _used(request, responder)
    return responder


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used a responder gets a section with the ladders of its calls."""
    report = yield
    api, assertions = sys.modules.get(_API), sys.modules.get(_ASSERTIONS)
    if api is None or assertions is None or report.when != "call" or not report.failed:
        return report  # no responder was ever made, or nothing to explain
    threaded = sys.modules.get(_THREADED)
    kinds = (api.Responder,) if threaded is None else (api.Responder, threaded.ThreadedResponder)
    responders: list[Any] = list(item.stash.get(_USED, None) or ())
    funcargs: dict[str, object] = getattr(item, "funcargs", {})
    for value in funcargs.values():
        if isinstance(value, kinds) and value not in responders:
            responders.append(value)
    for responder in responders:
        if not responder.running:
            continue
        try:
            text = assertions.format_calls(responder.calls())
        except Exception as exc:  # the report must not hide the test's own failure
            text = f"(could not read the journal: {exc!r})"
        report.sections.append((f"sipresponder calls at {responder.address}", text))
    return report
