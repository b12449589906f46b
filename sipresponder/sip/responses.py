"""Building a response to a request (RFC 3261 §8.2.6) with what each code must carry.

What belongs here: the To tag derived from the request (so every response to a request
and its retransmissions carries the same one), the Via list of a response with
``received``/``rport`` filled (§18.2.1, RFC 3581 §4), the UDP destination of a response
(§18.2.2), and ``build_response``, which adds the per-code mandatory headers (Contact,
Allow, Unsupported, Min-Expires, challenges, SDP ...).  Pure functions; imports
``codes``, ``message``, ``sdp`` and ``uri`` only, and ``_speedups`` for the C twin of the
To tag's hash.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..version import __version__
from ._speedups import twin
from .codes import reason_phrase
from .message import (
    METHODS,
    Request,
    Response,
    decimal,
    format_via,
    header_key,
)
from .sdp import build_answer, build_offer
from .uri import hostport, plain_ip, same_ip, uri_of

# C twins of the _py_* functions here, or None (loaded by sip/_speedups.py).
_c_to_tag: Final[Callable[[bytes, str, str | None, int], str | None] | None] = twin(
    __name__, "to_tag"
)

SERVER: Final = f"sipresponder/{__version__}"

KNOWN_METHODS: Final = frozenset(METHODS)
ALLOW = ", ".join(METHODS)
ACCEPT = "application/sdp"
#: Option tags we support (RFC 3327 Path: a 200 to REGISTER echoes the Path headers).
SUPPORTED_OPTIONS: Final = ("path",)
SUPPORTED = ", ".join(SUPPORTED_OPTIONS)

#: Methods whose 2xx establishes a dialog and so needs Contact (and copies Record-Route).
_DIALOG_2XX: Final = frozenset({"INVITE", "SUBSCRIBE", "REFER", "UPDATE"})

_EXPIRES_PARAM_RE = re.compile(r";\s*expires\s*=\s*[^;\s]*", re.I)


@dataclass(frozen=True, slots=True)
class Local:
    """Our side of the flow a request arrived on: the address we were reached at."""

    host: str
    port: int
    transport: str  # "udp" | "tcp" | "tls" | "ws" | "wss"

    @property
    def hostport(self) -> str:
        return hostport(self.host, self.port)


def make_to_tag(secret: bytes, call_id: str, from_tag: str | None, cseq_num: int) -> str:
    """Deterministic To tag (§19.3): keyed hash of Call-ID, From tag and CSeq number.

    A retransmission, the CANCEL of an INVITE and the ACK of a non-2xx all share these
    three values, so they all see the same tag without any state being kept.  With the
    compiled core, the same hash in C (``_c_to_tag``: a third of the instructions; None
    from it for what it leaves to Python: text that is not ASCII, a long key or input).
    """
    if _c_to_tag is not None:
        tag = _c_to_tag(secret, call_id, from_tag, cseq_num)
        if tag is not None:
            return tag
    return _py_to_tag(secret, call_id, from_tag, cseq_num)


def _py_to_tag(secret: bytes, call_id: str, from_tag: str | None, cseq_num: int) -> str:
    """``make_to_tag`` in Python: the definition, which the pure-Python core runs (and the
    compiled one for what the C function leaves: text that is not ASCII, a long key)."""
    data = f"{call_id}\x00{from_tag or ''}\x00{cseq_num}".encode("utf-8", "surrogateescape")
    keyed = _KEYED.get(secret)
    if keyed is None:
        if len(_KEYED) >= 16:
            _KEYED.clear()
        # BLAKE2s takes keys of up to 32 bytes: a longer secret keys it by its hash.
        key = secret if len(secret) <= 32 else hashlib.blake2s(secret).digest()
        keyed = _KEYED[secret] = hashlib.blake2s(key=key, digest_size=8)
    h = keyed.copy()  # a copy of the keyed state: cheaper than keying anew
    h.update(data)
    return h.hexdigest()


#: A keyed blake2s state per secret (a process has one or two), copied for each tag.
_KEYED: dict[bytes, hashlib.blake2s] = {}


def response_vias(req: Request, source_ip: str, source_port: int) -> list[str]:
    """The request's Via values, in order, with the top one stamped.

    RFC 3261 §18.2.1: add ``received`` when the sent-by host is not the packet's source
    address.  RFC 3581 §4: when the request carried an empty ``rport``, fill it with the
    source port and add ``received`` even if it equals the sent-by host.
    """
    vias = req.vias
    top = req.top_via
    if top is None:
        return list(vias)
    wants_rport = False
    for name, value in top.params:
        if name == "rport" and value is None:
            wants_rport = True
            break
    if not wants_rport and same_ip(top.host, source_ip):
        return list(vias)
    text = vias[0]
    if wants_rport and text.endswith(";rport") and not top.has_param("received"):
        # The usual shape (SIPp, most phones): the value as sent, stamped at its end.
        return [f"{text}={source_port};received={plain_ip(source_ip)}", *vias[1:]]
    params = [(k, v) for k, v in top.params if k != "received"]
    if wants_rport:
        params = [(k, str(source_port)) if k == "rport" else (k, v) for k, v in params]
    params.append(("received", plain_ip(source_ip)))
    # The parsed top Via, stamped.
    return [format_via(top.transport, top.sent_by, params), *vias[1:]]


def response_destination(req: Request, source_ip: str, source_port: int) -> tuple[str, int]:
    """Where a response to a request over UDP goes (RFC 3261 §18.2.2, RFC 3581 §4).

    The host is always the request's source IP: ``received`` is added whenever the
    sent-by differs from it.  Deviation: a Via ``maddr`` is not followed — a responder must
    not send traffic to an address that a request merely names.  The port is the source
    port when ``rport`` was asked for, else the sent-by port, else 5060.
    """
    top = req.top_via
    if top is None or top.has_param("rport"):
        return source_ip, source_port
    return source_ip, top.port if top.port is not None else 5060


@dataclass(frozen=True, slots=True)
class Extras:
    """What the endpoint decided beyond the code: per-response additions."""

    reason: str | None = None
    unsupported: tuple[str, ...] = ()
    nonce: str = ""
    realm: str = "sipresponder"
    retry_after: int | None = None
    warning: str | None = None
    #: Headers added, or replacing the builder's headers of the same name (rules).
    headers: tuple[tuple[str, str], ...] = ()
    #: A body to send instead of the default one, with its type.
    body: bytes | None = None
    content_type: str | None = None
    #: ``answer`` | ``offer`` | ``none``: the SDP of this response, instead of the default.
    sdp: str | None = None


NO_EXTRAS: Final = Extras()


def build_response(
    req: Request,
    status: int,
    *,
    to_tag: str | None,
    source: tuple[str, int],
    local: Local,
    extras: Extras = NO_EXTRAS,
    server: str = SERVER,
    vias: list[str] | None = None,
) -> Response:
    """The response ``status`` to ``req`` (RFC 3261 §8.2.6), as an object.

    The same as ``Answers(...).response(status, extras)``: see ``Answers``.
    """
    answers = Answers(req, to_tag=to_tag, source=source, local=local, vias=vias)
    return answers.response(status, extras, server)


class Answers:
    """Every response to one request (RFC 3261 §8.2.6).

    Each copies every Via (stamped), From, Call-ID and CSeq, and copies To adding
    ``to_tag`` unless the request's To already has a tag or the response is 100
    (§8.2.6.2).  That shared part is rendered once per request; ``render`` adds what the
    code must carry and returns the wire bytes, ``response`` the same as a ``Response``.
    ``to_tag`` may be ``None`` only for 100 Trying and for error responses to requests
    too broken to tag.  ``vias`` may pass in what ``response_vias(req, *source)``
    returned.
    """

    __slots__ = ("_shared", "_shared_100", "local", "req", "to_tag", "vias")

    def __init__(
        self,
        req: Request,
        *,
        to_tag: str | None,
        source: tuple[str, int],
        local: Local,
        vias: list[str] | None = None,
    ) -> None:
        self.req = req
        self.to_tag = to_tag
        self.local = local
        self.vias = response_vias(req, source[0], source[1]) if vias is None else vias
        self._shared: str | None = None
        self._shared_100: str | None = None

    def shared(self, status: int) -> list[tuple[str, str]]:
        """Via, From, To, Call-ID and CSeq of the response ``status``."""
        req = self.req
        headers: list[tuple[str, str]] = [("Via", v) for v in self.vias]
        if req.from_ is not None:
            headers.append(("From", req.from_))
        if req.to is not None:
            to = req.to
            if status != 100 and req.to_tag is None and self.to_tag:
                to = f"{to};tag={self.to_tag}"
            headers.append(("To", to))
        if req.call_id is not None:
            headers.append(("Call-ID", req.call_id))
        if req.cseq is not None:
            headers.append(("CSeq", req.cseq))
        return headers

    def _shared_texts(self, trying: bool) -> tuple[str, str]:
        """``shared(100)`` and ``shared(status)`` of any other status as header lines, made
        together once a request: they differ in the To tag alone.  Without ``trying``
        (the first response is not a 100: an OPTIONS, say) the first is not made ("")."""
        req = self.req
        vias = self.vias
        head = "".join([f"Via: {v}\r\n" for v in vias])
        if req.from_ is not None:
            head = f"{head}From: {req.from_}\r\n"
        tail = "" if req.call_id is None else f"Call-ID: {req.call_id}\r\n"
        if req.cseq is not None:
            tail = f"{tail}CSeq: {req.cseq}\r\n"
        if req.to is None:
            return head + tail, head + tail
        if req.to_tag is not None or not self.to_tag:
            plain = f"{head}To: {req.to}\r\n{tail}"
            return plain, plain
        plain = f"{head}To: {req.to}\r\n{tail}" if trying else ""
        return plain, f"{head}To: {req.to};tag={self.to_tag}\r\n{tail}"

    def response(self, status: int, extras: Extras = NO_EXTRAS, server: str = SERVER) -> Response:
        req, local, tag = self.req, self.local, self.to_tag
        headers, body, content_type = _own(req, status, local, tag, extras, server)
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        reason = extras.reason or reason_phrase(status)
        return Response(status, reason, self.shared(status) + headers, body)

    def render(self, status: int, extras: Extras = NO_EXTRAS, server: str = SERVER) -> bytes:
        """The response ``status`` as wire bytes (Content-Length from the body, §20.14):
        what ``serialize_response(self.response(status, extras))`` gives, faster."""
        if status == 100:
            shared = self._shared_100
            if shared is None:
                shared, self._shared = self._shared_texts(True)
                self._shared_100 = shared
        else:
            shared = self._shared
            if shared is None:
                shared = self._shared = self._shared_texts(False)[1]
        req, local = self.req, self.local
        fixed = extras is NO_EXTRAS and server == SERVER and _request_free(req, status)
        if fixed:
            # The status line and everything after the shared headers follow from the
            # method, the code and our address alone: made once, kept.
            key = (req.method, status, local.host, local.port, local.transport)
            cached = _FIXED.get(key)
            if cached is not None:
                line, tail = cached
                return (line + shared + tail).encode("utf-8", "surrogateescape")
        headers, body, content_type = _own(req, status, local, self.to_tag, extras, server)
        reason = extras.reason or reason_phrase(status)
        line = f"SIP/2.0 {status} {reason}\r\n"
        parts = [f"{name}: {value}\r\n" for name, value in headers]
        if content_type is not None:
            parts.append(f"Content-Type: {content_type}\r\n")
        parts.append(f"Content-Length: {len(body)}\r\n\r\n")
        tail = "".join(parts)
        if fixed:
            if len(_FIXED) >= 1024:
                _FIXED.clear()
            _FIXED[key] = (line, tail)
        head = (line + shared + tail).encode("utf-8", "surrogateescape")
        return head + body if body else head


#: (method, status, our address) -> (status line, headers after the shared ones): the
#: responses whose rest depends on nothing in the request (``_request_free``).
_FIXED: Final[dict[tuple[str, int, str, int, str], tuple[str, str]]] = {}


def _request_free(req: Request, status: int) -> bool:
    """Whether ``_own`` of ``status`` to ``req`` with no extras reads nothing of the request
    but its method: no copied Record-Route, Expires, Require, Contact or SDP body."""
    method = req.method
    cls = status // 100
    if status in (420, 422, 423) or (cls == 2 and method in _DIALOG_2XX):
        return False
    if method in ("INVITE", "UPDATE") and (cls == 2 or status == 183):
        return False  # the SDP answer or offer
    if cls == 2 and method in ("REGISTER", "SUBSCRIBE", "PUBLISH"):
        return False
    if method == "INVITE" and cls == 1 and status != 100:
        return req.headers.first("record-route") is None  # a dialog-creating 1xx
    return True


def _own(
    req: Request, status: int, local: Local, to_tag: str | None, extras: Extras, server: str
) -> tuple[list[tuple[str, str]], bytes, str | None]:
    """What the response ``status`` carries beyond the shared headers: (headers, body,
    content type).  The per-code mandatory headers, Server, the rule's headers and the
    body."""
    method = req.method
    headers: list[tuple[str, str]] = []
    body = b""
    content_type: str | None = None
    cls = status // 100
    dialog = method == "INVITE" and (cls == 2 or (cls == 1 and status != 100))
    dialog = dialog or (cls == 2 and method in _DIALOG_2XX)
    if dialog:
        # §12.1.1: dialog-creating responses copy Record-Route and carry Contact.
        routes = req.headers.values("record-route")
        if routes:
            headers.extend([("Record-Route", rr) for rr in routes])
        headers.append(("Contact", _contact(local, "sipresponder", req.uri)))
    elif cls == 3:
        headers.append(("Contact", _contact(local, "redirect", req.uri)))

    if cls == 1 or status == 486:
        pass  # nothing per code (the common case, short-cut)
    elif status == 200 and method == "REGISTER":
        headers.extend(_register_bindings(req))
        headers.extend(("Path", p) for p in req.headers.get_all("path"))  # RFC 3327 §5.3
    elif cls == 2 and method == "SUBSCRIBE":
        headers.append(("Expires", req.headers.get("expires") or "3600"))  # RFC 6665 §4.2.1.1
    elif cls == 2 and method == "PUBLISH":
        # RFC 3903 §6 step 8: an entity-tag and the granted expiration.
        headers.append(("SIP-ETag", (to_tag or "0")[:10]))
        headers.append(("Expires", req.headers.get("expires") or "3600"))
    elif status == 401:
        headers.append(("WWW-Authenticate", _challenge(extras)))
    elif status == 407:
        headers.append(("Proxy-Authenticate", _challenge(extras)))
    elif status == 405:
        headers.append(("Allow", ALLOW))  # RFC 3261 §21.4.6: MUST
    elif status == 415:  # RFC 3261 §21.4.13: list what we accept
        headers.append(("Accept", ACCEPT))
        headers.append(("Accept-Encoding", "identity"))
        headers.append(("Accept-Language", "en"))
    elif status == 420:
        options = extras.unsupported or tuple(req.headers.get_list("require")) or ("x-unknown",)
        headers.append(("Unsupported", ", ".join(options)))
    elif status == 421:
        headers.append(("Require", "100rel"))  # RFC 3262: the extension most often demanded
    elif status == 422:
        # RFC 4028 §6: a 422 MUST carry Min-SE.
        headers.append(("Min-SE", str(_at_least(req.headers.get("session-expires"), 1800))))
    elif status == 423:
        # RFC 3261 §10.3 step 7, §21.4.17: a 423 carries Min-Expires.
        headers.append(("Min-Expires", str(_at_least(req.headers.get("expires"), 3600))))
    elif status == 501:
        headers.append(("Allow", ALLOW))  # RFC 3261 §8.2.1: SHOULD

    if extras.retry_after is not None:
        headers.append(("Retry-After", str(extras.retry_after)))
    if extras.warning is not None:
        headers.append(("Warning", f'399 sipresponder "{extras.warning}"'))
    headers.append(("Server", server))
    if method == "OPTIONS" and cls == 2:
        # §11.2: Allow, Accept, Accept-Encoding, Accept-Language and Supported.
        headers.append(("Allow", ALLOW))
        headers.append(("Accept", ACCEPT))
        headers.append(("Accept-Encoding", "identity"))
        headers.append(("Accept-Language", "en"))
        headers.append(("Supported", SUPPORTED))
    elif method == "INVITE" and cls == 2:
        headers.append(("Allow", ALLOW))  # §13.3.1.4: SHOULD
        headers.append(("Supported", SUPPORTED))

    if extras.headers:
        replaced = {header_key(name) for name, _ in extras.headers}
        headers = [(n, v) for n, v in headers if header_key(n) not in replaced]
        headers.extend(extras.headers)

    # RFC 3261 §13.2.1 / RFC 3264: a 2xx to INVITE always carries SDP — the answer to the
    # INVITE's offer, or an offer of ours — whatever a rule says.
    must_sdp = method == "INVITE" and cls == 2
    mode = extras.sdp
    if extras.body is not None and not must_sdp:
        body, content_type = extras.body, extras.content_type or "text/plain"
    elif extras.body is not None and (extras.content_type or "") == "application/sdp":
        body, content_type = extras.body, "application/sdp"
    elif mode == "offer" and not (must_sdp and req.body):
        body = build_offer(local.host, session_id(to_tag))
    elif (
        mode == "answer"
        or must_sdp
        or (mode is None and method in ("INVITE", "UPDATE") and (cls == 2 or status == 183))
    ):
        body = _session(req, local, to_tag or "", offer_if_none=method == "INVITE" or bool(mode))
    if body and content_type is None:
        content_type = "application/sdp"
    return headers, body, content_type


def _contact(local: Local, user: str, uri: str) -> str:
    """Where the peer reaches us again.  Over TLS: a SIPS URI when the Request-URI was one
    (§12.1.1), else ``transport=tls`` — deprecated by RFC 5630 §3.1.4, but the one way a
    ``sip:`` dialog stays on TLS (a bare ``sip:`` would take the ACK to our TLS port over
    UDP), and what the clients use and understand: baresip's libre ends a call whose 2xx
    Contact is ``sips:`` a ``sip:`` call drew.  Over WebSocket ``transport=ws``, secure
    or not (RFC 7118 §5.2 defines no other; WSS is a SIPS URI with it, §5.5)."""
    transport = local.transport
    if transport == "udp":
        return f"<sip:{user}@{local.hostport}>"
    sips = uri[:5].lower() == "sips:" and (transport == "tls" or transport == "wss")
    scheme = "sips" if sips else "sip"
    if transport == "ws" or transport == "wss":
        return f"<{scheme}:{user}@{local.hostport};transport=ws>"
    if sips:
        return f"<sips:{user}@{local.hostport}>"
    return f"<sip:{user}@{local.hostport};transport={transport}>"


def _challenge(extras: Extras) -> str:
    return f'Digest realm="{extras.realm}", nonce="{extras.nonce}", algorithm=MD5, qop="auth"'


def _at_least(value: str | None, floor: int) -> int:
    """A minimum that the request's own value does not already meet."""
    if value is not None:
        number = decimal(value.split(";", 1)[0].strip())
        if number is not None and number >= floor:
            return number * 2
    return floor


