"""Digest authentication, the policy (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760), with a fake
clock: specs, nonces, challenges and verdicts.  The protocol itself: test_digest.py."""

from __future__ import annotations

import hashlib
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipresponder.core.auth import AuthSpec, NonceSigner, Verdict, challenges, verify
from sipresponder.sip.digest import ALGORITHMS, credentials, parse_credentials

SECRET = b"test-secret"
T0 = 1_700_000_000.0
SPEC = AuthSpec("lab", {"alice": "wonderland", "bob": "builder"}, algorithms=("SHA-256", "MD5"))
SIGNER = NonceSigner(SECRET)
URI = "sip:alice@127.0.0.1"


def auth_value(
    spec: AuthSpec = SPEC,
    *,
    user: str = "alice",
    password: str = "wonderland",
    algorithm: str = "SHA-256",
    issued: float = T0,
    method: str = "INVITE",
    qop: str | None = "auth",
) -> str:
    nonce = SIGNER.make(spec.realm, issued)
    return credentials(user, password, spec.realm, nonce, method, URI, algorithm=algorithm, qop=qop)


# --------------------------------------------------------------------- spec


def test_spec_normalises_and_is_hashable() -> None:
    spec = AuthSpec(
        "lab", MappingProxyType({"alice": "pw"}), algorithms=("sha-256", "md5-SESS"), qop="AUTH"
    )
    assert spec.users == (("alice", "pw"),)
    assert spec.algorithms == ("SHA-256", "MD5-sess")
    assert spec.qop == "auth"
    assert spec.password("alice") == "pw"
    assert spec.password("Alice") is None
    assert hash(spec) == hash(AuthSpec("lab", (("alice", "pw"),), ("SHA-256", "MD5-sess")))
    assert "pw" not in repr(spec)
    assert "alice" in repr(spec)


def test_spec_header_names_and_codes() -> None:
    assert (SPEC.header_name, SPEC.credentials_header, SPEC.challenge_code) == (
        "WWW-Authenticate",
        "Authorization",
        401,
    )
    proxy = AuthSpec("lab", {"a": "b"}, proxy=True)
    assert (proxy.header_name, proxy.credentials_header, proxy.challenge_code) == (
        "Proxy-Authenticate",
        "Proxy-Authorization",
        407,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"realm": ""}, "realm"),
        ({"realm": "a\r\nX: y"}, "control"),
        ({"users": {}}, "at least one user"),
        ({"users": (("alice", "pw"), ("alice", "other"))}, "twice"),
        ({"users": (("", "pw"),)}, "empty"),
        ({"users": (("alice",),)}, "pair"),
        ({"users": "alice:pw"}, "mapping"),
        ({"algorithms": ("SHA-1",)}, "unknown Digest algorithm"),
        ({"algorithms": ()}, "at least one"),
        ({"algorithms": "MD5"}, "not one string"),
        ({"algorithms": ("MD5", "md5")}, "twice"),
        ({"qop": "auth-int"}, "qop"),
        ({"nonce_lifetime": 0}, "lifetime"),
        ({"nonce_lifetime": float("nan")}, "lifetime"),
    ],
)
def test_spec_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"realm": "lab", "users": {"alice": "pw"}}
    with pytest.raises(ValueError, match=message):
        AuthSpec(**{**base, **kwargs})  # type: ignore[arg-type]


# ------------------------------------------------------------------- nonces


def test_nonce_round_trip_and_expiry() -> None:
    nonce = SIGNER.make("lab", T0)
    assert len(nonce) == 32
    assert SIGNER.check(nonce, "lab", T0, 300) == "valid"
    assert SIGNER.check(nonce, "lab", T0 + 300, 300) == "valid"
    assert SIGNER.check(nonce, "lab", T0 + 300.5, 300) == "stale"
    assert SIGNER.check(nonce, "lab", T0 - 4, 300) == "valid"  # small clock skew
    assert SIGNER.check(nonce, "lab", T0 - 60, 300) == "stale"  # from the future
    assert SIGNER.check(nonce, "lab", float("nan"), 300) == "stale"
    # Another process with the same secret agrees: nothing is stored.
    assert NonceSigner(SECRET).check(nonce, "lab", T0 + 1, 300) == "valid"


