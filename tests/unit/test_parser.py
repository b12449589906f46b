"""Parser: RFC 3261 §7 syntax, and the error each defect gets."""

from __future__ import annotations

import pytest
from helpers import request

from sipresponder.errors import ParseError
from sipresponder.sip.grammar import split_commas
from sipresponder.sip.message import Request, Response, tag_of
from sipresponder.sip.parser import parse_message


def parse_req(data: bytes, **kw: object) -> Request:
    msg = parse_message(data, **kw)  # type: ignore[arg-type]
    assert isinstance(msg, Request)
    return msg


def test_basic_request() -> None:
    req = parse_req(request("INVITE", "486"))
    assert req.method == "INVITE"
    assert req.uri == "sip:486@127.0.0.1"
    assert req.version == "SIP/2.0"
    assert req.call_id == "call-1@test"
    assert (req.cseq_num, req.cseq_method) == (1, "INVITE")
    assert req.from_tag == "ft1" and req.to_tag is None
    assert req.top_via is not None
    assert req.top_via.transport == "UDP"
    assert (req.top_via.host, req.top_via.port) == ("192.0.2.1", 5062)
    assert req.branch == "z9hG4bK-1"


COMPACT = (
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-c\r\n"
    b"f: <sip:a@b>;tag=1\r\n"
    b"t: <sip:x@127.0.0.1>\r\n"
    b"i: compact@test\r\n"
    b"CSeq: 7 OPTIONS\r\n"
    b"m: <sip:a@192.0.2.1>\r\n"
    b"k: path, timer\r\n"
    b"c: text/plain\r\n"
    b"l: 5\r\n\r\nhello"
)


def test_compact_forms() -> None:
    req = parse_req(COMPACT)
    assert req.call_id == "compact@test"
    assert req.from_tag == "1"
    assert req.headers.get("Contact") == "<sip:a@192.0.2.1>"
    assert req.headers.get_list("supported") == ["path", "timer"]
    assert req.headers.get("content-type") == "text/plain"
    assert req.body == b"hello"
    assert req.top_via is not None and req.top_via.port is None


def test_header_names_are_case_insensitive() -> None:
    data = request().replace(b"Call-ID:", b"cALL-iD:").replace(b"CSeq:", b"CSEQ:")
    req = parse_req(data)
    assert req.call_id == "call-1@test"
    assert req.headers.get("CALL-ID") == "call-1@test"


def test_via_on_several_lines_and_comma_separated() -> None:
    data = request(
        via="SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-a, "
        "SIP/2.0/TCP proxy.example;branch=z9hG4bK-b",
        extra=[("Via", "SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK-c")],
    )
    req = parse_req(data)
    assert req.vias == [
        "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-a",
        "SIP/2.0/TCP proxy.example;branch=z9hG4bK-b",
        "SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK-c",
    ]
    assert req.branch == "z9hG4bK-a"


def test_line_folding() -> None:
    data = request(extra=[("Subject", "first part\r\n  second part\r\n\tthird")])
    req = parse_req(data)
    assert req.headers.get("subject") == "first part second part third"


def test_a_repeated_header_keeps_every_line_in_order() -> None:
    data = request(
        extra=[
            ("Record-Route", "<sip:p1.example;lr>"),
            ("Subject", "one"),
            ("Record-Route", "<sip:p2.example;lr>"),
            ("record-route", "<sip:p3.example;lr>"),
        ]
    )
    h = parse_req(data).headers
    routes = ["<sip:p1.example;lr>", "<sip:p2.example;lr>", "<sip:p3.example;lr>"]
    assert h.first("record-route") == routes[0] and h.get("Record-Route") == routes[0]
    assert h.values("record-route") == routes and h.get_all("RECORD-ROUTE") == routes
    assert h.count("record-route") == 3 and h.count("subject") == 1 and h.count("x") == 0
    assert h.values("x-absent") is None and h.get_all("x-absent") == []
    # Grouped by header, in the order each header first came; every line counted.
    assert [v for k, v in h if k in ("record-route", "subject")] == [*routes, "one"]
    assert len(h) == len(list(h))


def test_a_repeated_line_with_the_same_short_value_is_still_a_repeat() -> None:
    # "", "0" and other one-character values are shared string objects: a second line
    # whose value is the same object as the first's must still count as a second line.
    h = parse_req(request(extra=[("Subject", ""), ("Subject", ""), ("X-A", "7"), ("x-a", "7")]))
    assert h.headers.get_all("subject") == ["", ""] and h.headers.count("x-a") == 2
    err = _err(request(extra=[("Content-Length", "0")]))
    assert (err.status, err.reason) == (400, "Multiple Content-Length Headers")
    err = _err(request(extra=[("Max-Forwards", "7"), ("Max-Forwards", "7")]))
    assert (err.status, err.reason) == (400, "Multiple Max-Forwards Headers")


