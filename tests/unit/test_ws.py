"""SIP over WebSocket below the process: a ``TcpConnection`` with a WebSocket session on a
fake transport, driven by the sans-IO client of ``websockets`` — the handshake and its
refusals, one SIP message per WebSocket message both ways, fragments, no Content-Length —
and the configuration's and the core's WebSocket answers (RFC 7118)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import request
from test_transport import FakeTcp, driver
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from sipresponder.aio.transport import TcpConnection
from sipresponder.aio.ws import WsSessions
from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.flow import Flow
from sipresponder.errors import ConfigError
from sipresponder.sip.parser import parse_message


def _connection(origins: tuple[str, ...] | None = None) -> tuple[TcpConnection, FakeTcp, Any]:
    loop = asyncio.new_event_loop()
    drv = driver(loop)
    framing = WsSessions("/", origins, 65536, drv.guard)
    conn = TcpConnection(drv, 65536, name="ws", framing=framing)
    fake = FakeTcp()
    conn.connection_made(fake)  # type: ignore[arg-type]
    return conn, fake, loop


def _client(**kw: Any) -> ClientProtocol:
    return ClientProtocol(parse_uri("ws://127.0.0.1:5066/"), **kw)


def _exchange(conn: TcpConnection, fake: FakeTcp, client: ClientProtocol) -> list[Any]:
    """What the client sent goes to the connection; what came back, to the client."""
    for data in client.data_to_send():
        if data:
            conn.data_received(data)
    back, fake.written = b"".join(fake.written), []
    client.receive_data(back)
    return client.events_received()


def _open(conn: TcpConnection, fake: FakeTcp) -> ClientProtocol:
    client = _client(subprotocols=[Subprotocol("sip")])
    client.send_request(client.connect())
    (response,) = _exchange(conn, fake, client)
    assert isinstance(response, Response) and response.status_code == 101
    assert response.headers["Sec-WebSocket-Protocol"] == "sip"
    return client


def test_one_sip_message_per_websocket_message_both_ways() -> None:
    conn, fake, loop = _connection()
    try:
        client = _open(conn, fake)
        assert conn.flow is not None and conn.flow.transport == "ws"
        no_length = request("OPTIONS").replace(b"Content-Length: 0\r\n", b"")
        client.send_text(no_length)  # RFC 7118 §5: no Content-Length needed
        invite = request("INVITE", "486", branch="z9hG4bK-2")
        client.send_binary(invite[:40], fin=False)  # one message in two fragments
        client.send_continuation(invite[40:], fin=True)
        frames = _exchange(conn, fake, client)
        statuses = [parse_message(bytes(f.data)).status for f in frames]  # type: ignore[union-attr]
        assert statuses == [200, 100, 486]  # three messages, three WebSocket messages
        assert all(isinstance(f, Frame) and f.opcode is Opcode.TEXT for f in frames)
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("kw", "status"),
    [({}, 400), ({"origin": "https://evil.example"}, 403)],
)
def test_refused_handshakes(kw: dict[str, Any], status: int) -> None:
    conn, fake, loop = _connection(origins=("https://app.example",))
    try:
        offered = [Subprotocol("sip")] if "origin" in kw else None
        client = _client(subprotocols=offered, **kw)
        client.send_request(client.connect())
        (response,) = _exchange(conn, fake, client)
        assert isinstance(response, Response) and response.status_code == status
        assert fake.closed
    finally:
        loop.close()


def test_websocket_config_and_answers() -> None:
    assert Config(port=5060, transports=("ws", "wss")).validate().listen_port("ws") == 5066
    assert Config(port=5060, transports=("wss",)).listen_port("wss") == 7443
    for config, message in (
        (Config(ws_path="sip"), "--ws-path: ws or wss is not among"),
        (Config(transports=("ws",), ws_path="sip"), "--ws-path: 'sip' is not a path"),
        (Config(transports=("ws",), ws_origins=("app.example",)), "--ws-origin: 'app."),
        (Config(transports=("ws", "tls"), ws_port=5061), "ws and tls would both listen"),
    ):
        with pytest.raises(ConfigError) as info:
            config.validate()
        assert message in str(info.value)
    ws = Flow("ws", ("192.0.2.1", 40000), ("127.0.0.1", 5066), conn="c")
    wss = Flow("wss", ("192.0.2.1", 40001), ("127.0.0.1", 7443), conn="d")
    assert not ws.stream and ws.reliable  # whole messages, reliable timers
    ep = Endpoint(Config(secret=b"s"))
    sips = request("INVITE", uri="sips:200@127.0.0.1;transport=ws")
    refused = parse_message(ep.receive(sips, ws, 0.0)[0][0])
    assert refused.status == 480  # RFC 7118 §9.2: SIPS over WSS only
    again = sips.replace(b"call-1@test", b"call-2@test").replace(b"z9hG4bK-1", b"z9hG4bK-9")
    final = parse_message(ep.receive(again, wss, 0.0)[1][0])
    assert final.header("Contact") == "<sips:sipresponder@127.0.0.1:7443;transport=ws>"
    plain = request("INVITE", uri="sip:200@127.0.0.1", branch="z9hG4bK-3")
    final = parse_message(ep.receive(plain, ws, 0.0)[1][0])
    assert final.header("Contact") == "<sip:sipresponder@127.0.0.1:5066;transport=ws>"
