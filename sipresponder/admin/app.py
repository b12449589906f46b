"""The admin HTTP API: the journal, the rules and the metrics of a running server.

What belongs here: ``Admin(server)``, an aiohttp application served on the responder's
own event loop (``start()`` binds ``--admin HOST:PORT`` and returns the real address,
``close()`` stops it); its handlers; the bearer-token check.  Its metrics' collectors are
in ``metrics``, its OpenAPI document in ``openapi``.  Every error is JSON
``{"error": ...}`` with its status, made in one middleware from ``ApiError`` (or from
aiohttp's own 404/405/413), and no exception leaves it.  The API reads the server and
swaps its rules; it makes no protocol decision.  Imports ``server`` and what the server
exposes (``config``, ``endpoint``, ``journal``, ``rules``, ``errors``, ``version``);
only the CLI imports it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder

from ..aio.server import Server, read_rules
from ..core.calls import Call, Entry
from ..core.capture import PCAP_TYPE, write_pcap
from ..core.guard import is_loopback
from ..core.journal import Journal
from ..core.replay import sipp_scenario
from ..core.rules import RuleSet
from ..core.rules_loader import load_rules
from ..errors import ApiError, ConfigError, RulesError
from ..sip.uri import hostport
from ..version import __version__
from .metrics import EndpointCollector, GuardCollector, JournalCollector
from .openapi import OPENAPI
from .web import LiveCalls, is_page, page_routes

log = logging.getLogger(__name__)

#: Seconds in-flight HTTP requests get to finish when the admin API stops.
SHUTDOWN_TIMEOUT = 2.0
#: Largest rules document accepted by ``PUT /api/rules``.
MAX_BODY = 1 << 20
#: Buckets of ``sipresponder_handling_seconds``: one message takes tens of microseconds.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
#: ``RuleSet.source`` of a document put through the API (``load_rules`` reads JSON by it).
SOURCE_JSON = "admin-api.json"
SOURCE_YAML = "admin-api.yaml"


# ------------------------------------------------------------- pure helpers


def parse_address(text: str) -> tuple[str, int]:
    """``--admin HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port); ``ConfigError``."""
    host, sep, port_text = text.rpartition(":")
    example = "e.g. 127.0.0.1:8080 or [::1]:8080"
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
        raise ConfigError(f"--admin: {text!r} is not HOST:PORT ({example})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"--admin: {text!r}: put an IPv6 address in brackets ({example})")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"--admin: {port} is not a port number (0-65535)")
    return host, port


def token_warning(host: str, token: str | None) -> str | None:
    """The warning to log when the API is reachable from other hosts without a token."""
    if token or is_loopback(host):
        return None
    return (
        f"the admin API on {host} is reachable from other hosts and has no --admin-token: "
        "anyone who can connect can read the journal and replace the rules"
    )


@dataclass(frozen=True, slots=True)
class CallFilter:
    """The query of ``GET /api/calls``: the arguments of ``Journal.calls``."""

    method: str | None = None
    user: str | None = None
    status: int | None = None
    since: float | None = None
    #: At most this many calls, the newest (still listed oldest first).
    limit: int | None = None


def parse_call_filter(query: Iterable[tuple[str, str]]) -> CallFilter:
    """Query parameters -> ``CallFilter``; ``ApiError`` 400 names a bad parameter."""
    values: dict[str, str] = {}
    for name, value in query:
        if name not in CallFilter.__dataclass_fields__:
            raise ApiError(
                400,
                f"unknown parameter {name!r}: use method, user, status, since, limit",
                parameter=name,
            )
        if name in values:
            raise ApiError(400, f"parameter {name!r} is given twice", parameter=name)
        values[name] = value
    method = values.get("method")
    if method is not None and not (method and method.isascii() and method.isalpha()):
        raise ApiError(400, f"method: {method!r} is not a SIP method", parameter="method")
    status = None
    if "status" in values:
        text = values["status"]
        if not (text.isascii() and text.isdigit() and 100 <= int(text) <= 699):
            raise ApiError(400, f"status: {text!r} is not a code (100-699)", parameter="status")
        status = int(text)
    since = None
    if "since" in values:
        try:
            since = float(values["since"])
        except ValueError:
            since = math.nan
        if not math.isfinite(since):
            raise ApiError(
                400,
                f"since: {values['since']!r} is not a time (Unix seconds)",
                parameter="since",
            )
    limit = None
    if "limit" in values:
        text = values["limit"]
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 1_000_000):
            raise ApiError(400, f"limit: {text!r} is not a count (1-1000000)", parameter="limit")
        limit = int(text)
    return CallFilter(method and method.upper(), values.get("user"), status, since, limit)


def rules_error(exc: RulesError) -> ApiError:
    """A refused rules document as a 400 naming the rule, line, field and problem."""
    return ApiError(
        400,
        str(exc),
        rule=exc.rule,
        line=exc.line,
        field=exc.field or None,
        problem=exc.problem,
    )


def parse_rules_body(body: bytes, content_type: str) -> tuple[RuleSet, Any]:
    """A ``PUT /api/rules`` body -> (the rules, the document as JSON data).

    YAML when the content type says so, JSON otherwise; ``ApiError`` 400 when it cannot
    be used, with the rule, line, field and problem from ``RulesError``.
    """
    yaml_body = content_type.split(";", 1)[0].strip().lower() in YAML_TYPES
    if not body.strip():
        raise ApiError(400, "empty body: send a rules document", field="rules")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text", field="syntax") from None
    try:
        rules = load_rules(text, SOURCE_YAML if yaml_body else SOURCE_JSON)
    except RulesError as exc:
        error = rules_error(exc)
        if exc.field == "syntax" and not yaml_body:
            hint = " (send YAML with Content-Type: application/yaml)"
            error = ApiError(400, error.message + hint, **error.fields)
        raise error from None
    document = yaml.safe_load(text) if yaml_body else json.loads(text)
    return rules, jsonable(document)


def jsonable(document: Any) -> Any:
    """The document as plain JSON data (YAML may hold dates or non-string keys)."""
    try:
        return json.loads(json.dumps(document, default=str))
    except (TypeError, ValueError):
        return None


def file_document(path: str) -> Any:
    """The rules file as JSON data, or None when it cannot be read now."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        document = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None
    return jsonable(document)


