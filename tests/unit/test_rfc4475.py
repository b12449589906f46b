"""RFC 4475 torture messages: each one gets the answer the RFC describes for an endpoint.

The messages are in ``data/rfc4475/`` (read by ``torture.py``), byte for byte.  Each is
driven through ``Endpoint.receive`` as one UDP datagram (as most of them say they
arrived), and where the RFC says something about stream transports, through
``StreamFramer`` over TCP too.
Where the RFC allows two answers (reject with 400, or be liberal and accept) either
passes.  Answers that differ from the RFC are kept as strict xfails: they are bugs.
"""

from __future__ import annotations

from typing import cast

import pytest
import torture

from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.flow import Flow, Send
from sipresponder.errors import FramingError, ParseError
from sipresponder.sip.framer import StreamFramer
from sipresponder.sip.message import Request, Response
from sipresponder.sip.parser import parse_message

UDP = Flow("udp", ("192.0.2.1", 5062), ("127.0.0.1", 5060))
TCP = Flow("tcp", ("192.0.2.1", 40000), ("127.0.0.1", 5060), conn="conn-1")

#: What a request with no special plan is finally answered with: it was accepted.
ACCEPTED = 200


def endpoint() -> Endpoint:
    return Endpoint(Config(secret=b"rfc4475"))


def answer(data: bytes, flow: Flow = UDP) -> tuple[Endpoint, list[Response]]:
    ep = endpoint()
    out = ep.receive(data, flow, 0.0)
    return ep, responses(out)


def responses(out: list[Send]) -> list[Response]:
    msgs = [parse_message(data) for data, _, _ in out]
    assert all(isinstance(msg, Response) for msg in msgs)
    return cast(list[Response], msgs)


def final(data: bytes) -> int | None:
    """The last status the endpoint answers ``data`` with (None: nothing is sent)."""
    ep, resps = answer(data)
    assert ep.stats["internal_errors"] == 0
    return resps[-1].status if resps else None


# ------------------------------------------------------------- §3.1.1 valid requests


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("wsinv", ACCEPTED),  # §3.1.1.1: well formed; its To tag makes it a re-INVITE
        ("intmeth", 501),  # §3.1.1.2: an unknown method; endpoints answer 501 with Allow
        ("esc01", ACCEPTED),  # §3.1.1.3
        ("escnull", ACCEPTED),  # §3.1.1.4
        ("esc02", 501),  # §3.1.1.5: RE%47IST%45R is not REGISTER: an unknown method
        ("lwsdisp", ACCEPTED),  # §3.1.1.6
        ("longreq", ACCEPTED),  # §3.1.1.7
        ("dblreq", ACCEPTED),  # §3.1.1.8: the REGISTER is answered, the INVITE ignored
        ("semiuri", ACCEPTED),  # §3.1.1.9
        ("transports", ACCEPTED),  # §3.1.1.10
        ("mpart01", ACCEPTED),  # §3.1.1.11: binary multipart body with NULs
    ],
)
def test_valid_requests_are_accepted(name: str, code: int) -> None:
    data = torture.ALL[name]
    msg = parse_message(data)
    assert isinstance(msg, Request)
    ep, resps = answer(data)
    assert [r.status for r in resps][-1] == code
    assert all(r.status < 400 or r.status == code for r in resps)
    for resp in resps:  # every response is addressed to this very request
        assert resp.header("Call-ID") == msg.call_id
        assert resp.header("CSeq") == msg.cseq
    assert ep.stats["parse_errors"] == 0 and ep.stats["internal_errors"] == 0


def test_wsinv_fields_survive_folding_and_odd_spacing() -> None:
    req = parse_message(torture.WSINV)
    assert isinstance(req, Request)
    assert req.to_tag == "1918181833n" and req.from_tag == "98asjd8"
    assert (req.cseq_num, req.cseq_method) == (9, "INVITE")
    assert req.headers.get("max-forwards") == "0068"
    assert req.headers.get("subject") == ""
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert req.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert len(req.vias) == 3
    assert req.top_via is not None and req.top_via.host == "192.0.2.2"
    assert req.branch == "390skdjuw"
    assert len(req.body) == 150


