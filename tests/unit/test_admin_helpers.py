"""The admin API's pure helpers, its metrics collector, and its app in process (no sockets
but aiohttp's test server on loopback)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from helpers import request
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sipresponder.admin.app import (
    OPENAPI,
    SOURCE_JSON,
    SOURCE_YAML,
    Admin,
    ApiError,
    CallFilter,
    parse_address,
    parse_call_filter,
    parse_rules_body,
    token_warning,
)
from sipresponder.admin.web import is_page
from sipresponder.aio.server import Server
from sipresponder.core.config import Config
from sipresponder.core.flow import Flow
from sipresponder.errors import ConfigError


def admin(**kw: Any) -> Admin:
    return Admin(Server(Config(secret=b"k", admin="127.0.0.1:0", **kw)))


# ------------------------------------------------------------------ address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9000", ("::1", 9000)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["8080", ":8080", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "::1:80", "h:70000", "h:٣"]
)
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--admin: "):
        parse_address(text)


@pytest.mark.parametrize(
    ("host", "token", "warns"),
    [
        ("127.0.0.1", None, False),
        ("127.3.4.5", None, False),
        ("::1", None, False),
        ("localhost", None, False),
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.0.2.7", None, True),
        ("example.org", None, True),
        ("0.0.0.0", "s3cret", False),
    ],
)
def test_token_warning(host: str, token: str | None, warns: bool) -> None:
    assert (token_warning(host, token) is not None) is warns


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ([], CallFilter()),
        ([("method", "invite")], CallFilter(method="INVITE")),
        ([("user", "180-486"), ("status", "486")], CallFilter(user="180-486", status=486)),
        ([("since", "1700000000.5")], CallFilter(since=1700000000.5)),
        ([("limit", "500")], CallFilter(limit=500)),
    ],
)
def test_parse_call_filter(query: list[tuple[str, str]], expected: CallFilter) -> None:
    assert parse_call_filter(query) == expected


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ([("status", "abc")], "status"),
        ([("status", "99")], "status"),
        ([("status", "700")], "status"),
        ([("since", "yesterday")], "since"),
        ([("since", "nan")], "since"),
        ([("since", "inf")], "since"),
        ([("method", "")], "method"),
        ([("method", "IN VITE")], "method"),
        ([("limit", "0")], "limit"),
        ([("limit", "-3")], "limit"),
        ([("limit", "many")], "limit"),
        ([("order", "desc")], "order"),
        ([("user", "a"), ("user", "b")], "user"),
    ],
)
def test_parse_call_filter_refuses(query: list[tuple[str, str]], parameter: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_call_filter(query)
    assert info.value.status == 400
    assert info.value.fields == {"parameter": parameter}
    assert parameter in info.value.message


# -------------------------------------------------------------------- rules

RULES = {"rules": [{"match": {"user": "bob"}, "plan": [{"code": 180}, {"code": 486}]}]}


def test_rules_body_json_and_yaml() -> None:
    rules, document = parse_rules_body(json.dumps(RULES).encode(), "application/json")
    assert document == RULES
    assert rules.source == SOURCE_JSON
    assert len(rules.rules) == 1
    text = b"seed: 7\nrules:\n  - match: {user: bob}\n    plan: 180-486\n"
    rules, document = parse_rules_body(text, "text/yaml; charset=utf-8")
    assert document == {"seed": 7, "rules": [{"match": {"user": "bob"}, "plan": "180-486"}]}
    assert rules.source == SOURCE_YAML
    assert rules.summary()[0].startswith("rule 1 (line 3): ")


@pytest.mark.parametrize(
    ("body", "content_type", "fields"),
    [
        (
            b'{"rules": [{"match": {}, "plan": [{"code": 180}, {"code": 99}]}]}',
            "application/json",
            {"rule": 1, "line": None, "field": "plan[1].code"},
        ),
        (
            b"rules:\n  - match: {method: ACK}\n    plan: 200\n",
            "application/yaml",
            {"rule": 1, "line": 2, "field": "match.method"},
        ),
        (b'{\n  "rules": [\n}', "application/json", {"rule": None, "line": 3, "field": "syntax"}),
        (b"rules: []\n", "application/json", {"line": 1, "field": "syntax"}),
        (b"", "application/json", {"field": "rules"}),
        (b"\xff\xfe", "application/json", {"field": "syntax"}),
    ],
)
def test_rules_body_refused(body: bytes, content_type: str, fields: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as info:
        parse_rules_body(body, content_type)
    assert info.value.status == 400
    assert fields.items() <= info.value.fields.items()


def test_yaml_sent_as_json_gets_a_hint() -> None:
    with pytest.raises(ApiError, match="Content-Type: application/yaml"):
        parse_rules_body(b"rules: []\n", "")


# ------------------------------------------------------------------ metrics


def scrape(a: Admin) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(a.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collector_reads_the_endpoint_counters() -> None:
    a = admin()
    ep = a.endpoint
    flow = Flow("udp", ("192.0.2.1", 5062), ("127.0.0.1", 5060), None)
    invite = request("INVITE", "486", branch="z9hG4bK-i", call_id="c1")
    ep.receive(invite, flow, 1.0)
    ep.receive(invite, flow, 1.1)  # a retransmission
    ep.receive(request("OPTIONS", "bob", branch="no-cookie", call_id="c2"), flow, 1.2)
    ep.receive(b"not SIP at all\r\n\r\n", flow, 1.3)
    ep.receive(request("OPTIONS", call_id="").replace(b"Call-ID: \r\n", b""), flow, 1.4)
    a.latency.observe(0.0002)
    m = scrape(a)
    assert m[("sipresponder_requests_total", (("method", "INVITE"),))] == 2
    assert m[("sipresponder_requests_total", (("method", "OPTIONS"),))] == 1
    assert m[("sipresponder_responses_total", (("code", "100"), ("method", "INVITE")))] == 1
    assert m[("sipresponder_responses_total", (("code", "486"), ("method", "INVITE")))] == 1
    assert m[("sipresponder_responses_total", (("code", "200"), ("method", "OPTIONS")))] == 1
    assert m[("sipresponder_in_flight_transactions", ())] == 1  # the INVITE awaits its ACK
    assert m[("sipresponder_violations_total", (("rule", "RFC 3261 §8.1.1.7"),))] == 1
    assert m[("sipresponder_retransmissions_total", ())] == 1
    assert m[("sipresponder_resent_total", ())] == 0  # no timer has run yet
    assert m[("sipresponder_parse_errors_total", ())] == 2
    assert m[("sipresponder_dropped_total", ())] == 1
    assert m[("sipresponder_handling_seconds_count", ())] == 1
    assert m[("sipresponder_handling_seconds_bucket", (("le", "0.00025"),))] == 1


# ------------------------------------------------------------------ OpenAPI


def test_openapi_documents_every_route_and_nothing_else() -> None:
    """Every route but the web pages and their files, which are not the API."""
    routes = {
        (route.resource.canonical, route.method.lower())
        for route in admin().app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and not is_page(route.resource.canonical)
    }
    documented = {(path, method) for path, ops in OPENAPI["paths"].items() for method in ops}
    assert routes == documented
    json.loads(json.dumps(OPENAPI))  # plain JSON data
    assert OPENAPI["openapi"].startswith("3.0.")


# -------------------------------------------------------------- in process


def with_client(a: Admin, test: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def run() -> None:
        async with TestClient(TestServer(a.app)) as client:
            await test(client)

    asyncio.run(run())


def test_an_exception_becomes_a_500_json_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    a = admin()

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    a.app.router.add_get("/broken", broken)

    async def test(client: TestClient[Any, Any]) -> None:
        resp = await client.get("/broken")
        assert resp.status == 500
        assert await resp.json() == {"error": "internal error (the responder logged it)"}

    with caplog.at_level(logging.ERROR, logger="sipresponder.admin.app"):
        with_client(a, test)
    assert "GET /broken failed" in caplog.text and "boom" in caplog.text


def test_token_is_checked_before_routing_except_healthz() -> None:
    a = admin(admin_token="s3cret")

    async def test(client: TestClient[Any, Any]) -> None:
        for path in ("/api/calls", "/nowhere", "/metrics"):
            resp = await client.get(path)
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "error" in await resp.json()
        resp = await client.get("/api/calls", headers={"Authorization": "Bearer s3cret"})
        assert resp.status == 200
        resp = await client.get("/nowhere", headers={"Authorization": "bearer s3cret"})
        assert resp.status == 404
        resp = await client.get("/api/calls", headers={"Authorization": "Bearer s3cre"})
        assert resp.status == 401
        resp = await client.get("/api/calls", headers={"Authorization": "Basic czNjcmV0"})
        assert resp.status == 401
        resp = await client.get("/healthz")
        assert resp.status == 200
        # A token that is not UTF-8 (which an HTTP client library will not send): 401.
        server = client.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /api/calls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
        writer.write(b"Authorization: Bearer s3\x80cret\r\n\r\n")
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert status_line.split()[1] == b"401", status_line

    with_client(a, test)


def test_journal_off_is_a_409() -> None:
    a = admin(journal_size=0)

    async def test(client: TestClient[Any, Any]) -> None:
        for method, path in (
            ("GET", "/api/calls"),
            ("GET", "/api/calls/x"),
            ("DELETE", "/api/journal"),
        ):
            resp = await client.request(method, path)
            assert resp.status == 409
            assert "journal is off" in (await resp.json())["error"]

    with_client(a, test)


def test_body_too_large_is_a_413_json() -> None:
    a = admin()

    async def test(client: TestClient[Any, Any]) -> None:
        resp = await client.put("/api/rules", data=b" " * (2 << 20))
        assert resp.status == 413
        assert "larger than" in (await resp.json())["error"]

    with_client(a, test)
