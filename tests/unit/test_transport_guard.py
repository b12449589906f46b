"""The guard wired into the asyncio adapters, with fake transports: no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import request
from test_transport import FakeTcp, FakeUdp, status_lines

from sipresponder.aio.transport import Driver, TcpConnection
from sipresponder.aio.udp import UdpProtocol
from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.guard import Guard
from sipresponder.sip.message import Response
from sipresponder.sip.parser import parse_message

SECRET = b"k"


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def udp(loop: asyncio.AbstractEventLoop, guard: Guard) -> tuple[Driver, UdpProtocol, FakeUdp]:
    driver = Driver(Endpoint(Config(secret=SECRET)), loop, guard)
    proto = UdpProtocol(driver)
    fake = FakeUdp()
    proto.connection_made(fake)  # type: ignore[arg-type]
    return driver, proto, fake


def test_without_limits_the_guard_is_not_consulted(loop: asyncio.AbstractEventLoop) -> None:
    driver, proto, fake = udp(loop, Guard())
    assert driver.screen is None and driver.cap is None
    proto.datagram_received(request("OPTIONS"), ("192.0.2.1", 5062))
    assert status_lines([s for s, _ in fake.sent]) == ["SIP/2.0 200 OK"]
    driver.close()


def test_udp_outside_the_allow_list_is_ignored(loop: asyncio.AbstractEventLoop) -> None:
    driver, proto, fake = udp(loop, Guard(allow=("10.0.0.0/8",)))
    proto.datagram_received(request("OPTIONS"), ("192.0.2.1", 5062))
    assert fake.sent == []
    proto.datagram_received(request("OPTIONS"), ("10.0.0.1", 5062))
    assert status_lines([s for s, _ in fake.sent]) == ["SIP/2.0 200 OK"]
    assert driver.guard.stats["not_allowed"] == 1
    assert driver.endpoint.stats["requests"] == 1  # the ignored one never reached it
    driver.close()


def test_udp_rate_limit(loop: asyncio.AbstractEventLoop) -> None:
    driver, proto, fake = udp(loop, Guard(rate=3.0))
    for i in range(5):
        proto.datagram_received(request("OPTIONS", branch=f"z9hG4bK-{i}"), ("192.0.2.1", 5062))
    assert len(fake.sent) == 3
    assert driver.guard.stats["rate_limited"] == 2
    driver.close()


def test_unverified_udp_source_is_capped_until_its_ack_carries_our_tag(
    loop: asyncio.AbstractEventLoop,
) -> None:
    driver, proto, fake = udp(loop, Guard(amplification=3.0))
    src = ("192.0.2.1", 5062)
    invite = request("INVITE", "486", via="SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-1;rport")
    proto.datagram_received(invite, src)
    assert status_lines([s for s, _ in fake.sent]) == [
        "SIP/2.0 100 Trying",
        "SIP/2.0 486 Busy Here",
    ]
    busy = fake.sent[-1][0]
    # Timer G's copies of the 486, as its timer would send them: the budget runs out.
    for _ in range(10):
        driver.send([(busy, proto._flows[src], src)])
    held = driver.guard.stats["held"]
    assert held > 0 and len(fake.sent) == 12 - held
    resp = parse_message(busy)
    assert isinstance(resp, Response)
    tag = (resp.header("To") or "").rsplit("tag=", 1)[1]
    bad_ack = request(
        "ACK", "486", to="<sip:486@127.0.0.1>;tag=forged", cseq="1 ACK", branch="z9hG4bK-1"
    )
    proto.datagram_received(bad_ack, src)
    assert driver.guard.stats["verified"] == 0
    ack = request("ACK", "486", to=f"<sip:486@127.0.0.1>;tag={tag}", cseq="1 ACK")
    acks = [parse_message(a) for a in (ack, bad_ack)]
    assert [driver.endpoint.our_tag(a) for a in acks] == [True, False]  # type: ignore[arg-type]
    proto.datagram_received(ack, src)
    assert driver.guard.stats["verified"] == 1
    before = len(fake.sent)
    driver.send([(busy, proto._flows[src], src)] * 50)
    assert len(fake.sent) == before + 50  # verified: no cap
    driver.close()


def tcp(driver: Driver, peer: str = "192.0.2.1") -> tuple[TcpConnection, FakeTcp]:
    conn = TcpConnection(driver, 65536)
    fake = FakeTcp()
    fake.get_extra_info = lambda name: {  # type: ignore[method-assign]
        "peername": (peer, 40000),
        "sockname": ("127.0.0.1", 5060),
    }[name]
    conn.connection_made(fake)  # type: ignore[arg-type]
    return conn, fake


def test_tcp_connections_outside_the_allow_list_are_closed_at_once(
    loop: asyncio.AbstractEventLoop,
) -> None:
    driver = Driver(Endpoint(Config(secret=SECRET)), loop, Guard(allow=("10.0.0.0/8",)))
    conn, fake = tcp(driver)
    assert fake.closed and conn not in driver.connections
    conn.data_received(request("OPTIONS"))
    assert fake.written == []
    inside, fake_inside = tcp(driver, "10.1.1.1")
    inside.data_received(request("OPTIONS"))
    assert status_lines(fake_inside.written) == ["SIP/2.0 200 OK"]
    driver.close()


def test_tcp_over_its_rate_is_closed_and_its_source_blocked(
    loop: asyncio.AbstractEventLoop,
) -> None:
    driver = Driver(Endpoint(Config(secret=SECRET)), loop, Guard(rate=2.0))
    conn, fake = tcp(driver)
    conn.data_received(b"".join(request("OPTIONS", branch=f"z9hG4bK-{i}") for i in range(4)))
    assert status_lines(fake.written) == ["SIP/2.0 200 OK"] * 2 and fake.closed
    _, fake_again = tcp(driver)
    assert fake_again.closed  # refused while the block lasts
    driver.close()


# ------------------------------------------------------------------- limits


def many_headers(count: int) -> list[tuple[str, str]]:
    return [(f"X-H{i}", "v") for i in range(count)]


def test_udp_message_with_too_many_header_lines_gets_513(
    loop: asyncio.AbstractEventLoop,
) -> None:
    driver, proto, fake = udp(loop, Guard(max_headers=20))
    assert driver.screen is None  # the limits are checked without the screen
    proto.datagram_received(request("OPTIONS", extra=many_headers(20)), ("192.0.2.1", 5062))
    proto.datagram_received(request("OPTIONS", extra=many_headers(5)), ("192.0.2.1", 5062))
    assert status_lines([s for s, _ in fake.sent]) == [
        "SIP/2.0 513 Too Many Header Lines",
        "SIP/2.0 200 OK",
    ]
    assert driver.guard.limit_hits["headers"] == 1
    driver.close()


def test_tcp_message_over_a_header_limit_gets_513_and_the_connection_stays(
    loop: asyncio.AbstractEventLoop,
) -> None:
    driver = Driver(Endpoint(Config(secret=SECRET)), loop, Guard(max_header_line=300))
    conn, fake = tcp(driver)
    long_line = [("X-Long", "v" * 400)]
    conn.data_received(request("OPTIONS", extra=long_line) + request("OPTIONS", branch="z9hG4bK-2"))
    assert status_lines(fake.written) == ["SIP/2.0 513 Header Line Too Long", "SIP/2.0 200 OK"]
    assert not fake.closed
    driver.close()


def test_tcp_connection_limit(loop: asyncio.AbstractEventLoop) -> None:
    guard = Guard(max_connections=1)
    driver = Driver(Endpoint(Config(secret=SECRET)), loop, guard)
    first, fake_first = tcp(driver)
    _, fake_second = tcp(driver, "192.0.2.2")
    assert not fake_first.closed and fake_second.closed
    assert guard.connections == 1 and guard.limit_hits["connections"] == 1
    first.connection_lost(None)
    assert guard.connections == 0
    _, fake_third = tcp(driver, "192.0.2.2")
    assert not fake_third.closed and guard.connections == 1
    driver.close()


def test_tcp_peer_that_does_not_read_is_dropped(loop: asyncio.AbstractEventLoop) -> None:
    driver = Driver(Endpoint(Config(secret=SECRET)), loop)
    conn = TcpConnection(driver, 65536, max_write=65536)
    fake = FakeTcp()
    fake.get_write_buffer_size = lambda: 70_000  # type: ignore[method-assign]
    conn.connection_made(fake)  # type: ignore[arg-type]
    conn.data_received(request("OPTIONS"))
    assert fake.closed and driver.guard.limit_hits["write_buffer"] == 1
    driver.close()


class Timer:
    """A timer of ``ScriptedLoop``: what the driver does with one (cancel it)."""

    def __init__(self, when: float, callback: Any, args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ScriptedLoop:
    """What the driver asks of an event loop (its clock and timers), on a scripted clock:
    ``advance(dt)`` runs each timer due by then, in order, at its own time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> Timer:
        timer = Timer(when, callback, args)
        self._timers.append(timer)
        return timer

    def call_soon(self, callback: Any, *args: Any) -> Timer:
        return self.call_at(self.now, callback, *args)

    def advance(self, dt: float) -> None:
        end = self.now + dt
        for _ in range(10_000):  # bounded: a timer that rearms itself at once is a bug
            due = [t for t in self._timers if t.when <= end and not t.cancelled]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self._timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback(*timer.args)
        self._timers = [t for t in self._timers if not t.cancelled]
        self.now = end


