"""SIP Digest, the protocol (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760): names, grammar, hashes.

What belongs here: the ``algorithm`` names and their canonical spelling, the grammar of a
challenge and of an Authorization/Proxy-Authorization value — one challenge value
(``challenge``), parsing credentials (``parse_credentials``) — and the digest computation
itself (``digest_response``), with ``credentials``, a client's answer to a challenge, for
tests and for tools that act as a UAC.  Who is challenged, with which algorithms, and
the verdict on a request's answer are the responder's policy (``core.auth``).

Pure functions of their arguments: imports ``grammar`` of the package and hashing from
the standard library; no sockets, clocks or randomness.
"""

from __future__ import annotations

import hashlib
import re

from .grammar import TOKEN_RE

#: Supported ``algorithm`` values, canonical spelling (RFC 7616 §6.1, RFC 8760 §2).
ALGORITHMS: tuple[str, ...] = (
    "MD5",
    "MD5-sess",
    "SHA-256",
    "SHA-256-sess",
    "SHA-512-256",
    "SHA-512-256-sess",
)

#: Lower-case algorithm name -> canonical name; ``algorithm`` is case-insensitive.
_CANONICAL = {name.lower(): name for name in ALGORITHMS}

#: Base algorithm -> hashlib name (SHA-512/256 is FIPS 180-4 §6.7, not truncated SHA-512).
_HASHLIB = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}

#: ``qop`` values we can verify (RFC 2617 §3.2.2.3); ``auth`` is the only one we offer.
QOPS = ("auth", "auth-int")

_TOKEN = TOKEN_RE.pattern
_LWS = r"[ \t\r\n]*"
_SCHEME_RE = re.compile(rf"{_LWS}({_TOKEN})(?:[ \t\r\n]+|$)")
# auth-param = token LWS "=" LWS ( token / quoted-string ), §25.1; the quoted-string
# alternatives are disjoint, so matching stays linear on any input.
_PARAM_RE = re.compile(
    rf'{_LWS}({_TOKEN}){_LWS}={_LWS}(?:"((?:[^"\\\r\n]|\\[^\r\n])*)"|({_TOKEN})){_LWS}'
)
_COMMA_RE = re.compile(rf",{_LWS}")
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
#: ``nc-value = 8LHEX`` (RFC 2617 §3.2.2), the count of a qop answer.
NC_RE = re.compile(r"[0-9A-Fa-f]{8}")
#: Control characters, which would break a header line (a quoted-string cannot hold them).
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def canonical_algorithm(name: str) -> str | None:
    """``"sha-256"`` -> ``"SHA-256"``; ``None`` for an algorithm we do not support."""
    return _CANONICAL.get(name.strip().lower())


