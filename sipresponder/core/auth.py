"""Digest authentication for a UAS, the policy: whom to challenge, and the verdict.

What belongs here: the realm, users and algorithms a plan challenges with (``AuthSpec``),
stateless signed nonces (``NonceSigner``), the challenges of a 401/407 for a spec
(``challenges``) and the verdict on a request's credentials (``verify``).  The protocol
itself — algorithm names, the grammar of challenges and credentials, the digest
computation — is ``sip.digest``'s.

Sans-IO: the caller passes the wall-clock time as ``now`` and the nonce secret as bytes;
nothing is stored per client.  Imports ``digest`` and ``uri`` from the package and
hashing from the standard library; no sockets, clocks or randomness.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..sip.digest import (
    ALGORITHMS,
    CONTROL_RE,
    NC_RE,
    QOPS,
    canonical_algorithm,
    challenge,
    digest_response,
    parse_credentials,
    scheme_of,
    utf8,
)
from ..sip.uri import same_uri

_INF = float("inf")

#: An authentic nonce dated this far in the future (another process's clock) is stale.
FUTURE_SKEW = 5.0

#: A nonce of ours: 32 base64url characters (``NonceSigner``).
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{32}")


# ------------------------------------------------------------------ the spec


@dataclass(frozen=True, slots=True)
class AuthSpec:
    """Who may pass and how they are challenged.

    ``users`` is normalised to a tuple of ``(username, password)`` pairs, so the spec is
    immutable and hashable; look passwords up with ``password``.  The repr shows user
    names only.
    """

    #: The protection space (RFC 2617 §1.2), quoted in every challenge.
    realm: str
    #: username -> password, as a mapping or pairs.
    users: Mapping[str, str] | tuple[tuple[str, str], ...]
    #: One challenge per algorithm, most preferred first (RFC 8760 §2.4).  MD5 alone by
    #: default, as Asterisk, FreeSWITCH and Kamailio challenge: baresip 1.0 gives up at
    #: a first challenge it cannot answer, and SIPp 3.6 and pyVoIP know MD5 only.
    algorithms: tuple[str, ...] = ("MD5",)
    #: ``"auth"``, or ``None`` to offer no qop (RFC 2069-compatible responses).
    qop: str | None = "auth"
    #: With qop offered, refuse an answer without one (RFC 2617 §3.2.2 keeps it optional
    #: for RFC 2069 clients, and by default such an answer is checked in that form).
    require_qop: bool = False
    #: Refuse (400) right credentials whose ``uri`` names another resource than the
    #: Request-URI; by default they pass, and ``Verdict.other_uri`` says so (SIPp 3.6
    #: answers an INVITE to ``sip:1001@host:port`` with ``uri="sip:host:port"``).
    check_uri: bool = False
    #: ``True``: 407 with Proxy-Authenticate / Proxy-Authorization (§22.3).
    proxy: bool = False
    #: Seconds a nonce stays valid; older ones are answered with ``stale=true``.
    nonce_lifetime: float = 300.0

    def __post_init__(self) -> None:
        if not isinstance(self.realm, str) or not self.realm:
            raise ValueError("auth realm must be a non-empty string")
        if CONTROL_RE.search(self.realm):
            raise ValueError(f"auth realm {self.realm!r} contains control characters")
        object.__setattr__(self, "users", _user_pairs(self.users))
        if isinstance(self.algorithms, str):
            raise ValueError("auth algorithms must be a tuple of names, not one string")
        algorithms: list[str] = []
        for name in self.algorithms:
            canonical = canonical_algorithm(name) if isinstance(name, str) else None
            if canonical is None:
                known = ", ".join(ALGORITHMS)
                raise ValueError(f"unknown Digest algorithm {name!r} (known: {known})")
            if canonical in algorithms:
                raise ValueError(f"Digest algorithm {canonical} listed twice")
            algorithms.append(canonical)
        if not algorithms:
            raise ValueError("auth needs at least one Digest algorithm")
        object.__setattr__(self, "algorithms", tuple(algorithms))
        qop = self.qop.lower() if isinstance(self.qop, str) else self.qop
        if qop not in ("auth", None):
            raise ValueError(f"auth qop must be 'auth' or None, not {self.qop!r}")
        object.__setattr__(self, "qop", qop)
        if self.require_qop and qop is None:
            raise ValueError("qop required, but no qop offered")
        lifetime = self.nonce_lifetime
        if not isinstance(lifetime, int | float) or not 0 < lifetime < _INF:
            raise ValueError(
                f"nonce lifetime must be a positive number of seconds, not {lifetime!r}"
            )

    def __repr__(self) -> str:
        names = tuple(name for name, _ in self._pairs())
        return (
            f"AuthSpec(realm={self.realm!r}, users={names!r}, algorithms={self.algorithms!r},"
            f" qop={self.qop!r}, require_qop={self.require_qop!r},"
            f" check_uri={self.check_uri!r}, proxy={self.proxy!r},"
            f" nonce_lifetime={self.nonce_lifetime!r})"
        )

    def _pairs(self) -> tuple[tuple[str, str], ...]:
        users = self.users
        return users if isinstance(users, tuple) else tuple(users.items())

    def password(self, username: str) -> str | None:
        """The password of ``username`` (compared exactly), or ``None``."""
        for name, password in self._pairs():
            if name == username:
                return password
        return None

    @property
    def header_name(self) -> str:
        """The challenge header: Proxy-Authenticate in a 407, else WWW-Authenticate."""
        return "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"

    @property
    def credentials_header(self) -> str:
        """The header a request answers the challenge in (§22.2, §22.3)."""
        return "Proxy-Authorization" if self.proxy else "Authorization"

    @property
    def challenge_code(self) -> int:
        return 407 if self.proxy else 401


def _user_pairs(users: object) -> tuple[tuple[str, str], ...]:
    items: list[object]
    if isinstance(users, Mapping):
        items = list(users.items())
    elif isinstance(users, tuple | list):
        items = list(users)
    else:
        raise ValueError("auth users must be a mapping or pairs of (username, password)")
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in items:
        if not (
            isinstance(item, tuple | list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], str)
        ):
            raise ValueError(f"auth user {item!r} is not a (username, password) pair of strings")
        name, password = item
        if not name:
            raise ValueError("auth usernames must not be empty")
        if name in seen:
            raise ValueError(f"auth user {name!r} listed twice")
        seen.add(name)
        pairs.append((name, password))
    if not pairs:
        raise ValueError("auth needs at least one user")
    return tuple(pairs)


# ------------------------------------------------------------------ nonces


class NonceSigner:
    """Stateless nonces: base64url(timestamp || HMAC-SHA256(secret, timestamp || realm)).

    The timestamp is milliseconds as 8 signed big-endian bytes and the HMAC is cut to 16
    bytes, so a nonce is 32 base64url characters without padding.  Nothing is stored per
    client: any process with the same secret verifies them.  Being stateless, a nonce can
    be replayed until it expires (RFC 7616 §5.5 trades this for no server state).
    """

    __slots__ = ("_secret",)

    _MAC_SIZE = 16
    _LABEL = b"sipresponder digest nonce\x00"

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray) or not secret:
            raise ValueError("the nonce secret must be non-empty bytes")
        self._secret = bytes(secret)

    def __repr__(self) -> str:
        return "NonceSigner(<secret>)"

    def _mac(self, stamp: bytes, realm: str) -> bytes:
        message = self._LABEL + stamp + utf8(realm)
        return hmac.new(self._secret, message, hashlib.sha256).digest()[: self._MAC_SIZE]

    def make(self, realm: str, now: float) -> str:
        """A fresh nonce for ``realm`` dated ``now`` (seconds, wall clock)."""
        if not -_INF < now < _INF:  # also refuses NaN
            raise ValueError(f"nonce time must be finite, not {now!r}")
        stamp = int(now * 1000).to_bytes(8, "big", signed=True)
        raw = stamp + self._mac(stamp, realm)
        return base64.urlsafe_b64encode(raw).decode("ascii")

    def check(self, nonce: str, realm: str, now: float, lifetime: float) -> str:
        """``"valid"``, ``"stale"`` (ours, but expired or from the future) or ``"invalid"``."""
        # 32 characters decode to exactly 24 bytes with no spare bits, so every character
        # change alters the decoded bytes.
        if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
            return "invalid"
        raw = base64.urlsafe_b64decode(nonce)
        stamp, mac = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, self._mac(stamp, realm)):
            return "invalid"
        age = now - int.from_bytes(stamp, "big", signed=True) / 1000
        # Written so that a NaN ``now`` counts as stale rather than valid.
        if -FUTURE_SKEW <= age <= lifetime:
            return "valid"
        return "stale"


# -------------------------------------------------------------- challenges


def challenges(
    spec: AuthSpec, nonce: str, *, stale: bool = False, opaque: str | None = None
) -> list[str]:
    """One challenge value per algorithm of ``spec``, most preferred first.

    RFC 8760 §2.4: a UAS offering several algorithms sends one challenge for each, in
    order of preference; the UAC uses the first it supports.  ``stale=True`` tells the
    UAC its credentials were right but the nonce expired (RFC 7616 §3.3), so it retries
    without asking the user.  Header name: ``spec.header_name``.
    """
    return [
        challenge(spec.realm, nonce, algorithm, spec.qop, stale=stale, opaque=opaque)
        for algorithm in spec.algorithms
    ]


# ----------------------------------------------------------------- verdict


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of ``verify``.

    ``result`` is ``"ok"``; ``"missing"`` (no credentials for this realm: challenge);
    ``"stale"`` (right credentials, expired nonce: challenge with ``stale=true``); or
    ``"bad"`` (wrong password or response, unknown user, forged nonce, algorithm not
    offered, missing or malformed fields).
    """

    result: str
    username: str | None = None
    #: A short reason for the logs, e.g. ``"wrong response for alice"``.
    reason: str = ""
    #: Which check decided, for the response's reason phrase and the journal: one of
    #: ``CHECKS`` ("" when the credentials hold).
    check: str = ""
    #: The answer had no qop and was checked in the RFC 2069 form.
    rfc2069: bool = False
    #: The answer's ``uri``, when it names another resource than the Request-URI.
    other_uri: str = ""


