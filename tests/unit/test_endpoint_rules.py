"""The endpoint with a rules file: plans, overrides, placeholders, Digest, weights, reload."""

from __future__ import annotations

import logging

import pytest
from helpers import request
from test_endpoint import UDP, advance, codes, responses

from sipresponder.core.auth import NonceSigner
from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.journal import Journal
from sipresponder.core.rules_loader import load_rules
from sipresponder.sip.digest import credentials

RULES = """\
rules:
  - match: {method: INVITE, user: "1001"}
    plan:
      - code: 180
      - code: 486
        after: 3s
        retry_after: 60
        headers: {X-Call: "{call_id} from {from_user}"}
  - match: {method: REGISTER}
    auth: {realm: lab, users: {alice: secret}, algorithm: [SHA-256, MD5], nonce_lifetime: 60}
    plan:
      - {code: 200, headers: {X-Welcome: "{from_user}"}}
  - match: {method: INVITE, user: proxied}
    auth: {realm: edge, users: {bob: pw}, proxy: true}
    plan: 200
  - match: {user: mix}
    choose:
      - {weight: 1, plan: 200}
      - {weight: 1, plan: "503"}
  - match: {method: MESSAGE}
    plan:
      - {code: 202, reason: Queued Up, body: "got it, {from_user}", content_type: text/plain}
  - match: {method: INVITE, user: early}
    plan:
      - {code: 183, sdp: answer}
      - {code: 200, after: 1s}
"""


def make(text: str = RULES, **kw: object) -> Endpoint:
    return Endpoint(Config(secret=b"k", **kw), rules=load_rules(text))  # type: ignore[arg-type]


def test_rule_plan_with_delay_shortcut_and_placeholders() -> None:
    ep = make()
    assert codes(ep.receive(request("INVITE", "1001"), UDP, 0.0)) == [100, 180]
    out = responses(advance(ep, 3.0))
    assert [r.status for r in out] == [486]
    assert out[0].header("Retry-After") == "60"
    assert out[0].header("X-Call") == "call-1@test from caller"


def test_unmatched_requests_fall_back_to_dial_the_code() -> None:
    ep = make()
    assert codes(ep.receive(request("INVITE", "486"), UDP, 0.0)) == [100, 486]


_attempt = iter(range(1, 1000))


def register(password: str | None, nonce: str = "", algorithm: str = "SHA-256") -> bytes:
    """A REGISTER as a client sends each attempt: a new branch and CSeq (§10.2.4)."""
    n = next(_attempt)
    extra = []
    if password is not None:
        value = credentials(
            "alice", password, "lab", nonce, "REGISTER", "sip:x@127.0.0.1", algorithm=algorithm
        )
        extra = [("Authorization", value)]
    data = request("REGISTER", "x", branch=f"z9hG4bK-r{n}", cseq=f"{n} REGISTER", extra=extra)
    return data.replace(b"sip:caller@", b"sip:alice@")


def nonce_of(challenge: str) -> str:
    return challenge.split('nonce="')[1].split('"')[0]


def test_digest_challenge_then_ok_then_wrong_then_stale() -> None:
    ep = make()
    first = responses(ep.receive(register(None), UDP, 0.0))
    assert [r.status for r in first] == [401]
    challenges = first[0].header_all("WWW-Authenticate")
    assert [c.split("algorithm=")[1].split(",")[0] for c in challenges] == ["SHA-256", "MD5"]
    nonce = nonce_of(challenges[0])
    ok = responses(ep.receive(register("secret", nonce), UDP, 1.0))
    assert [r.status for r in ok] == [200] and ok[0].header("X-Welcome") == "alice"
    md5 = responses(ep.receive(register("secret", nonce, "MD5"), UDP, 1.0))
    assert [r.status for r in md5] == [200]
    assert codes(ep.receive(register("wrong", nonce), UDP, 2.0)) == [403]
    stale = responses(ep.receive(register("secret", nonce), UDP, 100.0))
    assert [r.status for r in stale] == [401]
    assert "stale=true" in stale[0].header_all("WWW-Authenticate")[0]
    # A retransmission gets the very same challenge (§17.2.2), though nonces carry time.
    again = register(None)
    assert ep.receive(again, UDP, 200.0)[0][0] == ep.receive(again, UDP, 200.5)[0][0]
    # A nonce of another server (or from before a restart): challenged again, not refused.
    other = Endpoint(Config(secret=b"other"), rules=load_rules(RULES))
    assert codes(other.receive(register("secret", nonce), UDP, 1.0)) == [401]


