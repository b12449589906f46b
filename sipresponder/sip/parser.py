"""Bytes -> SIP messages.

What belongs here: ``parse_message`` (one datagram or one framed stream message ->
``Request`` | ``Response``, RFC 3261 §7 and §18.3).  A message that cannot be accepted
raises ``ParseError`` with the status to answer and, when enough was read to address a
response, the partial request.  Cutting a TCP stream into messages is ``framer``'s.
Imports ``errors``, ``grammar``, ``message`` and ``uri`` only, and ``_speedups`` for the C
twins of the header scanner, the request line and From/To; no sockets, clocks or randomness.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from ..errors import FramingError as FramingError  # its home before errors.py
from ..errors import ParseError
from ._speedups import twin
from .grammar import TOKEN_RE, split_commas
from .message import (
    COMPACT,
    METHODS,
    Headers,
    Request,
    Response,
    decimal,
    display_name,
    parse_cseq,
    parse_via,
    tag_of,
)
from .uri import check_name_addr

#: The signature of ``_c_usual_headers``: ``_py_usual_headers`` with ``_KEYS``, the map of
#: ``headers`` and ``_again`` passed in.
_Scan = Callable[
    [
        str,
        int,
        int,
        dict[str, str],
        dict[str, str],
        Headers,
        list[tuple[int, str]],
        Callable[[Headers, str, str, list[tuple[int, str]]], None],
    ],
    int,
]

# C twins of the _py_* functions here, or None (loaded by sip/_speedups.py).
_c_usual_headers: Final[_Scan | None] = twin(__name__, "usual_headers")
_c_request_line: Final[Callable[[str], tuple[str, str, str] | None] | None] = twin(
    __name__, "request_line"
)
_c_party: Final[Callable[[str], tuple[bool, str | None] | None] | None] = twin(__name__, "party")

DEFAULT_MAX_SIZE: Final = 65536

#: Headers that may appear once only; a second line is a malformed request.
_SINGLE: Final = frozenset(("from", "to", "call-id", "cseq", "content-length", "max-forwards"))

_VERSION_RE = re.compile(r"SIP/([0-9]+)\.([0-9]+)", re.I)

#: Header names (lower case) known to be tokens: the per-header check is skipped for them.
_COMMON = (
    frozenset(COMPACT)
    | frozenset(COMPACT.values())
    | {
        "cseq",
        "max-forwards",
        "user-agent",
        "server",
        "allow",
        "require",
        "proxy-require",
        "record-route",
        "route",
        "expires",
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "accept",
        "date",
        "organization",
        "priority",
        "min-expires",
        "retry-after",
        "timestamp",
        "unsupported",
        "warning",
        "path",
        "p-asserted-identity",
    }
)
_COMMON_METHODS: Final = frozenset(METHODS)

#: Header names as spelled on the wire -> lookup key; bounded, filled as names are seen.
_KEYS: Final[dict[str, str]] = {}
_KEYS_LIMIT: Final = 2048


def _header_key(name: str) -> str | None:
    """The lookup key of a header name (lower case, compact form expanded), or None when
    the name is not a token (§7.3.1)."""
    key = name.lower()
    if key not in _COMMON and not TOKEN_RE.fullmatch(name):
        return None
    return COMPACT.get(key, key)


def _header_end(text: str) -> tuple[int, int]:
    """Index where the header section ends and where the body starts (§7: CRLF CRLF),
    in a decoding of the message with one character per byte.

    Bare-LF line ends are accepted as well (a robust receiver's leniency).  Without a blank
    line at all the whole input is the header section.
    """
    end = text.find("\r\n\r\n")
    if end >= 0:
        lf = text.find("\n\n", 0, end)
        if lf < 0:
            return end, end + 4
        return lf, lf + 2
    end = text.find("\n\n")
    if end >= 0:
        return end, end + 2
    return len(text), len(text)


def _content_length(values: list[str]) -> int:
    lengths = set()
    for value in values:
        length = decimal(value.strip(), 9)
        if length is None:
            raise ParseError("Bad Content-Length")
        lengths.add(length)
    if len(lengths) > 1:
        raise ParseError("Conflicting Content-Length Headers")
    return lengths.pop()


def parse_message(
    data: bytes,
    *,
    stream: bool = False,
    max_size: int = DEFAULT_MAX_SIZE,
    max_headers: int | None = None,
) -> Request | Response:
    """Parse one whole SIP message.

    ``stream`` says the message came framed from a stream transport (TCP), where a
    Content-Length is mandatory (§18.3, §20.14); on a datagram transport a missing
    Content-Length means the rest of the datagram.  More than ``max_size`` bytes or
    ``max_headers`` header lines is answered 513 (RFC 3261 §21.5.14), once the request is
    read far enough to address the answer.

    This is the per-message hot path.  A request in the usual spelling (CRLF line ends, no
    folding, each header name seen before) is read in place, line by line, without
    splitting the text (``_parse_usual``); anything else takes the general route, which
    reads it as before.  Both end in the same checks (``_finish``).
    """
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # §7.5: empty lines before the start line are ignored
    # Searched as text: str.find is one of mypyc's own operations, bytes.find a slow call.
    text = data.decode("utf-8", "surrogateescape")
    if len(text) == len(data):  # a character per byte: the text's indexes are the data's
        req = _parse_usual(text, data, stream, max_size, max_headers)
        if req is not None:
            return req
    return _parse_general(text, data, stream, max_size, max_headers)


def _parse_usual(
    text: str, data: bytes, stream: bool, max_size: int, max_headers: int | None
) -> Request | None:
    """A request in the usual spelling, read in place: CRLF line ends, and every header
    line ``Name: value`` with a name seen before.  None when it is not one — nothing is
    decided then, and the general route reads it all again."""
    end = text.find("\r\n\r\n")
    if end < 0:
        return None
    # Lines are cut at each LF, which must follow a CR: a bare LF anywhere declines.
    eol = text.find("\n", 0, end)
    if eol < 0:
        eol = end  # no header lines
    elif eol == 0 or text[eol - 1] != "\r":
        return None
    else:
        eol -= 1
    start_line = text[:eol]
    if not start_line or start_line.isspace() or start_line.startswith("SIP/"):
        return None  # blank lines first, or a response
    errors: list[tuple[int, str]] = []
    method, uri, version = _request_line(start_line, errors)
    headers = Headers()
    if _c_usual_headers is None:
        count = _py_usual_headers(text, eol + 2, end, headers, errors)
    else:
        count = _c_usual_headers(text, eol + 2, end, _KEYS, headers._map, headers, errors, _again)
        if count == -2:  # not all ASCII: the C scanner reads only that
            count = _py_usual_headers(text, eol + 2, end, headers, errors)
    if count < 0:
        return None  # a line the general route reads
    return _finish(
        method, uri, version, headers, errors, data, end + 4, count, stream, max_size, max_headers
    )


def _py_usual_headers(
    text: str, pos: int, end: int, headers: Headers, errors: list[tuple[int, str]]
) -> int:
    """Fill ``headers`` from the header lines in ``text[pos:end]``, each ``Name: value`` with
    a name in ``_KEYS`` and ending in CRLF: the number of lines, or -1 for a line that is
    not so (folded, empty, without a colon or a name seen before, or ending in a bare LF).
    The values are what ``_parse_general`` reads: the text after the colon, stripped."""
    keys = _KEYS
    hmap = headers._map  # filled directly: this is the hot loop
    count = 0
    while pos < end:
        # Found by its LF alone (a one-character search), then its CR checked.
        eol = text.find("\n", pos, end)
        if eol < 0:
            eol = end  # the last line: its CRLF begins the blank line at ``end``
        elif text[eol - 1] == "\r":  # pos > 0: there is a start line before
            eol -= 1
        else:
            return -1  # a bare LF
        colon = text.find(":", pos, eol)
        if colon <= pos:
            return -1
        key = keys.get(text[pos:colon])
        if key is None:
            return -1
        start = colon + 1
        if start < eol and text[start] == " ":
            start += 1  # the usual single space: no strip needed for it
        value = text[start:eol]
        if value and (ord(value[0]) <= 32 or ord(value[-1]) <= 32):
            value = value.strip()  # the text is ASCII: all its whitespace is <= " "
        # One lookup, not two (``in``, then the store): the map grows unless the name
        # was there already.  (Not ``setdefault(...) is not value``: "" and one-character
        # values are shared objects, a repeat of one would pass for a first line.)
        size = len(hmap)
        hmap.setdefault(key, value)
        if len(hmap) == size:
            _again(headers, key, value, errors)
        count += 1
        pos = eol + 2
    return count


def _again(headers: Headers, key: str, value: str, errors: list[tuple[int, str]]) -> None:
    """A second or later line of a header, noting it when the header may appear once."""
    headers.add_more(key, value)
    if key in _SINGLE:
        errors.append((400, f"Multiple {display_name(key)} Headers"))


def _request_line(start_line: str, errors: list[tuple[int, str]]) -> tuple[str, str, str]:
    """Method, Request-URI and version, noting in ``errors`` what is malformed.  With the
    compiled core, a line with nothing wrong in it is read in C (``_c_request_line``; None
    from it for any other line, which the Python function reads and notes what is wrong in)."""
    if _c_request_line is not None:
        read = _c_request_line(start_line)
        if read is not None:
            return read
    return _py_request_line(start_line, errors)


def _bare_ipv6(uri: str) -> bool:
    """Whether a sip/sips URI's host is an IPv6 address without its brackets, as in
    ``sip:2001:db8::10`` (RFC 5118 §4.2, RFC 3261 §25.1: ``IPv6reference``).  Asked only
    of a URI with more than two colons: one for the scheme, one for a port."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() not in ("sip", "sips"):
        return False
    # The user part may hold ";" and "?" (§25.1 user-unreserved), parameters and
    # headers hold no "@": the host follows the last "@".
    hostport = rest[rest.rfind("@") + 1 :].split(";", 1)[0].split("?", 1)[0]
    return not hostport.startswith("[") and hostport.count(":") > 1


def _py_request_line(start_line: str, errors: list[tuple[int, str]]) -> tuple[str, str, str]:
    """``_request_line`` in Python: the definition, which the pure-Python core runs."""
    parts = start_line.split(" ")
    # Each part tested, not all(parts): a generic builtin call for compiled code.
    if len(parts) != 3 or not (parts[0] and parts[1] and parts[2]):
        errors.append((400, "Malformed Request-Line"))
        method, uri, version = [*parts, "", "", ""][:3]
    else:
        method, uri, version = parts
    if method and method not in _COMMON_METHODS and not TOKEN_RE.fullmatch(method):
        errors.append((400, "Malformed Method"))
    if uri[:1] == "<":
        errors.append((400, "Malformed Request-URI"))  # RFC 4475 §3.1.2.7: no <> here
    elif uri.count(":") > 2 and _bare_ipv6(uri):
        errors.append((400, "Malformed Request-URI: an IPv6 address must be in brackets"))
    return method, uri, version


def _parse_general(
    text: str, data: bytes, stream: bool, max_size: int, max_headers: int | None
) -> Request | Response:
    """Any message: bare-LF line ends, folded lines, new header names, responses."""
    if len(text) == len(data):  # a character per byte: the text's indexes are the data's
        head_end, body_start = _header_end(text)
        head = text[:head_end]
    else:  # a multi-byte character somewhere: find the end in a byte-for-byte decoding
        head_end, body_start = _header_end(data.decode("latin-1"))
        head = data[:head_end].decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    if head.count("\n") != len(lines) - 1:
        lines = head.replace("\r\n", "\n").split("\n")  # bare LF line ends (leniency)
    # §7.5: empty lines before the start line are ignored.
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first >= len(lines):
        raise ParseError("Empty Message")
    start_line = lines[first]

    if start_line.startswith("SIP/"):
        return _parse_response(start_line, lines[first + 1 :], data[body_start:])

    errors: list[tuple[int, str]] = []
    method, uri, version = _request_line(start_line, errors)

    headers = Headers()
    hmap = headers._map  # filled directly: this is the hot loop
    last_key: str | None = None
    keys = _KEYS
    for index in range(first + 1, len(lines)):
        line = lines[index]
        colon = line.find(":")
        key = keys.get(line[:colon]) if colon > 0 else None  # a name spelled as seen before
        if key is None:
            if not line:
                continue
            if line[0] in " \t":
                # §7.3.1 line folding: a line starting with whitespace continues the last.
                if last_key is None:
                    errors.append((400, "Malformed Header Line"))
                    continue
                headers.fold(last_key, line)
                continue
            if colon <= 0:
                errors.append((400, "Malformed Header Line"))
                last_key = None
                continue
            name = line[:colon]
            key = _header_key(name.rstrip(" \t"))
            if key is None:
                errors.append((400, "Malformed Header Name"))
                last_key = None
                continue
            if len(keys) < _KEYS_LIMIT:
                keys[name] = key
        value = line[colon + 1 :].strip()
        if key in hmap:
            _again(headers, key, value, errors)
        else:
            hmap[key] = value
        last_key = key

    return _finish(
        method,
        uri,
        version,
        headers,
        errors,
        data,
        body_start,
        len(lines) - first - 1,
        stream,
        max_size,
        max_headers,
    )


def _finish(
    method: str,
    uri: str,
    version: str,
    headers: Headers,
    errors: list[tuple[int, str]],
    data: bytes,
    body_start: int,
    count: int,
    stream: bool,
    max_size: int,
    max_headers: int | None,
) -> Request:
    """The checks after the header lines, and the request: ``count`` header lines were
    read into ``headers``, the body starts at ``data[body_start]``."""
    hmap = headers._map
    more = headers._more  # None unless a header came on more than one line
    # The Via chain first: without a usable top Via no response can be addressed.
    via = hmap.get("via")
    vias: list[str] = []
    top = None
    if via is not None:
        if (more is None or "via" not in more) and via and "," not in via:
            vias = [via]  # one Via value: nothing to split (the common case)
        else:
            for value in headers.values("via") or []:
                parts = split_commas(value, keep_empty=True)
                if "" in parts:
                    # RFC 4475 §3.1.2.1: an empty element (",,") is malformed.
                    errors.append((400, "Empty Via Element"))
                    parts = [part for part in parts if part]
                vias.extend(parts)
        if vias:
            try:
                top = parse_via(vias[0])
            except ParseError as exc:
                raise ParseError(exc.reason, 400, None) from None
            if top.flaw is not None:
                errors.append((400, top.flaw))  # answered all the same: it can be addressed
    if top is None:
        raise ParseError("Missing Via Header", 400, None)

    from_, from_tag = _party(hmap.get("from"), "From", errors)
    to, to_tag = _party(hmap.get("to"), "To", errors)
    call_id = hmap.get("call-id")
    if not call_id:
        errors.append((400, "Missing Call-ID Header"))
    cseq = hmap.get("cseq")
    cseq_method = None
    cseq_num = 0
    if cseq is None:
        errors.append((400, "Missing CSeq Header"))
    else:
        try:
            cseq_num, cseq_method = parse_cseq(cseq)
        except ParseError as exc:
            errors.append((400, exc.reason))
        else:
            if method and cseq_method != method:
                errors.append((400, "CSeq Method Does Not Match Request"))

    max_forwards = hmap.get("max-forwards")
    if max_forwards is not None and decimal(max_forwards) is None:
        errors.append((400, "Malformed Max-Forwards Header"))  # §20.22: 1*DIGIT

    # Body (§18.3, §20.14).
    body = data[body_start:]
    content_length = hmap.get("content-length")
    if content_length is None:
        if stream:
            errors.append((400, "Missing Content-Length"))
            body = b""
    else:
        single = more is None or "content-length" not in more
        length = decimal(content_length, 9) if single else None
        if length is None:  # _content_length says what is wrong
            try:
                length = _content_length(headers.values("content-length") or [])
            except ParseError as exc:
                errors.append((400, exc.reason))
                length = -1
        if length > len(body):
            # §18.3: a datagram that ends before the body does is an error.
            errors.append((400, "Content-Length Exceeds Message"))
        elif length >= 0 and length != len(body):
            body = body[:length]

    # Made once, whole: each field set once (this runs for every message).
    req = Request(
        method,
        uri,
        version,
        headers,
        body,
        vias,
        top,
        from_,
        to,
        from_tag,
        to_tag,
        call_id,
        cseq,
        cseq_num,
        cseq_method or "",
        data,
    )
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if _VERSION_RE.fullmatch(version):
            # Another version's message: nothing else in it can be judged by our rules
            # (RFC 4475 §3.1.2.16), so 505 comes before any other error.
            errors.insert(0, (505, "Version Not Supported"))
        elif not errors:
            errors.append((400, "Malformed SIP Version"))
    if max_headers is not None and count > max_headers:
        errors.insert(0, (513, "Too Many Header Lines"))
    if len(data) > max_size:
        errors.insert(0, (513, "Message Too Large"))
    if errors:
        status, reason = errors[0]
        raise ParseError(reason, status, req)
    return req


def _party(
    value: str | None, name: str, errors: list[tuple[int, str]]
) -> tuple[str | None, str | None]:
    """From or To: (value, tag), noting in ``errors`` when it is missing or malformed.
    With the compiled core, a value in the usual spelling is read in C (``_c_party``; None
    from it for any other, which the Python functions read)."""
    if value is None:
        errors.append((400, f"Missing {name} Header"))
        return None, None
    read = None if _c_party is None else _c_party(value)
    if read is None:
        read = _py_party(value)
    if not read[0]:
        errors.append((400, f"Malformed {name} Header"))
    return value, read[1]


def _py_party(value: str) -> tuple[bool, str | None]:
    """A From or To value's two readings, whether it is well formed and its tag: the
    definition, which the pure-Python core runs."""
    return check_name_addr(value), tag_of(value)


def _parse_response(start_line: str, lines: list[str], body: bytes) -> Response:
    parts = start_line.split(" ", 2)
    status = decimal(parts[1], 3) if len(parts) >= 2 and len(parts[1]) == 3 else None
    if status is None:
        raise ParseError("Malformed Status-Line")
    headers: list[tuple[str, str]] = []
    for line in lines:
        if not line:
            continue
        if line[0] in " \t" and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip(), value.strip()))
    return Response(status, parts[2] if len(parts) > 2 else "", headers, body, version=parts[0])