#: The checks a verdict names (``Verdict.check``).
CHECKS = (
    "no credentials",
    "nonce not ours",
    "stale nonce",
    "unknown user",
    "wrong password",
    "uri is not the Request-URI",
    "no qop",
    "algorithm not offered",
    "malformed credentials",
)


_REQUIRED = ("username", "realm", "nonce", "uri", "response")
_RANK = {"ok": 0, "stale": 1, "bad": 2, "missing": 3}


def verify(
    spec: AuthSpec,
    method: str,
    headers_values: list[str],
    signer: NonceSigner,
    now: float,
    body: bytes = b"",
    request_uri: str | None = None,
) -> Verdict:
    """Judge the credentials a request carries in ``spec.credentials_header``.

    ``headers_values`` are all values of that header; only Digest credentials whose realm
    is ``spec.realm`` count (a request may carry one per realm, §22.3).  When several
    do, the best verdict wins (ok, then stale, then the first bad).  When none do, the
    verdict is ``"missing"`` — or ``"bad"`` if a Digest value could not be parsed at all.
    With ``request_uri``, right credentials whose ``uri`` names another resource carry
    it in ``other_uri`` (and are refused with ``spec.check_uri``): RFC 2617 §3.2.2.5 has
    the server check that both name the same one.  The
    resource is the scheme, user and host:port (§19.1.4, parameters aside): pyVoIP
    answers a challenge to ``REGISTER sip:host`` with ``uri="sip:host;transport=UDP"``.
    """
    verdicts: list[Verdict] = []
    malformed = False
    realms: list[str] = []
    for value in headers_values:
        creds = parse_credentials(value)
        if creds is None:
            malformed = malformed or (isinstance(value, str) and scheme_of(value) == "digest")
            continue
        realm = creds.get("realm")
        if realm != spec.realm:
            if realm is not None:
                realms.append(realm)
            continue
        verdict = _check(spec, method, creds, signer, now, body)
        if (
            verdict.result in ("ok", "stale")
            and request_uri is not None
            and not same_uri(creds["uri"], request_uri, params=False)
        ):
            if spec.check_uri:
                verdict = Verdict(
                    "bad",
                    verdict.username,
                    f"Digest uri {creds['uri']} is not the Request-URI {request_uri}",
                    "uri is not the Request-URI",
                    other_uri=creds["uri"],
                )
            else:
                verdict = dataclasses.replace(verdict, other_uri=creds["uri"])
        verdicts.append(verdict)
    if verdicts:
        return min(verdicts, key=lambda v: _RANK[v.result])
    if malformed:
        return Verdict("bad", reason="malformed Digest credentials", check="malformed credentials")
    if realms:
        return Verdict(
            "missing",
            reason=f"credentials only for realm(s) {', '.join(realms)}",
            check="no credentials",
        )
    return Verdict(
        "missing", reason=f"no Digest credentials for realm {spec.realm}", check="no credentials"
    )