def test_proxy_auth_uses_407() -> None:
    ep = make()
    out = responses(ep.receive(request("INVITE", "proxied"), UDP, 0.0))
    assert [r.status for r in out] == [407]
    nonce = nonce_of(out[0].header("Proxy-Authenticate") or "")
    value = credentials(
        "bob", "pw", "edge", nonce, "INVITE", "sip:proxied@127.0.0.1", algorithm="MD5"
    )
    data = request(
        "INVITE",
        "proxied",
        branch="z9hG4bK-2",
        cseq="2 INVITE",
        extra=[("Proxy-Authorization", value)],
    )
    assert codes(ep.receive(data, UDP, 1.0)) == [100, 200]


AUTH_RULES = """\
rules:
  - match: {method: REGISTER, user: lenient}
    auth: {realm: lab, users: {alice: secret}}
    plan: 200
  - match: {method: REGISTER, user: strict}
    auth: {realm: lab, users: {alice: secret}, qop: required, check_uri: true}
    plan: 200
"""


def attempt(
    user: str, password: str | None, nonce: str = "", *, qop: str | None = "auth", **kw: str
) -> bytes:
    """A REGISTER to ``user`` answering ``nonce`` (MD5), a new branch and CSeq each time."""
    n = next(_attempt)
    extra = []
    if password is not None:
        uri = kw.get("uri", f"sip:{user}@127.0.0.1")
        name = kw.get("name", "alice")
        value = credentials(name, password, "lab", nonce, "REGISTER", uri, algorithm="MD5", qop=qop)
        extra = [("Authorization", value)]
    return request("REGISTER", user, branch=f"z9hG4bK-a{n}", cseq=f"{n} REGISTER", extra=extra)


def status_lines(out: list[tuple[bytes, object, object]]) -> list[str]:
    return [data.split(b"\r\n", 1)[0].decode()[8:] for data, _, _ in out]


def test_each_refusal_names_the_check_that_failed() -> None:
    journal = Journal()
    ep = Endpoint(Config(secret=b"k"), rules=load_rules(AUTH_RULES), journal=journal)
    (challenge,) = responses(ep.receive(attempt("lenient", None), UDP, 0.0))
    assert challenge.status == 401 and challenge.reason == "Unauthorized"
    nonce = nonce_of(challenge.header("WWW-Authenticate") or "")
    said = status_lines(ep.receive(attempt("lenient", "wrong", nonce), UDP, 1.0))
    assert said == ["403 Forbidden (wrong password)"]
    said = status_lines(ep.receive(attempt("lenient", "secret", nonce, name="eve"), UDP, 1.0))
    assert said == ["403 Forbidden (unknown user)"]
    said = status_lines(ep.receive(attempt("lenient", "secret", nonce), UDP, 400.0))
    assert said == ["401 Unauthorized (stale nonce)"]
    foreign = NonceSigner(b"elsewhere").make("lab", 1.0 + ep.recorder.wall_offset)
    said = status_lines(ep.receive(attempt("lenient", "secret", foreign), UDP, 1.0))
    assert said == ["401 Unauthorized (nonce not ours)"]
    # Right password, but for another resource than the Request-URI (RFC 2617 §3.2.2.5):
    # a verdict on the client, and refused only where the rule checks the uri.
    out = ep.receive(attempt("lenient", "secret", nonce, uri="sip:other@127.0.0.1"), UDP, 1.0)
    assert status_lines(out) == ["200 OK"]
    out = ep.receive(attempt("strict", "secret", nonce, uri="sip:other@127.0.0.1"), UDP, 1.0)
    assert status_lines(out) == ["400 Bad Request (Digest uri is not the Request-URI)"]
    # The same resource spelled otherwise (§19.1.4, parameters aside) passes.
    same = attempt("lenient", "secret", nonce, uri="SIP:lenient@127.0.0.1;transport=UDP")
    assert status_lines(ep.receive(same, UDP, 1.0)) == ["200 OK"]
    # The journal tells them apart: the ladder shows each reason, and the uri a verdict.
    ladders = "\n".join(call.ladder() for call in journal.calls())
    for reason in ("(wrong password)", "(unknown user)", "(stale nonce)", "(nonce not ours)"):
        assert reason in ladders
    violations = [v for call in journal.calls() for v in call.violations]
    assert [v.rule for v in violations] == ["RFC 2617 §3.2.2.5"] * 2
    assert "Digest uri sip:other@127.0.0.1 is not the Request-URI" in violations[0].message


