"""The admin HTTP API of the real process: ``--admin 127.0.0.1:0`` over loopback.

SIP traffic comes from the raw socket clients (and one sipp call); the API is read with
``urllib.request``, every call with a timeout.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sipclient import RECV_TIMEOUT, Req, TcpClient, UdpClient
from sipprocs import Responder, StartResponder, responder_command, run_sipp

HTTP_TIMEOUT = 5.0
ADMIN = ("--admin", "127.0.0.1:0")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


@dataclass
class Api:
    """The admin API of one responder."""

    base: str
    token: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        token: str | None = None,
    ) -> Reply:
        headers = {"Content-Type": content_type} if body is not None else {}
        token = token if token is not None else self.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
                return Reply(resp.status, _lower(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return Reply(err.code, _lower(err.headers.items()), err.read())

    def get(self, path: str, **kw: Any) -> Reply:
        return self.call("GET", path, **kw)

    def ok(self, path: str) -> Any:
        reply = self.get(path)
        assert reply.status == 200, reply
        return reply.json

    def put_rules(self, document: Any) -> Reply:
        return self.call("PUT", "/api/rules", json.dumps(document).encode())


def _lower(items: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


def start(start_responder_with: StartResponder, *args: str) -> tuple[Responder, Api]:
    server = start_responder_with(*ADMIN, *args)
    assert server.admin_url is not None, server.lines
    token = args[args.index("--admin-token") + 1] if "--admin-token" in args else None
    return server, Api(server.admin_url, token)


def test_admin_line_comes_third_with_the_real_port(start_responder_with: StartResponder) -> None:
    server, api = start(start_responder_with)
    assert server.lines[:2] == [
        f"listening udp 127.0.0.1:{server.port}",
        f"listening tcp 127.0.0.1:{server.port}",
    ]
    m = re.fullmatch(r"admin http://127\.0\.0\.1:([0-9]+)", server.lines[2])
    assert m and int(m.group(1)) not in (0, server.port), server.lines
    health = api.ok("/healthz")
    assert health["status"] == "ok"
    assert health["in_flight"] == 0
    assert {(li["transport"], li["host"], li["port"]) for li in health["listeners"]} == {
        ("udp", "127.0.0.1", server.port),
        ("tcp", "127.0.0.1", server.port),
    }
    assert "WARNING" not in server.log()  # loopback: no warning about exposure


def test_calls_filters_detail_and_clear(start_responder_with: StartResponder) -> None:
    server, api = start(start_responder_with)
    odd_id = "a/b%20c?d{e}[f]:g@host"  # legal Call-ID characters that URLs care about
    before = time.time() - 1
    with UdpClient(server.addr) as u, TcpClient(server.addr) as t:
        busy = Req("INVITE", "486", call_id=odd_id)
        u.send(busy)
        tag = u.expect_codes([100, 486])[-1].to_tag
        u.send(busy.ack(tag))
        u.request(Req("OPTIONS", "alice"), 200)
        call = Req("INVITE", "bob")
        t.send(call)
        ok = t.expect_codes([100, 180, 200])[-1]
        t.send(call.ack_2xx(ok.to_tag))
        t.request(call.in_dialog("BYE", ok.to_tag, 2), 200)

    def users(query: str) -> list[str]:
        body = api.ok(f"/api/calls{query}")
        assert body["count"] == len(body["calls"])
        return [c["user"] for c in body["calls"]]

    assert users("") == ["486", "alice", "bob"]  # oldest first
    assert users("?method=INVITE") == ["486", "bob"]
    assert users("?method=options") == ["alice"]
    assert users("?user=bob") == ["bob"]
    assert users("?status=486") == ["486"]
    assert users("?status=200&method=INVITE") == ["bob"]
    assert users(f"?since={before}") == ["486", "alice", "bob"]
    assert users(f"?since={time.time() + 60}") == []
    summary = api.ok("/api/calls?user=486")["calls"][0]
    assert summary["call_id"] == odd_id
    assert summary["codes"] == [100, 486] and summary["acked"] is True
    assert "messages" not in summary
    for name, value in (("status", "busy"), ("since", "soon"), ("method", ""), ("foo", "1")):
        reply = api.get(f"/api/calls?{name}={value}")
        assert reply.status == 400, reply
        assert name in reply.json["error"] and reply.json["parameter"] == name

    for quoted in (urllib.parse.quote(odd_id, safe=""), urllib.parse.quote(odd_id, safe="@:")):
        detail = api.ok(f"/api/calls/{quoted}")
        assert detail["call_id"] == odd_id
        assert [(m["direction"], m["summary"].split()[0]) for m in detail["messages"]] == [
            ("in", "INVITE"),
            ("out", "100"),
            ("out", "486"),
            ("in", "ACK"),
        ]
        assert detail["messages"][0]["raw"].startswith("INVITE sip:486@")
        assert detail["ladder"].startswith(f"Call-ID {odd_id}\n")
        assert "<- responder  486 Busy Here" in detail["ladder"]
    bob = api.ok(f"/api/calls/{urllib.parse.quote(call.call_id)}")
    assert [t["method"] for t in bob["transactions"]] == ["INVITE", "BYE"]
    missing = api.get("/api/calls/nobody%40nowhere")
    assert missing.status == 404
    assert "nobody@nowhere" in missing.json["error"]

    reply = api.call("DELETE", "/api/journal")
    assert (reply.status, reply.body) == (204, b"")
    assert api.ok("/api/calls") == {"calls": [], "count": 0}
    assert api.get(f"/api/calls/{urllib.parse.quote(odd_id, safe='')}").status == 404


def test_rules_put_get_delete(start_responder_with: StartResponder, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("rules:\n  - match: {user: carol}\n    plan: 404\n")
    server, api = start(start_responder_with, "--rules", str(rules_file))
    body = api.ok("/api/rules")
    assert body["source"] == str(rules_file)
    assert body["document"] == {"rules": [{"match": {"user": "carol"}, "plan": 404}]}
    assert body["rules"] == ["rule 1 (line 2): user='carol' -> 404"]

    new = {"rules": [{"match": {"user": "bob"}, "plan": [{"code": 486, "reason": "Put Busy"}]}]}
    with UdpClient(server.addr) as u:
        ringing = Req("INVITE", "180-700ms-200")
        u.send(ringing)  # in flight while the rules change: it keeps its plan
        u.expect_codes([100, 180])
        reply = api.put_rules(new)
        assert reply.status == 200, reply
        assert reply.json["source"] == "admin-api.json"
        assert reply.json["document"] == new
        assert api.ok("/api/rules") == reply.json
        assert u.expect(200, RECV_TIMEOUT).get("CSeq") == "1 INVITE"
        u.send(Req("INVITE", "bob"))
        assert u.expect_codes([100, 486])[-1].reason == "Put Busy"
        u.request(Req("OPTIONS", "carol"), 200)  # the file's rule is gone

        bad = {"rules": [{"match": {"user": "bob"}, "plan": [{"code": 180}, {"code": 99}]}]}
        reply = api.put_rules(bad)
        assert reply.status == 400, reply
        assert reply.json["field"] == "plan[1].code"
        assert reply.json["rule"] == 1
        assert "99" in reply.json["problem"] and "plan[1].code" in reply.json["error"]
        assert api.ok("/api/rules")["document"] == new  # still in use

        yaml_doc = b"rules:\n  - match: {method: OPTIONS}\n    plan: 403\n"
        reply = api.call("PUT", "/api/rules", yaml_doc, content_type="application/yaml")
        assert reply.status == 200, reply
        assert reply.json["rules"] == ["rule 1 (line 2): OPTIONS -> 403"]
        u.request(Req("OPTIONS", "anyone"), 403)

        reply = api.call("DELETE", "/api/rules")
        assert reply.status == 200, reply
        assert reply.json["source"] == str(rules_file)
        u.request(Req("OPTIONS", "carol"), 404)
        u.request(Req("OPTIONS", "anyone"), 200)
    assert "rules replaced through the admin API" in server.log()


def test_without_a_rules_file_delete_means_dial_the_code(
    start_responder_with: StartResponder,
) -> None:
    server, api = start(start_responder_with)
    assert api.ok("/api/rules") == {"source": None, "rules": [], "document": None}
    assert api.put_rules({"default": {"plan": 480}}).status == 200
    with UdpClient(server.addr) as u:
        u.request(Req("OPTIONS", "486"), 480)
        assert api.call("DELETE", "/api/rules").json["rules"] == []
        u.request(Req("OPTIONS", "486"), 486)


def test_token(start_responder_with: StartResponder) -> None:
    _, api = start(start_responder_with, "--admin-token", "s3cret")
    for path in ("/api/calls", "/api/rules", "/metrics", "/api/openapi.json", "/nowhere"):
        for token in ("-", "wrong"):  # "-": no header
            reply = api.get(path, token="" if token == "-" else token)
            assert reply.status == 401, (path, token, reply)
            assert "error" in reply.json
            assert reply.headers["www-authenticate"].startswith("Bearer")
    assert api.get("/api/calls").status == 200
    assert api.get("/healthz", token="").status == 200
    assert api.call("DELETE", "/api/journal", token="").status == 401
    assert api.call("DELETE", "/api/journal").status == 204


def metrics(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = api.get("/metrics")
    assert reply.status == 200, reply
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.body.decode())
        for s in family.samples
    }


def test_metrics_after_known_traffic(start_responder_with: StartResponder) -> None:
    server, api = start(start_responder_with)
    received = 0
    with UdpClient(server.addr) as u:
        for _ in range(3):
            u.request(Req("OPTIONS", "alice"), 200)
        ring = Req("INVITE", "180")
        u.send(ring)
        u.expect_codes([100, 180])
        u.send(ring)  # a retransmission: the 180 again
        u.expect(180)
        u.send(ring.cancel())
        tag = u.expect_codes([200, 487])[-1].to_tag  # 200 to the CANCEL, 487 to the INVITE
        u.send(ring.ack(tag))
        u.request(Req("MESSAGE", "bob", branch="no-magic-cookie"), 200)  # a violation
        u.send(b"this is not SIP\r\n\r\n")  # a parse error, dropped
        u.request(Req("OPTIONS", omit=("Call-ID",)), 400)  # a parse error, answered
        received = 3 + 2 + 1 + 1 + 1 + 1 + 1
        u.expect_silence()
    m = metrics(api)
    assert m[("sipresponder_requests_total", (("method", "OPTIONS"),))] == 3
    assert m[("sipresponder_requests_total", (("method", "INVITE"),))] == 2
    assert m[("sipresponder_requests_total", (("method", "ACK"),))] == 1
    assert m[("sipresponder_requests_total", (("method", "MESSAGE"),))] == 1
    assert ("sipresponder_requests_total", (("method", "CANCEL"),)) in m
    responses = {
        labels: value
        for (name, labels), value in m.items()
        if name == "sipresponder_responses_total"
    }
    assert responses[(("code", "200"), ("method", "OPTIONS"))] == 3
    assert responses[(("code", "100"), ("method", "INVITE"))] == 1
    assert responses[(("code", "180"), ("method", "INVITE"))] == 1  # not its retransmission
    assert responses[(("code", "200"), ("method", "MESSAGE"))] == 1
    assert m[("sipresponder_retransmissions_total", ())] == 1
    assert m[("sipresponder_parse_errors_total", ())] == 2
    assert m[("sipresponder_dropped_total", ())] == 1
    assert m[("sipresponder_violations_total", (("rule", "RFC 3261 §8.1.1.7"),))] == 1
    assert m[("sipresponder_handling_seconds_count", ())] == received
    assert m[("sipresponder_handling_seconds_bucket", (("le", "+Inf"),))] == received
    assert 0 < m[("sipresponder_handling_seconds_sum", ())] < received
    # The 487 was ACKed: no longer in flight, its key absorbs for Timer I (§17.2.1).
    in_flight = m[("sipresponder_in_flight_transactions", ())]
    assert in_flight == api.ok("/healthz")["in_flight"] == 0
    assert m[("sipresponder_absorbers", (("timer", "I"),))] == 1
    assert m[("sipresponder_absorbers", (("timer", "L"),))] == 0
    assert m[("sipresponder_absorbers_evicted_total", (("timer", "I"),))] == 0


def test_openapi_and_json_errors(start_responder_with: StartResponder) -> None:
    _, api = start(start_responder_with)
    doc = api.ok("/api/openapi.json")
    assert doc["openapi"].startswith("3.0.")
    assert set(doc["paths"]) == {
        "/healthz",
        "/metrics",
        "/api/openapi.json",
        "/api/calls",
        "/api/calls.pcap",
        "/api/calls/{call_id}",
        "/api/calls/{call_id}/pcap",
        "/api/calls/{call_id}/sipp",
        "/api/events",
        "/api/journal",
        "/api/rules",
        "/api/scenarios",
        "/api/scenarios/{name}",
    }
    for path, ops in doc["paths"].items():
        if "get" in ops and path != "/api/events":  # endless
            assert api.get(path.replace("{call_id}", "x")).status in (200, 404), path
    reply = api.get("/nowhere")
    assert reply.status == 404 and "/nowhere" in reply.json["error"]
    reply = api.call("POST", "/api/calls", b"{}")
    assert reply.status == 405 and "GET" in reply.headers["allow"]
    assert "POST" in reply.json["error"]
    reply = api.call("PUT", "/api/rules", b"rules: []", content_type="application/json")
    assert reply.status == 400 and reply.json["field"] == "syntax"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """A responder that must refuse to start: it exits by itself within the timeout."""
    return subprocess.run(
        responder_command("127.0.0.1", 0, *args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )


def test_busy_admin_port_exits_2_with_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        result = run_cli("--admin", f"127.0.0.1:{port}")
    assert result.returncode == 2, result
    assert result.stdout == ""  # not even the listening lines
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sipresponder: error: cannot serve the admin API on ")
    assert f"127.0.0.1:{port}" in lines[0]


@pytest.mark.parametrize("value", ["8080", "localhost", "[::1", "127.0.0.1:99999"])
def test_bad_admin_address_exits_2_with_one_line(value: str) -> None:
    result = run_cli("--admin", value)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sipresponder: error: --admin: "), lines


@pytest.mark.sipp
def test_a_sipp_call_in_the_journal(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path
) -> None:
    server, api = start(start_responder_with)
    result = run_sipp(server, "uac_busy", "180-486", "udp", tmp_path)
    assert result.returncode == 0, result.report()
    calls = api.ok("/api/calls?user=180-486&status=486")["calls"]
    assert len(calls) == 1
    assert calls[0]["codes"] == [100, 180, 486] and calls[0]["acked"] is True
    assert calls[0]["violations"] == []
    ladder = api.ok(f"/api/calls/{urllib.parse.quote(calls[0]['call_id'], safe='')}")["ladder"]
    steps = [re.search(r" responder  (.+?)  \[CSeq", line) for line in ladder.splitlines()[1:]]
    assert [m.group(1) if m else None for m in steps] == [
        "INVITE sip:180-486@127.0.0.1:" + str(server.port),
        "100 Trying",
        "180 Ringing",
        "486 Busy Here",
        "ACK sip:180-486@127.0.0.1:" + str(server.port),
    ]


def test_scenarios_are_read_set_and_reset(start_responder_with: StartResponder) -> None:
    server, api = start(start_responder_with)
    document = {
        "rules": [
            {
                "match": {"method": "OPTIONS", "user": "gate"},
                "scenario": {"name": "door", "when": "open", "set": "closed"},
                "plan": 200,
            },
            {"match": {"method": "OPTIONS", "user": "gate"}, "plan": 403},
            {"match": {"method": "OPTIONS", "user": "seq"}, "responses": [486, 200]},
        ]
    }
    assert api.put_rules(document).status == 200
    assert api.ok("/api/scenarios") == {
        "scenarios": [{"name": "door", "key": None, "state": "started"}]
    }
    with UdpClient(server.addr) as c:
        assert c.request(Req("OPTIONS", "gate"), 403).status == 403
        reply = api.call("PUT", "/api/scenarios/door", b'{"state": "open", "key": "test"}')
        assert reply.status == 200, reply
        # The rule answers while its scenario is open, and closes it again.
        assert c.request(Req("OPTIONS", "gate"), 200).status == 200
        assert c.request(Req("OPTIONS", "gate"), 403).status == 403
        assert c.request(Req("OPTIONS", "seq"), 486).status == 486
    listing = api.ok("/api/scenarios")["scenarios"]
    assert {"name": "door", "key": "test", "state": "closed"} in listing
    assert {"rule": 3, "key": "test", "position": 1} in listing
    reply = api.call("DELETE", "/api/scenarios")
    assert reply.status == 200 and reply.json == {
        "scenarios": [{"name": "door", "key": None, "state": "started"}]
    }
    for body, field in (
        (b"{}", "state"),
        (b'{"state": "x", "key": 5}', "key"),
        (b'{"state": "x", "when": "y"}', "when"),
        (b"[1]", "body"),
        (b"not json", "syntax"),
    ):
        reply = api.call("PUT", "/api/scenarios/door", body)
        assert reply.status == 400 and reply.json["field"] == field, reply


def test_faults_come_through_put_rules(start_responder_with: StartResponder) -> None:
    server, api = start(start_responder_with)
    document = {"rules": [{"match": {"user": "silent"}, "faults": ["no_trying"], "plan": 486}]}
    reply = api.put_rules(document)
    assert reply.status == 200 and reply.json["rules"][0].endswith("with faults no_trying")
    with UdpClient(server.addr) as c:
        req = Req("INVITE", "silent")
        busy = c.request(req, 486)  # no 100 first
        c.send(req.ack(busy.to_tag))
    bad = api.put_rules({"rules": [{"match": {"user": "x"}, "faults": ["fork"], "plan": 486}]})
    assert bad.status == 400 and bad.json["field"] == "faults"
    assert "fork sends the 2xx from several forks" in bad.json["problem"]
