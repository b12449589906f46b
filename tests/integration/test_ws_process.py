"""SIP over WebSocket (RFC 7118) with the real process and real clients.

The responder is started with ``--transport udp,ws,wss`` on free ports and a certificate
of the test's.  JsSIP (OPTIONS, REGISTER, MESSAGE over WS and WSS) and SIP.js (a busy
call, and an answered call ended with BYE, over WSS) run in Node with the ``ws`` package
as their WebSocket, as ``make test`` installs them (``tests/node``).  The ``websockets``
client of Python checks the handshake's refusals, fragments, ping and close, a binary
message, ``sips:`` over WS and WSS, the message size and the connection limits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from required import missing
from sipclient import RECV_TIMEOUT, Req
from sipprocs import Responder, StartResponder, running_workers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from sipresponder.aio.tls import self_signed

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
#: A Node client's bound: it sends one request or places one call, and exits.
CLIENT_SECONDS = 20


@pytest.fixture
def cert(tmp_path: Path) -> Path:
    pem, key = self_signed("127.0.0.1")
    path = tmp_path / "server.pem"
    path.write_bytes(pem + key)
    return path


@pytest.fixture
def responder(start_responder_with: StartResponder, cert: Path) -> Responder:
    return start_responder_with("--transport", "udp,ws,wss", "--tls-cert", str(cert))


def _url(r: Responder, transport: str, path: str = "/") -> str:
    return f"{transport}://127.0.0.1:{r.ports[transport]}{path}"


def _connect(r: Responder, transport: str, cert: Path, **kw: object) -> ClientConnection:
    context = ssl.create_default_context(cafile=str(cert)) if transport == "wss" else None
    return connect(
        _url(r, transport, str(kw.pop("path", "/"))),
        subprotocols=kw.pop("subprotocols", ["sip"]),  # type: ignore[arg-type]
        ssl=context,
        open_timeout=RECV_TIMEOUT,
        **kw,  # type: ignore[arg-type]
    )


def _message(method: str, uri: str, transport: str, branch: str, body: bytes = b"") -> bytes:
    """A request as a WebSocket client sends it: a ``.invalid`` sent-by (RFC 7118
    Appendix B.1), no Content-Length (§5)."""
    req = Req(method, uri=uri, branch=branch, rport=False, content_length=None, body=body)
    req.via = f"SIP/2.0/{transport.upper()} df7jal23ls0d.invalid;branch={branch}"
    return req.encode(transport, ("df7jal23ls0d.invalid", 0), ("127.0.0.1", 0))


def _status(data: str | bytes) -> int:
    text = data.decode() if isinstance(data, bytes) else data
    return int(text.split(" ", 2)[1])


@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_a_call_over_websocket(responder: Responder, cert: Path, transport: str) -> None:
    port = responder.ports[transport]
    with _connect(responder, transport, cert) as ws:
        assert ws.subprotocol == "sip"
        ws.send(_message("INVITE", f"sip:200@127.0.0.1:{port}", transport, "z9hG4bK-c1"))
        trying, ok = (ws.recv(timeout=RECV_TIMEOUT) for _ in range(2))
        assert isinstance(ok, str)  # UTF-8: a text message (RFC 7118 §4.2)
        assert (_status(trying), _status(ok)) == (100, 200)
        assert f"Via: SIP/2.0/{transport.upper()} df7jal23ls0d.invalid" in ok
        assert f"Contact: <sip:sipresponder@127.0.0.1:{port};transport=ws>" in ok
    log = responder.wait_for_log(f"/{transport} -> 100 200")
    assert re.search(rf"INVITE sip:200@\S+ from 127\.0\.0\.1:\d+/{transport} -> 100 200", log)


def test_sips_is_served_over_wss_only(responder: Responder, cert: Path) -> None:
    for transport, code in (("ws", 480), ("wss", 200)):  # RFC 7118 §9.2
        uri = f"sips:200@127.0.0.1:{responder.ports[transport]};transport=ws"
        with _connect(responder, transport, cert) as ws:
            ws.send(_message("OPTIONS", uri, transport, f"z9hG4bK-s{transport}"))
            assert _status(ws.recv(timeout=RECV_TIMEOUT)) == code


def test_fragments_binary_ping_and_close(responder: Responder, cert: Path) -> None:
    port = responder.ports["ws"]
    with _connect(responder, "ws", cert) as ws:
        whole = _message("OPTIONS", f"sip:200@127.0.0.1:{port}", "ws", "z9hG4bK-f1")
        ws.send([whole[:20], whole[20:50], whole[50:]])  # one message in three frames
        assert _status(ws.recv(timeout=RECV_TIMEOUT)) == 200
        latin = _message(
            "MESSAGE",
            f"sip:200@127.0.0.1:{port}",
            "ws",
            "z9hG4bK-f2",
            body="caf\xe9".encode("latin-1"),
        ).replace(b"\r\n\r\n", b"\r\nContent-Type: text/plain\r\n\r\n", 1)
        ws.send(latin)  # bytes: a binary message
        assert _status(ws.recv(timeout=RECV_TIMEOUT)) == 200
        pong = ws.ping(b"keepalive")
        assert pong.wait(RECV_TIMEOUT)
    # The close handshake was answered: the context manager would have raised otherwise.
    assert ws.close_code == 1000


def test_handshake_refusals_are_told_once_and_the_port_serves_on(
    responder: Responder, cert: Path
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        _connect(responder, "ws", cert, subprotocols=None)
    assert refused.value.response.status_code == 400
    assert b"sip subprotocol" in refused.value.response.body
    with pytest.raises(InvalidStatus) as elsewhere:
        _connect(responder, "ws", cert, path="/other")
    assert elsewhere.value.response.status_code == 404
    log = responder.wait_for_log("WebSocket from")
    assert log.count("WebSocket from 127.0.0.1") == 1, log
    assert "Traceback" not in log
    with _connect(responder, "ws", cert) as ws:
        ws.send(_message("OPTIONS", "sip:200@127.0.0.1", "ws", "z9hG4bK-r1"))
        assert _status(ws.recv(timeout=RECV_TIMEOUT)) == 200


def test_origins_and_path_as_configured(start_responder_with: StartResponder, cert: Path) -> None:
    r = start_responder_with(
        *("--transport", "ws", "--ws-path", "/sip"),
        *("--ws-origin", "https://app.example.com"),
    )
    with pytest.raises(InvalidStatus) as other:
        _connect(r, "ws", cert, path="/sip", origin="https://evil.example.com")
    assert other.value.response.status_code == 403
    for origin in ("https://app.example.com", None):  # listed, or none (not a browser)
        with _connect(r, "ws", cert, path="/sip?x=1", origin=origin) as ws:
            ws.send(_message("OPTIONS", "sip:200@127.0.0.1", "ws", f"z9hG4bK-{origin}"))
            assert _status(ws.recv(timeout=RECV_TIMEOUT)) == 200


def test_message_size_and_connection_limits(
    start_responder_with: StartResponder, cert: Path
) -> None:
    r = start_responder_with(
        *("--transport", "udp,ws", "--max-message-size", "2048"),
        *("--max-connections-per-source", "1"),
    )
    with _connect(r, "ws", cert) as first:
        with (
            pytest.raises((InvalidHandshake, ConnectionClosed, OSError, TimeoutError)),
            _connect(r, "ws", cert) as second,  # over the per-source limit
        ):
            second.send(_message("OPTIONS", "sip:200@127.0.0.1", "ws", "z9hG4bK-l2"))
            second.recv(timeout=RECV_TIMEOUT)
        big = _message("MESSAGE", "sip:200@127.0.0.1", "ws", "z9hG4bK-l1", body=b"x" * 4000)
        first.send(big)
        with pytest.raises(ConnectionClosed) as closed:
            first.recv(timeout=RECV_TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # too big
    assert "Traceback" not in r.log()


def test_plain_sip_on_the_websocket_port_is_closed_and_told(responder: Responder) -> None:
    """SIP over plain TCP to the WebSocket port is no HTTP request: the connection is
    closed with nothing sent, told once, and the port serves on."""
    with socket.create_connection(("127.0.0.1", responder.ports["ws"]), timeout=3) as s:
        s.sendall(Req("OPTIONS", user="200").encode("tcp", ("127.0.0.1", 1), ("127.0.0.1", 2)))
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data == b""  # no SIP answer over a WebSocket port
    log = responder.wait_for_log("not a WebSocket handshake")
    assert "not a WebSocket handshake: did not receive a valid HTTP request" in log, log


# ---------------------------------------------------------------- Node clients


def _node(script: str, *args: str, cert: Path, password: str = "") -> dict[str, object]:
    """Run one of ``tests/node``'s clients: its one JSON line."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "jssip").is_dir():
        missing("node and tests/node's packages are not installed (make clients does it)")
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(cert), NODE_NO_WARNINGS="1")
    if password:
        env["JSSIP_PASSWORD"] = password
    proc = subprocess.run(
        [node, str(NODE_DIR / script), *args],
        cwd=NODE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_SECONDS,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    assert lines, f"no result from {script}: {proc.stdout}\n{proc.stderr}"
    result: dict[str, object] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_jssip_options_register_message(responder: Responder, cert: Path, transport: str) -> None:
    port = responder.ports[transport]
    url = _url(responder, transport)
    for action, target in (
        ("options", f"sip:200@127.0.0.1:{port}"),
        ("register", f"sip:127.0.0.1:{port}"),
        ("message", f"sip:200@127.0.0.1:{port}"),
    ):
        result = _node("jssip_client.cjs", url, action, target, cert=cert)
        assert result == {"ok": True, "status": 200, "reason": "OK"}, (action, result)
    log = responder.wait_for_log(f"MESSAGE sip:200@127.0.0.1:{port}")
    for method in ("OPTIONS", "REGISTER", "MESSAGE"):
        assert re.search(rf"{method} sip:\S+ from 127\.0\.0\.1:\d+/{transport} -> 200", log)


def test_sipjs_calls_over_wss(responder: Responder, cert: Path) -> None:
    port = responder.ports["wss"]
    url = _url(responder, "wss")
    busy = _node("sipjs_client.mjs", url, f"sip:486@127.0.0.1:{port}", "300", cert=cert)
    assert busy["ok"] and busy["status"] == 486 and busy["reason"] == "Busy Here", busy
    answered = _node("sipjs_client.mjs", url, f"sip:200@127.0.0.1:{port}", "300", cert=cert)
    assert answered["ok"] and answered["established"] and answered["ended"], answered
    log = responder.wait_for_log("BYE sip:sipresponder")
    assert re.search(r"INVITE sip:486@\S+ from \S+/wss -> 100 486", log), log
    assert re.search(r"BYE sip:sipresponder@\S+;transport=ws from \S+/wss -> 200", log), log
    assert "violation" not in log


@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_a_graceful_stop_says_going_away(
    start_responder_with: StartResponder, cert: Path, transport: str
) -> None:
    r = start_responder_with("--transport", "udp,ws,wss", "--tls-cert", str(cert))
    with _connect(r, transport, cert) as ws:
        ws.send(_message("OPTIONS", "sip:200@127.0.0.1", transport, "z9hG4bK-g1"))
        assert _status(ws.recv(timeout=RECV_TIMEOUT)) == 200
        assert r.stop() == 0  # SIGTERM: the graceful stop
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001  # going away


def test_workers_share_the_websocket_ports(cert: Path) -> None:
    args = ("--transport", "udp,ws,wss", "--tls-cert", str(cert))
    with running_workers(3, *args) as workers:
        assert set(workers.ports) == {"udp", "ws", "wss"}
        context = ssl.create_default_context(cafile=str(cert))
        for i in range(6):  # the kernel spreads the connections over the two workers
            transport = "ws" if i % 2 else "wss"
            url = f"{transport}://127.0.0.1:{workers.ports[transport]}/"
            secure = context if transport == "wss" else None
            with connect(url, subprotocols=["sip"], ssl=secure, open_timeout=RECV_TIMEOUT) as ws:
                ws.send(_message("OPTIONS", "sip:200@127.0.0.1", transport, f"z9hG4bK-w{i}"))
                assert _status(ws.recv(timeout=RECV_TIMEOUT)) == 200
    assert workers.code == 0, workers.stderr
    assert "Traceback" not in workers.stderr


def test_jssip_registers_with_digest_over_wss(
    start_responder_with: StartResponder, cert: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - match: {method: REGISTER, transport: wss}\n"
        "    auth: {realm: lab, users: {alice: secret}}\n"
        "    plan: 200\n"
    )
    r = start_responder_with(
        *("--transport", "udp,wss", "--tls-cert", str(cert), "--rules", str(rules))
    )
    port = r.ports["wss"]
    url, registrar = _url(r, "wss"), f"sip:127.0.0.1:{port}"
    ok = _node("jssip_client.cjs", url, "register", registrar, cert=cert, password="secret")
    assert ok == {"ok": True, "status": 200, "reason": "OK"}, ok
    wrong = _node("jssip_client.cjs", url, "register", registrar, cert=cert, password="nope")
    assert not wrong["ok"] and wrong["status"] == 403, wrong
    log = r.wait_for_log("403")
    assert re.search(r"REGISTER sip:\S+ from \S+/wss -> 401", log), log
    assert re.search(r"REGISTER sip:\S+ from \S+/wss -> 200", log), log
