"""The responder process against bad input, and TCP framing, over raw sockets.

Malformed requests get the error response RFC 3261 asks for (400 with a reason phrase
naming the problem, 505, 416, 420, 501, 513 ...); what cannot be answered (junk, a
request without a usable Via, responses) is dropped; and the process keeps answering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from sipclient import Client, Msg, Req, TcpClient, UdpClient, client
from sipprocs import Responder, StartResponder

TRANSPORTS = ["udp", "tcp"]


def assert_alive(server: Responder, transport: str) -> None:
    """A fresh OPTIONS on a fresh socket still gets its 200."""
    with client(transport, server.addr) as c:
        c.request(Req("OPTIONS"), 200)


def assert_echoes(resp: Msg, req: Req) -> None:
    """§8.2.6.2: the response copies Call-ID, CSeq, From and the top Via (those sent)."""
    omitted = {name.lower() for name in req.omit}
    if "call-id" not in omitted:
        assert resp["Call-ID"] == req.call_id
    if "cseq" not in omitted:
        assert resp["CSeq"] == f"{req.cseq} {req.cseq_method or req.method}"
    if "from" not in omitted:
        assert f"tag={req.from_tag}" in resp["From"]
    assert f"branch={req.branch}" in resp["Via"]


# ---------------------------------------------------------------- bad requests


@dataclass
class Bad:
    """A malformed request and the response it must get."""

    name: str
    req: Callable[[], Req]
    code: int
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    transports: tuple[str, ...] = ("udp", "tcp")
    closes_tcp: bool = False


BAD = [
    Bad("missing Call-ID", lambda: Req(omit=("Call-ID",)), 400, "Missing Call-ID Header"),
    Bad("missing From", lambda: Req(omit=("From",)), 400, "Missing From Header"),
    Bad("missing To", lambda: Req(omit=("To",)), 400, "Missing To Header"),
    Bad("missing CSeq", lambda: Req(omit=("CSeq",)), 400, "Missing CSeq Header"),
    Bad(
        "CSeq method mismatch",
        lambda: Req("OPTIONS", cseq_method="INVITE"),
        400,
        "CSeq Method Does Not Match Request",
    ),
    Bad(
        "two Call-IDs",
        lambda: Req(headers=[("Call-ID", "second@test")]),
        400,
        "Multiple Call-ID Headers",
    ),
    Bad(
        "bad Content-Length",
        lambda: Req(content_length="abc"),
        400,
        "Bad Content-Length",
        closes_tcp=True,
    ),
    Bad(
        "Content-Length beyond the datagram",
        lambda: Req(body=b"v=0\r\n", content_length=100),
        400,
        "Content-Length Exceeds Message",
        transports=("udp",),
    ),
    Bad(
        "no Content-Length on TCP",
        lambda: Req(content_length=None),
        400,
        "Missing Content-Length",
        transports=("tcp",),
    ),
    Bad("SIP/3.0", lambda: Req(version="SIP/3.0"), 505),
    Bad("http: Request-URI", lambda: Req(uri="http://example.com/"), 416),
    Bad(
        "Require: foo",
        lambda: Req(headers=[("Require", "foo")]),
        420,
        headers={"Unsupported": "foo"},
    ),
    Bad(
        "INVITE with Require: foo",
        lambda: Req("INVITE", "486", headers=[("Require", "foo")]),
        420,
        headers={"Unsupported": "foo"},
    ),
    Bad("unknown method", lambda: Req("FOO"), 501),
    Bad(
        "INVITE with a non-SDP body",
        lambda: Req("INVITE", headers=[("Content-Type", "text/plain")], body=b"hello"),
        415,
        headers={"Accept": "application/sdp"},
    ),
    Bad(
        "INVITE with broken SDP",
        lambda: Req("INVITE", headers=[("Content-Type", "application/sdp")], body=b"hello"),
        400,
    ),
]
BAD_CASES = [
    pytest.param(bad, transport, id=f"{bad.name}-{transport}")
    for bad in BAD
    for transport in bad.transports
]


@pytest.mark.parametrize(("bad", "transport"), BAD_CASES)
def test_malformed_request_gets_its_error(responder: Responder, bad: Bad, transport: str) -> None:
    with client(transport, responder.addr) as c:
        req = bad.req()
        resp = c.request(req, bad.code)
        if bad.reason is not None:
            assert resp.reason == bad.reason
        for name, value in bad.headers.items():
            assert resp[name] == value
        if bad.code == 501:
            allow = {m.strip() for m in resp["Allow"].split(",")}
            assert {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"} <= allow
            assert "FOO" not in allow
        assert_echoes(resp, req)
        if "Call-ID" not in req.omit and "To" not in req.omit:
            assert resp.to_tag  # a final response is tagged when it can be
        if isinstance(c, TcpClient) and bad.closes_tcp:
            assert c.closed_by_peer(), "a framing error should close the connection"
        else:
            c.expect_silence(0.1)  # one answer, no 100 Trying, nothing else
            c.request(Req("OPTIONS"), 200)  # the same socket or connection still works
    assert_alive(responder, transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_ack_is_not_answered(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        c.send(Req("ACK", omit=("Call-ID",)))
        c.send(Req("ACK", version="SIP/3.0"))
        c.expect_silence()
        c.request(Req("OPTIONS"), 200)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_message_size_limit(start_responder_with: StartResponder, transport: str) -> None:
    server = start_responder_with("--max-message-size", "2048")
    with client(transport, server.addr) as c:
        at_limit = sized(c, 2048)
        assert len(c.build(at_limit)) == 2048
        c.request(at_limit, 200)
        over = sized(c, 2049)
        resp = c.request(over, 513)
        assert resp.reason == "Message Too Large"
        assert_echoes(resp, over)
        if isinstance(c, TcpClient):
            assert c.closed_by_peer()
    assert_alive(server, transport)


def sized(c: Client, size: int) -> Req:
    """A MESSAGE that is exactly ``size`` bytes on the wire."""
    req = Req("MESSAGE", headers=[("Content-Type", "text/plain")])
    for _ in range(5):  # the Content-Length digits change the size: settle in a few steps
        req.body = b"x" * (len(req.body) + size - len(c.build(req)))
    assert len(c.build(req)) == size
    return req


def test_oversized_tcp_message_with_the_default_limit_gets_513(responder: Responder) -> None:
    with TcpClient(responder.addr) as c:
        c.send(Req("MESSAGE", headers=[("Content-Type", "text/plain")], body=b"x" * 70000))
        c.expect(513)
        assert c.closed_by_peer()
    assert_alive(responder, "tcp")


JUNK = [
    pytest.param(b"\x00\x01\x02 hello \xff\xfe\r\n\r\n", id="binary"),
    pytest.param(b"this is not SIP at all\r\n\r\n", id="text"),
    pytest.param(b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n", id="no-Via"),
    pytest.param(
        b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: garbage here\r\nContent-Length: 0\r\n\r\n",
        id="bad-Via",
    ),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("junk", JUNK)
def test_junk_is_dropped(responder: Responder, transport: str, junk: bytes) -> None:
    with client(transport, responder.addr) as c:
        c.send(junk)
        c.expect_silence()
        if isinstance(c, TcpClient) and c.eof:
            return  # closing a connection that sends junk is fine too
        c.request(Req("OPTIONS"), 200)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_response_sent_to_it_is_dropped(responder: Responder, transport: str) -> None:
    with client(transport, responder.addr) as c:
        local = f"127.0.0.1:{c.local[1]}"
        response = (
            "SIP/2.0 200 OK\r\n"
            f"Via: SIP/2.0/{transport.upper()} {local};branch=z9hG4bK-resp1;rport\r\n"
            f"From: <sip:test@{local}>;tag=1\r\n"
            f"To: <sip:bob@{local}>;tag=2\r\n"
            "Call-ID: response-to-nobody@test\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        c.send(response)
        c.expect_silence()
        c.request(Req("OPTIONS"), 200)


def test_it_survives_all_of_it(start_responder_with: StartResponder) -> None:
    """Every bad thing in a row over both transports; then it still answers (and exits 0)."""
    server = start_responder_with()
    for transport in TRANSPORTS:
        for bad in BAD:
            if transport in bad.transports:
                with client(transport, server.addr) as c:
                    c.request(bad.req(), bad.code)
        for param in JUNK:
            with client(transport, server.addr) as c:
                c.send(bytes(param.values[0]))  # type: ignore[arg-type]
                c.expect_silence(0.05)
    for transport in TRANSPORTS:
        assert_alive(server, transport)
    assert "Traceback" not in server.log()


# ------------------------------------------------------------ lenient parsing


def test_compact_and_lowercase_header_names(responder: Responder) -> None:
    for transport in TRANSPORTS:
        with client(transport, responder.addr) as c:
            branch = "z9hG4bK-compact-" + transport
            data = (
                f"OPTIONS sip:486@127.0.0.1:{responder.port} SIP/2.0\r\n"
                f"v: SIP/2.0/{transport.upper()} 127.0.0.1:{c.local[1]};branch={branch};rport\r\n"
                "f: <sip:test@127.0.0.1>;tag=abc\r\n"
                "t: <sip:486@127.0.0.1>\r\n"
                f"i: compact-{transport}@test\r\n"
                "cseq: 7 OPTIONS\r\n"
                "MAX-FORWARDS: 70\r\n"
                "l: 0\r\n\r\n"
            ).encode()
            c.send(data)
            resp = c.expect(486)
            assert resp["Call-ID"] == f"compact-{transport}@test"
            assert resp["CSeq"] == "7 OPTIONS"


def test_folded_header_line(responder: Responder) -> None:
    with UdpClient(responder.addr) as c:
        data = (
            f"OPTIONS sip:bob@127.0.0.1:{responder.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{c.local[1]}\r\n"
            "  ;branch=z9hG4bK-folded;rport\r\n"
            "From: <sip:test@127.0.0.1>;tag=abc\r\n"
            "To: <sip:bob@127.0.0.1>\r\n"
            "Call-ID: folded@test\r\n"
            "CSeq: 1\r\n OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        c.send(data)
        resp = c.expect(200)
        assert "branch=z9hG4bK-folded" in resp["Via"]


# -------------------------------------------------------------------- TCP framing


def test_tcp_two_messages_in_one_send(responder: Responder) -> None:
    with TcpClient(responder.addr) as c:
        first = Req("MESSAGE", headers=[("Content-Type", "text/plain")], body=b"one\r\n\r\ntwo")
        second = Req("INVITE", "486")
        c.send(c.build(first) + c.build(second))
        assert c.expect(200)["Call-ID"] == first.call_id
        trying, busy = c.expect_codes([100, 486])
        assert trying["Call-ID"] == busy["Call-ID"] == second.call_id
        c.send(second.ack(busy.to_tag))
        c.expect_silence()


@pytest.mark.parametrize("cut", ["start-line", "headers", "blank-line", "body"])
def test_tcp_message_split_across_two_sends(responder: Responder, cut: str) -> None:
    with TcpClient(responder.addr) as c:
        req = Req("MESSAGE", headers=[("Content-Type", "text/plain")], body=b"hello there")
        data = c.build(req)
        at = {
            "start-line": 5,
            "headers": data.index(b"Call-ID") + 3,
            "blank-line": data.index(b"\r\n\r\n") + 3,
            "body": len(data) - 4,
        }[cut]
        c.send(data[:at])
        c.expect_silence(0.15)  # nothing yet: the message is not whole
        c.send(data[at:])
        assert c.expect(200)["Call-ID"] == req.call_id


def test_tcp_crlf_ping_gets_crlf_pong(responder: Responder) -> None:
    with TcpClient(responder.addr) as c:
        c.send(b"\r\n\r\n")
        assert c.recv_raw(2) == b"\r\n"
        assert c.recv_raw(1, timeout=0.3) == b""  # one CRLF, nothing more
        c.send(b"\r\n")  # half a ping, then the other half
        c.send(b"\r\n")
        assert c.recv_raw(2) == b"\r\n"
        c.request(Req("OPTIONS"), 200)  # the connection is still good


def test_tcp_ping_between_messages(responder: Responder) -> None:
    with TcpClient(responder.addr) as c:
        first, second = Req("OPTIONS"), Req("OPTIONS")
        c.send(c.build(first) + b"\r\n\r\n" + c.build(second))
        assert c.expect(200)["Call-ID"] == first.call_id
        assert c.recv_raw(2) == b"\r\n"
        assert c.expect(200)["Call-ID"] == second.call_id