def scenario_update(body: Any) -> tuple[str, str]:
    """``{"state": ..., "key": ...}`` (the key "" when left out: a ``global`` scenario's)
    -> (state, key); ``ApiError`` 400 names the bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, 'send {"state": STATE, "key": KEY}', field="body")
    unknown = sorted(set(body) - {"state", "key"})
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} (state, key)", field=unknown[0])
    state, key = body.get("state"), body.get("key", "")
    if not isinstance(state, str) or not state.strip():
        raise ApiError(400, "state: give the state's name", field="state")
    if not isinstance(key, str):
        raise ApiError(400, "key: must be text (a user, host:port, a header's value)", field="key")
    return state.strip(), key


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        data,
        status=status,
        headers=headers,
        dumps=lambda obj: json.dumps(obj, default=str),
    )


async def _pcap(entries: list[Entry], name: str) -> web.Response:
    """The entries as a pcap file to download.  Written in a thread: a full journal's takes
    a while, and the event loop serves SIP meanwhile (the entries do not change)."""
    data = await asyncio.get_running_loop().run_in_executor(None, write_pcap, entries)
    return web.Response(
        body=data,
        content_type=PCAP_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _file_safe(text: str) -> str:
    """``text`` as part of a file's name: letters, digits and ``-_.@`` kept, at most 80."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.@") else "_" for c in text)[:80]


def error_response(status: int, message: str, **fields: Any) -> web.Response:
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="sipresponder"'
    return _json({"error": message, **fields}, status, headers)


