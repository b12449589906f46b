"""The Python API: a responder inside your tests' event loop.

What belongs here: ``Responder`` (an async context manager that runs a ``Server`` on free
ports in the running event loop, with the journal to wait on and assert against) and
``make_rules``, which turns every form of rules it takes (``RulesLike``) into a
``RuleSet``.  Its twin for synchronous code is ``threaded``; the assertions and the
failure messages are ``assertions``.  No protocol logic.  Imports ``server``, ``config``,
``rules``, ``journal``, ``endpoint``, ``message`` (and ``errors``) and ``assertions``;
only ``threaded``, the pytest plugin and ``__init__`` import it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from ..aio.server import Server, read_rules
from ..core.calls import Call, Violation
from ..core.config import Config
from ..core.flow import TransactionRecord
from ..core.journal import Journal
from ..core.rules import RuleSet
from ..core.rules_loader import load_rules
from ..errors import ConfigError, RulesError
from ..sip.uri import hostport
from .assertions import Predicate, describe, format_calls

log = logging.getLogger(__name__)

#: What ``set_rules`` takes: a ``RuleSet``; YAML or JSON text; the path of a rules file;
#: the document as Python data (a list of rules, or a mapping with ``rules``, ``default``
#: and ``seed``); or ``None`` for dial-the-code.
RulesLike: TypeAlias = RuleSet | str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any] | None

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

    def port_of(self, transport: str) -> int:
        """The port ``transport`` listens on (TLS has one of its own)."""
        for name, _, port in self.server.listeners:
            if name == transport.lower():
                return port
        raise ValueError(f"the responder does not listen on {transport!r}")

    @property
    def tls_certificate(self) -> bytes | None:
        """The PEM certificate the TLS port presents (made at start unless ``tls_cert``
        was given): what a client verifying the server trusts.  None without TLS."""
        tls = self.server.tls
        return tls.certificate if tls is not None else None

    def uri(self, user: str = "alice", transport: str | None = None) -> str:
        """``sip:USER@HOST:PORT`` (with ``;transport=tcp`` when asked; TLS as
        ``sips:USER@HOST:TLSPORT``, RFC 5630 §3.1.4; WebSocket as
        ``sip:USER@HOST:WSPORT;transport=ws``, and WSS the same with ``sips:``, RFC 7118
        §5.5) — the user part is the dial plan: ``uri("180-486")``."""
        suffix = ""
        if transport is not None:
            transport = transport.lower()
            where = hostport(self.host, self.port_of(transport))
            if transport == "tls":
                return f"sips:{user}@{where}"
            if transport in ("ws", "wss"):  # RFC 7118 §5.2, §5.5
                return f"{'sips' if transport == 'wss' else 'sip'}:{user}@{where};transport=ws"
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
        """Forget every call and go back to the rules the responder was made with (every
        scenario back to ``started``, every sequence to its first plan)."""
        server = self.server
        assert server.journal is not None
        server.journal.clear()
        server.endpoint.set_rules(self._initial_rules)

    # --------------------------------------------------------------- scenarios

    def scenarios(self) -> list[dict[str, Any]]:
        """The state of every scenario the rules name, by key, and the position of every
        sequence (``responses:``), by rule and key — as ``GET /api/scenarios``."""
        rules = self.rules
        names = rules.scenario_names if rules is not None else []
        return self.server.endpoint.planner.scenarios.listing(names)

    def set_scenario(self, name: str, state: str, key: str = "") -> None:
        """Put scenario ``name`` in ``state`` for ``key`` (whose it is: a From user,
        ``host:port``, a header's value; "" for a ``global`` scenario)."""
        if not state:
            raise ValueError("give the state's name")
        self.server.endpoint.planner.scenarios.set_state(name, key, state)

    def reset_scenarios(self) -> None:
        """Every scenario back to ``started``, every sequence to its first plan."""
        self.server.endpoint.planner.scenarios.clear()

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
            what = describe(method, user, status, predicate, final, acked)
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