def test_folding_continues_the_latest_line_of_a_repeated_header() -> None:
    data = request(extra=[("Subject", "one"), ("Subject", "two\r\n  and more")])
    h = parse_req(data).headers
    assert h.get_all("subject") == ["one", "two and more"]


def test_contact_with_quoted_comma_and_escapes() -> None:
    value = '"Doe, \\"J\\"" <sip:j@192.0.2.1>;expires=60, <sip:k@192.0.2.2>'
    data = request("REGISTER", extra=[("Contact", value)])
    req = parse_req(data)
    assert req.headers.get_list("contact") == [
        '"Doe, \\"J\\"" <sip:j@192.0.2.1>;expires=60',
        "<sip:k@192.0.2.2>",
    ]


def test_split_commas_keeps_uri_commas_inside_angle_brackets() -> None:
    assert split_commas("<sip:a@b;x=1,2>, <sip:c@d>") == ["<sip:a@b;x=1,2>", "<sip:c@d>"]


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("<sip:a@b>;tag=xyz", "xyz"),
        ('"tag=no" <sip:a@b>', None),
        ("sip:a@b;tag=abc", "abc"),
        ("<sip:a@b> ; TAG = 9f", "9f"),
        ("<sip:a@b;tag=uri-param>", None),
    ],
)
def test_tag_of(value: str, tag: str | None) -> None:
    assert tag_of(value) == tag


def test_udp_without_content_length_takes_the_rest_of_the_datagram() -> None:
    data = request("MESSAGE").replace(b"Content-Length: 0\r\n", b"") + b"body text"
    req = parse_req(data)
    assert req.body == b"body text"


def test_udp_bytes_after_the_body_are_discarded() -> None:
    data = request("MESSAGE", body=b"abc") + b"garbage"
    assert parse_req(data).body == b"abc"


def test_bare_lf_line_ends_are_accepted() -> None:
    req = parse_req(request().replace(b"\r\n", b"\n"))
    assert req.call_id == "call-1@test"


def test_a_bare_lf_blank_line_ends_the_headers_before_a_later_crlf_one() -> None:
    # The header section ends at the first blank line, whatever its line ends: what
    # follows a bare-LF blank line is body (cut to Content-Length: 0), even with a
    # CRLF CRLF further on.
    head, _, _ = request().partition(b"\r\n\r\n")
    data = head + b"\n\nbody\r\nX-Late: 1\r\n\r\n"
    req = parse_req(data)
    assert "x-late" not in req.headers
    assert req.call_id == "call-1@test"


def test_a_multibyte_message_is_framed_like_its_bytes() -> None:
    data = request(body=b"abc").replace(b"From: ", 'From: "J\u00fcrgen" '.encode(), 1)
    req = parse_req(data)
    assert req.body == b"abc"
    assert req.from_ is not None and "J\u00fcrgen" in req.from_


def test_leading_empty_lines_are_ignored() -> None:
    assert parse_req(b"\r\n\r\n" + request()).method == "OPTIONS"


