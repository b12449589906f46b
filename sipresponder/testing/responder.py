"""The Python API: a responder inside your tests.

What belongs here: ``Responder`` (an async context manager that runs a ``Server`` on free
ports in the running event loop, with the journal to wait on and assert against),
``ThreadedResponder`` (the same API for synchronous code: its own event loop in a daemon
thread) and the assertion helpers whose failure messages carry the SIP ladder of the call.
No protocol logic.  Imports ``server``, ``config``, ``rules``, ``journal``, ``endpoint``
(and ``errors``); only the pytest plugin and ``__init__`` import it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

from ..aio.server import Server, read_rules
from ..core.config import Config
from ..core.endpoint import TransactionRecord
from ..core.journal import Call, Journal, Violation
from ..core.rules import RuleSet, load_rules
from ..errors import ConfigError, RulesError
from ..sip.uri import hostport

log = logging.getLogger(__name__)

#: What ``set_rules`` takes: a ``RuleSet``; YAML or JSON text; the path of a rules file;
#: the document as Python data (a list of rules, or a mapping with ``rules``, ``default``
#: and ``seed``); or ``None`` for dial-the-code.
RulesLike: TypeAlias = RuleSet | str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any] | None
#: A test on a call, for ``wait_for_call(predicate=...)``.
Predicate: TypeAlias = Callable[[Call], bool]
T = TypeVar("T")

#: How many calls a timeout message or a failure report shows (the newest).
LADDER_LIMIT = 20
#: How long ``ThreadedResponder`` waits for its thread to start, stop or run a method.
THREAD_TIMEOUT = 10.0
#: The source name rules given to the API carry in error messages.
_SOURCE = "set_rules"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def make_rules(rules: RulesLike) -> RuleSet | None:
    """The ``RuleSet`` for anything ``set_rules`` accepts, checked by the loader of rules
    files (the same schema, the same refusals); ``RulesError`` says what is wrong."""
    if rules is None or isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, str):
        return load_rules(rules, _SOURCE)
    if isinstance(rules, os.PathLike):
        return read_rules(os.fspath(rules))
    if isinstance(rules, Mapping):
        data: Any = dict(rules)
    elif isinstance(rules, Sequence) and not isinstance(rules, bytes | bytearray):
        data = list(rules)
    else:
        raise RulesError(
            f"{_SOURCE}: expected rules as a list, a mapping, text, a path or a RuleSet, "
            f"not {type(rules).__name__}",
            source=_SOURCE,
        )
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RulesError(
            f"{_SOURCE}: the rules must be plain data (JSON types): {exc}", source=_SOURCE
        ) from None
    # Parsed as JSON, so that what the YAML reader would reinterpret stays as given; the
    # ".json" source is renamed back in the result and in any error.
    source = _SOURCE + ".json"
    try:
        ruleset = load_rules(text, source)
    except RulesError as exc:
        message = str(exc)
        if message.startswith(source):
            message = _SOURCE + message[len(source) :]
        raise RulesError(
            message,
            source=_SOURCE,
            rule=exc.rule,
            line=None,
            field=exc.field,
            problem=exc.problem,
        ) from None
    return dataclasses.replace(ruleset, source=_SOURCE)


def _transports(transports: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(transports, str):
        transports = transports.split(",")
    return tuple(t.strip().lower() for t in transports if t.strip())


def _host(server: Server) -> str:
    bound = server.listeners[0][1]
    return _WILDCARDS.get(bound, bound)


def _address(server: Server) -> str:
    return hostport(_host(server), server.listeners[0][2])


def format_calls(calls: Sequence[Call], limit: int = LADDER_LIMIT) -> str:
    """The ladders of the newest ``limit`` calls, for failure messages."""
    if not calls:
        return "(no calls recorded)"
    shown = calls[-limit:]
    parts = [call.ladder() for call in shown]
    if len(calls) > len(shown):
        parts.insert(0, f"({len(calls) - len(shown)} earlier calls not shown)")
    return "\n\n".join(parts)


def _describe(
    method: str | None,
    user: str | None,
    status: int | None,
    predicate: Predicate | None,
    final: bool,
    acked: bool | None,
) -> str:
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


@dataclasses.dataclass(slots=True)
class _Waiter:
    matches: Predicate
    future: asyncio.Future[Call]


class Responder:
    """A SIP responder in the running event loop, on free ports, for one test or many.

    ::

        async with Responder() as sip:
            await my_client.call(sip.uri("486"))
            call = await sip.wait_for_call(method="INVITE", user="486", acked=True)
            assert_call(call, status=486, no_violations=True)

    ``rules`` is what ``set_rules`` takes (``None``: dial-the-code, or ``config.rules_file``
    when given); ``reset()`` goes back to them.  ``host`` defaults to loopback, ``port`` to 0
    (one free port, the same for UDP and TCP), ``transports`` to UDP and TCP (a list or
    ``"udp,tcp"``).  ``config`` gives every other setting (``max_ring``, ``timers``,
    ``secret``, ``journal_size``...); its host, port and transports are replaced by these
    arguments.  A Responder runs once: ``start()``/``stop()`` or ``async with``.
    """

    def __init__(
        self,
        rules: RulesLike = None,
        *,
        host: str = "127.0.0.1",
        transports: str | Iterable[str] = ("udp", "tcp"),
        port: int = 0,
        config: Config | None = None,
    ) -> None:
        base = config if config is not None else Config()
        self.config = dataclasses.replace(
            base, host=host, port=port, transports=_transports(transports)
        ).validate()
        if self.config.journal_size < 1:
            raise ConfigError("Responder: journal_size must be at least 1 (it reads the journal)")
        self._rules_given = rules is not None
        self._rules = make_rules(rules)
        self._initial_rules: RuleSet | None = self._rules
        self._server: Server | None = None
        self._stopped = False
        self._waiters: list[_Waiter] = []

    # ---------------------------------------------------------------- lifetime

    async def start(self) -> None:
        """Bind the listeners; ``OSError`` when the address cannot be used."""
        if self._server is not None or self._stopped:
            raise RuntimeError("a Responder runs once; make a new one")
        server = Server(self.config, report=_report)
        if self._rules_given:
            server.endpoint.set_rules(self._rules)
        self._initial_rules = server.endpoint.rules
        assert server.journal is not None  # journal_size >= 1
        server.journal.on_update.append(self._on_update)
        try:
            await server.start()
        except BaseException:
            server.close()
            await server.wait_closed()
            self._stopped = True
            raise
        self._server = server
        log.debug("responder listening on %s", self.listeners)

    async def stop(self) -> None:
        """Close every listener; pending ``wait_for_call`` get ``RuntimeError``."""
        server = self._server
        if server is None or self._stopped:
            return
        self._stopped = True
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(RuntimeError("the responder stopped"))
        assert server.journal is not None
        server.journal.on_update.remove(self._on_update)
        server.close()
        await server.wait_closed()
        # Closed transports release their sockets from callbacks already queued; let the
        # loop run them before we say the ports are free.
        for _ in range(3):
            await asyncio.sleep(0)

    async def __aenter__(self) -> Responder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None and not self._stopped

    # ------------------------------------------------------------- addresses

    @property
    def server(self) -> Server:
        """The running ``Server`` (its endpoint, journal, listeners)."""
        if self._server is None or self._stopped:
            raise self._not_running()
        return self._server

    def _not_running(self) -> RuntimeError:
        state = "stopped" if self._stopped else "not started"
        return RuntimeError(
            f"the responder is {state}: use `async with Responder() as sip:` "
            "(or `with ThreadedResponder() as sip:`)"
        )

    @property
    def listeners(self) -> list[tuple[str, str, int]]:
        """``[(transport, host, port)]`` as bound."""
        return list(self.server.listeners)

    @property
    def transports(self) -> tuple[str, ...]:
        return self.config.transports

    @property
    def host(self) -> str:
        """The address to send to (a wildcard ``0.0.0.0``/``::`` gives its loopback)."""
        return _host(self.server)

    @property
    def port(self) -> int:
        return self.server.listeners[0][2]

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, or ``[::1]:PORT`` for IPv6."""
        return _address(self.server)

    def uri(self, user: str = "alice", transport: str | None = None) -> str:
        """``sip:USER@HOST:PORT`` (with ``;transport=tcp`` when asked) — the user part is
        the dial plan: ``uri("180-486")``."""
        suffix = ""
        if transport is not None:
            transport = transport.lower()
            if transport not in self.transports:
                raise ValueError(f"the responder does not listen on {transport!r}")
            suffix = f";transport={transport}"
        return f"sip:{user}@{self.address}{suffix}"

    # ------------------------------------------------------------------- rules

    @property
    def rules(self) -> RuleSet | None:
        """The rules new requests are answered by (``None``: dial-the-code)."""
        return self.server.endpoint.rules

    def set_rules(self, rules: RulesLike) -> None:
        """Answer new requests by these rules (see ``RulesLike``); ``None`` goes back to
        dial-the-code.  Calls in flight keep their plan.  Bad rules raise ``RulesError``
        and the rules in use stay."""
        ruleset = make_rules(rules)
        self.server.endpoint.set_rules(ruleset)

    def reset(self) -> None:
        """Forget every call and go back to the rules the responder was made with."""
        server = self.server
        assert server.journal is not None
        server.journal.clear()
        server.endpoint.set_rules(self._initial_rules)

    # ----------------------------------------------------------------- journal

    @property
    def journal(self) -> Journal:
        journal = self.server.journal
        assert journal is not None
        return journal

    @property
    def stats(self) -> dict[str, int]:
        """The endpoint's counters (requests, responses_sent, violations...)."""
        return dict(self.server.endpoint.stats)

    def calls(
        self,
        method: str | None = None,
        user: str | None = None,
        status: int | None = None,
        since: float | None = None,
    ) -> list[Call]:
        """Calls, oldest first: by first method, Request-URI user, final status, and last
        activity at or after ``since`` (wall-clock seconds)."""
        return self.journal.calls(method=method, user=user, status=status, since=since)

    def call(self, call_id: str) -> Call | None:
        return self.journal.get(call_id)

    def violations(self) -> list[Violation]:
        """Every RFC violation of every call in the journal, oldest call first."""
        return [v for call in self.journal.calls() for v in call.violations]

    async def wait_for_call(
        self,
        method: str | None = None,
        user: str | None = None,
        status: int | None = None,
        predicate: Predicate | None = None,
        *,
        timeout: float = 5.0,
        final: bool = True,
        acked: bool | None = None,
    ) -> Call:
        """The first call, already in the journal or still to come, that matches.

        A call matches when its first request has ``method``, its Request-URI ``user``,
        the final status of its INVITE (else of its first request) is ``status``, and
        ``predicate(call)`` is true.  With ``final`` (the default) it must have a final
        response — for an INVITE that is the moment the final is sent, *before* the
        client's ACK: pass ``acked=True`` to wait for the ACK too.  ``predicate`` runs in
        the responder's event loop; what it raises is raised here.

        Raises ``TimeoutError`` after ``timeout`` seconds, with the ladders of the calls
        seen so far; ``RuntimeError`` when the responder stops first.
        """
        __tracebackhide__ = True  # pytest: show the test's line, not this one
        if method is not None:
            method = method.upper()

        def matches(call: Call) -> bool:
            if method is not None and call.method != method:
                return False
            if user is not None and call.user != user:
                return False
            final_status = call.final_status
            if status is not None and final_status != status:
                return False
            if final and final_status is None:
                return False
            if acked is not None and call.acked != acked:
                return False
            return predicate is None or bool(predicate(call))

        for call in self.journal.calls():
            if matches(call):
                return call
        waiter = _Waiter(matches, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            what = _describe(method, user, status, predicate, final, acked)
            server = self._server  # still readable if it stopped meanwhile
            assert server is not None and server.journal is not None
            seen = server.journal.calls()
            count = f"{len(seen)} call{'' if len(seen) == 1 else 's'} seen"
            raise TimeoutError(
                f"no call matching {what} within {timeout:g} s at {_address(server)}; "
                + (f"{count}:\n\n{format_calls(seen)}" if seen else "no calls seen")
            ) from None
        finally:
            self._waiters.remove(waiter)

    def _on_update(self, call: Call) -> None:
        """Journal callback (inside the endpoint): wake the waiters this call satisfies."""
        for waiter in self._waiters:
            future = waiter.future
            if future.done():
                continue
            try:
                if waiter.matches(call):
                    future.set_result(call)
            except Exception as exc:  # the predicate's error goes to its waiter
                future.set_exception(exc)


def _report(rec: TransactionRecord) -> None:
    """The per-transaction line, on this module's logger (pytest shows it on failure)."""
    log.info("%s %s from %s -> %s", rec.method, rec.uri, rec.peer, " ".join(map(str, rec.codes)))


class ThreadedResponder:
    """``Responder`` for synchronous code: its own event loop in a daemon thread.

    ::

        with ThreadedResponder() as sip:
            my_client.call(sip.uri("486"))
            call = sip.wait_for_call(method="INVITE", user="486", acked=True)
            assert_call(call, status=486, no_violations=True)

    The arguments are ``Responder``'s.  Every method runs in the responder's thread and
    returns its result (``wait_for_call`` blocks up to its timeout), so they are safe to
    call from any thread.  The ``Call`` objects returned are the journal's own, updated by
    the responder's thread as messages arrive; ``journal`` is the live journal (read it, or
    go through the methods).
    """

    def __init__(
        self,
        rules: RulesLike = None,
        *,
        host: str = "127.0.0.1",
        transports: str | Iterable[str] = ("udp", "tcp"),
        port: int = 0,
        config: Config | None = None,
    ) -> None:
        self._responder = Responder(
            rules, host=host, transports=transports, port=port, config=config
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifetime

    def start(self) -> ThreadedResponder:
        """Start the thread and bind the listeners (``OSError`` when it cannot)."""
        if self._thread is not None:
            raise RuntimeError("a ThreadedResponder runs once; make a new one")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_run_loop, args=(loop,), name="sipresponder", daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            self._wait(asyncio.run_coroutine_threadsafe(self._responder.start(), loop))
        except BaseException:
            self._end_thread()
            raise
        return self

    def stop(self) -> None:
        """Close every listener, then stop the thread and close its event loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            self._wait(asyncio.run_coroutine_threadsafe(self._responder.stop(), loop))
        finally:
            self._end_thread()

    def __enter__(self) -> ThreadedResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _end_thread(self) -> None:
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(THREAD_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError(f"the responder thread did not stop in {THREAD_TIMEOUT} s")

    @staticmethod
    def _wait(future: concurrent.futures.Future[T], timeout: float = THREAD_TIMEOUT) -> T:
        __tracebackhide__ = True
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            if future.done():
                # wait_for_call's own: its message says it all, its frames are noise.
                raise exc.with_traceback(None) from None
            future.cancel()
            raise TimeoutError(f"the responder thread did not answer in {timeout:g} s") from None

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the responder's thread and return what it returns."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return fn()  # not running: the Responder says so itself
        if threading.current_thread() is thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except Exception as exc:
                    future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return self._wait(future)

    @property
    def running(self) -> bool:
        return self._responder.running

    # -------------------------------------------------- the Responder's API

    @property
    def responder(self) -> Responder:
        """The ``Responder`` inside (use it from the responder's thread only)."""
        return self._responder

    @property
    def config(self) -> Config:
        return self._responder.config

    @property
    def listeners(self) -> list[tuple[str, str, int]]:
        return self._responder.listeners

    @property
    def transports(self) -> tuple[str, ...]:
        return self._responder.transports

    @property
    def host(self) -> str:
        return self._responder.host

    @property
    def port(self) -> int:
        return self._responder.port

    @property
    def address(self) -> str:
        return self._responder.address

    def uri(self, user: str = "alice", transport: str | None = None) -> str:
        return self._responder.uri(user, transport)

    @property
    def rules(self) -> RuleSet | None:
        return self._call(lambda: self._responder.rules)

    def set_rules(self, rules: RulesLike) -> None:
        """As ``Responder.set_rules``; the rules are checked in the caller's thread."""
        ruleset = make_rules(rules)
        self._call(lambda: self._responder.set_rules(ruleset))

    def reset(self) -> None:
        self._call(self._responder.reset)

    @property
    def journal(self) -> Journal:
        return self._responder.journal

    @property
    def stats(self) -> dict[str, int]:
        return self._call(lambda: self._responder.stats)

    def calls(
        self,
        method: str | None = None,
        user: str | None = None,
        status: int | None = None,
        since: float | None = None,
    ) -> list[Call]:
        return self._call(lambda: self._responder.calls(method, user, status, since))

    def call(self, call_id: str) -> Call | None:
        return self._call(lambda: self._responder.call(call_id))

    def violations(self) -> list[Violation]:
        return self._call(self._responder.violations)

    def wait_for_call(
        self,
        method: str | None = None,
        user: str | None = None,
        status: int | None = None,
        predicate: Predicate | None = None,
        *,
        timeout: float = 5.0,
        final: bool = True,
        acked: bool | None = None,
    ) -> Call:
        """As ``Responder.wait_for_call``, blocking the calling thread up to ``timeout``
        (``predicate`` runs in the responder's thread)."""
        __tracebackhide__ = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or not self.running:
            raise self._responder._not_running()
        if threading.current_thread() is thread:
            raise RuntimeError("wait_for_call would block the responder's own thread")
        waiting = self._responder.wait_for_call(
            method, user, status, predicate, timeout=timeout, final=final, acked=acked
        )
        return self._wait(asyncio.run_coroutine_threadsafe(waiting, loop), timeout + THREAD_TIMEOUT)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The responder thread: run the loop until stopped, then end what is left and close."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# ------------------------------------------------------------------ assertions


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


def assert_no_violations(calls: Responder | ThreadedResponder | Iterable[Call]) -> None:
    """No call (of a responder's journal, or of the calls given) has an RFC violation;
    else ``AssertionError`` with the ladders of the offending calls."""
    __tracebackhide__ = True
    if isinstance(calls, Responder | ThreadedResponder):
        calls = calls.calls()
    bad = [call for call in calls if call.violations]
    if bad:
        count = sum(len(call.violations) for call in bad)
        raise AssertionError(
            f"{count} RFC violation{'' if count == 1 else 's'} in {len(bad)} "
            f"call{'' if len(bad) == 1 else 's'}:\n" + format_calls(bad)
        )
