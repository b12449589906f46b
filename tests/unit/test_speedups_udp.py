"""The UDP socket calls in C (``sipresponder/aio/_udp.c``) do what the socket module does, on
real loopback sockets: ``recv_batch`` gives what ``recvfrom`` would (data and address
tuple, in order, IPv4, IPv6 and dual stack), ``send_to`` delivers what ``sendto`` would.
And ``udp.DatagramSocket``, which reads and sends with them, answers, keeps order
when the send buffer is full, and survives what a datagram does to the protocol.

The C module is loaded from its file, so that these tests run in the pure-Python test run
too (where the package itself ignores it); they are skipped where it was not built.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import load_c_module, request
from required import missing_core
from test_transport import status_lines

from sipresponder.aio import server
from sipresponder.aio.transport import Driver
from sipresponder.aio.udp import MAX_UDP_BACKLOG, DatagramSocket, UdpCalls, UdpProtocol
from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint

UDP = load_c_module("aio._c.udp")


@pytest.fixture(autouse=True)
def _c_udp_built() -> None:
    if UDP is None:
        missing_core("the C UDP calls are not built here")


def bound(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6 and host == "::":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, 0))
    s.setblocking(False)
    return s


@pytest.fixture
def sockets() -> Iterator[Callable[..., socket.socket]]:
    made: list[socket.socket] = []

    def make(
        family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1"
    ) -> socket.socket:
        try:
            s = bound(family, host)
        except OSError as exc:
            if family != socket.AF_INET6:
                raise
            pytest.skip(f"no IPv6 loopback here ({exc})")
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def drain(sock: socket.socket, count: int) -> list[tuple[bytes, Any]]:
    """``count`` datagrams by the socket module (waiting a little for each)."""
    sock.settimeout(2.0)
    try:
        return [sock.recvfrom(65536) for _ in range(count)]
    finally:
        sock.setblocking(False)


def batch(sock: socket.socket, count: int = 32) -> list[tuple[bytes, Any]]:
    assert UDP is not None
    result: list[tuple[bytes, Any]] = UDP.recv_batch(sock.fileno(), count)
    return result


def settle(sock: socket.socket) -> None:
    """Wait until the socket has something to read (loopback delivers within the
    sender's call, so this returns at once; it bounds a test that would otherwise fail)."""
    select.select([sock], [], [], 2.0)


# ------------------------------------------------------------------ recv_batch


def test_nothing_waiting_is_an_empty_batch(sockets: Callable[..., socket.socket]) -> None:
    assert batch(sockets()) == []


def test_a_batch_is_what_recvfrom_gives_in_order_with_each_peers_address(
    sockets: Callable[..., socket.socket],
) -> None:
    server_sock, reference = sockets(), sockets()
    a, b = sockets(), sockets()
    sent: list[tuple[bytes, socket.socket]] = []
    for i in range(12):
        peer = a if i % 3 else b
        data = bytes([65 + i]) * (i * 97)  # sizes 0, 97, 194... an empty datagram too
        for target in (server_sock, reference):
            peer.sendto(data, target.getsockname())
        sent.append((data, peer))
    expected = drain(reference, 12)
    settle(server_sock)
    got = batch(server_sock)
    assert got == expected
    assert [addr for _, addr in got] == [p.getsockname() for _, p in sent]
    assert batch(server_sock) == []


def test_the_same_peer_gets_the_same_tuple_object(sockets: Callable[..., socket.socket]) -> None:
    # What lets the transport find the peer's flow by identity.
    server_sock, a, b = sockets(), sockets(), sockets()
    for peer in (a, a, b, a):
        peer.sendto(b"x", server_sock.getsockname())
    settle(server_sock)
    got = batch(server_sock)
    assert [addr for _, addr in got] == [
        a.getsockname(),
        a.getsockname(),
        b.getsockname(),
        a.getsockname(),
    ]
    assert got[0][1] is got[1][1]
    assert got[2][1] is not got[1][1] and got[3][1] is not got[1][1]


def test_at_most_count_datagrams_a_call(sockets: Callable[..., socket.socket]) -> None:
    assert UDP is not None
    server_sock, peer = sockets(), sockets()
    for i in range(UDP.MAX_BATCH + 8):
        peer.sendto(str(i).encode(), server_sock.getsockname())
    settle(server_sock)
    first = batch(server_sock, 5)
    rest = batch(server_sock, UDP.MAX_BATCH)
    last = batch(server_sock, UDP.MAX_BATCH)
    assert [d for d, _ in first + rest + last] == [
        str(i).encode() for i in range(UDP.MAX_BATCH + 8)
    ]
    assert (len(first), len(rest), len(last)) == (5, UDP.MAX_BATCH, 3)


def test_the_largest_datagram_is_read_whole(sockets: Callable[..., socket.socket]) -> None:
    server_sock, peer = sockets(), sockets()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 18)
    server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
    data = bytes(range(256)) * 255 + b"0123456789ab"  # 65,292 bytes
    data = data + b"z" * (65507 - len(data))  # the IPv4 maximum
    peer.sendto(data, server_sock.getsockname())
    settle(server_sock)
    assert batch(server_sock) == [(data, peer.getsockname())]