def _register_bindings(req: Request) -> list[tuple[str, str]]:
    """§10.3 step 8: the 200 lists the bindings, each with its expires."""
    default = req.headers.get("expires")
    default_n = None if default is None else decimal(default.strip())
    default_s = 3600 if default_n is None else default_n
    out: list[tuple[str, str]] = []
    for contact in req.headers.get_list("contact"):
        if contact.strip() == "*":
            continue  # "remove all" (§10.2.2): nothing is left bound
        close = contact.rfind(">")
        params = contact[close + 1 :] if close >= 0 else contact
        expires = default_s
        m = _EXPIRES_PARAM_RE.search(params)
        if m is not None:
            number = decimal(m.group(0).split("=", 1)[1].strip())
            expires = default_s if number is None else number
        if expires == 0:
            continue  # a removed binding is not listed
        if close >= 0:
            kept = contact[: close + 1] + _EXPIRES_PARAM_RE.sub("", params)
        else:
            uri = uri_of(contact)
            kept = f"<{uri}>" + _EXPIRES_PARAM_RE.sub("", contact[len(uri) :])
        out.append(("Contact", f"{kept};expires={expires}"))
    return out


def _session(req: Request, local: Local, tag: str, *, offer_if_none: bool) -> bytes:
    """The SDP of a 183/2xx: the answer to the request's offer, else an offer of ours."""
    sid = session_id(tag)
    if req.body and is_sdp(req):
        return build_answer(req.body, local.host, sid)
    if offer_if_none:
        return build_offer(local.host, sid)
    return b""


def session_id(tag: str | None) -> int:
    """The SDP session id/version: stable for a request, so retransmissions match.

    The tag may be the request's own, with bytes that are not UTF-8 (kept as surrogate
    escapes by the parser): encoded back the same way, never refused."""
    return zlib.crc32((tag or "").encode("utf-8", "surrogateescape")) or 1


def is_sdp(req: Request) -> bool:
    """Whether the request's body is a session description (its Content-Type)."""
    ctype = req.headers.first("content-type")
    return ctype is not None and ctype.split(";", 1)[0].strip().lower() == "application/sdp"