def test_intmeth_501_lists_the_methods_we_understand() -> None:
    _, resps = answer(torture.INTMETH)
    allow = resps[-1].header("Allow")
    assert allow is not None and "INVITE" in allow and "OPTIONS" in allow
    # The To display name holds quoted NUL, BEL and DEL: they come back unchanged.
    to = resps[-1].header("To")
    assert to is not None and to.startswith('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"')


def test_dblreq_answers_only_the_register() -> None:
    _, resps = answer(torture.DBLREQ)
    assert [(r.status, r.header("CSeq")) for r in resps] == [(200, "8 REGISTER")]


def test_mpart01_body_is_framed_by_content_length() -> None:
    req = parse_message(torture.MPART01)
    assert isinstance(req, Request)
    assert len(req.body) == 553 and b"\x00" in req.body
    assert req.body.endswith(b"--7a9cbec02ceef655--\r\n")


# ------------------------------------------------------ §3.1.1 valid responses


@pytest.mark.parametrize(
    ("name", "status", "reason"),
    [
        ("unreason", 200, "= 2**3 * 5**2 но сто девяносто девять - простое"),  # §3.1.1.12
        ("noreason", 100, ""),  # §3.1.1.13
    ],
)
def test_valid_responses_parse_and_are_dropped_quietly(name: str, status: int, reason: str) -> None:
    msg = parse_message(torture.ALL[name])
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (status, reason)
    ep, resps = answer(torture.ALL[name])
    assert resps == []  # we send no requests, so no response is ours to take
    assert ep.stats["parse_errors"] == 0 and ep.stats["dropped"] == 1


# ---------------------------------------------------- §3.1.2 and §3.3 invalid ones


def case(name: str, *allowed: int, bug: str | None = None) -> object:
    """One message and the final statuses the RFC allows; ``bug`` says how we differ."""
    marks = [] if bug is None else [pytest.mark.xfail(strict=True, reason=bug)]
    return pytest.param(name, set(allowed), id=name, marks=marks)


#: ACCEPTED among the allowed statuses: the RFC lets an element be liberal and accept it.
RFC_ANSWERS = [
    case("badinv01", 400),  # §3.1.2.1: empty Via elements and parameters
    case("clerr", 400),  # §3.1.2.2 (over UDP)
    case("ncl", 400),  # §3.1.2.3
    case("scalar02", 400),  # §3.1.2.4: the CSeq is too large
    case("quotbal", 400, ACCEPTED),  # §3.1.2.6: or infer the closing quote
    case("ltgtruri", 400, ACCEPTED),  # §3.1.2.7: a Request-URI in <>
    case("lwsruri", 400),  # §3.1.2.8
    case("lwsstart", 400),  # §3.1.2.9
    case("trws", 400),  # §3.1.2.10
    case("escruri", 400, ACCEPTED),  # §3.1.2.11
    case("baddate", 400, ACCEPTED),  # §3.1.2.12
    case("regbadct", 400, ACCEPTED),  # §3.1.2.13
    case("badaspec", 400, ACCEPTED),  # §3.1.2.14
    case("baddn", 400, ACCEPTED),  # §3.1.2.15
    case("badvers", 505),  # §3.1.2.16: SIP/7.0, its Via too
    case("mismatch01", 400),  # §3.1.2.17
    case("mismatch02", 501, 400),  # §3.1.2.18: 501 preferred
    case("badbranch", 400, ACCEPTED),  # §3.2.1
    case("insuf", 400),  # §3.3.1
    case("unkscm", 416),  # §3.3.2
    case("novelsc", 416),  # §3.3.3
    case("unksm2", 400),  # §3.3.4: the AOR (To) is no SIP or SIPS URI
    case("bext01", 420),  # §3.3.5
    case("invut", 415),  # §3.3.6
    case("regaut01", ACCEPTED, 401),  # §3.3.7
    case("multi01", 400),  # §3.3.8
    case("mcl01", 400),  # §3.3.9
    case("zeromf", ACCEPTED),  # §3.3.11: an endpoint still answers
    case("cparam01", ACCEPTED),  # §3.3.12
    case("cparam02", ACCEPTED),  # §3.3.13
    case("regescrt", ACCEPTED),  # §3.3.14
    case("sdp01", 406, 400),  # §3.3.15: the Accept rules out the SDP of a 2xx
    case("inv2543", ACCEPTED),  # §3.4.1: an RFC 2543 request
]


