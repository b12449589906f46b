"""Digest authentication (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760), with a fake clock."""

from __future__ import annotations

import hashlib
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipresponder.core.auth import (
    ALGORITHMS,
    AuthSpec,
    NonceSigner,
    Verdict,
    challenges,
    credentials,
    digest_response,
    parse_credentials,
    verify,
)

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


# --------------------------------------------------------------- RFC vectors


def test_rfc2617_section_3_5_example() -> None:
    args = ("Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html")
    nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093"
    expected = "6629fae49393a05397450978507c4ef1"
    assert digest_response("MD5", *args, nonce, "00000001", "0a4f113b", "auth") == expected


RFC7616 = (
    "Mufasa",
    "http-auth@example.org",
    "Circle of Life",
    "GET",
    "/dir/index.html",
    "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "00000001",
    "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "auth",
)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm: str, expected: str) -> None:
    assert digest_response(algorithm, *RFC7616) == expected


def recompute(name: str, sess: bool, qop: str | None, body: bytes = b"") -> str:
    """The RFC 7616 §3.4 formulas written out again with hashlib, independently."""
    user, realm, password, method, uri, nonce, nc, cnonce, _ = RFC7616

    def h(text: str | bytes) -> str:
        data = text.encode() if isinstance(text, str) else text
        return hashlib.new(name, data).hexdigest()

    ha1 = h(f"{user}:{realm}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}:{h(body)}") if qop == "auth-int" else h(f"{method}:{uri}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("qop", ["auth", "auth-int", None])
def test_every_algorithm_and_qop_matches_the_formulas(algorithm: str, qop: str | None) -> None:
    name = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
    base = algorithm.removesuffix("-sess")
    args = (*RFC7616[:-1], qop, b"v=0\r\n")
    got = digest_response(algorithm, *args)
    assert got == recompute(name[base], algorithm.endswith("-sess"), qop, b"v=0\r\n")
    assert digest_response(algorithm.lower(), *args) == got


def test_sha512_256_is_the_fips_variant_not_truncated_sha512() -> None:
    # FIPS 180-4 test vector for SHA-512/256("abc").
    abc = "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    assert hashlib.new("sha512_256", b"abc").hexdigest() == abc


def test_digest_response_refuses_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        digest_response("SHA-1", *RFC7616)
    with pytest.raises(ValueError, match="qop"):
        digest_response("MD5", *RFC7616[:-1], "auth-conf")
    with pytest.raises(ValueError, match="cnonce"):
        digest_response("MD5-sess", *RFC7616[:6], None, None, None)


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


# ---------------------------------------------------------- parse_credentials


def test_parse_rfc2617_authorization() -> None:
    value = (
        'Digest username="Mufasa", realm="testrealm@host.com",\r\n'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html",'
        ' qop=auth, nc=00000001, cnonce="0a4f113b",'
        ' response="6629fae49393a05397450978507c4ef1",'
        ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert parse_credentials(value) == {
        "username": "Mufasa",
        "realm": "testrealm@host.com",
        "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "uri": "/dir/index.html",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "0a4f113b",
        "response": "6629fae49393a05397450978507c4ef1",
        "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
    }


def test_parse_quoted_commas_escapes_tokens_and_case() -> None:
    value = r'  DIGEST UserName = "a, \"b\" \\c" ,REALM="x=y, z",Algorithm=SHA-256  '
    assert parse_credentials(value) == {
        "username": 'a, "b" \\c',
        "realm": "x=y, z",
        "algorithm": "SHA-256",
    }
    assert parse_credentials('digest uri="sip:a@b;transport=tcp"') == {
        "uri": "sip:a@b;transport=tcp"
    }
    assert parse_credentials('Digest realm=""') == {"realm": ""}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        "Digest ",
        'Basic realm="x"',
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        'Digestrealm="x"',
        'Digest realm="x',  # unterminated quote
        'Digest realm="x" nonce="y"',  # missing comma
        'Digest realm="x",',  # trailing comma
        'Digest , realm="x"',
        'Digest realm="x",,nonce="y"',
        "Digest realm",
        "Digest realm=",
        "Digest realm=a/b",  # not a token: must be quoted
        'Digest realm="x", realm="y"',  # repeated directive
        'Digest realm="a\\',
        'Digest "realm"="x"',
    ],
)
def test_parse_refuses_other_schemes_and_malformed_values(value: str) -> None:
    assert parse_credentials(value) is None


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_parse_never_raises(text: str) -> None:
    result = parse_credentials(text)
    assert result is None or all(key == key.lower() for key in result)
    parse_credentials("Digest " + text)
    parse_credentials('Digest realm="' + text)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), st.text()))
def test_parse_round_trips_quoted_values(params: dict[str, str]) -> None:
    params = {k: v.replace("\r", "").replace("\n", "") for k, v in params.items()}
    quoted = ", ".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in params.items()
    )
    assert parse_credentials(f"Digest {quoted}") == (params or None)


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