def test_nonces_differ_by_time_and_realm() -> None:
    assert SIGNER.make("lab", T0) != SIGNER.make("lab", T0 + 0.001)
    assert SIGNER.make("lab", T0) != SIGNER.make("lab2", T0)
    assert SIGNER.check(SIGNER.make("lab", 0.0), "lab", 1.0, 300) == "valid"
    assert SIGNER.check(SIGNER.make("lab", -5.0), "lab", 1.0, 300) == "valid"


def test_tampered_nonce_is_invalid_at_every_position() -> None:
    nonce = SIGNER.make("lab", T0)
    for i, ch in enumerate(nonce):
        flipped = nonce[:i] + ("A" if ch != "A" else "B") + nonce[i + 1 :]
        assert SIGNER.check(flipped, "lab", T0, 300) == "invalid", i


def test_nonce_for_another_realm_or_secret_is_invalid() -> None:
    nonce = SIGNER.make("lab", T0)
    assert SIGNER.check(nonce, "other", T0, 300) == "invalid"
    assert NonceSigner(b"other-secret").check(nonce, "lab", T0, 300) == "invalid"


@pytest.mark.parametrize(
    "garbage",
    ["", "x", "!" * 32, "=" * 32, "A" * 31, "A" * 33, "A" * 100_000, "é" * 32, "\udcff" * 32],
)
def test_garbage_nonces_are_invalid(garbage: str) -> None:
    assert SIGNER.check(garbage, "lab", T0, 300) == "invalid"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.text(max_size=10), st.floats())
def test_nonce_check_never_raises(nonce: str, realm: str, now: float) -> None:
    assert SIGNER.check(nonce, realm, now, 300) in ("valid", "stale", "invalid")


def test_signer_needs_a_secret_and_a_finite_time() -> None:
    with pytest.raises(ValueError, match="secret"):
        NonceSigner(b"")
    with pytest.raises(ValueError, match="finite"):
        SIGNER.make("lab", float("inf"))
    assert "test-secret" not in repr(SIGNER)


# --------------------------------------------------------------- challenges


def test_one_challenge_per_algorithm_in_order() -> None:
    spec = AuthSpec("lab", {"a": "b"}, algorithms=("SHA-512-256", "SHA-256", "MD5"))
    values = challenges(spec, "N")
    assert values == [
        'Digest realm="lab", nonce="N", algorithm=SHA-512-256, qop="auth"',
        'Digest realm="lab", nonce="N", algorithm=SHA-256, qop="auth"',
        'Digest realm="lab", nonce="N", algorithm=MD5, qop="auth"',
    ]


def test_challenge_stale_opaque_and_no_qop() -> None:
    spec = AuthSpec('my "lab"', {"a": "b"}, algorithms=("MD5",), qop=None)
    (value,) = challenges(spec, "N", stale=True, opaque="op")
    assert value == r'Digest realm="my \"lab\"", nonce="N", opaque="op", algorithm=MD5, stale=true'
    assert parse_credentials(value) == {
        "realm": 'my "lab"',
        "nonce": "N",
        "opaque": "op",
        "algorithm": "MD5",
        "stale": "true",
    }


def test_challenge_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="control"):
        challenges(SPEC, "N\r\nVia: x")


# ------------------------------------------------------------------- verify


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_right_password_is_ok_for_every_algorithm(algorithm: str) -> None:
    spec = AuthSpec("lab", {"alice": "wonderland"}, algorithms=ALGORITHMS)
    verdict = verify(spec, "INVITE", [auth_value(spec, algorithm=algorithm)], SIGNER, T0 + 10)
    assert verdict.result == "ok"
    assert verdict.username == "alice"


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_a_spec_of_sha256_and_md5_accepts_both(algorithm: str) -> None:
    verdict = verify(
        SPEC, "REGISTER", [auth_value(algorithm=algorithm, method="REGISTER")], SIGNER, T0
    )
    assert verdict == Verdict("ok", "alice", f"alice authenticated with {algorithm}")