def test_ipv6_and_dual_stack_addresses_are_the_socket_modules(
    sockets: Callable[..., socket.socket],
) -> None:
    for host, peers in (("::1", ["::1"]), ("::", ["::1", "127.0.0.1"])):
        server_sock, reference = sockets(socket.AF_INET6, host), sockets(socket.AF_INET6, host)
        for peer_host in peers:
            family = socket.AF_INET if "." in peer_host else socket.AF_INET6
            peer = sockets(family, peer_host)
            for target in (server_sock, reference):
                port = target.getsockname()[1]
                peer.sendto(b"hello " + peer_host.encode(), (peer_host, port))
            expected = drain(reference, 1)
            settle(server_sock)
            assert batch(server_sock) == expected
            assert len(expected[0][1]) == 4  # (host, port, flowinfo, scope_id)


def test_bad_arguments_are_refused(sockets: Callable[..., socket.socket]) -> None:
    assert UDP is not None
    s = sockets()
    with pytest.raises(ValueError, match="count"):
        UDP.recv_batch(s.fileno(), 0)
    with pytest.raises(ValueError, match="count"):
        UDP.recv_batch(s.fileno(), UDP.MAX_BATCH + 1)
    with pytest.raises(TypeError):
        UDP.recv_batch(s.fileno())
    closed = bound()
    fd = closed.fileno()
    closed.close()
    with pytest.raises(OSError):
        UDP.recv_batch(fd, 1)


# ------------------------------------------------------------------ send_to


def send(sock: socket.socket, data: bytes, address: tuple[Any, ...]) -> bool:
    assert UDP is not None
    result: bool = UDP.send_to(sock.fileno(), int(sock.family), data, address)
    return result


def test_send_to_delivers_to_each_destination_in_turn(
    sockets: Callable[..., socket.socket],
) -> None:
    # The last destination is kept in C: switching must not send to the previous one.
    sender, a, b = sockets(), sockets(), sockets()
    plan = [a, a, b, a, b, b]
    for i, target in enumerate(plan):
        host, port = target.getsockname()
        assert send(sender, f"m{i}".encode(), (host, port)) is True
    got_a, got_b = drain(a, 3), drain(b, 3)
    assert [d for d, _ in got_a] == [b"m0", b"m1", b"m3"]
    assert [d for d, _ in got_b] == [b"m2", b"m4", b"m5"]
    assert {addr for _, addr in got_a + got_b} == {sender.getsockname()}


def test_a_refused_destination_leaves_the_last_one_intact(
    sockets: Callable[..., socket.socket],
) -> None:
    sender, a = sockets(), sockets()
    assert send(sender, b"one", a.getsockname())
    with pytest.raises(ValueError, match="numeric"):
        send(sender, b"no", ("localhost", 5060))
    with pytest.raises(OverflowError):
        send(sender, b"no", ("127.0.0.1", 70000))
    assert send(sender, b"two", a.getsockname())
    assert [d for d, _ in drain(a, 2)] == [b"one", b"two"]


def test_send_to_refuses_what_sendto_would(sockets: Callable[..., socket.socket]) -> None:
    assert UDP is not None
    s = sockets()
    with pytest.raises(TypeError):
        UDP.send_to(s.fileno(), int(s.family), "text", ("127.0.0.1", 9))
    with pytest.raises(TypeError):
        UDP.send_to(s.fileno(), int(s.family), b"x", ("127.0.0.1",))
    with pytest.raises(TypeError):
        UDP.send_to(s.fileno(), int(s.family), b"x", "127.0.0.1:9")
    with pytest.raises(ValueError):
        UDP.send_to(s.fileno(), int(socket.AF_UNIX), b"x", ("127.0.0.1", 9))
    closed = bound()
    fd = closed.fileno()
    closed.close()
    with pytest.raises(OSError):
        UDP.send_to(fd, int(socket.AF_INET), b"x", ("127.0.0.1", 9))


