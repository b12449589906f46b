"""Property tests: whatever bytes arrive, the parser and framer only raise their own error.

Also: a well-formed request keeps its fields through parse -> serialize -> parse, every
response to it is addressed to it, the TCP framer cuts a stream the same way whatever
the read sizes, and the endpoint never fails inside on any input.  The examples are
bounded so the whole file runs in a few seconds; ``make fuzz`` searches far longer.
"""

from __future__ import annotations

import contextlib
import string
from typing import Any, cast

import torture
from helpers import SDP_OFFER, request
from hypothesis import given, settings
from hypothesis import strategies as st

from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.flow import Flow, Send
from sipresponder.errors import FramingError, ParseError
from sipresponder.sip import parser
from sipresponder.sip.framer import Ping, StreamFramer
from sipresponder.sip.message import METHODS, Request, Response, display_name
from sipresponder.sip.parser import parse_message
from sipresponder.sip.serializer import serialize_request, serialize_response

VALID = request("INVITE", "180-486", extra=[("Contact", '"A, B" <sip:a@192.0.2.1>')])
UDP = Flow("udp", ("192.0.2.1", 5062), ("127.0.0.1", 5060))
TCP = Flow("tcp", ("192.0.2.1", 40000), ("127.0.0.1", 5060), conn="conn-1")

#: Messages the mutations start from: ours, and the RFC 4475 ones that parse.
SEEDS = [
    VALID,
    request("OPTIONS"),
    request("REGISTER", extra=[("Contact", "<sip:a@192.0.2.1>;expires=60"), ("Expires", "30")]),
    request("INVITE", "bob", extra=[("Content-Type", "application/sdp")], body=SDP_OFFER),
    request("ACK", "486", cseq="1 ACK", to="<sip:486@127.0.0.1>;tag=abc"),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nContent-Length: 0\r\n\r\n",
    torture.WSINV,
    torture.INTMETH,
    torture.ESC01,
    torture.MPART01,
    torture.INV2543,
]

FAST = settings(max_examples=200, deadline=None)

# ---------------------------------------------------------------- strategies

