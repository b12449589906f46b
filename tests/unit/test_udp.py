"""``udp.DatagramSocket``, which reads and sends with the UDP socket calls, answers, keeps
order when the send buffer is full, and survives what a datagram does to the protocol; and
the server answers over UDP with it or with asyncio's datagram transport.

The ``DatagramSocket`` tests run twice: with the C calls (``aio/_c/udp.c``, loaded from
their file, so that they run in the pure-Python test run too; skipped where not built) and
with their Python twins (``aio/udp.py``'s ``_py_*``), which the server does not use but
which behave the same (tests/unit/test_speedups_udp.py).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import SocketCalls, bound, drain, request
from test_transport import status_lines

from sipresponder.aio import server
from sipresponder.aio.transport import Driver
from sipresponder.aio.udp import MAX_UDP_BACKLOG, DatagramSocket, UdpCalls, UdpProtocol
from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_until(
    loop: asyncio.AbstractEventLoop, done: Callable[[], bool], limit: float = 5.0
) -> None:
    async def wait() -> None:
        for _ in range(int(limit / 0.005)):
            if done():
                return
            await asyncio.sleep(0.005)

    loop.run_until_complete(wait())


def receive(peer: socket.socket, got: list[bytes], count: int) -> Callable[[], bool]:
    """A ``run_until`` condition: ``count`` datagrams read by ``peer`` into ``got``."""

    def enough() -> bool:
        try:
            while True:
                got.append(peer.recv(65536))
        except BlockingIOError:
            pass
        return len(got) >= count

    return enough


def send_options(peer: socket.socket, sock: socket.socket, count: int, tag: str) -> None:
    """``count`` OPTIONS from ``peer`` to ``sock``, Call-IDs ``<tag>0``..., answered back
    to ``peer`` (its address in the Via)."""
    host, port = peer.getsockname()
    for i in range(count):
        via = f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{tag}{i}"
        peer.sendto(request("OPTIONS", via=via, call_id=f"{tag}{i}"), sock.getsockname())


def answering(
    loop: asyncio.AbstractEventLoop, calls: UdpCalls
) -> tuple[DatagramSocket, UdpProtocol, socket.socket]:
    sock = bound()
    driver = Driver(Endpoint(Config(secret=b"k")), loop)
    protocol = UdpProtocol(driver)
    transport = DatagramSocket(loop, sock, protocol, calls)
    return transport, protocol, sock


def test_the_responses_to_a_batch_go_in_one_send_batch_call(
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    calls: list[int] = []
    singles: list[bytes] = []

    def send_batch(fd: int, family: int, items: list[Any], start: int) -> int:
        calls.append(len(items) - start)
        sent: int = udp.send_batch(fd, family, items, start)
        return sent

    def send_to(fd: int, family: int, data: bytes, address: tuple[Any, ...]) -> bool:
        singles.append(data)
        return True

    transport, _, sock = answering(loop, (udp.recv_batch, send_to, send_batch))
    peer = sockets()
    send_options(peer, sock, 5, "b")
    got: list[bytes] = []
    run_until(loop, receive(peer, got, 5))
    assert [f"Call-ID: b{i}".encode() in g for i, g in enumerate(got)] == [True] * 5
    assert sum(calls) == 5 and len(calls) < 5 and singles == []
    transport.sendto(b"at once", peer.getsockname())  # outside a batch: send_to
    assert singles == [b"at once"]
    transport.close()


def test_a_batch_that_meets_a_full_buffer_waits_in_order(
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    full = [True]
    dropped_by_kernel: list[bytes] = []

    def send_batch(fd: int, family: int, items: list[Any], start: int) -> int:
        if full[0]:
            return 0  # the send buffer is full
        sent: int = udp.send_batch(fd, family, items, start)
        return sent

    def send_to(fd: int, family: int, data: bytes, address: tuple[Any, ...]) -> bool:
        if data == b"bad":
            dropped_by_kernel.append(data)
            raise OSError(1, "refused")
        result: bool = udp.send_to(fd, family, data, address)
        return result

    transport, _, _ = answering(loop, (udp.recv_batch, send_to, send_batch))
    peer = sockets()
    addr = peer.getsockname()
    transport._holding = True  # as while a batch is handled
    for data in (b"r0", b"bad", b"r1"):
        transport.sendto(data, addr)
    transport._holding = False
    transport._flush()
    assert [d for d, _ in transport._backlog] == [b"r0", b"bad", b"r1"]
    full[0] = False
    run_until(loop, lambda: not transport._backlog)
    assert [d for d, _ in drain(peer, 2)] == [b"r0", b"r1"]
    assert dropped_by_kernel == [b"bad"] and transport.dropped == 1
    transport.close()


def test_datagram_socket_answers_each_request(
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    transport, protocol, sock = answering(loop, udp.calls)
    assert protocol.local == sock.getsockname()
    peer = sockets()
    send_options(peer, sock, 40, "d")  # more than one batch
    got: list[bytes] = []

    run_until(loop, receive(peer, got, 40))
    assert status_lines(got) == ["SIP/2.0 200 OK"] * 40
    assert transport.dropped == 0
    transport.close()
    assert transport.is_closing() and sock.fileno() == -1


def test_a_full_send_buffer_holds_responses_in_order_then_sends_them(
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    full = [True]  # the kernel's answer to come: "would block" while True
    sent: list[bytes] = []

    def send_to(fd: int, family: int, data: bytes, address: tuple[Any, ...]) -> bool:
        if full[0]:
            return False
        sent.append(data)
        result: bool = udp.send_to(fd, family, data, address)
        return result

    transport, _, _ = answering(loop, (udp.recv_batch, send_to, udp.send_batch))
    peer = sockets()
    for i in range(3):
        transport.sendto(b"r%d" % i, peer.getsockname())
    assert sent == [] and len(transport._backlog) == 3
    full[0] = False
    transport.sendto(b"r3", peer.getsockname())  # behind the three: not before them
    assert sent == []
    run_until(loop, lambda: not transport._backlog)
    assert sent == [b"r0", b"r1", b"r2", b"r3"]
    assert [d for d, _ in drain(peer, 4)] == [b"r0", b"r1", b"r2", b"r3"]
    transport.close()


def test_the_backlog_is_bounded_and_close_drops_it(
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    transport, _, _ = answering(loop, (udp.recv_batch, lambda *args: False, udp.send_batch))
    peer = sockets()
    chunk = b"x" * 1000
    for _ in range(MAX_UDP_BACKLOG // 1000 + 5):
        transport.sendto(chunk, peer.getsockname())
    assert transport._backlog_bytes <= MAX_UDP_BACKLOG
    assert transport.dropped == 5
    transport.close()
    assert transport.dropped == MAX_UDP_BACKLOG // 1000 + 5 and not transport._backlog


class FailingClock:
    """An event loop whose ``time()`` fails at its ``fail_at``-th call (the driver reads
    the clock once per datagram): an error that escapes the protocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fail_at: int) -> None:
        self._loop = loop
        self._calls = 0
        self._fail_at = fail_at

    def time(self) -> float:
        self._calls += 1
        if self._calls == self._fail_at:
            raise RuntimeError("boom")
        return self._loop.time()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