# --------------------------------------------------------------------- API

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Admin:
    """The admin API of one ``Server``; ``start()`` it after the server started."""

    def __init__(self, server: Server) -> None:
        config = server.config
        if config.admin is None:
            raise ConfigError("--admin: no address given")
        self.server = server
        self.endpoint = server.endpoint
        self.host, self.port = parse_address(config.admin)
        self.token = config.admin_token or None
        self.address: tuple[str, int] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EndpointCollector(self.endpoint))
        self.registry.register(GuardCollector(server.guard))
        self.registry.register(JournalCollector(server))
        self.latency = Histogram(
            "sipresponder_handling_seconds",
            "Time the endpoint took to handle one received message",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        #: The rules in use and their document as JSON data, as far as known.
        self._document: tuple[RuleSet | None, Any] = (None, None)
        self._remember_file_rules()
        self.app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        #: The live feed of the web pages (``web``).
        self.live = LiveCalls(lambda: self.server.journal)
        self.app.add_routes(page_routes(self.live))
        self.app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/metrics", self.metrics),
                web.get("/api/openapi.json", self.openapi),
                web.get("/api/calls", self.calls),
                web.get("/api/calls.pcap", self.calls_pcap),
                # Before the call's own route, which would take ".../pcap" as a Call-ID.
                web.get("/api/calls/{call_id:.+}/pcap", self.call_pcap),
                web.get("/api/calls/{call_id:.+}/sipp", self.call_sipp),
                web.get("/api/calls/{call_id:.+}", self.call),
                web.get("/api/journal", self.journal_stats),
                web.delete("/api/journal", self.clear_journal),
                web.get("/api/rules", self.get_rules),
                web.put("/api/rules", self.put_rules),
                web.delete("/api/rules", self.reset_rules),
                web.get("/api/scenarios", self.get_scenarios),
                web.put("/api/scenarios/{name}", self.put_scenario),
                web.delete("/api/scenarios", self.reset_scenarios),
            ]
        )
        self._runner: web.AppRunner | None = None

    async def start(self) -> tuple[str, int]:
        """Bind and serve; returns the real (host, port).  Raises ``OSError``."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            # asyncio's bind error repeats the address; getaddrinfo's errno is negative.
            code = exc.errno or 0
            reason = os.strerror(code) if code > 0 else exc.strerror or str(exc)
            raise OSError(
                exc.errno,
                f"cannot serve the admin API on {hostport(self.host, self.port)}: {reason}",
            ) from None
        self._runner = runner
        bound = runner.addresses[0]
        self.address = (bound[0], bound[1])
        driver = self.server.driver
        if driver is not None:
            driver.observe = self.latency.observe
        warning = token_warning(self.host, self.token)
        if warning is not None:
            log.warning("%s", warning)
        return self.address

    @property
    def url(self) -> str:
        host, port = self.address or (self.host, self.port)
        return f"http://{hostport(host, port)}"

    async def close(self) -> None:
        driver = self.server.driver
        if driver is not None:
            driver.observe = None
        self.live.end()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ----------------------------------------------------------- middleware

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Token check, and every error as JSON: nothing escapes to aiohttp."""
        try:
            if self.token is not None and request.path != "/healthz" and not is_page(request.path):
                self._authorize(request)
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.message, **exc.fields)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _http_error(request, exc)
        except Exception:
            log.exception("admin API: %s %s failed", request.method, request.path)
            response = error_response(500, "internal error (the responder logged it)")
        shown = request.path if "token" in request.query else request.path_qs
        log.debug("admin API: %s %s -> %d", request.method, shown, response.status)
        return response

    def _authorize(self, request: web.Request) -> None:
        assert self.token is not None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if request.path == "/api/events" and not scheme and "token" in request.query:
            # A browser's EventSource cannot send a header: the feed takes it as ?token=.
            scheme, given = "bearer", request.query["token"]
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "this API needs 'Authorization: Bearer TOKEN' (--admin-token)")
        # A header that is not UTF-8 arrives with surrogate escapes: compared as its bytes.
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given_bytes, self.token.encode()):
            raise ApiError(401, "wrong bearer token")

    # --------------------------------------------------------------- handlers

    async def healthz(self, request: web.Request) -> web.Response:
        listeners = [
            {"transport": transport, "host": host, "port": port}
            for transport, host, port in self.server.listeners
        ]
        draining = self.server.draining
        return _json(
            {
                "status": "draining" if draining else "ok",
                "version": __version__,
                "listeners": listeners,
                "in_flight": len(self.endpoint.table.transactions),
            },
            status=503 if draining else 200,
        )

    async def metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(",".join(request.headers.getall("Accept", [])))
        return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(OPENAPI)

    def _journal(self) -> Journal:
        if self.server.journal is None:
            raise ApiError(409, "the journal is off (--journal-size 0)")
        return self.server.journal

    async def calls(self, request: web.Request) -> web.Response:
        calls = self._calls(request)
        return _json({"calls": [c.to_dict(messages=False) for c in calls], "count": len(calls)})

    def _calls(self, request: web.Request) -> list[Call]:
        f = parse_call_filter(request.query.items())
        calls = self._journal().calls(f.method, f.user, f.status, f.since)
        return calls if f.limit is None else calls[-f.limit :]

    async def call(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        call = self._journal().get(call_id)
        if call is None:
            raise ApiError(404, f"no call with Call-ID {call_id!r} in the journal")
        return _json({**call.to_dict(messages=True), "ladder": call.ladder()})

    async def call_pcap(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        call = self._journal().get(call_id)
        if call is None:
            raise ApiError(404, f"no call with Call-ID {call_id!r} in the journal")
        return await _pcap(list(call.entries), f"call-{_file_safe(call_id)}.pcap")

    async def call_sipp(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        call = self._journal().get(call_id)
        if call is None:
            raise ApiError(404, f"no call with Call-ID {call_id!r} in the journal")
        return web.Response(
            text=sipp_scenario(call),
            content_type="application/xml",
            headers={
                "Content-Disposition": f'attachment; filename="call-{_file_safe(call_id)}.xml"'
            },
        )

    async def calls_pcap(self, request: web.Request) -> web.Response:
        calls = self._calls(request)
        return await _pcap([e for c in calls for e in c.entries], "calls.pcap")

    async def journal_stats(self, request: web.Request) -> web.Response:
        out = self.server.journal_file
        file = (
            None
            if out is None
            else {
                "path": out.path,
                "bytes": out.bytes,
                "max_bytes": out.max_bytes,
                "rotations": out.rotations,
                "writing": out.writing,
            }
        )
        return _json({**self._journal().stats(), "file": file})

    async def clear_journal(self, request: web.Request) -> web.Response:
        self._journal().clear()
        self.live.reset()
        log.info("journal cleared through the admin API")
        return web.Response(status=204)

    async def get_rules(self, request: web.Request) -> web.Response:
        return _json(self._rules_body())

    async def put_rules(self, request: web.Request) -> web.Response:
        body = await request.read()
        rules, document = parse_rules_body(body, request.headers.get("Content-Type", ""))
        self.endpoint.set_rules(rules)
        self._document = (rules, document)
        log.info("rules replaced through the admin API: %s", _count(rules))
        return _json(self._rules_body())

    async def reset_rules(self, request: web.Request) -> web.Response:
        path = self.server.config.rules_file
        rules = None
        if path is not None:
            try:
                rules = read_rules(path)
            except RulesError as exc:
                error = rules_error(exc)
                raise ApiError(
                    409, f"{error.message}; keeping the rules in use", **error.fields
                ) from None
        self.endpoint.set_rules(rules)
        self._remember_file_rules()
        log.info("rules reset through the admin API: %s", _count(rules) if rules else "none")
        return _json(self._rules_body())

    async def get_scenarios(self, request: web.Request) -> web.Response:
        return _json({"scenarios": self._scenarios()})

    async def put_scenario(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            body = json.loads(await request.read() or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the body is not JSON", field="syntax") from None
        state, key = scenario_update(body)
        self.endpoint.planner.scenarios.set_state(name, key, state)
        log.info("scenario %r (key %r) set to %r through the admin API", name, key, state)
        return _json({"scenarios": self._scenarios()})

    async def reset_scenarios(self, request: web.Request) -> web.Response:
        self.endpoint.planner.scenarios.clear()
        log.info("scenarios and sequences reset through the admin API")
        return _json({"scenarios": self._scenarios()})

    def _scenarios(self) -> list[dict[str, Any]]:
        rules = self.endpoint.rules
        names = rules.scenario_names if rules is not None else []
        return self.endpoint.planner.scenarios.listing(names)

    def _remember_file_rules(self) -> None:
        path = self.server.config.rules_file
        rules = self.endpoint.rules
        from_file = rules is not None and path is not None and rules.source == path
        self._document = (rules, file_document(path) if from_file and path else None)

    def _rules_body(self) -> dict[str, Any]:
        rules = self.endpoint.rules
        if rules is not None and self._document[0] is not rules:
            self._remember_file_rules()  # reloaded from the file by SIGHUP since
        return {
            "source": rules.source if rules is not None else None,
            "rules": rules.summary() if rules is not None else [],
            "document": self._document[1] if rules is not None else None,
        }


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no such route, wrong method, body too large) as JSON."""
    if exc.status == 404:
        return error_response(404, f"no such endpoint: {request.path} (see /api/openapi.json)")
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        response = error_response(
            405, f"{request.method} is not allowed on {request.path}; use {allowed}"
        )
        response.headers["Allow"] = allowed
        return response
    if exc.status == 413:
        return error_response(413, f"the body is larger than {MAX_BODY} bytes")
    return error_response(exc.status, exc.reason)


def _count(rules: RuleSet) -> str:
    n = len(rules.rules)
    return f"{n} rule{'' if n == 1 else 's'}{' and a default' if rules.default else ''}"
