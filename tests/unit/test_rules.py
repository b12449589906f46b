"""Rules files: loading, refusals with file/rule/line/field, matching, weighted choice."""

from __future__ import annotations

import pytest
from helpers import request

from sipresponder.core.rules import fill, placeholder_values
from sipresponder.core.rules_loader import load_rules
from sipresponder.errors import RulesError
from sipresponder.sip.message import Request
from sipresponder.sip.parser import parse_message


def req(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


RULES = """\
seed: 7
rules:
  - name: busy 1001
    match: {method: INVITE, user: "1001"}
    plan:
      - code: 180
      - code: 486
        after: 3s
        retry_after: 60
  - match:
      method: [REGISTER]
      from: {user: alice}
    auth: {realm: lab, users: {alice: secret}, algorithm: [SHA-256, MD5]}
    plan: 200
  - name: trunk
    match:
      user: {regex: "^trunk"}
      headers:
        X-Test: {present: true}
        User-Agent: {regex: "^Yealink"}
      transport: udp
      source: 192.0.2.0/24
    choose:
      - {weight: 9, plan: "180-200"}
      - weight: 1
        plan:
          - {code: 503, retry_after: 30, reason: Trunk Down, warning: "flaky on purpose"}
  - match: {body_contains: "m=video", to: {host: {regex: "example"}}}
    plan: 488
default:
  plan: "404"
"""


def test_load_and_summary() -> None:
    rs = load_rules(RULES, "rules.yaml")
    assert len(rs.rules) == 4 and rs.seed == 7 and rs.default is not None
    first = rs.rules[0]
    assert first.name == "busy 1001" and first.line == 3
    steps = first.choices[0].plan.steps
    assert [(s.code, s.at) for s in steps] == [(180, 0.0), (486, 3.0)]
    assert steps[1].headers == (("Retry-After", "60"),)
    lines = rs.summary()
    assert lines[0] == "rule 1 'busy 1001' (line 3): INVITE user='1001' -> 180-3s-486"
    assert "Digest SHA-256/MD5" in lines[1] and "users alice" in lines[1]
    assert "9: 180-200 | 1: 503" in lines[2]
    assert lines[4].startswith("default")


def test_matching() -> None:
    rs = load_rules(RULES, "rules.yaml")

    def find(data: bytes, transport: str = "udp", ip: str = "192.0.2.1") -> int | None:
        rule = rs.find(req(data), transport, ip)
        return None if rule is None else rule.index

    assert find(request("INVITE", "1001")) == 1
    assert find(request("OPTIONS", "1001")) == 0  # wrong method: the default
    assert find(request("REGISTER", "x")) == 0  # From user is "caller"
    alice = request("REGISTER", "x").replace(b"sip:caller@", b"sip:alice@")
    assert find(alice) == 2
    trunk = request("INVITE", "trunk9", extra=[("X-Test", "1"), ("User-Agent", "Yealink T4")])
    assert find(trunk) == 3
    assert find(trunk, transport="tcp") == 0
    assert find(trunk, ip="198.51.100.1") == 0
    assert find(request("INVITE", "trunk9", extra=[("User-Agent", "Yealink")])) == 0
    video = request("INVITE", "v", to="<sip:v@lab.example.com>", body=b"v=0\r\nm=video 1")
    assert find(video) == 4


def test_weighted_choice_is_by_weight() -> None:
    rule = load_rules(RULES).rules[2]
    codes = [rule.pick(i / 100).final for i in range(100)]
    assert codes.count(200) == 90 and codes.count(503) == 10


def test_placeholders() -> None:
    r = req(request("INVITE", "1001", to="<sip:1001@example.com>"))
    values = placeholder_values(r, "udp", ("192.0.2.1", 5062), "127.0.0.1:5060")
    assert fill("{call_id}/{from_user}@{from_host}->{to_user}@{to_host} {source}", values) == (
        "call-1@test/caller@192.0.2.1->1001@example.com 192.0.2.1:5062"
    )
    assert fill('{"json": {method}}', values) == '{"json": INVITE}'
    evil = dict(values, from_user="x\r\nVia: evil")
    assert fill("{from_user}", evil) == "xVia: evil"


def test_json_and_bare_list_and_shorthands() -> None:
    rs = load_rules('[{"match": {"user": "1"}, "plan": "180-2s-486"}]', "r.json")
    assert [s.code for s in rs.rules[0].choices[0].plan.steps] == [180, 486]
    rs = load_rules(
        """
- match: {user: redirect}
  plan:
    - {code: 302, contact: "sip:bob@192.0.2.9"}
- match: {user: gone}
  plan:
    - {code: 480, reason_header: {cause: 480}}
""",
    )
    assert rs.rules[0].choices[0].plan.steps[0].headers == (("Contact", "<sip:bob@192.0.2.9>"),)
    assert rs.rules[1].choices[0].plan.steps[0].headers == (
        ("Reason", 'SIP;cause=480;text="Temporarily Unavailable"'),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "rules.yaml: line 1: syntax:"),
        ("", "rules.yaml: rules: the file is empty"),
        ("- match: {user: 1}\n  plan: 999", "rule 1 (line 1): plan: 999 is not a response code"),
        (
            "- match: {user: 1}\n  plan: [{code: 486}, {code: 200}]",
            "rule 1 (line 1): plan: nothing can follow the final response 486",
        ),
        ("- match: {method: ACK}\n  plan: 180", "match.method: ACK is never answered"),
        (
            "- match: {method: CANCEL}\n  plan: 200",
            "match.method: CANCEL is answered by the server",
        ),
        ("- match: {user: 1}\n  plan: 200\n  color: red", "color: unknown field"),
        ("- match: {usr: 1}\n  plan: 200", "match.usr: unknown field"),
        (
            "- match: {user: 1}\n  plan:\n    - code: 486\n      headers: {Via: x}",
            "plan[0].headers.Via: set by the server",
        ),
        (
            "- match: {user: 1}\n  plan:\n    - code: 486\n      headers: {X-A: '{nope}'}",
            "unknown placeholder {nope}",
        ),
        (
            "- match: {user: 1}\n  plan:\n    - {code: 200, sdp: none}",
            "200 to an INVITE must carry SDP",
        ),
        (
            "- match: {user: 1}\n  plan:\n    - {code: 180}\n    - {code: 486, after: soon}",
            "plan[1].after: 'soon' is not a delay",
        ),
        ("- match: {user: 1}\n  choose: [{weight: 0, plan: 200}]", "choose[0].weight"),
        ("- match: {user: 1}\n  plan: 200\n  choose: [{plan: 200}]", "exactly one of"),
        ("- match: {user: {regex: '('}}\n  plan: 200", "match.user.regex: bad regular"),
        ("- match: {source: 10.0.0.300/8}\n  plan: 200", "match.source"),
        ("- match: {transport: sctp}\n  plan: 200", "match.transport"),
        ("- match: {user: 1}\n  plan: 401\n  auth: {users: {}}", "auth.users"),
        (
            "- match: {user: 1}\n  plan: 200\n  auth: {users: {a: b}, algorithm: SHA-1}",
            "auth.algorithm",
        ),
        ("- plan: 200", "rule 1 (line 1): match: missing"),
        ("seed: x\ndefault: {plan: 200}", "seed: must be a whole number"),
    ],
)
def test_refusals_name_file_rule_line_field(text: str, message: str) -> None:
    with pytest.raises(RulesError) as info:
        load_rules(text, "rules.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("rules.yaml:")


def test_step_errors_name_the_step_line() -> None:
    text = "- match: {user: 1}\n  plan:\n    - {code: 180}\n    - {code: 486, after: soon}\n"
    with pytest.raises(RulesError, match=r"rule 1 \(line 4\): plan\[1\]\.after"):
        load_rules(text, "r.yaml")