_TOKEN = string.ascii_letters + string.digits + "-.!%*_+`'~"
token = st.text(_TOKEN, min_size=1, max_size=10)
#: RFC 3261 ``word`` (a Call-ID): token characters and ()<>:\"/[]?{}
word = st.text(_TOKEN + '()<>:\\"/[]?{}', min_size=1, max_size=24)
#: A header value as the parser keeps it: any text but controls, no edge whitespace.
value = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30).map(str.strip)
host = st.one_of(
    st.sampled_from(["192.0.2.1", "example.com", "[2001:db8::1]"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,8}(\.[a-z]{2,4}){0,2}", fullmatch=True),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A well-formed request and the fields it was built from."""
    f: dict[str, Any] = {
        "method": draw(st.one_of(st.sampled_from(METHODS), token)),
        "user": draw(token),
        "host": draw(host),
        "port": draw(st.none() | st.integers(1, 65535)),
        "transport": draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"])),
        "branch": draw(st.one_of(token.map("z9hG4bK".__add__), token)),
        "rport": draw(st.booleans()),
        "display": draw(st.none() | st.text(string.ascii_letters + " ,.@;:", max_size=12)),
        "from_tag": draw(token),
        "to_tag": draw(st.none() | token),
        "call_id": draw(word),
        "cseq": draw(st.integers(0, 2**31 - 1)),
        "extra": draw(st.lists(st.tuples(token.map("X-".__add__), value), max_size=4)),
        "body": draw(st.binary(max_size=64)),
    }
    via = f"SIP/2.0/{f['transport']} {f['host']}"
    via += "" if f["port"] is None else f":{f['port']}"
    via += ";rport" if f["rport"] else ""
    via += f";branch={f['branch']}"
    display = "" if f["display"] is None else f'"{f["display"]}" '
    to = f"<sip:{f['user']}@127.0.0.1>" + ("" if f["to_tag"] is None else f";tag={f['to_tag']}")
    headers = [
        ("Via", via),
        ("Max-Forwards", "70"),
        ("From", f"{display}<sip:caller@192.0.2.1>;tag={f['from_tag']}"),
        ("To", to),
        ("Call-ID", f["call_id"]),
        ("CSeq", f"{f['cseq']} {f['method']}"),
        *f["extra"],
    ]
    uri = f"sip:{f['user']}@127.0.0.1"
    return serialize_request(f["method"], uri, headers, f["body"]), f


#: What mutations insert: line ends, NUL, high and invalid UTF-8 bytes, SIP punctuation,
#: and digits that str.isdigit() accepts but int() once refused ("²", an Arabic-Indic two,
#: 4400 nines: test_fuzz_regressions.py).
_INSERTS = [b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\x00", b"\xff", b"\x80", b"\xc3\xa9"]
_INSERTS += [b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"=", b"%", b"0", b"9"]
_INSERTS += [b"\xc2\xb2", b"\xd9\xa2", b"9" * 4400]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed message after a few byte flips, truncations, insertions and repeated lines."""
    data = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "junk", "dup", "drop"]))
        if kind == "flip":
            data = data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos + 1 :]
        elif kind == "truncate":
            data = data[:pos]
        elif kind == "insert":
            data = data[:pos] + draw(st.sampled_from(_INSERTS)) + data[pos:]
        elif kind == "junk":
            data = data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]
        else:  # repeat or drop the line that holds ``pos``
            start = data.rfind(b"\n", 0, pos) + 1
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end + 1
            line = data[start:end]
            data = data[:start] + (line * 2 if kind == "dup" else b"") + data[end:]
    return data


# ------------------------------------------------------------------- helpers


def fields(req: Request) -> tuple[object, ...]:
    """Everything the parser makes of a request, but the raw bytes."""
    headers = [(k, v) for k, v in req.headers if k != "content-length"]
    return (
        req.method,
        req.uri,
        req.version.upper(),
        headers,
        req.vias,
        req.top_via,
        req.from_,
        req.to,
        req.from_tag,
        req.to_tag,
        req.call_id,
        req.cseq,
        req.cseq_num,
        req.cseq_method,
        req.body,
    )


def reserialize(req: Request) -> bytes:
    """The request written out again from what was parsed (Content-Length recomputed)."""
    headers = [(display_name(k), v) for k, v in req.headers if k != "content-length"]
    return serialize_request(req.method, req.uri, headers, req.body)


def parse_or_none(data: bytes, **kw: Any) -> Request | Response | None:
    """The parsed message, or None when it is rejected; any other exception escapes."""
    with contextlib.suppress(ParseError):
        return parse_message(data, **kw)
    return None


def receive_all(data: bytes) -> Endpoint:
    """``data`` as a UDP datagram, then as a TCP stream through the framer."""
    ep = Endpoint(Config(secret=b"k"))
    ep.receive(data, UDP, 0.0)
    framer = StreamFramer()
    for item in framer.feed(data):
        if isinstance(item, bytes):
            ep.receive(item, TCP, 0.0)
        elif isinstance(item, FramingError):
            ep.reject_framing(item, TCP)
    ep.handle_timers(1000.0)
    return ep


def responses(out: list[Send]) -> list[Response]:
    msgs = [parse_message(data) for data, _, _ in out]
    assert all(isinstance(msg, Response) for msg in msgs)
    return cast(list[Response], msgs)


# ------------------------------------------------------- the two parse routes


def _outcome(route: Any, data: bytes, stream: bool, max_headers: int | None) -> object:
    """What a route of the parser makes of ``data``: None (not its kind of message), the
    fields of the request, or the error with the fields of its partial request."""
    text = data.decode("utf-8", "surrogateescape")
    try:
        msg = route(text, data, stream, 65536, max_headers)
    except ParseError as exc:
        partial = exc.request
        return ("error", exc.status, exc.reason, None if partial is None else _all(partial))
    if msg is None:
        return None
    return ("ok", _all(msg)) if isinstance(msg, Request) else ("response",)


def _all(req: Request) -> tuple[object, ...]:
    return (*fields(req), list(req.headers), req.raw)


@FAST
@given(st.one_of(mutated(), requests().map(lambda case: case[0])), st.booleans())
def test_the_usual_route_reads_a_message_as_the_general_route_does(
    data: bytes, stream: bool
) -> None:
    # _parse_usual reads the usual request in place; whatever it does not decline, it
    # must read exactly as _parse_general, error for error.
    data = data.lstrip(b"\r\n")  # as parse_message does first
    if len(data.decode("utf-8", "surrogateescape")) != len(data):
        return  # multi-byte text: only the general route reads it
    for max_headers in (None, 3):
        # The general route first: it learns the header names the usual route knows.
        general = _outcome(parser._parse_general, data, stream, max_headers)
        usual = _outcome(parser._parse_usual, data, stream, max_headers)
        if usual is not None:
            assert usual == general


def test_the_usual_route_takes_the_usual_request_and_declines_the_rest() -> None:
    usual = request("INVITE", "bob", extra=[("Content-Type", "application/sdp")], body=b"v=0")
    parse_message(usual)  # its header names are now known (parser._KEYS)
    assert _outcome(parser._parse_usual, usual, False, None) is not None
    folded = usual.replace(b"\r\nMax-Forwards: 70", b"\r\n  70")
    bare_lf = usual.replace(b"\r\nMax-Forwards", b"\nMax-Forwards")
    # A bare LF after the start line, inside a value, and ending the last header line.
    bare_lfs = [
        usual.replace(b" SIP/2.0\r\n", b" SIP/2.0\n", 1),
        usual.replace(b"Max-Forwards: 70", b"Max-Forwards: 7\n0"),
        usual.replace(b"\r\n\r\n", b"\n\r\n\r\n", 1),
    ]
    assert all(data != usual for data in bare_lfs)
    unseen = usual.replace(b"Max-Forwards: 70", b"X-Never-Seen-Before-4242: 1")
    response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\n\r\n"
    for data in (folded, bare_lf, *bare_lfs, unseen, response, b"\r\n" + usual[:10]):
        assert _outcome(parser._parse_usual, data, False, None) is None, data[:40]
    # What it takes, it reads as the general route does: spaces around a value, and a
    # second From (an error, with the request read as far as it goes).
    spaced = usual.replace(b"Max-Forwards: 70", b"Max-Forwards: 70 \t")
    spaced = spaced.replace(b"CSeq: ", b"CSeq:\t ")
    twice = usual.replace(b"\r\nTo:", b"\r\nFrom: <sip:x@192.0.2.9>;tag=2\r\nTo:")
    for data in (spaced, twice):
        usual_outcome = _outcome(parser._parse_usual, data, False, None)
        assert usual_outcome is not None
        assert usual_outcome == _outcome(parser._parse_general, data, False, None)
    spaced_request = parse_message(spaced)
    assert isinstance(spaced_request, Request)
    assert spaced_request.headers.get("max-forwards") == "70"
    assert spaced_request.headers.get("cseq") == "1 INVITE"
    error = _outcome(parser._parse_usual, twice, False, None)
    assert isinstance(error, tuple) and error[:3] == ("error", 400, "Multiple From Headers")


# ------------------------------------------------------------ parse/serialize


@FAST
@given(requests())
def test_generated_requests_parse_to_what_they_were_built_from(
    case: tuple[bytes, dict[str, Any]],
) -> None:
    data, f = case
    req = parse_message(data)
    assert isinstance(req, Request)
    assert (req.method, req.uri) == (f["method"], f"sip:{f['user']}@127.0.0.1")
    assert (req.call_id, req.cseq_num, req.cseq_method) == (f["call_id"], f["cseq"], f["method"])
    assert (req.from_tag, req.to_tag) == (f["from_tag"], f["to_tag"])
    via = req.top_via
    assert via is not None
    assert (via.transport, via.host, via.port) == (f["transport"], f["host"].strip("[]"), f["port"])
    assert via.branch == f["branch"] and via.has_param("rport") == f["rport"]
    for name, _ in f["extra"]:
        sent = [v for n, v in f["extra"] if n.lower() == name.lower()]
        assert req.headers.get_all(name) == sent
    assert req.body == f["body"]


@FAST
@given(requests())
def test_parse_serialize_parse_is_stable(case: tuple[bytes, dict[str, Any]]) -> None:
    req = parse_message(case[0])
    assert isinstance(req, Request)
    again = parse_message(reserialize(req))
    assert isinstance(again, Request)
    assert fields(again) == fields(req)


@FAST
@given(mutated())
def test_whatever_parses_reserializes_to_the_same_fields(data: bytes) -> None:
    for stream in (False, True):
        req = parse_or_none(data, stream=stream)
        if isinstance(req, Request):
            again = parse_message(reserialize(req), stream=stream)
            assert isinstance(again, Request)
            assert fields(again) == fields(req)


@FAST
@given(
    st.integers(100, 699),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    st.lists(st.tuples(token.filter(lambda t: t.lower() not in ("l", "content-length")), value)),
    st.binary(max_size=64),
)
def test_responses_survive_serialize_then_parse(
    status: int, reason: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    resp = Response(status, reason, headers, body)
    again = parse_message(serialize_response(resp))
    assert isinstance(again, Response)
    assert (again.status, again.reason, again.body) == (status, reason, body)
    assert again.headers == [*headers, ("Content-Length", str(len(body)))]


@FAST
@given(requests(), st.sampled_from([UDP, TCP]))
def test_every_response_is_addressed_to_its_request(
    case: tuple[bytes, dict[str, Any]], flow: Flow
) -> None:
    data, f = case
    req = parse_message(data)
    assert isinstance(req, Request)
    ep = Endpoint(Config(secret=b"k"))
    out = ep.receive(data, flow, 0.0) + ep.handle_timers(1000.0)
    if req.method != "ACK":
        assert out  # answered
    for resp in responses(out):
        assert resp.header("Call-ID") == req.call_id
        assert resp.header("CSeq") == req.cseq
        assert resp.header("From") == req.from_
        top = resp.header("Via")
        assert top is not None and f";branch={f['branch']}" in top
    assert ep.stats["internal_errors"] == 0


# ------------------------------------------------------------- hostile input


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    parse_or_none(data)
    parse_or_none(data, stream=True)


@settings(max_examples=300, deadline=None)
@given(mutated())
def test_mutated_messages_parse_or_raise_parse_error(data: bytes) -> None:
    parse_or_none(data)
    parse_or_none(data, stream=True, max_size=1024)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.binary(min_size=1, max_size=8))
def test_mutated_requests_never_crash_the_endpoint(pos: int, junk: bytes) -> None:
    data = VALID[:pos] + junk + VALID[pos + len(junk) :]
    parse_or_none(data)
    assert receive_all(data).stats["internal_errors"] == 0


@FAST
@given(st.one_of(st.binary(max_size=400), mutated()))
def test_the_endpoint_never_fails_inside(data: bytes) -> None:
    assert receive_all(data).stats["internal_errors"] == 0


# ------------------------------------------------------------------- framing


def frame(stream: bytes, cuts: list[int], max_size: int = 65536) -> tuple[list[object], int]:
    """Feed ``stream`` cut at ``cuts``; -> (items, bytes left buffered).  A framing error
    is kept as (status, reason): the bytes it carries are what happened to be buffered."""
    framer = StreamFramer(max_size)
    out: list[object] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        for item in framer.feed(stream[start:cut]):
            out.append((item.status, item.reason) if isinstance(item, FramingError) else item)
        start = max(start, cut)
    return out, framer.buffered


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Whole messages (each with Content-Length), pings and stray line ends, in a row."""
    parts: list[bytes] = []
    messages: list[bytes] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["message", "message", "seed", "ping", "crlf"]))
        if kind == "message":
            parts.append(draw(requests())[0])
            messages.append(parts[-1])
        elif kind == "seed":
            seed = draw(st.sampled_from([s for s in SEEDS if s is not torture.INV2543]))
            parts.append(seed)
            messages.append(seed)
        elif kind == "ping":
            parts.append(b"\r\n\r\n")
        else:
            parts.append(draw(st.sampled_from([b"\r\n", b"\n"])))
    return b"".join(parts), messages


@FAST
@given(streams(), st.lists(st.integers(0, 4000), max_size=40))
def test_framing_does_not_depend_on_read_sizes(
    case: tuple[bytes, list[bytes]], cuts: list[int]
) -> None:
    stream, messages = case
    whole, left = frame(stream, [])
    assert [item for item in whole if isinstance(item, bytes)] == messages
    assert all(isinstance(item, bytes | Ping) for item in whole)
    assert frame(stream, cuts) == (whole, left)
    assert frame(stream, list(range(len(stream)))) == (whole, left)  # a byte at a time


@FAST
@given(
    st.one_of(st.binary(max_size=600), mutated(), streams().map(lambda c: c[0])),
    st.lists(st.integers(0, 2000), max_size=20),
    st.sampled_from([300, 1024, 65536]),
)
def test_framing_of_any_bytes_does_not_depend_on_read_sizes(
    stream: bytes, cuts: list[int], max_size: int
) -> None:
    assert frame(stream, cuts, max_size) == frame(stream, [], max_size)


# ------------------------------------------------- fast paths agree with their patterns

#: Characters that make Via, tag and CSeq spellings usual, unusual and wrong.
_SPELLING = st.text(
    alphabet=st.sampled_from(list("SIP/2.0UDPTCPudp 127:5060;branch=z9hG4bK-x.rport[]\t,>é")),
    max_size=40,
)


def _via_outcome(value: str) -> tuple[object, ...]:
    from sipresponder.sip.message import parse_via

    try:
        via = parse_via(value)
    except Exception as exc:  # the outcome compared is the error
        return (type(exc).__name__, str(exc))
    return (via.transport, via.host, via.port, via.params, via.branch, via.flaw)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        _SPELLING.map(lambda tail: "SIP/2.0/" + tail),
        st.sampled_from(
            [
                "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport",
                "SIP/2.0/TCP host.example:0;branch=z9hG4bK",
                "SIP/2.0/UDP host:99999",
                "SIP/2.0/UDP host:",
                "SIP/2.0/UDP  host",
                "SIP/2.0/UDP host ;branch=x",
                "SIP/2.0/UDP host;;branch=x",
                "SIP/2.0/tls h_1;received=1.2.3.4;branch=z9hG4bKa",
                "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK",
            ]
        ),
    )
)
def test_usual_via_reads_as_the_pattern_does(value: str) -> None:
    # A leading space takes the pattern's route (it allows one); the value itself may
    # take the fast one: both must come to the same Via, or the same error.
    assert _via_outcome(value) == _via_outcome(" " + value)


@settings(max_examples=300, deadline=None)
@given(_SPELLING)
def test_tag_fast_path_reads_as_the_pattern_does(tail: str) -> None:
    from sipresponder.sip.message import _TAG_VALUE_RE, tag_of

    value = "<sip:a@b>;tag=" + tail
    close = value.rfind(">")  # tag_of reads the parameters after the last '>'
    at = value.find(";tag=", close + 1)
    m = _TAG_VALUE_RE.match(value, at + 5) if at >= 0 else None
    if m is not None:  # the spelling the fast path is for: the pattern's answer
        assert tag_of(value) == m.group()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789 INVITEACK\t²x")), max_size=16))
def test_cseq_fast_path_reads_as_the_pattern_does(value: str) -> None:
    from sipresponder.sip.message import _CSEQ_RE, parse_cseq

    m = _CSEQ_RE.match(value)
    try:
        got: object = parse_cseq(value)
    except Exception as exc:
        got = str(exc)
    if m is None:
        assert got == "Malformed CSeq Header"
    elif int(m.group(1)) >= 2**31:
        assert got == "CSeq Number Too Large"
    else:
        assert got == (int(m.group(1)), m.group(2))