def test_the_default_challenge_is_md5_alone() -> None:
    """baresip 1.0 stops at a first challenge it cannot answer; SIPp 3.6 and pyVoIP know
    MD5 only: the default challenges as Asterisk, FreeSWITCH and Kamailio do."""
    spec = AuthSpec("lab", {"alice": "wonderland"})
    assert spec.algorithms == ("MD5",)
    (challenge,) = challenges(spec, SIGNER.make("lab", T0))
    assert "algorithm=MD5" in challenge and 'qop="auth"' in challenge
    assert verify(spec, "INVITE", [auth_value(spec, algorithm="MD5")], SIGNER, T0).result == "ok"
    verdict = verify(spec, "INVITE", [auth_value(spec)], SIGNER, T0)  # SHA-256: not offered
    assert (verdict.result, verdict.check) == ("bad", "algorithm not offered")


def test_absent_algorithm_means_md5() -> None:
    value = auth_value(algorithm="MD5").replace(", algorithm=MD5", "")
    assert "algorithm" not in value
    assert verify(SPEC, "INVITE", [value], SIGNER, T0).result == "ok"
    sha_only = AuthSpec("lab", {"alice": "wonderland"}, algorithms=("SHA-256",))
    assert verify(sha_only, "INVITE", [value], SIGNER, T0) == Verdict(
        "bad", "alice", "algorithm MD5 not offered", "algorithm not offered"
    )


def test_wrong_password_is_bad() -> None:
    verdict = verify(SPEC, "INVITE", [auth_value(password="nope")], SIGNER, T0)
    assert verdict == Verdict("bad", "alice", "wrong password for alice", "wrong password")


def test_wrong_method_is_bad() -> None:
    assert verify(SPEC, "BYE", [auth_value()], SIGNER, T0).result == "bad"


def test_unknown_user_is_bad() -> None:
    verdict = verify(SPEC, "INVITE", [auth_value(user="mallory")], SIGNER, T0)
    assert verdict == Verdict("bad", "mallory", "unknown user mallory", "unknown user")


def test_algorithm_not_offered_is_bad() -> None:
    verdict = verify(SPEC, "INVITE", [auth_value(algorithm="SHA-512-256")], SIGNER, T0)
    assert verdict == Verdict(
        "bad", "alice", "algorithm SHA-512-256 not offered", "algorithm not offered"
    )
    odd = auth_value().replace("algorithm=SHA-256", "algorithm=SHA-1")
    assert verify(SPEC, "INVITE", [odd], SIGNER, T0).result == "bad"


def test_stale_nonce_with_right_password_is_stale() -> None:
    value = auth_value(issued=T0 - 301)
    verdict = verify(SPEC, "INVITE", [value], SIGNER, T0)
    assert verdict == Verdict("stale", "alice", "stale nonce for alice", "stale nonce")


def test_stale_nonce_with_wrong_password_is_bad() -> None:
    value = auth_value(issued=T0 - 301, password="nope")
    assert verify(SPEC, "INVITE", [value], SIGNER, T0).result == "bad"


def test_forged_or_foreign_nonce_gets_a_fresh_challenge() -> None:
    forged = credentials("alice", "wonderland", "lab", "x" * 32, "INVITE", URI)
    assert verify(SPEC, "INVITE", [forged], SIGNER, T0) == Verdict(
        "missing", "alice", "nonce not ours", "nonce not ours"
    )
    other = NonceSigner(b"elsewhere").make("lab", T0)
    foreign = credentials("alice", "wonderland", "lab", other, "INVITE", URI)
    assert verify(SPEC, "INVITE", [foreign], SIGNER, T0).result == "missing"
    # A forged nonce beside right credentials: the right ones win.
    good = credentials("alice", "wonderland", "lab", SIGNER.make("lab", T0), "INVITE", URI)
    assert verify(SPEC, "INVITE", [forged, good], SIGNER, T0).result == "ok"


def test_missing_header_is_missing() -> None:
    assert verify(SPEC, "INVITE", [], SIGNER, T0).result == "missing"
    basic = verify(SPEC, "INVITE", ["Basic YWxpY2U6d29uZGVybGFuZA=="], SIGNER, T0)
    assert basic.result == "missing"


