"""The limits on a real responder process: header lines, TCP connections, idle and slow
peers.  Loopback only; a second source is another loopback address (127.0.0.2)."""

from __future__ import annotations

import socket
import time

from sipclient import Req, TcpClient, UdpClient
from sipprocs import StartResponder
from test_access import ADMIN, metrics

#: Slack on top of a timeout for the sweep (a quarter of it) and a loaded machine.
SLACK = 1.0


def many_headers(count: int) -> list[tuple[str, str]]:
    return [(f"X-Extra-{i}", "v") for i in range(count)]


def test_header_limits_get_513(start_responder_with: StartResponder) -> None:
    server = start_responder_with("--max-headers", "20", "--max-header-line", "512", *ADMIN)
    with UdpClient(server.addr) as u:
        refused = u.request(Req("OPTIONS", headers=many_headers(30)), 513)
        assert refused.reason == "Too Many Header Lines"
        u.request(Req("OPTIONS", headers=many_headers(5)), 200)
    with TcpClient(server.addr) as t:
        refused = t.request(Req("OPTIONS", headers=[("X-Long", "v" * 600)]), 513)
        assert refused.reason == "Header Line Too Long"
        t.request(Req("OPTIONS"), 200)  # the connection is still framed: it stays
    seen = metrics(server)
    assert seen["sipresponder_limit_hits_total{limit=headers}"] == 1
    assert seen["sipresponder_limit_hits_total{limit=header_line}"] == 1


def test_connections_per_source_and_in_all(start_responder_with: StartResponder) -> None:
    server = start_responder_with(
        "--max-connections", "3", "--max-connections-per-source", "2", *ADMIN
    )
    with TcpClient(server.addr) as a, TcpClient(server.addr) as b, TcpClient(server.addr) as c:
        assert c.closed_by_peer(timeout=2.0)  # the source's third: closed at once
        a.request(Req("OPTIONS"), 200)
        b.request(Req("OPTIONS"), 200)
        with socket.create_connection(server.addr, source_address=("127.0.0.2", 0)) as d:
            d.settimeout(2.0)
            d.sendall(Req("OPTIONS").encode("tcp", d.getsockname(), server.addr))
            assert d.recv(4096).startswith(b"SIP/2.0 200 OK")
            with socket.create_connection(server.addr, source_address=("127.0.0.2", 0)) as e:
                e.settimeout(2.0)
                assert e.recv(4096) == b""  # the fourth in all: closed at once
    seen = metrics(server)
    assert seen["sipresponder_limit_hits_total{limit=connections_per_source}"] == 1
    assert seen["sipresponder_limit_hits_total{limit=connections}"] == 1
    log = server.wait_for_log("hit --max-connections 3")
    assert "127.0.0.1 hit --max-connections-per-source 2" in log


def test_slow_and_idle_connections_are_closed(start_responder_with: StartResponder) -> None:
    server = start_responder_with("--message-timeout", "0.5", "--tcp-idle-timeout", "1", *ADMIN)
    with TcpClient(server.addr) as silent, TcpClient(server.addr) as slow:
        start = time.monotonic()
        data = slow.build(Req("OPTIONS"))
        slow.send(data[:40])  # half a message, and no more
        assert silent.closed_by_peer(timeout=0.5 + SLACK)  # no first message in time
        assert slow.closed_by_peer(timeout=0.5 + SLACK)
        assert time.monotonic() - start < 0.5 + SLACK
    with TcpClient(server.addr) as idle:
        idle.request(Req("OPTIONS"), 200)
        start = time.monotonic()
        assert idle.closed_by_peer(timeout=1 + SLACK)
        assert 0.9 < time.monotonic() - start < 1 + SLACK
    seen = metrics(server)
    assert seen["sipresponder_limit_hits_total{limit=message_time}"] == 2
    assert seen["sipresponder_limit_hits_total{limit=idle}"] == 1