def _check(
    spec: AuthSpec,
    method: str,
    creds: dict[str, str],
    signer: NonceSigner,
    now: float,
    body: bytes,
) -> Verdict:
    username = creds.get("username")
    malformed = "malformed credentials"
    if creds.get("userhash", "false").lower() == "true":
        return Verdict("bad", username, "userhash (RFC 7616 §3.4.4) is not supported", malformed)
    missing = [key for key in _REQUIRED if key not in creds]
    if missing:
        return Verdict("bad", username, f"missing {', '.join(missing)}", malformed)
    username = creds["username"]
    # RFC 2617 §3.2.2: an absent algorithm means MD5.
    offered = creds.get("algorithm", "MD5")
    algorithm = canonical_algorithm(offered)
    if algorithm not in spec.algorithms:
        return Verdict("bad", username, f"algorithm {offered} not offered", "algorithm not offered")
    state = signer.check(creds["nonce"], spec.realm, now, spec.nonce_lifetime)
    if state == "invalid":
        # Not a nonce of ours (another server, or issued before a restart with a new
        # secret): nothing can be verified, so the client is challenged afresh, not refused.
        return Verdict("missing", username, "nonce not ours", "nonce not ours")
    qop = creds.get("qop")
    nc = creds.get("nc")
    cnonce = creds.get("cnonce")
    rfc2069 = False
    if qop is None:
        if spec.qop is not None:
            # RFC 2617 §3.2.2: qop stays optional in the answer "to preserve backward
            # compatibility with a minimal implementation of RFC 2069": checked in that
            # form (as Kamailio's auth module does), unless the rule requires qop.
            if spec.require_qop:
                return Verdict("bad", username, f"no qop={spec.qop} in the answer", "no qop")
            rfc2069 = True
    else:
        if qop.lower() not in QOPS:
            return Verdict("bad", username, f"qop {qop} not supported", malformed)
        if nc is None or cnonce is None:
            return Verdict("bad", username, f"qop={qop} without nc and cnonce", malformed)
        if not NC_RE.fullmatch(nc):
            return Verdict("bad", username, f"malformed nc {nc}", malformed)
    if algorithm.endswith("-sess") and cnonce is None:
        return Verdict("bad", username, f"{algorithm} without cnonce", malformed)
    password = spec.password(username)
    if password is None:
        return Verdict("bad", username, f"unknown user {username}", "unknown user")
    expected = digest_response(
        algorithm,
        username,
        spec.realm,
        password,
        method,
        creds["uri"],
        creds["nonce"],
        nc,
        cnonce,
        qop,
        body,
    )
    if not hmac.compare_digest(expected.encode("ascii"), utf8(creds["response"].lower())):
        return Verdict("bad", username, f"wrong password for {username}", "wrong password")
    if state == "stale":
        # RFC 7616 §3.3: stale=true only when the response was right for the old nonce.
        return Verdict("stale", username, f"stale nonce for {username}", "stale nonce", rfc2069)
    form = " (RFC 2069 form, no qop)" if rfc2069 else ""
    return Verdict("ok", username, f"{username} authenticated with {algorithm}{form}", "", rfc2069)