def utf8(text: str) -> bytes:
    """Header text back to its bytes: the parser decodes with surrogateescape."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


# -------------------------------------------------------------- challenges


def _quote(value: str, what: str) -> str:
    """A §25.1 quoted-string; control characters would break the header line."""
    if CONTROL_RE.search(value):
        raise ValueError(f"{what} {value!r} contains control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(
    realm: str,
    nonce: str,
    algorithm: str,
    qop: str | None,
    *,
    stale: bool = False,
    opaque: str | None = None,
) -> str:
    """One WWW-Authenticate/Proxy-Authenticate value (RFC 7616 §3.3): ``Digest realm=...,
    nonce=..., [opaque=...,] algorithm=..., [qop=...,] [stale=true]``.

    ``stale=True`` tells the UAC its credentials were right but the nonce expired, so it
    retries without asking the user.  Raises ValueError for a realm, nonce or opaque with
    control characters in it.
    """
    value = f"Digest realm={_quote(realm, 'realm')}, nonce={_quote(nonce, 'nonce')}"
    if opaque is not None:
        value += f", opaque={_quote(opaque, 'opaque')}"
    value += f", algorithm={algorithm}"
    if qop is not None:
        value += f', qop="{qop}"'
    if stale:
        value += ", stale=true"
    return value


# ------------------------------------------------------------- credentials


def scheme_of(value: str) -> str | None:
    """The auth scheme an Authorization value names, lower case (``"digest"``), or None
    when it does not begin with a token — whether the rest parses or not."""
    m = _SCHEME_RE.match(value)
    return None if m is None else m.group(1).lower()


def parse_credentials(value: str) -> dict[str, str] | None:
    """Parse one Authorization/Proxy-Authorization value into ``{param: value}``.

    ``Digest username="a", realm="r", nc=00000001, ...`` -> ``{"username": "a", ...}``:
    keys lower case, quoted strings unquoted with their quoted-pairs undone (§25.1).
    ``None`` when the scheme is not Digest, a parameter repeats, or the value does not
    follow ``auth-param *("," auth-param)``.  Never raises.
    """
    if not isinstance(value, str):
        return None
    m = _SCHEME_RE.match(value)
    if m is None or m.group(1).lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = m.end()
    while True:
        p = _PARAM_RE.match(value, pos)
        if p is None:
            return None
        key = p.group(1).lower()
        if key in params:
            return None  # a repeated directive is ambiguous: refuse rather than guess
        quoted = p.group(2)
        if quoted is not None:
            params[key] = _QUOTED_PAIR_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        else:
            params[key] = p.group(3)
        pos = p.end()
        if pos == len(value):
            return params
        comma = _COMMA_RE.match(value, pos)
        if comma is None:
            return None
        pos = comma.end()


def _hasher(algorithm: str) -> tuple[str, bool]:
    canonical = canonical_algorithm(algorithm)
    if canonical is None:
        raise ValueError(f"unknown Digest algorithm {algorithm!r}")
    sess = canonical.endswith("-sess")
    return _HASHLIB[canonical.removesuffix("-sess")], sess


def digest_response(
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str | None,
    cnonce: str | None,
    qop: str | None,
    body: bytes = b"",
) -> str:
    """The ``response`` parameter, lower-case hex (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1).

    HA1 = H(username:realm:password); for ``-sess`` H(HA1:nonce:cnonce) with HA1 in hex
    (RFC 7616 §3.4.2).  HA2 = H(method:uri), for ``auth-int`` H(method:uri:H(body))
    (§3.4.3).  With a qop: H(HA1:nonce:nc:cnonce:qop:HA2); without (RFC 2069):
    H(HA1:nonce:HA2).  Raises ValueError for an unknown algorithm or qop, or a missing
    nc/cnonce that the algorithm or qop needs.
    """
    name, sess = _hasher(algorithm)

    def h(data: bytes) -> str:
        return hashlib.new(name, data).hexdigest()

    def kd(*parts: str) -> str:
        return h(b":".join(utf8(part) for part in parts))

    ha1 = kd(username, realm, password)
    if sess:
        if cnonce is None:
            raise ValueError(f"{algorithm} needs a cnonce")
        ha1 = kd(ha1, nonce, cnonce)
    if qop is None or qop == "":
        return kd(ha1, nonce, kd(method, uri))
    qop_l = qop.lower()
    if qop_l == "auth":
        ha2 = kd(method, uri)
    elif qop_l == "auth-int":
        ha2 = kd(method, uri, h(body))
    else:
        raise ValueError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise ValueError(f"qop={qop} needs nc and cnonce")
    return kd(ha1, nonce, nc, cnonce, qop, ha2)


def credentials(
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    *,
    algorithm: str = "MD5",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
    opaque: str | None = None,
    body: bytes = b"",
) -> str:
    """A UAC's Authorization value answering a challenge (for tests and UAC-like tools)."""
    response = digest_response(
        algorithm, username, realm, password, method, uri, nonce, nc, cnonce, qop, body
    )
    parts = [
        f"username={_quote(username, 'username')}",
        f"realm={_quote(realm, 'realm')}",
        f"nonce={_quote(nonce, 'nonce')}",
        f"uri={_quote(uri, 'uri')}",
        f'response="{response}"',
        f"algorithm={algorithm}",
    ]
    if qop:
        parts += [f"cnonce={_quote(cnonce, 'cnonce')}", f"nc={nc}", f"qop={qop}"]
    elif algorithm.lower().endswith("-sess"):
        parts.append(f"cnonce={_quote(cnonce, 'cnonce')}")
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque, 'opaque')}")
    return "Digest " + ", ".join(parts)
