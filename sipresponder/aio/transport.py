"""asyncio glue: the driver of the sans-IO endpoint, and the TCP protocol that feeds it.

What belongs here: ``Driver`` (sends what the endpoint returns and keeps one timer armed
for its next deadline), ``LagMonitor`` (when to shed load) and ``TcpConnection``
(per-connection framing with ``StreamFramer``, CRLF keep-alive pongs, bounded buffers).
Each callback does the same three steps: feed the endpoint with ``now=loop.time()``, send
what came out, re-arm the timer.  ``Driver.observe``, when set, is told how long each
``receive`` took (metrics).  The UDP side, which drives the same ``Driver``, is ``udp``.
No protocol decisions are made here.  Imports ``endpoint``, ``guard``, the framer of
``parser`` (and ``errors``); ``udp`` and ``server`` import it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any, Final, cast

from ..core.endpoint import Endpoint
from ..core.flow import Flow, Send
from ..core.guard import Guard, Watch
from ..errors import FramingError
from ..sip.framer import PING, Ping, StreamFramer

log = logging.getLogger(__name__)

#: Bytes queued for a TCP peer that does not read before the connection is dropped
#: (the default of ``--max-tcp-write-buffer``); from half of it, reading the peer pauses.
MAX_TCP_WRITE_BUFFER = 1 << 20


class Driver:
    """Runs an ``Endpoint`` on an event loop: sending, and its one timer."""

    def __init__(
        self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop, guard: Guard | None = None
    ) -> None:
        self.endpoint = endpoint
        self.loop = loop
        self.guard = guard if guard is not None else Guard()
        #: The guard when it screens received messages (--allow, --rate-limit, the
        #: anti-amplification budget), and when it caps UDP sends; None costs nothing.
        self.screen = self.guard if self.guard.screens else None
        self.cap = self.guard if self.guard.caps else None
        self._handle: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._lag_handle: asyncio.TimerHandle | None = None
        #: Called with the seconds each ``endpoint.receive`` took (the admin API's latency
        #: histogram); None, the default, times nothing.
        self.observe: Callable[[float], None] | None = None
        #: Open TCP connections, closed with the driver (none may outlive the server).
        self.connections: set[TcpConnection] = set()
        self._sweep_handle: asyncio.TimerHandle | None = None
        #: Sends a response that a fault says how to send (``core.shaping.Wire``:
        #: ``wire.WireSender``); None sends it as plain bytes.
        self.wire: Callable[[Any, Flow, tuple[str, int]], None] | None = None
        #: The media glue (``rtp.MediaDriver``), told after each send: signalling may
        #: have opened or ended a session.  None: no media.
        self.media: Any = None

    def receive(self, data: bytes, flow: Flow, now: float | None = None) -> None:
        """Feed one message to the endpoint and send what comes out."""
        if now is None:
            now = self.loop.time()
        observe = self.observe
        if observe is None:
            self.send(self.endpoint.receive(data, flow, now))
            return
        start = time.perf_counter()
        out = self.endpoint.receive(data, flow, now)
        observe(time.perf_counter() - start)
        self.send(out)

    def check_headers(self, data: bytes, flow: Flow) -> bool:
        """The slow path of the header limits (``Guard.header_problem``): True when the
        message broke one, and was answered 513."""
        problem = self.guard.header_problem(data, flow.remote[0], self.loop.time())
        if problem is None:
            return False
        status, reason = problem
        self.send(self.endpoint.reject_framing(FramingError(status, reason, data), flow))
        return True

    def send(self, out: list[Send]) -> None:
        cap = self.cap
        for data, flow, dest in out:
            conn: Any = flow.conn
            if type(data) is not bytes and self.wire is not None:
                # A fault's: another port, pieces, a reset or a close (``wire``).
                if flow.transport != "udp" or cap is None or cap.may_send(dest[0], len(data)):
                    self.wire(data, flow, dest)
                continue
            if flow.transport == "udp":
                if cap is not None and not cap.may_send(dest[0], len(data)):
                    continue  # anti-amplification: counted and logged by the guard
                conn.sendto(data, dest)  # the DatagramTransport the request came on
            else:
                # The TcpConnection the request came on; while it handles a batch it
                # holds what it is answered back for one write (TcpConnection._handle).
                conn.write(data)
        self.arm()
        if self.media is not None:
            self.media.kick()

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
            conn.end()
        deadline = self.loop.time() + grace
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()

    def watch_connections(self, idle: float, message_time: float) -> None:
        """Close TCP connections idle for ``idle`` s, or whose message (or first message)
        takes more than ``message_time`` s to arrive; looked at a few times per timeout."""
        if self._sweep_handle is not None:
            return  # one sweep for TCP and TLS alike
        interval = min(1.0, max(0.05, min(idle, message_time) / 4))
        what = {
            "idle": f"--tcp-idle-timeout {idle:g} s",
            "message_time": f"--message-timeout {message_time:g} s",
        }

        def sweep() -> None:
            now = self.loop.time()
            for conn in list(self.connections):
                transport = conn.transport
                if transport is None or conn.flow is None or transport.is_closing():
                    continue
                verdict = conn.watch.check(now, idle, message_time)
                if verdict is not None:
                    self.guard.hit(verdict, conn.flow.remote[0], now, what[verdict])
                    transport.close()
            self._sweep_handle = self.loop.call_at(now + interval, sweep)

        self._sweep_handle = self.loop.call_at(self.loop.time() + interval, sweep)

    def close(self) -> None:
        if self._lag_handle is not None:
            self._lag_handle.cancel()
            self._lag_handle = None
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
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


#: Messages of one TCP connection handled in one go; the rest wait for the next turn of
#: the event loop (bounded: reading pauses while they wait).
TCP_BATCH: Final = 32


class TcpConnection(asyncio.Protocol):
    """One accepted TCP connection: frames the stream, answers on the same connection."""

    def __init__(
        self,
        driver: Driver,
        max_size: int,
        max_write: int = MAX_TCP_WRITE_BUFFER,
        name: str = "tcp",
        secure: Callable[[TcpConnection], Any] | None = None,
        framing: Callable[[TcpConnection], Any] | None = None,
    ) -> None:
        self.driver = driver
        #: The transport the flow is named by: "tcp", "tls", "ws" or "wss".
        self.name = name
        #: Makes the connection's TLS session (``tls.TlsSessions``); None: no TLS.
        self.secure = secure
        #: Makes its WebSocket session (``ws.WsSessions``); None: the stream framer.
        self.framing = framing
        #: The TLS session (``tls.TlsSession``): what is read goes through its
        #: ``received``, what is written through its ``wrap``.  None: no TLS.
        self.tls: Any = None
        #: The WebSocket session (``ws.WsSession``), over TLS or not: it gives whole
        #: messages from what is read, and wraps each message written in a frame.
        self.ws: Any = None
        self.framer = StreamFramer(max_size)
        self.max_write = max_write
        self.transport: asyncio.Transport | None = None
        self.flow: Flow | None = None
        self.closed = False
        self.counted = False  # by the guard's connection limits
        self.watch = Watch(driver.loop.time())
        #: Framed messages waiting their turn, and whether reading is paused for them.
        self.backlog: collections.deque[bytes | Ping | FramingError] = collections.deque()
        self.paused = False
        #: Whether what we wrote is past the high-water mark: reading (and the backlog)
        #: waits for it to drain (``pause_writing``).
        self.write_paused = False
        #: While a batch is handled: what it is answered, written at once afterwards.
        self.corked: list[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        local = self.transport.get_extra_info("sockname")
        self.flow = Flow(self.name, (peer[0], peer[1]), (local[0], local[1]), self)
        driver = self.driver
        if not driver.guard.connect(peer[0], driver.loop.time()):
            # Not allowed, its source blocked, or over a connection limit: closed at once
            # (counted and logged by the guard).
            self.closed = True
            self.transport.abort()
            return
        self.counted = True
        driver.connections.add(self)
        # Backpressure: past half of --max-tcp-write-buffer, the peer's requests are not
        # read until our responses drain to an eighth of it (asyncio calls pause_writing
        # and resume_writing).  A load generator that falls behind on reading is slowed
        # down, not cut off; only a peer that stops reading reaches the limit.
        self.transport.set_write_buffer_limits(high=self.max_write // 2, low=self.max_write // 8)
        if self.secure is not None:
            self.tls = self.secure(self)
        if self.framing is not None:
            self.ws = self.framing(self)

    def data_received(self, data: bytes) -> None:
        assert self.flow is not None and self.transport is not None
        if self.closed:
            return
        self.watch.active = True
        tls = self.tls
        if tls is not None:
            data = tls.received(data)  # the handshake, then what the records carry
            if not data:
                return
        ws = self.ws
        items: list[bytes | Ping | FramingError]
        if ws is not None:
            items = ws.received(data)  # whole messages, one per WebSocket message
            if not items:
                self._note_pending()
                return
        else:
            items = self.framer.feed(data)
        backlog = self.backlog
        if not backlog and len(items) <= TCP_BATCH:
            self._handle(items)
        else:
            # More than a batch: the rest waits its turn, reading pauses, and timers and
            # other peers run in between (libuv reads up to 32 times in one callback: a
            # megabyte of requests handled at once would stall the loop for a second and
            # set off the overload shedding).
            backlog.extend(items)
            if not self.paused:
                self.paused = True
                self.transport.pause_reading()
                self.driver.loop.call_soon(self._work)
        self._note_pending()

    def _work(self) -> None:
        """Handle the next batch of the backlog; read again once it is empty."""
        backlog = self.backlog
        if self.closed or self.transport is None or self.transport.is_closing():
            backlog.clear()
            return
        if self.write_paused:
            return  # resume_writing takes the backlog up again
        batch = [backlog.popleft() for _ in range(min(TCP_BATCH, len(backlog)))]
        self._handle(batch)
        if backlog and not self.closed:
            if not self.write_paused:
                self.driver.loop.call_soon(self._work)
        else:
            self.paused = False
            if not self.closed and not self.transport.is_closing() and not self.write_paused:
                self.transport.resume_reading()
        self._note_pending()

    def pause_writing(self) -> None:
        """Our responses queued past the high-water mark: stop reading requests."""
        self.write_paused = True
        transport = self.transport
        if not self.paused and transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_writing(self) -> None:
        """Drained to the low-water mark: read again, or go on with the backlog."""
        self.write_paused = False
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return
        if self.backlog:
            self.driver.loop.call_soon(self._work)  # it reads again once that is done
        elif not self.paused:
            transport.resume_reading()

    def _note_pending(self) -> None:
        """For the message-time sweep: a message is under way while bytes wait in the
        framer or framed ones in the backlog, or until the first one came."""
        watch = self.watch
        watch.pending = self.framer.buffered > 0 or bool(self.backlog) or not watch.done

    def _handle(self, items: list[bytes | Ping | FramingError]) -> None:
        """Handle framed items; what they are answered goes out in one write at the end
        (one send(2) for a batch, not one per response)."""
        self.corked = []
        try:
            self._handle_items(items)
        finally:
            self._uncork()

    def flush(self) -> None:
        """Write now what the batch being handled was answered so far."""
        self._uncork()

    def _uncork(self) -> None:
        """Write what the batch so far was answered (before the end of a batch too, when
        the connection is to be closed: its last answers go first)."""
        chunks, self.corked = self.corked, None
        if chunks:
            ws = self.ws
            if ws is not None:  # a WebSocket message per SIP message (RFC 7118 §5)
                self.send_raw(b"".join([ws.wrap(chunk) for chunk in chunks]))
            else:
                self.send_raw(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _handle_items(self, items: list[bytes | Ping | FramingError]) -> None:
        driver = self.driver
        flow = self.flow
        assert flow is not None and self.transport is not None
        watch = self.watch
        guard = driver.guard
        screen = driver.screen if guard.rate else None
        for item in items:
            if item is PING:
                self.write(b"\r\n")  # RFC 5626 §3.5.1: a CRLF pong for a CRLF CRLF ping
            elif isinstance(item, FramingError):
                now = driver.loop.time()
                if item.status == 513:
                    what = f"--max-message-size {guard.max_message_size}"
                    guard.hit("message_size", flow.remote[0], now, what)
                else:
                    guard.tell(
                        "framing", flow.remote[0], now, f"closing TCP from %s: {item.reason}"
                    )
                driver.send(driver.endpoint.reject_framing(item, flow))
                self._uncork()
                self.transport.close()
                return
            elif isinstance(item, bytes):
                watch.done += 1
                now = None
                if screen is not None:
                    now = driver.loop.time()
                    if screen.admit(flow.remote[0], len(item), now) is None:
                        self._uncork()
                        self.transport.abort()  # over its rate: the source is blocked
                        return
                if len(item) > guard.long_message and driver.check_headers(item, flow):
                    continue  # over a header limit: answered 513, the stream still framed
                driver.receive(item, flow, now)

    def write(self, data: bytes) -> None:
        """Send one message (a batch's are held until it is done: ``_uncork``)."""
        corked = self.corked
        if corked is not None:
            corked.append(data)  # handling a batch: written when it is done
            return
        ws = self.ws
        if ws is not None:
            data = ws.wrap(data)
        self.send_raw(data)

    def send_raw(self, data: bytes) -> None:
        """Write bytes of the stream: through TLS when there is TLS, then the transport
        (the WebSocket session writes its handshake and control frames here)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            log.debug("response dropped: the TCP connection is gone")
            return
        self.watch.active = True
        tls = self.tls
        if tls is not None:
            data = tls.wrap(data)
        transport.write(data)
        if transport.get_write_buffer_size() > self.max_write and self.flow is not None:
            host = self.flow.remote[0]
            what = f"--max-tcp-write-buffer {self.max_write}"
            self.driver.guard.hit("write_buffer", host, self.driver.loop.time(), what)
            transport.abort()

    def end(self) -> None:
        """Close gracefully (a stop): a WebSocket close frame (1001, going away), TLS's
        close_notify, then the transport once what was written is sent."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        ws = self.ws
        if ws is not None:
            ws.going_away()
        tls = self.tls
        if tls is not None:
            tls.close()
        else:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.driver.connections.discard(self)
        if self.counted and self.flow is not None:
            self.counted = False
            self.driver.guard.disconnect(self.flow.remote[0])