def test_sweep_closes_slow_and_idle_connections() -> None:
    """On a scripted clock: a loaded machine cannot stall the 50 ms steps into timeouts."""
    loop = ScriptedLoop()
    driver = Driver(Endpoint(Config(secret=SECRET)), loop)  # type: ignore[arg-type]
    driver.watch_connections(idle=0.4, message_time=0.2)
    slow, fake_slow = tcp(driver, "192.0.2.1")
    idle, fake_idle = tcp(driver, "192.0.2.2")
    _, fake_silent = tcp(driver, "192.0.2.3")  # connects and says nothing
    busy, fake_busy = tcp(driver, "192.0.2.4")
    idle.data_received(request("OPTIONS"))
    options = request("OPTIONS")
    for i in range(12):  # 0.6 s: each peer but the busy one is closed by then
        slow.data_received(options[i : i + 1])  # a byte each 50 ms: never idle
        busy.data_received(request("OPTIONS", branch=f"z9hG4bK-{i}"))
        loop.advance(0.05)
    closed = [fake.closed for fake in (fake_slow, fake_idle, fake_silent, fake_busy)]
    driver.close()
    assert closed == [True, True, True, False]  # slow, idle, silent; not busy
    hits = driver.guard.limit_hits
    assert hits["message_time"] == 2 and hits["idle"] == 1


