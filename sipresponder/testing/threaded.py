"""The Python API for synchronous code: a responder in a thread of its own.

What belongs here: ``ThreadedResponder``, ``Responder``'s API for code without an event
loop (plain tests, the pytest plugin's fixtures): a ``Responder`` run on its own event
loop in a daemon thread (``_run_loop``), every method handed to that thread and its result
handed back, each wait bounded (``THREAD_TIMEOUT``).  No protocol logic, no responder
logic of its own.  Imports ``responder``, ``assertions`` (for its types), ``config``,
``rules`` and ``journal``; only the pytest plugin and ``__init__`` import it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..core.calls import Call, Violation
from ..core.config import Config
from ..core.journal import Journal
from ..core.rules import RuleSet
from .assertions import Predicate
from .responder import Responder, RulesLike, make_rules

T = TypeVar("T")

#: How long ``ThreadedResponder`` waits for its thread to start, stop or run a method.
THREAD_TIMEOUT = 10.0


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

    def port_of(self, transport: str) -> int:
        return self._responder.port_of(transport)

    @property
    def tls_certificate(self) -> bytes | None:
        return self._responder.tls_certificate

    @property
    def rules(self) -> RuleSet | None:
        return self._call(lambda: self._responder.rules)

    def set_rules(self, rules: RulesLike) -> None:
        """As ``Responder.set_rules``; the rules are checked in the caller's thread."""
        ruleset = make_rules(rules)
        self._call(lambda: self._responder.set_rules(ruleset))

    def reset(self) -> None:
        self._call(self._responder.reset)

    def scenarios(self) -> list[dict[str, Any]]:
        return self._call(self._responder.scenarios)

    def set_scenario(self, name: str, state: str, key: str = "") -> None:
        self._call(lambda: self._responder.set_scenario(name, state, key))

    def reset_scenarios(self) -> None:
        self._call(self._responder.reset_scenarios)

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