@pytest.mark.parametrize(("name", "allowed"), RFC_ANSWERS)
def test_each_message_gets_the_answer_the_rfc_describes(name: str, allowed: set[int]) -> None:
    assert final(torture.ALL[name]) in allowed


@pytest.mark.parametrize("name", ["scalarlg", "bcast", "bigcode"])
def test_broken_or_foreign_responses_are_discarded(name: str) -> None:
    # §3.1.2.5, §3.3.10, §3.1.2.19: a response is simply dropped, never answered.
    ep, resps = answer(torture.ALL[name])
    assert resps == [] and ep.stats["dropped"] == 1
    assert ep.stats["internal_errors"] == 0


def test_bigcode_is_no_status_line() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(torture.BIGCODE)
    assert info.value.request is None  # nothing to answer


def test_bext01_420_lists_both_unsupported_extensions() -> None:
    _, resps = answer(torture.BEXT01)
    unsupported = resps[-1].header("Unsupported")
    assert unsupported is not None
    assert {u.strip() for u in unsupported.split(",")} == {
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    }  # Proxy-Require is for proxies: an endpoint ignores it


def test_invut_415_says_what_we_accept() -> None:
    _, resps = answer(torture.INVUT)
    accept = resps[-1].header("Accept")
    assert accept is not None and "application/sdp" in accept


def test_insuf_400_cannot_carry_the_missing_headers() -> None:
    _, resps = answer(torture.INSUF)
    assert [r.status for r in resps] == [400]
    assert resps[0].header("CSeq") == "193942 INVITE"
    assert resps[0].header("From") is None and resps[0].header("To") is None


@pytest.mark.parametrize(
    ("name", "bindings"),
    [
        # §3.3.12: unknownparam is a contact parameter, outside the URI.
        ("cparam01", ["<sip:+19725552222@gw1.example.net>;unknownparam;expires=3600"]),
        # §3.3.13: here it is a URI parameter, inside the brackets.
        ("cparam02", ["<sip:+19725552222@gw1.example.net;unknownparam>;expires=3600"]),
        # §3.3.14: the escaped Route header stays part of the registered URI.
        ("regescrt", ["<sip:user@example.com?Route=%3Csip:sip.example.com%3E>;expires=3600"]),
        # §3.1.1.4: escaped NULs in user parts are fine.
        (
            "escnull",
            [
                "<sip:%00@host5.example.com>;expires=3600",
                "<sip:%00%00@host5.example.com>;expires=3600",
            ],
        ),
    ],
)
def test_register_200_lists_the_bindings_as_sent(name: str, bindings: list[str]) -> None:
    _, resps = answer(torture.ALL[name])
    assert resps[-1].status == 200
    assert resps[-1].header_all("Contact") == bindings


# ------------------------------------------------------------- stream transports


def feed_tcp(data: bytes) -> tuple[Endpoint, list[Response], StreamFramer]:
    ep = endpoint()
    framer = StreamFramer()
    out: list[Send] = []
    for item in framer.feed(data):
        if isinstance(item, bytes):
            out += ep.receive(item, TCP, 0.0)
        elif isinstance(item, FramingError):
            out += ep.reject_framing(item, TCP)
    return ep, responses(out), framer


def test_clerr_over_tcp_waits_for_the_rest_of_the_body() -> None:
    # §3.1.2.2: on a stream the remaining 9999 - 154 octets may still come.
    _, resps, framer = feed_tcp(torture.CLERR)
    assert resps == [] and not framer.broken
    assert framer.buffered == len(torture.CLERR)


@pytest.mark.parametrize("name", ["ncl", "mcl01"])
def test_unframeable_content_length_over_tcp_is_answered_then_closed(name: str) -> None:
    # §3.1.2.3, §3.3.9: no way to find where the message ends: 400, and the stream is done.
    _, resps, framer = feed_tcp(torture.ALL[name])
    assert [r.status for r in resps] == [400]
    assert framer.broken


@pytest.mark.parametrize("name", sorted(torture.ALL))
def test_every_message_over_tcp_never_errors_inside(name: str) -> None:
    ep, _, _ = feed_tcp(torture.ALL[name])
    assert ep.stats["internal_errors"] == 0