def test_an_error_in_one_datagram_does_not_lose_the_rest(
    loop: asyncio.AbstractEventLoop,
    sockets: Callable[..., socket.socket],
    udp: SocketCalls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport, protocol, sock = answering(loop, udp.calls)
    protocol.driver.loop = FailingClock(loop, 2)  # type: ignore[assignment]
    peer = sockets()
    send_options(peer, sock, 3, "e")
    got: list[bytes] = []
    run_until(loop, receive(peer, got, 2))
    assert [b"Call-ID: e0" in g for g in got] == [True, False]
    assert [b"Call-ID: e2" in g for g in got] == [False, True]
    assert "error handling a datagram" in caplog.text and "boom" in caplog.text
    transport.close()


@pytest.mark.parametrize("fast", [True, False], ids=["recvmmsg", "asyncio"])
def test_the_server_answers_over_udp_with_either_transport(
    fast: bool, monkeypatch: pytest.MonkeyPatch, sockets: Callable[..., socket.socket]
) -> None:
    if not fast:
        monkeypatch.setattr(server, "udp_calls", lambda: None)

    async def run() -> list[bytes]:
        srv = server.Server(Config(secret=b"k", host="127.0.0.1", port=0, transports=("udp",)))
        await srv.start()
        try:
            assert isinstance(srv._udp, DatagramSocket) == (fast and server.udp_calls() is not None)
            [(_, host, port)] = srv.listeners
            peer = sockets()
            here, there = peer.getsockname()
            via = f"SIP/2.0/UDP {here}:{there};branch=z9hG4bK-either"
            peer.sendto(request("OPTIONS", via=via), (host, port))
            for _ in range(400):
                try:
                    return [peer.recv(65536)]
                except BlockingIOError:
                    await asyncio.sleep(0.005)
            return []
        finally:
            srv.close()
            await srv.wait_closed()

    assert status_lines(asyncio.run(run())) == ["SIP/2.0 200 OK"]
