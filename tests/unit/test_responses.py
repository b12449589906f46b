"""Response building (RFC 3261 §8.2.6, §18.2, RFC 3581) and per-code headers."""

from __future__ import annotations

import pytest
from helpers import SDP_OFFER, request

from sipresponder.sip.codes import REGISTERED
from sipresponder.sip.message import Request, Response
from sipresponder.sip.parser import parse_message
from sipresponder.sip.responses import (
    ALLOW,
    NO_EXTRAS,
    Answers,
    Extras,
    Local,
    build_response,
    make_to_tag,
    response_destination,
    response_vias,
)
from sipresponder.sip.serializer import serialize_response

LOCAL = Local("127.0.0.1", 5060, "udp")
SRC = ("192.0.2.1", 5062)


def req(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def respond(data: bytes, code: int, **kw: object) -> Response:
    kw.setdefault("to_tag", "t1")
    kw.setdefault("source", SRC)
    kw.setdefault("local", LOCAL)
    return build_response(req(data), code, **kw)  # type: ignore[arg-type]


def test_mandatory_headers_copied_and_tagged() -> None:
    data = request(
        "INVITE",
        "486",
        via="SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-a, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-b",
    )
    resp = respond(data, 486)
    assert (resp.status, resp.reason) == (486, "Busy Here")
    assert resp.header_all("Via") == [
        "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-a",
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-b",
    ]
    assert resp.header("From") == "<sip:caller@192.0.2.1>;tag=ft1"
    assert resp.header("To") == "<sip:486@127.0.0.1>;tag=t1"
    assert resp.header("Call-ID") == "call-1@test"
    assert resp.header("CSeq") == "1 INVITE"
    assert resp.header(
        "Server",
    ).startswith("sipresponder/")  # type: ignore[union-attr]
    wire = serialize_response(resp)
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")


def test_100_has_no_to_tag_and_existing_tag_is_kept() -> None:
    assert respond(request("INVITE"), 100).header("To") == "<sip:alice@127.0.0.1>"
    in_dialog = request("BYE", to="<sip:alice@127.0.0.1>;tag=ours")
    assert respond(in_dialog, 200).header("To") == "<sip:alice@127.0.0.1>;tag=ours"


def test_to_tag_is_deterministic_per_request() -> None:
    a = make_to_tag(b"k", "c1", "f1", 1)
    assert a == make_to_tag(b"k", "c1", "f1", 1)
    assert (
        len(
            {
                a,
                make_to_tag(b"k", "c2", "f1", 1),
                make_to_tag(b"k", "c1", "f2", 1),
                make_to_tag(b"k", "c1", "f1", 2),
                make_to_tag(b"j", "c1", "f1", 1),
            }
        )
        == 5
    )


def test_a_secret_longer_than_blake2s_keys_still_makes_tags() -> None:
    # BLAKE2s takes keys of up to 32 bytes; a longer --secret (a pool's passphrase) once
    # made every request an internal error.  Now it keys the hash by its own hash.
    long = b"a pool passphrase longer than 32 bytes"
    tag = make_to_tag(long, "c1", "f1", 1)
    assert len(tag) == 16 and tag == make_to_tag(long, "c1", "f1", 1)
    assert tag != make_to_tag(long + b"!", "c1", "f1", 1)
    assert tag != make_to_tag(long[:32], "c1", "f1", 1)


@pytest.mark.parametrize(
    ("via", "source", "top", "dest"),
    [
        # sent-by equals source: untouched, sent to the sent-by port.
        (
            "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-1",
            ("192.0.2.1", 4000),
            "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-1",
            ("192.0.2.1", 5062),
        ),
        # §18.2.1: a differing address gets received; no port means 5060.
        (
            "SIP/2.0/UDP 10.1.1.1;branch=z9hG4bK-1",
            ("192.0.2.7", 4000),
            "SIP/2.0/UDP 10.1.1.1;branch=z9hG4bK-1;received=192.0.2.7",
            ("192.0.2.7", 5060),
        ),
        # a host name always differs from the source address.
        (
            "SIP/2.0/UDP pc.example.com:5070;branch=z9hG4bK-1",
            ("192.0.2.7", 4000),
            "SIP/2.0/UDP pc.example.com:5070;branch=z9hG4bK-1;received=192.0.2.7",
            ("192.0.2.7", 5070),
        ),
        # RFC 3581: rport filled and received added even when equal; sent to the source port.
        (
            "SIP/2.0/UDP 192.0.2.1:5062;rport;branch=z9hG4bK-1",
            ("192.0.2.1", 4000),
            "SIP/2.0/UDP 192.0.2.1:5062;rport=4000;branch=z9hG4bK-1;received=192.0.2.1",
            ("192.0.2.1", 4000),
        ),
        # IPv6 and v4-mapped sources.
        (
            "SIP/2.0/UDP [::1]:5062;branch=z9hG4bK-1",
            ("::1", 4000),
            "SIP/2.0/UDP [::1]:5062;branch=z9hG4bK-1",
            ("::1", 5062),
        ),
        (
            "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1",
            ("::ffff:127.0.0.1", 4000),
            "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1",
            ("::ffff:127.0.0.1", 5062),
        ),
        # maddr is not followed (documented deviation from §18.2.2).
        (
            "SIP/2.0/UDP 10.1.1.1:5062;maddr=239.1.1.1;branch=z9hG4bK-1",
            ("192.0.2.7", 4000),
            "SIP/2.0/UDP 10.1.1.1:5062;maddr=239.1.1.1;branch=z9hG4bK-1;received=192.0.2.7",
            ("192.0.2.7", 5062),
        ),
    ],
)
def test_via_stamping_and_destination(
    via: str, source: tuple[str, int], top: str, dest: tuple[str, int]
) -> None:
    r = req(request(via=via))
    assert response_vias(r, *source)[0] == top
    assert response_destination(r, *source) == dest


def test_dialog_creating_responses_copy_record_route_and_carry_contact() -> None:
    data = request(
        "INVITE",
        extra=[("Record-Route", "<sip:p1;lr>"), ("Record-Route", "<sip:p2;lr>, <sip:p3;lr>")],
    )
    for code in (180, 183, 200):
        resp = respond(data, code)
        assert resp.header_all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>, <sip:p3;lr>"]
        assert resp.header("Contact") == "<sip:sipresponder@127.0.0.1:5060>"
    for code in (100, 486):
        assert respond(data, code).header("Record-Route") is None
        assert respond(data, code).header("Contact") is None
    tcp = respond(data, 200, local=Local("::1", 5070, "tcp"))
    assert tcp.header("Contact") == "<sip:sipresponder@[::1]:5070;transport=tcp>"


def test_2xx_to_invite_answers_the_offer_or_offers() -> None:
    offer = request("INVITE", extra=[("Content-Type", "application/sdp")], body=SDP_OFFER)
    resp = respond(offer, 200)
    assert resp.header("Content-Type") == "application/sdp"
    assert b"m=audio 40000 RTP/AVP 0 101" in resp.body
    assert respond(offer, 183).body == resp.body  # early media: the same answer
    assert respond(offer, 180).body == b""
    bare = respond(request("INVITE"), 200)
    assert b"m=audio 40000 RTP/AVP 0 8 101" in bare.body
    assert serialize_response(bare).count(b"Content-Length: %d" % len(bare.body)) == 1


@pytest.mark.parametrize(
    ("code", "header", "value"),
    [
        (302, "Contact", "<sip:redirect@127.0.0.1:5060>"),
        (301, "Contact", "<sip:redirect@127.0.0.1:5060>"),
        (405, "Allow", ALLOW),
        (501, "Allow", ALLOW),
        (420, "Unsupported", "x-unknown"),
        (421, "Require", "100rel"),
        (422, "Min-SE", "1800"),
        (423, "Min-Expires", "3600"),
        (415, "Accept", "application/sdp"),
    ],
)
def test_per_code_headers(code: int, header: str, value: str) -> None:
    assert respond(request("INVITE"), code).header(header) == value


def test_challenges() -> None:
    extras = Extras(nonce="abc", realm="lab")
    www = respond(request("REGISTER"), 401, extras=extras).header("WWW-Authenticate")
    assert www == 'Digest realm="lab", nonce="abc", algorithm=MD5, qop="auth"'
    proxy = respond(request("INVITE"), 407, extras=extras).header("Proxy-Authenticate")
    assert proxy == www


def test_420_lists_what_the_request_required() -> None:
    data = request("INVITE", extra=[("Require", "foo, bar")])
    resp = respond(data, 420, extras=Extras(unsupported=("foo", "bar")))
    assert resp.header("Unsupported") == "foo, bar"


def test_min_values_exceed_what_was_asked() -> None:
    data = request("REGISTER", extra=[("Expires", "7200")])
    assert respond(data, 423).header("Min-Expires") == "14400"
    data = request("INVITE", extra=[("Session-Expires", "1800;refresher=uac")])
    assert respond(data, 422).header("Min-SE") == "3600"


def test_options_200_advertises_capabilities() -> None:
    resp = respond(request("OPTIONS"), 200)
    for name in ("Allow", "Accept", "Accept-Encoding", "Accept-Language", "Supported"):
        assert resp.header(name) is not None


def test_register_200_lists_bindings_with_expires() -> None:
    data = request(
        "REGISTER",
        extra=[
            ("Contact", "<sip:a@192.0.2.1:5062>;expires=60, <sip:b@192.0.2.1>"),
            ("Contact", "sip:c@192.0.2.1;expires=0"),
            ("Expires", "1800"),
            ("Path", "<sip:edge;lr>"),
        ],
    )
    resp = respond(data, 200)
    assert resp.header_all("Contact") == [
        "<sip:a@192.0.2.1:5062>;expires=60",
        "<sip:b@192.0.2.1>;expires=1800",
    ]
    assert resp.header("Path") == "<sip:edge;lr>"
    star = request("REGISTER", extra=[("Contact", "*"), ("Expires", "0")])
    assert respond(star, 200).header("Contact") is None


def test_subscribe_and_publish_2xx() -> None:
    sub = respond(request("SUBSCRIBE", extra=[("Expires", "600"), ("Event", "presence")]), 200)
    assert sub.header("Expires") == "600" and sub.header("Contact") is not None
    pub = respond(request("PUBLISH", extra=[("Event", "presence")]), 200)
    assert pub.header("SIP-ETag") and pub.header("Expires") == "3600"


def test_reason_override_and_retry_after() -> None:
    resp = respond(request(), 503, extras=Extras(reason="Too Busy", retry_after=5))
    assert resp.reason == "Too Busy" and resp.header("Retry-After") == "5"


# Answers.render (the hot path, with its cache of request-free tails) must give the bytes
# of serialize_response(Answers.response(...)) (the object path): every code of the
# registry to each kind of request, twice (the second from the cache).
CODES = [*REGISTERED, 199, 299, 399, 499, 599, 699]  # and unregistered ones
REQUESTS = {
    "invite": request("INVITE"),
    "invite-sdp-rr": request(
        "INVITE",
        extra=[("Record-Route", "<sip:p1;lr>"), ("Content-Type", "application/sdp")],
        body=SDP_OFFER,
    ),
    "in-dialog": request("INVITE", to="<sip:alice@127.0.0.1>;tag=theirs"),
    "two-vias-rport": request(
        "OPTIONS", via="SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK-2;rport, SIP/2.0/TCP p;branch=x"
    ),
    "register": request("REGISTER", extra=[("Contact", "<sip:a@b>;expires=60")]),
    "subscribe": request("SUBSCRIBE", extra=[("Expires", "600")]),
    "publish": request("PUBLISH"),
    "require": request("OPTIONS", extra=[("Require", "foo")]),
}
EXTRAS = {
    "none": NO_EXTRAS,
    "rule": Extras(reason="Custom", headers=(("X-Test", "1"), ("Server", "other"))),
    "challenge": Extras(nonce="n1", realm="r1", retry_after=5, warning="w"),
}


@pytest.mark.parametrize("kind", sorted(REQUESTS))
@pytest.mark.parametrize("extras", sorted(EXTRAS))
def test_render_is_the_serialized_response(kind: str, extras: str) -> None:
    request_ = req(REQUESTS[kind])
    for local in (LOCAL, Local("::1", 5070, "tcp")):
        answers = Answers(request_, to_tag="t1", source=SRC, local=local)
        for code in CODES:
            want = serialize_response(answers.response(code, EXTRAS[extras]))
            assert answers.render(code, EXTRAS[extras]) == want, (kind, code)
            assert answers.render(code, EXTRAS[extras]) == want, (kind, code, "cached")