def test_send_to_over_ipv6_and_to_ipv4_from_a_dual_stack_socket(
    sockets: Callable[..., socket.socket],
) -> None:
    dual = sockets(socket.AF_INET6, "::")
    v6, v4 = sockets(socket.AF_INET6, "::1"), sockets()
    assert send(dual, b"six", v6.getsockname())
    assert send(dual, b"four", v4.getsockname())  # "127.0.0.1": sent IPv4-mapped
    assert send(dual, b"mapped", ("::ffff:" + v4.getsockname()[0], v4.getsockname()[1]))
    assert [d for d, _ in drain(v6, 1)] == [b"six"]
    assert [d for d, _ in drain(v4, 2)] == [b"four", b"mapped"]


def test_ipv6_flowinfo_and_scope_are_sent_as_the_socket_module_sends_them(
    sockets: Callable[..., socket.socket],
) -> None:
    """A 4-tuple's scope id and flowinfo go into the address; ``lo`` is scope 1 here or
    some other index, and ::1 takes any."""
    sender, a = sockets(socket.AF_INET6, "::1"), sockets(socket.AF_INET6, "::1")
    host, port = a.getsockname()[:2]
    lo = socket.if_nametoindex("lo")
    for address in [(host, port, 0, 0), (host, port, 0, lo), (host, port, 5, 0)]:
        sender.sendto(b"module", address)
        assert send(sender, b"c", address)
        assert [d for d, _ in drain(a, 2)] == [b"module", b"c"]
    with pytest.raises(OverflowError):
        send(sender, b"x", (host, port, 1 << 20, 0))  # as the socket module says


def test_a_scoped_ipv6_host_is_read_as_the_socket_module_reads_it() -> None:
    """A link-local peer's address comes as ``fe80::1%lo`` (with its scope): it must be
    a destination again.  Nothing is sent: on a closed socket the send fails only after
    the address was read (OSError, not ValueError)."""
    assert UDP is not None
    closed = bound(socket.AF_INET6, "::1")
    fd = closed.fileno()
    closed.close()
    for host in ("fe80::1%lo", f"fe80::1%{socket.if_nametoindex('lo')}"):
        with pytest.raises(OSError):
            UDP.send_to(fd, int(socket.AF_INET6), b"x", (host, 9, 0, 0))
        socket.getaddrinfo(host, 9, socket.AF_INET6, 0, 0, socket.AI_NUMERICHOST)  # the same
    with pytest.raises(ValueError, match="not a numeric address"):
        UDP.send_to(fd, int(socket.AF_INET6), b"x", ("fe80::1%no-such-if", 9, 0, 0))


def send_all(sock: socket.socket, items: list[tuple[bytes, tuple[Any, ...]]]) -> list[object]:
    """What ``send_batch`` does with ``items`` from the start, call after call: each
    call's count, or the exception an item raised (it is then skipped)."""
    assert UDP is not None
    results: list[object] = []
    start = 0
    for _ in range(len(items) + 1):
        if start >= len(items):
            break
        try:
            sent = UDP.send_batch(sock.fileno(), int(sock.family), items, start)
        except (OSError, ValueError, TypeError, OverflowError) as exc:
            results.append(type(exc))
            start += 1
            continue
        results.append(sent)
        start += sent
    return results


def test_send_batch_sends_in_order_to_each_destination(
    sockets: Callable[..., socket.socket],
) -> None:
    sender, a, b = sockets(), sockets(), sockets()
    plan = [a, b, b, a, b, a, a]
    items = [(f"m{i}".encode(), t.getsockname()) for i, t in enumerate(plan)]
    assert send_all(sender, items) == [len(items)]
    assert [d for d, _ in drain(a, 4)] == [b"m0", b"m3", b"m5", b"m6"]
    assert [d for d, _ in drain(b, 3)] == [b"m1", b"m2", b"m4"]


def test_send_batch_sends_at_most_max_send_a_call(sockets: Callable[..., socket.socket]) -> None:
    assert UDP is not None
    sender, a = sockets(), sockets()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    items = [(str(i).encode(), a.getsockname()) for i in range(UDP.MAX_SEND + 10)]
    assert send_all(sender, items) == [UDP.MAX_SEND, 10]
    assert [d for d, _ in drain(a, len(items))] == [d for d, _ in items]


def test_a_bad_item_is_refused_alone(sockets: Callable[..., socket.socket]) -> None:
    sender, a = sockets(), sockets()
    good = a.getsockname()
    items: list[Any] = [
        (b"one", good),
        (b"two", ("localhost", 5060)),  # not numeric
        (b"three", good),
        ("four", good),  # not bytes
        (b"five", ("127.0.0.1", 70000)),  # no such port
        (b"six", good),
    ]
    assert send_all(sender, items) == [1, ValueError, 1, TypeError, OverflowError, 1]
    assert [d for d, _ in drain(a, 3)] == [b"one", b"three", b"six"]