def test_an_rfc_2069_answer_passes_unless_the_rule_requires_qop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sipresponder")
    ep = make(AUTH_RULES)
    nonce = nonce_of(
        responses(ep.receive(attempt("lenient", None), UDP, 0.0))[0].header("WWW-Authenticate")
        or ""
    )
    assert codes(ep.receive(attempt("lenient", "secret", nonce, qop=None), UDP, 1.0)) == [200]
    assert "checked in the RFC 2069 form" in caplog.text
    # A wrong password in that form is still a wrong password.
    said = status_lines(ep.receive(attempt("lenient", "nope", nonce, qop=None), UDP, 1.0))
    assert said == ["403 Forbidden (wrong password)"]
    said = status_lines(ep.receive(attempt("strict", "secret", nonce, qop=None), UDP, 1.0))
    assert said == ["403 Forbidden (no qop)"]
    assert codes(ep.receive(attempt("strict", "secret", nonce), UDP, 1.0)) == [200]


def test_weighted_choice_is_mixed_reproducible_and_stateful() -> None:
    def run(seed: int | None) -> list[int]:
        text = RULES if seed is None else f"seed: {seed}\n{RULES}"
        ep = make(text)
        got = []
        for i in range(40):
            out = ep.receive(request("OPTIONS", "mix", branch=f"z9hG4bK-{i}"), UDP, 0.0)
            got += codes(out)
        return got

    a, b = run(3), run(3)
    assert a == b and set(a) == {200, 503}
    assert run(4) != a
    # The choice is kept for retransmissions of the same request.
    ep = make()
    first = ep.receive(request("OPTIONS", "mix"), UDP, 0.0)
    for _ in range(5):
        assert ep.receive(request("OPTIONS", "mix"), UDP, 0.1)[0][0] == first[0][0]


def test_reason_and_body_overrides() -> None:
    ep = make()
    out = responses(ep.receive(request("MESSAGE", "x"), UDP, 0.0))
    assert (out[0].status, out[0].reason) == (202, "Queued Up")
    assert out[0].body == b"got it, caller"
    assert out[0].header("Content-Type") == "text/plain"
    # A placeholder filled with bytes that are not UTF-8 sends them back as they came.
    data = request("MESSAGE", "x").replace(b"<sip:caller@", b"<sip:ca\x80ller@")
    sent = ep.receive(data, UDP, 0.0)
    assert ep.stats["internal_errors"] == 0
    assert sent[0][0].endswith(b"\r\n\r\ngot it, ca\x80ller")


def test_early_media_then_answer() -> None:
    ep = make()
    out = responses(ep.receive(request("INVITE", "early"), UDP, 0.0))
    assert [r.status for r in out] == [100, 183]
    assert out[1].header("Content-Type") == "application/sdp"
    ok = responses(advance(ep, 1.0))[0]
    assert ok.status == 200 and ok.body == out[1].body  # the same SDP (RFC 3264 §6)


def test_reload_keeps_calls_in_flight_on_their_old_plan() -> None:
    ep = make()
    ep.receive(request("INVITE", "1001"), UDP, 0.0)
    ep.set_rules(load_rules("- match: {user: '1001'}\n  plan: 404\n"))
    assert codes(advance(ep, 3.0)) == [486]
    assert codes(
        ep.receive(request("INVITE", "1001", branch="z9hG4bK-n", call_id="n"), UDP, 4.0)
    ) == [100, 404]