def test_credentials_for_another_realm_only_are_missing() -> None:
    other = AuthSpec("upstream", {"alice": "wonderland"})
    verdict = verify(SPEC, "INVITE", [auth_value(other)], SIGNER, T0)
    assert verdict == Verdict(
        "missing", None, "credentials only for realm(s) upstream", "no credentials"
    )


def test_our_realm_is_picked_among_several() -> None:
    other = AuthSpec("upstream", {"alice": "x"})
    values = [auth_value(other, password="x"), auth_value()]
    assert verify(SPEC, "INVITE", values, SIGNER, T0).result == "ok"
    # A wrong answer next to a right one for the same realm: the right one wins.
    assert verify(SPEC, "INVITE", [auth_value(password="no"), *values], SIGNER, T0).result == "ok"


def test_malformed_digest_credentials_are_bad() -> None:
    verdict = verify(SPEC, "INVITE", ['Digest username="alice", realm="lab'], SIGNER, T0)
    assert verdict == Verdict("bad", None, "malformed Digest credentials", "malformed credentials")


def test_missing_fields_are_bad() -> None:
    value = auth_value()
    without_uri = ", ".join(p for p in value.split(", ") if not p.startswith("uri="))
    verdict = verify(SPEC, "INVITE", [without_uri], SIGNER, T0)
    assert verdict == Verdict("bad", "alice", "missing uri", "malformed credentials")
    without_nc = ", ".join(p for p in value.split(", ") if not p.startswith("nc="))
    assert verify(SPEC, "INVITE", [without_nc], SIGNER, T0).result == "bad"
    bad_nc = value.replace("nc=00000001", "nc=1")
    assert verify(SPEC, "INVITE", [bad_nc], SIGNER, T0).reason == "malformed nc 1"


def test_an_answer_without_qop_is_checked_in_the_rfc_2069_form() -> None:
    """RFC 2617 §3.2.2 keeps qop optional in the answer for RFC 2069 clients (pyVoIP):
    response = H(HA1:nonce:HA2), right or wrong like any other."""
    value = auth_value(qop=None)
    assert "qop" not in value and "cnonce" not in value
    verdict = verify(SPEC, "INVITE", [value], SIGNER, T0)
    assert verdict == Verdict(
        "ok", "alice", "alice authenticated with SHA-256 (RFC 2069 form, no qop)", "", True
    )
    wrong = verify(SPEC, "INVITE", [auth_value(qop=None, password="nope")], SIGNER, T0)
    assert (wrong.result, wrong.check, wrong.rfc2069) == ("bad", "wrong password", False)
    stale = verify(SPEC, "INVITE", [auth_value(qop=None, issued=T0 - 301)], SIGNER, T0)
    assert (stale.result, stale.rfc2069) == ("stale", True)
    # The RFC 2069 form by hand, as pyVoIP computes it.
    nonce = SIGNER.make("lab", T0)
    ha1 = hashlib.md5(b"alice:lab:wonderland").hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{URI}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    by_hand = (
        f'Digest username="alice",realm="lab",nonce="{nonce}",uri="{URI}",'
        f'response="{response}",algorithm=MD5'
    )
    assert verify(SPEC, "REGISTER", [by_hand], SIGNER, T0).result == "ok"


def test_a_rule_may_require_qop() -> None:
    strict = AuthSpec("lab", {"alice": "wonderland"}, algorithms=("SHA-256",), require_qop=True)
    verdict = verify(strict, "INVITE", [auth_value(strict, qop=None)], SIGNER, T0)
    assert verdict == Verdict("bad", "alice", "no qop=auth in the answer", "no qop")
    assert verify(strict, "INVITE", [auth_value(strict)], SIGNER, T0).result == "ok"
    with pytest.raises(ValueError, match="no qop offered"):
        AuthSpec("lab", {"alice": "x"}, qop=None, require_qop=True)