def test_a_list_changed_while_it_is_sent_is_read_safely(
    sockets: Callable[..., socket.socket],
) -> None:
    """Reading a port can run Python code (``__index__``) that empties the list: what was
    taken from it stays alive until sent, and nothing past its new end is read."""
    assert UDP is not None
    sender, a = sockets(), sockets()
    host, port = a.getsockname()
    items: list[Any] = []

    class Emptying:
        def __index__(self) -> int:
            items.clear()
            return int(port)

    items += [(b"first" * 100, (host, port)), (b"second", (host, Emptying()))]
    items += [(b"never", (host, port))] * 3
    sent = UDP.send_batch(sender.fileno(), int(sender.family), items, 0)
    assert sent == 2 and items == []
    assert [d for d, _ in drain(a, 2)] == [b"first" * 100, b"second"]


def test_send_batch_refuses_bad_arguments(sockets: Callable[..., socket.socket]) -> None:
    assert UDP is not None
    s = sockets()
    item = (b"x", ("127.0.0.1", 9))
    with pytest.raises(TypeError):
        UDP.send_batch(s.fileno(), int(s.family), (item,), 0)
    with pytest.raises(IndexError):
        UDP.send_batch(s.fileno(), int(s.family), [item], 1)
    with pytest.raises(IndexError):
        UDP.send_batch(s.fileno(), int(s.family), [], 0)
    closed = bound()
    fd = closed.fileno()
    closed.close()
    with pytest.raises(OSError):
        UDP.send_batch(fd, int(socket.AF_INET), [item], 0)


# ------------------------------------------------------------------ DatagramSocket


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
    loop: asyncio.AbstractEventLoop,
    calls: UdpCalls | None = None,
) -> tuple[DatagramSocket, UdpProtocol, socket.socket]:
    assert UDP is not None
    sock = bound()
    driver = Driver(Endpoint(Config(secret=b"k")), loop)
    protocol = UdpProtocol(driver)
    transport = DatagramSocket(
        loop, sock, protocol, calls or (UDP.recv_batch, UDP.send_to, UDP.send_batch)
    )
    return transport, protocol, sock


def test_the_responses_to_a_batch_go_in_one_send_batch_call(
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket]
) -> None:
    assert UDP is not None
    calls: list[int] = []
    singles: list[bytes] = []

    def send_batch(fd: int, family: int, items: list[Any], start: int) -> int:
        calls.append(len(items) - start)
        sent: int = UDP.send_batch(fd, family, items, start)
        return sent

    def send_to(fd: int, family: int, data: bytes, address: tuple[Any, ...]) -> bool:
        singles.append(data)
        return True

    transport, _, sock = answering(loop, (UDP.recv_batch, send_to, send_batch))
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
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket]
) -> None:
    assert UDP is not None
    full = [True]
    dropped_by_kernel: list[bytes] = []

    def send_batch(fd: int, family: int, items: list[Any], start: int) -> int:
        if full[0]:
            return 0  # the send buffer is full
        sent: int = UDP.send_batch(fd, family, items, start)
        return sent

    def send_to(fd: int, family: int, data: bytes, address: tuple[Any, ...]) -> bool:
        if data == b"bad":
            dropped_by_kernel.append(data)
            raise OSError(1, "refused")
        result: bool = UDP.send_to(fd, family, data, address)
        return result

    transport, _, _ = answering(loop, (UDP.recv_batch, send_to, send_batch))
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
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket]
) -> None:
    transport, protocol, sock = answering(loop)
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
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket]
) -> None:
    assert UDP is not None
    full = [True]  # the kernel's answer to come: "would block" while True
    sent: list[bytes] = []

    def send_to(fd: int, family: int, data: bytes, address: tuple[Any, ...]) -> bool:
        if full[0]:
            return False
        sent.append(data)
        result: bool = UDP.send_to(fd, family, data, address)
        return result

    transport, _, _ = answering(loop, (UDP.recv_batch, send_to, UDP.send_batch))
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
    loop: asyncio.AbstractEventLoop, sockets: Callable[..., socket.socket]
) -> None:
    assert UDP is not None
    transport, _, _ = answering(loop, (UDP.recv_batch, lambda *args: False, UDP.send_batch))
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
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport, protocol, sock = answering(loop)
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
