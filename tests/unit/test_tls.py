"""SIP over TLS below the process: the configuration's TLS fields, the endpoint's answer
to a ``sips:`` Request-URI by transport (RFC 5630), the SIPS Contact, the certificate made
at start, and a ``TcpConnection`` over TLS driven through memory by a real ``ssl`` client,
on a fake transport — no socket."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import ssl
from typing import Any

import pytest
from cryptography import x509
from helpers import request
from test_transport import FakeTcp, driver, status_lines

from sipresponder.aio.tls import TlsSessions, describe, fingerprint, self_signed
from sipresponder.aio.transport import TcpConnection
from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.flow import Flow
from sipresponder.core.guard import Guard
from sipresponder.errors import ConfigError
from sipresponder.sip.parser import parse_message

UDP = Flow("udp", ("192.0.2.1", 5062), ("127.0.0.1", 5060))
TCP = Flow("tcp", ("192.0.2.1", 40000), ("127.0.0.1", 5060), conn="c1")
TLS = Flow("tls", ("192.0.2.1", 40001), ("127.0.0.1", 5061), conn="c2")


def answers(data: bytes, flow: Flow) -> list[Any]:
    ep = Endpoint(Config(secret=b"s"))
    return [parse_message(raw) for raw, _, _ in ep.receive(data, flow, 0.0)]


# ------------------------------------------------------------------------ config


def test_tls_port_defaults_and_validation() -> None:
    assert Config(transports=("tls",)).validate().listen_port("tls") == 5061
    assert Config(port=0, transports=("tcp", "tls")).validate().listen_port("tls") == 0
    assert Config(tls_port=6000, transports=("tls",)).validate().listen_port("tls") == 6000
    assert Config(port=5070).listen_port("udp") == 5070
    bad = {
        "--tls-cert: tls or wss is not among --transport udp,tcp": Config(tls_cert="c.pem"),
        "--tls-port: 70000 is not a port number": Config(transports=("tls",), tls_port=70000),
        "--tls-key: give its certificate with --tls-cert": Config(
            transports=("tls",), tls_key="k.pem"
        ),
        "--tls-verify-client: give the authorities": Config(
            transports=("tls",), tls_verify_client=True
        ),
        "--transport: tcp and tls would both listen on port 5060": Config(
            transports=("tcp", "tls"), tls_port=5060
        ),
        "--transport: unknown transport 'sctp' (use udp, tcp, tls, ws, wss)": Config(
            transports=("sctp",)
        ),
    }
    for message, config in bad.items():
        with pytest.raises(ConfigError) as info:
            config.validate()
        assert message in str(info.value)


# ---------------------------------------------------------------------- protocol


def test_sips_is_served_over_tls_only() -> None:
    data = request("OPTIONS", uri="sips:200@127.0.0.1:5061")
    for flow in (UDP, TCP):
        (refused,) = answers(data, flow)
        assert refused.status == 480  # RFC 5630 §5.1.2
        assert refused.header("Warning") == '380 sipresponder "SIPS Not Allowed"'
    (ok,) = answers(data, TLS)
    assert ok.status == 200
    # Upper case scheme is the same scheme (RFC 3261 §19.1.4).
    (refused,) = answers(request("OPTIONS", uri="SIPS:200@127.0.0.1"), UDP)
    assert refused.status == 480
    # sip: over TLS is best-effort TLS (RFC 5630 §3.1.3): served.
    (ok,) = answers(request("OPTIONS", uri="sip:200@127.0.0.1"), TLS)
    assert ok.status == 200


def test_contact_over_tls_follows_the_request_uri_scheme() -> None:
    sips = request("INVITE", uri="sips:200@127.0.0.1:5061")
    trying, final = answers(sips, TLS)
    assert (trying.status, final.status) == (100, 200)
    assert final.header("Contact") == "<sips:sipresponder@127.0.0.1:5061>"  # §12.1.1
    invite = request("INVITE", uri="sip:200@127.0.0.1:5061")
    _, final = answers(invite, TLS)
    assert final.header("Contact") == "<sip:sipresponder@127.0.0.1:5061;transport=tls>"
    (_, tcp_final) = answers(invite, TCP)
    assert tcp_final.header("Contact") == "<sip:sipresponder@127.0.0.1:5060;transport=tcp>"
    (_, udp_final) = answers(invite, UDP)
    assert udp_final.header("Contact") == "<sip:sipresponder@127.0.0.1:5060>"


# ------------------------------------------------------------------ certificates


def test_self_signed_certificate_names_the_host_and_loopback() -> None:
    cert_pem, key_pem = self_signed("192.0.2.7")
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = set(names.get_values_for_type(x509.IPAddress))
    assert ips == {ipaddress.ip_address(a) for a in ("192.0.2.7", "127.0.0.1", "::1")}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert cert.issuer == cert.subject
    assert b"PRIVATE KEY" in key_pem
    named = x509.load_pem_x509_certificate(self_signed("sip.example.test")[0])
    dns = named.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert dns.get_values_for_type(x509.DNSName) == ["sip.example.test", "localhost"]
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.decode())).hexdigest().upper()
    assert fingerprint(cert_pem) == ":".join(digest[i : i + 2] for i in range(0, 64, 2))


# ------------------------------------------------------------------- the session


def _tls_connection(tmp_path: Any) -> tuple[TcpConnection, FakeTcp, Guard, bytes, Any]:
    """A ``TcpConnection`` over TLS on a fake transport, with its event loop."""
    cert, key = self_signed("127.0.0.1")
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    loop = asyncio.new_event_loop()
    drv = driver(loop)
    conn = TcpConnection(drv, 65536, name="tls", secure=TlsSessions(context, drv.guard))
    fake = FakeTcp()
    conn.connection_made(fake)  # type: ignore[arg-type]
    return conn, fake, drv.guard, cert, loop


def _take(fake: FakeTcp) -> bytes:
    data, fake.written = b"".join(fake.written), []
    return data


def test_tls_connection_handshakes_then_answers_sip_in_records(tmp_path: Any) -> None:
    conn, fake, guard, cert, loop = _tls_connection(tmp_path)
    try:
        client = ssl.create_default_context(cadata=cert.decode())
        c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
        for _ in range(10):  # the handshake, flight by flight
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            conn.data_received(c_out.read())
            c_in.write(_take(fake))
        else:
            raise AssertionError("no handshake in 10 flights")
        assert conn.flow is not None and conn.flow.transport == "tls"
        two = request("OPTIONS") + request("INVITE", "486", branch="z9hG4bK-2")
        tls.write(two[:30])  # a message across records
        tls.write(two[30:])
        conn.data_received(c_out.read())
        wire = _take(fake)
        assert b"SIP/2.0" not in wire  # nothing in the clear
        c_in.write(wire)
        plain = tls.read(65536)
        assert status_lines([plain]) == [
            "SIP/2.0 200 OK",
            "SIP/2.0 100 Trying",
            "SIP/2.0 486 Busy Here",
        ]
        assert guard.stats["tls_failed"] == 0
    finally:
        loop.close()


def test_plain_text_fails_the_handshake_told_and_closed(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    conn, fake, guard, _, loop = _tls_connection(tmp_path)
    try:
        conn.data_received(request("OPTIONS"))
        assert fake.closed and guard.stats["tls_failed"] == 1
        assert b"SIP/2.0" not in b"".join(fake.written)  # the request was never read
        assert "TLS from 127.0.0.1: handshake failed: not TLS" in caplog.text
    finally:
        loop.close()


def test_describe_names_the_reason() -> None:
    err = ssl.SSLError(1, "x")
    err.reason = "HTTP_REQUEST"  # type: ignore[misc]
    assert describe(err) == "handshake failed: not TLS: an HTTP request"
    assert describe(ConnectionResetError()) == "handshake failed: ConnectionResetError"