def test_no_qop_offered_accepts_both_forms() -> None:
    value = auth_value(qop=None)
    rfc2069 = AuthSpec("lab", {"alice": "wonderland"}, algorithms=("SHA-256",), qop=None)
    assert verify(rfc2069, "INVITE", [value], SIGNER, T0).result == "ok"
    # A client that uses qop=auth anyway is still checked, and passes.
    assert verify(rfc2069, "INVITE", [auth_value()], SIGNER, T0).result == "ok"


def test_auth_int_is_accepted_when_it_verifies() -> None:
    nonce = SIGNER.make("lab", T0)
    body = b"v=0\r\n"
    value = credentials(
        "alice",
        "wonderland",
        "lab",
        nonce,
        "INVITE",
        URI,
        algorithm="SHA-256",
        qop="auth-int",
        body=body,
    )
    assert verify(SPEC, "INVITE", [value], SIGNER, T0, body).result == "ok"
    assert verify(SPEC, "INVITE", [value], SIGNER, T0, b"v=1\r\n").result == "bad"
    odd = value.replace("qop=auth-int", "qop=auth-conf")
    assert verify(SPEC, "INVITE", [odd], SIGNER, T0, body).reason == "qop auth-conf not supported"


def test_userhash_is_refused() -> None:
    value = auth_value() + ", userhash=true"
    verdict = verify(SPEC, "INVITE", [value], SIGNER, T0)
    assert verdict.result == "bad"
    assert "userhash" in verdict.reason


def test_response_hex_case_does_not_matter() -> None:
    value = auth_value()
    response = parse_credentials(value)["response"]  # type: ignore[index]
    upper = value.replace(response, response.upper())
    assert verify(SPEC, "INVITE", [upper], SIGNER, T0).result == "ok"


def test_proxy_spec_verifies_the_same_way() -> None:
    proxy = AuthSpec("lab", {"alice": "wonderland"}, algorithms=("SHA-256",), proxy=True)
    assert verify(proxy, "INVITE", [auth_value(proxy)], SIGNER, T0).result == "ok"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=3), st.text(max_size=8))
def test_verify_never_raises(values: list[str], method: str) -> None:
    base = auth_value()
    values = [*values, base[: len(values[0])] if values else base]
    verdict = verify(SPEC, method, values, SIGNER, T0)
    assert verdict.result in ("ok", "missing", "stale", "bad")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["username", "realm", "nonce", "uri", "response", "cnonce", "nc"]),
    st.text(max_size=40),
)
def test_verify_never_raises_on_odd_field_values(field: str, text: str) -> None:
    params = parse_credentials(auth_value())
    assert params is not None
    params[field] = text
    escaped = {k: v.replace("\\", "\\\\").replace('"', '\\"') for k, v in params.items()}
    value = "Digest " + ", ".join(f'{k}="{v}"' for k, v in escaped.items())
    verdict = verify(SPEC, "INVITE", [value], SIGNER, T0)
    assert verdict.result in ("ok", "missing", "stale", "bad")


def test_right_credentials_for_another_resource_are_flagged_or_refused() -> None:
    """RFC 2617 §3.2.2.5: uri must name the Request-URI's resource.  SIPp 3.6 answers
    with uri="sip:host:port" for an INVITE to sip:1001@host:port: flagged, and refused
    only with check_uri."""
    value = auth_value()  # uri sip:alice@127.0.0.1
    same = verify(SPEC, "INVITE", [value], SIGNER, T0, request_uri=URI + ";transport=tcp")
    assert (same.result, same.other_uri) == ("ok", "")  # parameters aside
    other = verify(SPEC, "INVITE", [value], SIGNER, T0, request_uri="sip:bob@127.0.0.1")
    assert (other.result, other.other_uri) == ("ok", URI)
    strict = AuthSpec("lab", {"alice": "wonderland"}, algorithms=("SHA-256",), check_uri=True)
    refused = verify(strict, "INVITE", [value], SIGNER, T0, request_uri="sip:bob@127.0.0.1")
    assert (refused.result, refused.check) == ("bad", "uri is not the Request-URI")
    # A wrong password is told as such, whatever the uri.
    wrong = auth_value(strict, password="nope")
    verdict = verify(strict, "INVITE", [wrong], SIGNER, T0, request_uri="sip:bob@127.0.0.1")
    assert verdict.check == "wrong password"