def test_response_is_returned_as_response() -> None:
    msg = parse_message(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\n\r\n")
    assert isinstance(msg, Response) and msg.status == 200


def _err(data: bytes, **kw: object) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_message(data, **kw)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (request().replace(b"Call-ID: call-1@test\r\n", b""), 400, "Missing Call-ID Header"),
        (
            request()
            .replace(b"Max-Forwards: 70\r\nFrom", b"From")
            .replace(b"From: <sip:caller@192.0.2.1>;tag=ft1\r\n", b""),
            400,
            "Missing From Header",
        ),
        (request().replace(b"To: <sip:alice@127.0.0.1>\r\n", b""), 400, "Missing To Header"),
        (request().replace(b"CSeq: 1 OPTIONS\r\n", b""), 400, "Missing CSeq Header"),
        (request(cseq="1 INVITE"), 400, "CSeq Method Does Not Match Request"),
        (request(cseq="x OPTIONS"), 400, "Malformed CSeq Header"),
        (request(cseq="42949672960 OPTIONS"), 400, "Malformed CSeq Header"),
        (request(cseq="2147483648 OPTIONS"), 400, "CSeq Number Too Large"),
        (
            request().replace(b"Content-Length: 0", b"Content-Length: abc"),
            400,
            "Bad Content-Length",
        ),
        (request().replace(b"Content-Length: 0", b"Content-Length: -1"), 400, "Bad Content-Length"),
        (
            request().replace(b"Content-Length: 0", b"Content-Length: 50"),
            400,
            "Content-Length Exceeds Message",
        ),
        (
            request(extra=[("Content-Length", "3")], body=b""),
            400,
            "Multiple Content-Length Headers",
        ),
        (request(extra=[("Call-ID", "other")]), 400, "Multiple Call-ID Headers"),
        (request(to="nonsense"), 400, "Malformed To Header"),
        (request().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505, "Version Not Supported"),
        (request().replace(b"SIP/2.0\r\n", b"SAP/2.0\r\n", 1), 400, "Malformed SIP Version"),
        (request().replace(b"OPTIONS sip:", b"OPTIONS  sip:", 1), 400, "Malformed Request-Line"),
        (  # three parts, one of them empty
            request().replace(b"OPTIONS sip:alice@127.0.0.1 SIP/2.0", b"OPTIONS  SIP/2.0", 1),
            400,
            "Malformed Request-Line",
        ),
        (
            request().replace(b"sip:alice@127.0.0.1 SIP/2.0\r\n", b"sip:alice@127.0.0.1 \r\n", 1),
            400,
            "Malformed Request-Line",
        ),
        (request(extra=[("Bad Header", "x")]), 400, "Malformed Header Name"),
        (request(extra=[("", "x")]), 400, "Malformed Header Line"),
    ],
)
def test_errors_carry_status_reason_and_the_request(data: bytes, status: int, reason: str) -> None:
    err = _err(data)
    assert (err.status, err.reason) == (status, reason)
    assert isinstance(err.request, Request)  # answerable: the top Via was readable


def test_missing_or_broken_via_cannot_be_answered() -> None:
    err = _err(request().replace(b"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-1\r\n", b""))
    assert err.status == 400 and err.request is None
    err = _err(request(via="SIP/2.0/UDP"))
    assert err.request is None


def test_too_large_is_513() -> None:
    data = request("MESSAGE", body=b"x" * 2000)
    err = _err(data, max_size=1024)
    assert err.status == 513 and isinstance(err.request, Request)


@pytest.mark.parametrize("junk", [b"", b"\r\n\r\n", b"\x00\xff\xfe", b"hello world", b"\x80" * 50])
def test_junk_raises_parse_error_only(junk: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(junk)


def test_non_utf8_header_bytes_survive() -> None:
    data = request(extra=[("Subject", "caf\udce9")]).replace(b"caf\\udce9", b"")
    data = request().replace(b"Max-Forwards: 70", b"Subject: caf\xe9\r\nMax-Forwards: 70")
    req = parse_req(data)
    subject = req.headers.get("subject")
    assert subject is not None
    assert subject.encode("utf-8", "surrogateescape") == b"caf\xe9"


@pytest.mark.parametrize("value", ["\x00\xff\x07", "seventy", "-1", "", "7 0"])
def test_max_forwards_must_be_digits(value: str) -> None:
    # §20.22: Max-Forwards is 1*DIGIT (make soak sent binary there and got 200).
    data = request("OPTIONS", extra=[("Max-Forwards", value)]).replace(b"Max-Forwards: 70\r\n", b"")
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert (info.value.status, info.value.reason) == (400, "Malformed Max-Forwards Header")


@pytest.mark.parametrize(
    "uri",
    [
        "sip:2001:db8::10",  # RFC 5118 §4.2
        "sip:alice@2001:db8::10",
        "sips:alice@2001:db8::10:5061;transport=tcp",
        "sip:::1",
    ],
)
def test_an_ipv6_host_without_brackets_is_a_400(uri: str) -> None:
    data = request("REGISTER", uri=uri)
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status == 400
    assert "IPv6 address must be in brackets" in info.value.reason


@pytest.mark.parametrize(
    "uri",
    [
        "sip:[2001:db8::10]",
        "sip:alice@[2001:db8::10]:5060;maddr=[2001:db8::1]",
        "sip:alice:secret@example.com:5060",  # a password: one colon in the user part
        "sip:a;b=c:d@example.com:5060",  # user-unreserved ";", then a ":" of its own
        "sip:example.com;x=a:b:c",  # colons in a parameter
        "sip:example.com?Subject=a:b:c",  # and in a header
        "tel:+1-201-555-0123;ext=1:2:3",
    ],
)
def test_other_uris_with_colons_are_not_taken_for_bare_ipv6(uri: str) -> None:
    msg = parse_message(request("OPTIONS", uri=uri))
    assert isinstance(msg, Request) and msg.uri == uri
