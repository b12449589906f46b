"""SIP message objects and typed views of the hot headers.

What belongs here: ``Headers`` (a case-insensitive multimap that knows the compact forms),
``Request`` and ``Response``, and small parsers for the values every request needs —
Via (RFC 3261 §20.42), CSeq (§20.16) and the tag of From/To (§19.3).  Every other
header stays raw text until someone asks for it (the sipgo way).  URIs and addresses are
``uri``'s; the generic rules of the text (tokens, comma-separated values), ``grammar``'s.
Imports only ``errors``, ``grammar`` and ``_speedups`` (the C twins of ``decimal`` and the
Via parameters' reader); nothing here touches sockets, clocks or randomness.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from ..errors import ParseError
from ._speedups import twin
from .grammar import TOKEN_CHARS, split_commas

# C twins of the _py_* functions here, or None (loaded by sip/_speedups.py).
_c_decimal: Final[Callable[[str, int], int | None] | None] = twin(__name__, "decimal")
_c_via_params: Final[
    Callable[[str], tuple[list[tuple[str, str | None]], str | None] | None] | None
] = twin(__name__, "via_params")

#: Compact header forms, RFC 3261 §7.3.3 and the extensions that registered one.
COMPACT: Final[dict[str, str]] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",  # RFC 6665
    "u": "allow-events",  # RFC 6665
    "r": "refer-to",  # RFC 3515
    "b": "referred-by",  # RFC 3892
    "x": "session-expires",  # RFC 4028
    "j": "reject-contact",  # RFC 3841
    "a": "accept-contact",  # RFC 3841
    "d": "request-disposition",  # RFC 3841
    "y": "identity",  # RFC 8224
    "n": "identity-info",  # RFC 4474 (obsoleted, still seen)
}

#: Names whose conventional spelling is not plain Title-Case.
_DISPLAY: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "min-se": "Min-SE",
}

#: Every method we know (RFC 3261 and its extensions); any other gets 501 (§8.2.1).
METHODS = (
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "PRACK",
    "MESSAGE",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "PUBLISH",
)

_METHOD_SET: Final = frozenset(METHODS)


def decimal(text: str, digits: int = 10) -> int | None:
    """``text`` as a number when it is 1 to ``digits`` ASCII digits, else ``None``.

    ``str.isdigit()`` alone is no test: it is true for "²" and for 5000 digits, which
    ``int()`` refuses (a peer's number must never raise).  With the compiled core, the
    same test in C (``_c_decimal``: a quarter of the instructions).
    """
    if _c_decimal is not None:
        return _c_decimal(text, digits)
    return _py_decimal(text, digits)


def _py_decimal(text: str, digits: int) -> int | None:
    """``decimal`` in Python: the definition, which the pure-Python core runs."""
    if 0 < len(text) <= digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def header_key(name: str) -> str:
    """The lookup key of a header name: lower case, compact form expanded."""
    key = name.lower()
    return COMPACT.get(key, key)


def display_name(key: str) -> str:
    """The conventional spelling of a header name, e.g. ``call-id`` -> ``Call-ID``."""
    name = _DISPLAY.get(key)
    if name is None:
        name = "-".join(part.capitalize() for part in key.split("-"))
    return name


class Headers:
    """Case-insensitive multimap of header name -> values, one entry per header line.

    Keys are lower case with compact forms expanded, so ``h.get("v")`` and
    ``h.get("Via")`` both find the Via lines.  Values are kept as received (after line
    folding is undone); ``get_list`` splits comma-separated values.

    Most headers come once: their value is kept as a plain string (``_map``), and only
    the second and later lines of a header get a list (``_more``, None until one does) —
    a list per header line cost an allocation for every line of every message.
    """

    __slots__ = ("_map", "_more")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        #: The first line's value of each header, in the order the headers first came.
        self._map: dict[str, str] = {}
        #: The values of the second and later lines of a header, by key.
        self._more: dict[str, list[str]] | None = None
        if items:
            for name, value in items:
                self.add(name, value)

    def add(self, name: str, value: str) -> None:
        key = header_key(name)
        if key in self._map:
            self.add_more(key, value)
        else:
            self._map[key] = value

    def add_more(self, key: str, value: str) -> None:
        """Another line of a header already present (by its lookup key)."""
        more = self._more
        if more is None:
            self._more = {key: [value]}
            return
        lines = more.get(key)
        if lines is None:
            more[key] = [value]
        else:
            lines.append(value)

    def fold(self, key: str, text: str) -> None:
        """§7.3.1 line folding: ``text`` continues the latest line of header ``key``."""
        more = self._more
        lines = None if more is None else more.get(key)
        if lines is not None:
            lines[-1] = f"{lines[-1]} {text.strip()}".strip()
        else:
            self._map[key] = f"{self._map[key]} {text.strip()}".strip()

    def first(self, key: str) -> str | None:
        """The first line's value of a header by its lookup key (lower case, compact form
        expanded: ``"call-id"``), or ``None``.  The hot path's lookup."""
        return self._map.get(key)

    def get(self, name: str) -> str | None:
        """The first value of a header, or ``None``."""
        return self._map.get(header_key(name))

    def values(self, key: str) -> list[str] | None:
        """The lines of a header by its lookup key, in order; ``None`` when absent."""
        first = self._map.get(key)
        if first is None:
            return None
        more = self._more
        lines = None if more is None else more.get(key)
        return [first] if lines is None else [first, *lines]

    def get_all(self, name: str) -> list[str]:
        """Every header line's value for that name, in order received."""
        return self.values(header_key(name)) or []

    def get_list(self, name: str) -> list[str]:
        """Every comma-separated element across all lines of that header."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(split_commas(value))
        return out

    def count(self, name: str) -> int:
        return len(self.get_all(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._map

    def __iter__(self) -> Iterator[tuple[str, str]]:
        more = self._more
        for key, first in self._map.items():
            yield key, first
            lines = None if more is None else more.get(key)
            if lines is not None:
                for value in lines:
                    yield key, value

    def __len__(self) -> int:
        more = self._more
        return len(self._map) + (0 if more is None else sum(len(v) for v in more.values()))

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


# --------------------------------------------------------------------------- Via

_VIA_RE = re.compile(
    r"\s*SIP\s*/\s*(?P<version>[0-9]+\.[0-9]+)\s*/\s*(?P<transport>[A-Za-z0-9.!%*_+`'~-]+)\s+"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?:\s*:\s*(?P<port>[0-9]{1,5}))?"
    r"\s*(?P<params>;.*)?$",
    re.S,
)


class Via:
    """One Via value (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...;rport``.

    Plain classes with an explicit ``__init__`` here and below, not dataclasses: mypyc
    compiles this ``__init__``, while a dataclass's generated one stays interpreted and
    costs several times more on the per-message path.
    """

    __slots__ = ("branch", "flaw", "host", "params", "port", "transport")

    def __init__(
        self,
        transport: str,
        host: str,  # without IPv6 brackets
        port: int | None,
        params: list[tuple[str, str | None]] | None = None,
        flaw: str | None = None,
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params: list[tuple[str, str | None]] = [] if params is None else params
        #: The ``branch`` parameter ("" when it has no value), read once from ``params``.
        self.branch: str | None = self.param("branch")
        #: What the parser tolerated to address a response, but a request must not carry:
        #: a version other than 2.0, or an empty parameter (``;;``, RFC 4475 §3.1.2.1).
        self.flaw = flaw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (self.transport, self.host, self.port, self.params) == (
            other.transport,
            other.host,
            other.port,
            other.params,
        )

    def __repr__(self) -> str:
        return (
            f"Via(transport={self.transport!r}, host={self.host!r}, port={self.port!r}, "
            f"params={self.params!r})"
        )

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value if value is not None else ""
        return None

    def has_param(self, name: str) -> bool:
        # A plain loop: any() with a generator costs twice as much on the hot path.
        for key, _ in self.params:  # noqa: SIM110
            if key == name:
                return True
        return False

    @property
    def sent_by(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        return format_via(self.transport, self.sent_by, self.params)


def format_via(transport: str, sent_by: str, params: list[tuple[str, str | None]]) -> str:
    """A Via value from its parts: ``SIP/2.0/UDP host:port;branch=...``."""
    out = [f"SIP/2.0/{transport} {sent_by}"]
    for key, value in params:
        out.append(f";{key}" if value is None else f";{key}={value}")
    return "".join(out)


#: The characters of a Via host name or IPv4 address, as ``_VIA_RE`` spells them.
_HOST_CHARS: Final = string.ascii_letters + string.digits + "._-"


def parse_via(value: str) -> Via:
    """Parse one Via value, or raise ``ParseError``."""
    if value.startswith("SIP/2.0/"):
        via = _usual_via(value)
        if via is not None:
            return via
    m = _VIA_RE.match(value)
    if m is None:
        raise ParseError("Malformed Via Header")
    # Typed str names ("" for a missing group): mypyc then uses its own str operations on
    # them, not generic method calls (it does not narrow an Optional for that).
    version: str
    transport: str
    host: str
    port_text: str
    raw: str
    version, transport, host, port_text, raw = m.groups("")
    if host[0] == "[":
        host = host[1:-1]
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        raise ParseError("Bad Via Port")
    params, flaw = _via_params(raw)
    if flaw is None and version != "2.0":
        flaw = "Via Is Not SIP/2.0"
    return Via(transport.upper(), host, port, params, flaw)


def _usual_via(value: str) -> Via | None:
    """The usual spelling, ``SIP/2.0/UDP host[:port][;params]`` with a host name or IPv4
    address and single spaces, read without the pattern — to the same result as
    ``_VIA_RE`` gives it.  ``None`` when the value is spelled otherwise."""
    semi = value.find(";", 8)
    head = value if semi < 0 else value[:semi]
    known = _SENT_BY.get(head)
    if known is None:
        known = _usual_sent_by(head)
        if known is None:
            return None
        if len(_SENT_BY) >= _SENT_BY_LIMIT:
            _SENT_BY.clear()
        _SENT_BY[head] = known
    params, flaw = _via_params(value[semi:] if semi >= 0 else "")
    return Via(known[0], known[1], known[2], params, flaw)


def _usual_sent_by(head: str) -> tuple[str, str, int | None] | None:
    """``SIP/2.0/UDP host[:port]`` -> (transport in upper case, host, port), or ``None``
    when it is spelled otherwise."""
    space = head.find(" ", 8)
    transport = head[8:space]
    if space < 9 or transport.strip(TOKEN_CHARS):
        return None
    host, colon, port_text = head[space + 1 :].partition(":")
    if not host or host.strip(_HOST_CHARS):
        return None
    port = None
    if colon:
        port = decimal(port_text, 5)
        if port is None:
            return None
        if not 0 < port < 65536:
            raise ParseError("Bad Via Port")
    return transport.upper(), host, port


#: The sent-by parts of the usual Via spellings seen lately (a peer sends the same one in
#: every request): the Via up to its parameters -> what it reads as.  Emptied when full.
_SENT_BY: Final[dict[str, tuple[str, str, int | None]]] = {}
_SENT_BY_LIMIT: Final = 1024


def _via_params(raw: str) -> tuple[list[tuple[str, str | None]], str | None]:
    """``;branch=z9hG4bK1;rport`` -> the parameters, and a flaw to note (or ``None``).
    With the compiled core, the same in C for an ASCII text (``_c_via_params``; None from
    it for any other text, which the Python function reads)."""
    if _c_via_params is not None:
        read = _c_via_params(raw)
        if read is not None:
            return read
    return _py_via_params(raw)


def _py_via_params(raw: str) -> tuple[list[tuple[str, str | None]], str | None]:
    """``_via_params`` in Python: the definition, which the pure-Python core runs."""
    params: list[tuple[str, str | None]] = []
    flaw = None
    if raw:
        for item in raw[1:].split(";"):
            name, eq, val = item.partition("=")
            name = name.strip()
            if not name:
                flaw = "Empty Via Parameter"  # via-params are tokens (§25.1)
                continue
            # Parameter names are case-insensitive (§7.3.1); values are kept as sent.
            params.append((name.lower(), val.strip() if eq else None))
    return params, flaw


# ---------------------------------------------------------------------- CSeq

_CSEQ_RE = re.compile(r"\s*([0-9]{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)\s*$")


def parse_cseq(value: str) -> tuple[int, str]:
    """``"1 INVITE"`` -> ``(1, "INVITE")``; the number is below 2**31 (§8.1.1.5)."""
    number_text, space, method = value.partition(" ")
    # The usual spelling (digits, one space, a known method) reads as the pattern would.
    number = decimal(number_text) if space and method in _METHOD_SET else None
    if number is None:
        m = _CSEQ_RE.match(value)
        if m is None:
            raise ParseError("Malformed CSeq Header")
        number_text, method = m.groups()
        number = int(number_text)
    if number >= 2**31:
        raise ParseError("CSeq Number Too Large")
    return number, method


# ------------------------------------------------------------------ From / To

_TAG_RE = re.compile(r";\s*tag\s*=\s*([^\s;,>]+)", re.I)
_TAG_VALUE_RE = re.compile(r"[^\s;,>]+")


def tag_of(value: str) -> str | None:
    """The ``tag`` parameter of a From/To value (§19.3), or ``None``.

    In the name-addr form the header parameters follow ``>``; in the addr-spec form they
    follow the URI (§20.10), so ``;tag=`` is searched after the last ``>`` when there is one.
    """
    close = value.rfind(">")
    at = value.find(";tag=", close + 1)
    if at >= 0:  # the common spelling
        tag = value[at + 5 :]
        # Letters and digits (the usual tag), or token characters, to the end of the
        # value: nothing _TAG_VALUE_RE would stop at, so it would read the same.
        if tag and (tag.isalnum() or not tag.strip(TOKEN_CHARS)):
            return tag
        m = _TAG_VALUE_RE.match(value, at + 5)
        if m is not None:
            tag = m.group()
            return tag
    params = value[close + 1 :] if close >= 0 else value
    if "tag" not in params and "TAG" not in params.upper():
        return None
    m = _TAG_RE.search(params)
    return m.group(1) if m else None


# ---------------------------------------------------------------- messages


class Request:
    """A parsed SIP request.  The hot headers are parsed; the rest stay in ``headers``."""

    __slots__ = (
        "body",
        "call_id",
        "cseq",
        "cseq_method",
        "cseq_num",
        "from_",
        "from_tag",
        "headers",
        "method",
        "raw",
        "to",
        "to_tag",
        "top_via",
        "uri",
        "version",
        "vias",
    )

    def __init__(
        self,
        method: str,
        uri: str,
        version: str,
        headers: Headers,
        body: bytes = b"",
        vias: list[str] | None = None,
        top_via: Via | None = None,
        from_: str | None = None,
        to: str | None = None,
        from_tag: str | None = None,
        to_tag: str | None = None,
        call_id: str | None = None,
        cseq: str | None = None,
        cseq_num: int = 0,
        cseq_method: str = "",
        raw: bytes = b"",
    ) -> None:
        self.method = method
        self.uri = uri
        self.version = version
        self.headers = headers
        self.body = body
        #: Every Via value in order (comma-separated values split apart).
        self.vias: list[str] = [] if vias is None else vias
        #: The topmost Via, parsed; ``None`` only in a partial request attached to an error.
        self.top_via = top_via
        self.from_ = from_
        self.to = to
        self.from_tag = from_tag
        self.to_tag = to_tag
        self.call_id = call_id
        self.cseq = cseq
        self.cseq_num = cseq_num
        self.cseq_method = cseq_method
        #: The whole message as received (for the journal).
        self.raw = raw

    @property
    def branch(self) -> str | None:
        return self.top_via.branch if self.top_via is not None else None

    def __repr__(self) -> str:
        return f"Request({self.method} {self.uri} {self.version}, call_id={self.call_id!r})"


@dataclass(slots=True)
class Response:
    """A SIP response: status line, ordered header lines and a body (bytes)."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    version: str = "SIP/2.0"

    def header(self, name: str) -> str | None:
        """The first value of a header by any spelling or compact form."""
        key = header_key(name)
        for hname, value in self.headers:
            if header_key(hname) == key:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        key = header_key(name)
        return [value for hname, value in self.headers if header_key(hname) == key]
