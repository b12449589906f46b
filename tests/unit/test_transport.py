"""The asyncio adapters with fake transports: framing, pongs, timers — no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import request

from sipresponder.aio.transport import TCP_BATCH, Driver, TcpConnection
from sipresponder.aio.udp import UdpProtocol
from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.sip.framer import StreamFramer


class FakeTcp:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 5060)}[name]

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.limits = (high, low)


class FakeUdp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5060)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def driver(loop: asyncio.AbstractEventLoop, **kw: Any) -> Driver:
    return Driver(Endpoint(Config(secret=b"k", **kw)), loop)


def status_lines(chunks: list[bytes]) -> list[str]:
    """The status line of every response written, in order: a write may carry several
    (a batch's answers go out at once), and a CRLF pong none."""
    framer = StreamFramer(1 << 20)
    out = []
    for chunk in chunks:
        for item in framer.feed(chunk):
            if isinstance(item, bytes):
                out.append(item.split(b"\r\n", 1)[0].decode())
    return out


def test_tcp_frames_pongs_and_answers_on_the_connection() -> None:
    loop = asyncio.new_event_loop()
    try:
        conn = TcpConnection(driver(loop), 65536)
        fake = FakeTcp()
        conn.connection_made(fake)  # type: ignore[arg-type]
        two = request("OPTIONS") + request("MESSAGE", branch="z9hG4bK-2", body=b"hi")
        conn.data_received(two[:10])
        conn.data_received(two[10:] + b"\r\n\r\n")
        assert status_lines(fake.written) == ["SIP/2.0 200 OK", "SIP/2.0 200 OK"]
        # RFC 5626: a CRLF pong, after the 200 (the batch's answers go in one write).
        assert fake.written[-1].endswith(b"Content-Length: 0\r\n\r\n\r\n")
        conn.data_received(request().replace(b"Content-Length: 0", b"Content-Length: x"))
        assert status_lines(fake.written)[-1] == "SIP/2.0 400 Bad Content-Length"
        assert fake.closed
        conn.connection_lost(None)
        conn.write(b"late")  # dropped quietly once closed
        assert fake.written[-1] != b"late"
    finally:
        loop.close()


def test_udp_sends_to_the_via_address_and_timer_fires() -> None:
    async def scenario() -> list[tuple[bytes, tuple[str, int]]]:
        loop = asyncio.get_running_loop()
        d = driver(loop)
        proto = UdpProtocol(d)
        fake = FakeUdp()
        proto.connection_made(fake)  # type: ignore[arg-type]
        proto.datagram_received(request("INVITE", "180-50ms-486"), ("192.0.2.1", 7777))
        await asyncio.sleep(0.2)
        d.close()
        return fake.sent

    sent = asyncio.run(scenario())
    assert status_lines([s for s, _ in sent])[:3] == [
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 486 Busy Here",
    ]
    # No rport: to the source IP and the sent-by port (RFC 3261 §18.2.2).
    assert {addr for _, addr in sent} == {("192.0.2.1", 5062)}


def test_driver_times_receive_only_when_observed() -> None:
    loop = asyncio.new_event_loop()
    try:
        d = driver(loop)
        proto = UdpProtocol(d)
        fake = FakeUdp()
        proto.connection_made(fake)  # type: ignore[arg-type]
        proto.datagram_received(request("OPTIONS"), ("127.0.0.1", 5062))  # observe is None
        seen: list[float] = []
        d.observe = seen.append
        proto.datagram_received(request("OPTIONS", branch="z9hG4bK-2"), ("127.0.0.1", 5062))
        conn = TcpConnection(d, 65536)
        conn.connection_made(FakeTcp())  # type: ignore[arg-type]
        conn.data_received(request("OPTIONS", branch="z9hG4bK-3"))
        assert len(seen) == 2 and all(0 <= s < 1 for s in seen)
        assert status_lines([s for s, _ in fake.sent]) == ["SIP/2.0 200 OK"] * 2
        d.close()
    finally:
        loop.close()


def test_lag_monitor_sheds_then_recovers() -> None:
    from sipresponder.aio.transport import LagMonitor

    m = LagMonitor(threshold=0.25, recover=1.0)
    assert not m.tick(1.0, 1.01)
    assert m.tick(2.0, 2.4)  # 400 ms late: shed
    assert m.tick(2.5, 2.52)  # on time, but not yet for a whole second
    assert m.tick(3.0, 3.1)  # 100 ms late is not calm (over a fifth of the threshold)
    assert m.tick(3.2, 3.21)
    assert m.tick(4.0, 4.01)
    assert not m.tick(4.3, 4.31)  # calm for over a second: back to normal


def test_a_peer_slow_to_read_its_responses_is_slowed_down_not_cut_off() -> None:
    # A load generator at full CPU falls behind on reading for a moment: past the
    # high-water mark its requests wait (reading and the backlog pause) until what we
    # wrote drains, instead of the connection being dropped at --max-tcp-write-buffer.
    async def scenario() -> tuple[tuple[int, int], list[int], list[bool]]:
        loop = asyncio.get_running_loop()
        conn = TcpConnection(driver(loop), 1 << 20, max_write=1 << 20)
        fake = FakeTcp()
        conn.connection_made(fake)  # type: ignore[arg-type]
        answered: list[int] = []
        reading: list[bool] = []
        burst = b"".join(request("OPTIONS", branch=f"z9hG4bK-{i}") for i in range(100))
        conn.data_received(burst)  # more than a batch: all wait their turn
        await asyncio.sleep(0)  # one turn of the loop: one batch answered
        conn.pause_writing()  # what the transport does past the high-water mark
        for _ in range(10):
            await asyncio.sleep(0)
        answered.append(len(status_lines(fake.written)))
        reading.append(fake.reading)
        conn.resume_writing()  # drained to the low-water mark
        for _ in range(10):
            await asyncio.sleep(0)
        answered.append(len(status_lines(fake.written)))
        reading.append(fake.reading)
        conn.pause_writing()  # with nothing waiting: reading alone pauses, then resumes
        reading.append(fake.reading)
        conn.resume_writing()
        reading.append(fake.reading)
        return fake.limits, answered, reading

    limits, answered, reading = asyncio.run(scenario())
    assert limits == (1 << 19, 1 << 17)  # half and an eighth of --max-tcp-write-buffer
    assert answered == [TCP_BATCH, 100]  # nothing more while paused, all after
    assert reading == [False, True, False, True]
    assert not FakeTcp().closed


def test_a_burst_on_one_connection_is_handled_in_batches_between_loop_turns() -> None:
    # libuv reads up to 32 times in one callback: a megabyte of requests handled at once
    # would stall the loop (timers, other peers) and set off the overload shedding.
    async def scenario() -> tuple[list[str], list[str], bool, bool]:
        loop = asyncio.get_running_loop()
        conn = TcpConnection(driver(loop), 1 << 20)
        fake = FakeTcp()
        conn.connection_made(fake)  # type: ignore[arg-type]
        burst = b"".join(request("OPTIONS", branch=f"z9hG4bK-{i}") for i in range(100))
        conn.data_received(burst)
        first = status_lines(fake.written)
        paused = not fake.reading
        for _ in range(10):  # each turn of the loop handles one batch
            await asyncio.sleep(0)
        return first, status_lines(fake.written), paused, fake.reading

    first, after, paused, reading = asyncio.run(scenario())
    assert len(first) < TCP_BATCH + 1 and paused  # not all at once; reading paused
    assert len(after) == 100 and reading  # then all, in turns, and reading again
