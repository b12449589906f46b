"""Digest, the protocol (RFC 2617, RFC 7616, RFC 8760): the digest computation against the
RFCs' examples and formulas, and parsing credentials."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipresponder.sip.digest import ALGORITHMS, digest_response, parse_credentials

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
