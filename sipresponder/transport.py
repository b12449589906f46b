"""asyncio glue: UDP and TCP protocols that feed the sans-IO endpoint.

What belongs here: ``Driver`` (sends what the endpoint returns and keeps one timer armed
for its next deadline), ``UdpProtocol`` and ``TcpConnection`` (per-connection framing with
``StreamFramer``, CRLF keep-alive pongs, bounded buffers).  Each callback does the same
three steps: feed the endpoint with ``now=loop.time()``, send what came out, re-arm the
timer.  ``Driver.observe``, when set, is told how long each ``receive`` took (metrics).  No
protocol decisions are made here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from .endpoint import Endpoint, Flow, Send
from .parser import PING, FramingError, StreamFramer

log = logging.getLogger(__name__)

#: Bytes queued for a TCP peer that does not read before the connection is dropped.
MAX_TCP_WRITE_BUFFER = 1 << 20


class Driver:
    """Runs an ``Endpoint`` on an event loop: sending, and its one timer."""

    def __init__(self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> None:
        self.endpoint = endpoint
        self.loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._lag_handle: asyncio.TimerHandle | None = None
        #: Called with the seconds each ``endpoint.receive`` took (the admin API's latency
        #: histogram); None, the default, times nothing.
        self.observe: Callable[[float], None] | None = None
        #: Open TCP connections, closed with the driver (none may outlive the server).
        self.connections: set[TcpConnection] = set()

    def receive(self, data: bytes, flow: Flow) -> None:
        """Feed one message to the endpoint and send what comes out."""
        observe = self.observe
        if observe is None:
            self.send(self.endpoint.receive(data, flow, self.loop.time()))
            return
        start = time.perf_counter()
        out = self.endpoint.receive(data, flow, self.loop.time())
        observe(time.perf_counter() - start)
        self.send(out)

    def send(self, out: list[Send]) -> None:
        for data, flow, dest in out:
            conn: Any = flow.conn
            if flow.transport == "udp":
                conn.sendto(data, dest)  # the DatagramTransport the request came on
            else:
                conn.write(data)  # the TcpConnection the request came on
        self.arm()

    def arm(self) -> None:
        deadline = self.endpoint.next_deadline()
        if deadline is None:
            return
        if self._handle is not None:
            if self._armed is not None and self._armed <= deadline:
                return
            self._handle.cancel()
        self._armed = deadline
        self._handle = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = None
        self.send(self.endpoint.handle_timers(self.loop.time()))

    def watch_lag(self, threshold: float, interval: float = 0.1) -> None:
        """Every ``interval`` s, measure how late the loop runs us; while it lags past
        ``threshold``, the endpoint sheds new requests with 503 (logged once per change)."""
        monitor = LagMonitor(threshold)

        def tick(expected: float) -> None:
            now = self.loop.time()
            was = monitor.shedding
            shedding = monitor.tick(expected, now)
            self.endpoint.shedding = shedding
            if shedding != was:
                if shedding:
                    log.warning(
                        "overloaded (the event loop lags %.0f ms): new requests get "
                        "503 with Retry-After",
                        (now - expected) * 1000,
                    )
                else:
                    log.warning("load is back under capacity: answering normally again")
            self._lag_handle = self.loop.call_at(now + interval, tick, now + interval)

        start = self.loop.time() + interval
        self._lag_handle = self.loop.call_at(start, tick, start)

    async def close_connections(self, grace: float) -> None:
        """Close every TCP connection once what was written to it is sent; those still
        sending after ``grace`` seconds are aborted."""
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        deadline = self.loop.time() + grace
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()

    def close(self) -> None:
        if self._lag_handle is not None:
            self._lag_handle.cancel()
            self._lag_handle = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        self.connections.clear()


class LagMonitor:
    """Decides when to shed load from how late a periodic tick runs (event-loop lag).

    Shedding starts when a tick is ``threshold`` seconds late and stops once ticks have
    been on time (under a fifth of it) for ``recover`` seconds.  Pure: fed with times.
    """

    def __init__(self, threshold: float, recover: float = 1.0) -> None:
        self.threshold = threshold
        self.recover = recover
        self.shedding = False
        self._calm_since: float | None = None

    def tick(self, expected: float, actual: float) -> bool:
        lag = actual - expected
        if lag >= self.threshold:
            self.shedding = True
            self._calm_since = None
        elif self.shedding:
            if lag > self.threshold / 5:
                self._calm_since = None
            elif self._calm_since is None:
                self._calm_since = actual
            elif actual - self._calm_since >= self.recover:
                self.shedding = False
                self._calm_since = None
        return self.shedding


#: UDP flows remembered per source address; the table is emptied when it fills.
MAX_UDP_FLOWS = 4096


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        #: The flow of each recent source address: a flow is made once per peer, not per
        #: datagram (its address texts are computed when it is made).
        self._flows: dict[tuple[Any, ...], Flow] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        flow = self._flows.get(addr)
        if flow is None:
            if len(self._flows) >= MAX_UDP_FLOWS:
                self._flows.clear()
            flow = Flow("udp", (addr[0], addr[1]), self.local, self.transport)
            self._flows[addr] = flow
        self.driver.receive(data, flow)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like, from an earlier sendto: nothing to do.
        log.debug("UDP error: %s", exc)


class TcpConnection(asyncio.Protocol):
    """One accepted TCP connection: frames the stream, answers on the same connection."""

    def __init__(self, driver: Driver, max_size: int) -> None:
        self.driver = driver
        self.framer = StreamFramer(max_size)
        self.transport: asyncio.Transport | None = None
        self.flow: Flow | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        local = self.transport.get_extra_info("sockname")
        self.flow = Flow("tcp", (peer[0], peer[1]), (local[0], local[1]), self)
        self.driver.connections.add(self)

    def data_received(self, data: bytes) -> None:
        driver = self.driver
        flow = self.flow
        assert flow is not None and self.transport is not None
        for item in self.framer.feed(data):
            if item is PING:
                self.write(b"\r\n")  # RFC 5626 §3.5.1: a CRLF pong for a CRLF CRLF ping
            elif isinstance(item, FramingError):
                driver.send(driver.endpoint.reject_framing(item, flow))
                log.info("closing TCP connection from %s: %s", flow.peer, item.reason)
                self.transport.close()
                return
            elif isinstance(item, bytes):
                driver.receive(item, flow)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            log.debug("response dropped: the TCP connection is gone")
            return
        transport.write(data)
        if transport.get_write_buffer_size() > MAX_TCP_WRITE_BUFFER:
            log.info("closing TCP connection that does not read its responses")
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.driver.connections.discard(self)