def test_a_short_message_of_tiny_header_lines_gets_513(loop: asyncio.AbstractEventLoop) -> None:
    # The transport counts lines in long messages only; the parser counts them in all.
    driver, proto, fake = udp(loop, Guard())  # --max-headers 256
    tiny = request("OPTIONS", extra=[("a", "1")] * 251)  # 257 lines of 6 bytes
    assert len(tiny) < 8 * 256
    proto.datagram_received(tiny, ("192.0.2.1", 5062))
    assert status_lines([s for s, _ in fake.sent]) == ["SIP/2.0 513 Too Many Header Lines"]
    driver.close()


def test_udp_answers_go_back_to_each_source_in_turn(loop: asyncio.AbstractEventLoop) -> None:
    # The last source's flow is kept for the next datagram: one from elsewhere must not
    # be answered on it.
    driver, proto, fake = udp(loop, Guard())
    sources = [("192.0.2.1", 5062), ("192.0.2.2", 5062), ("192.0.2.1", 5063), ("192.0.2.1", 5062)]
    for i, src in enumerate(sources):
        # rport (RFC 3581 §4): the response goes to the source, whatever the Via says.
        via = f"SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bK-s{i}"
        proto.datagram_received(request("OPTIONS", via=via), src)
    assert [addr for _, addr in fake.sent] == sources
    assert len(proto._flows) == 3
    driver.close()
