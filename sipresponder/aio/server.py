"""The server: binds the listeners, owns the endpoint, starts and stops.

What belongs here: ``Server(config)`` with ``start()`` (UDP and TCP on the same port,
TLS, WS and WSS on ports of their own; port 0 picks one free for UDP and TCP and one for
each of the others; IPv4, IPv6 and dual-stack wildcards), ``listeners`` (what was bound,
with the real port) and ``close()``.  Socket options live here too.  No protocol logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Callable, Iterable

from ..core.config import Config
from ..core.endpoint import Endpoint
from ..core.flow import Reporter
from ..core.guard import Guard, is_loopback
from ..core.journal import Journal
from ..core.mediatable import MediaTable
from ..core.rules import RuleSet
from ..core.rules_loader import load_rules
from ..core.transaction import ServerTransaction, State
from ..errors import ConfigError, RulesError
from ..sip.uri import hostport
from .journal_file import JournalFile
from .rtp import MediaDriver
from .tls import TlsIdentity, TlsSessions, self_signed_line, server_context
from .transport import Driver, TcpConnection
from .udp import DatagramSocket, UdpProtocol, udp_calls
from .wire import WireSender
from .ws import WsSessions

log = logging.getLogger(__name__)

_PORT_ATTEMPTS = 50
#: Open files kept for everything but TCP connections (listeners, logs, journal, admin).
_FD_RESERVE = 64
#: How often a graceful stop looks whether what it waits for is done.
_DRAIN_POLL = 0.02
#: How long, after the drain, TCP connections get to flush what was written to them.
_FLUSH_TIMEOUT = 1.0


def read_rules(path: str) -> RuleSet:
    """Read and validate a rules file; ``RulesError`` names the file and the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise RulesError(f"{path}: cannot read: {reason}") from None
    rules = load_rules(text, path)
    for line in rules.warnings:
        log.warning("%s", line)
    return rules


class Server:
    def __init__(self, config: Config, report: Reporter | None = None) -> None:
        if not config.secret:
            config = dataclasses.replace(config, secret=os.urandom(16))
        self.config = config.validate()
        rules = read_rules(config.rules_file) if config.rules_file else None
        #: ``--journal-file``, when given.
        self.journal_file: JournalFile | None = None
        if config.journal_file:
            try:
                self.journal_file = JournalFile(config.journal_file, config.journal_file_max)
            except OSError as exc:
                raise ConfigError(
                    f"--journal-file: cannot open {config.journal_file}: {exc.strerror}"
                ) from None
        self.journal: Journal | None = None
        if config.journal_size > 0 or self.journal_file is not None:
            sink = self.journal_file.write if self.journal_file is not None else None
            self.journal = Journal(config.journal_size, sink=sink, max_bytes=config.journal_bytes)
        self.endpoint = Endpoint(self.config, report, rules, self.journal)
        #: Access and abuse decisions per source (--allow, --rate-limit, anti-amplification).
        self.guard = Guard.from_config(self.config, loopback=is_loopback(self.config.host))
        #: The TLS certificate and context (``tls`` or ``wss`` among the transports).
        secure = "tls" in config.transports or "wss" in config.transports
        self.tls: TlsIdentity | None = server_context(self.config) if secure else None
        self.listeners: list[tuple[str, str, int]] = []
        self._udp: asyncio.DatagramTransport | DatagramSocket | None = None
        #: The TCP, TLS, WS and WSS listeners, and those closed but not yet waited for.
        self._streams: list[asyncio.Server] = []
        self._closing: list[asyncio.Server] = []
        self._driver: Driver | None = None
        self._wire: WireSender | None = None
        self._media: MediaDriver | None = None

    @property
    def driver(self) -> Driver | None:
        """The event-loop glue, once started (the admin API sets its ``observe``)."""
        return self._driver

    def flush_journal(self) -> None:
        """Push what ``--journal-file`` buffered to the file (the CLI calls it every
        second, so ``tail -f`` follows along without a write per message)."""
        if self.journal_file is not None:
            self.journal_file.flush()

    def reload_rules(self) -> bool:
        """SIGHUP: a valid file takes effect for new transactions (those in flight finish
        on their old plan); an invalid one is reported and the old rules stay."""
        path = self.config.rules_file
        if path is None:
            log.info("SIGHUP: no --rules file to reload")
            return False
        try:
            rules = read_rules(path)
        except RulesError as exc:
            log.error("%s; keeping the rules in use", exc)
            return False
        self.endpoint.set_rules(rules)
        count = len(rules.rules)
        log.info(
            "reloaded %s: %d rule%s%s",
            path,
            count,
            "" if count == 1 else "s",
            " and a default" if rules.default else "",
        )
        return True

    async def start(self) -> None:
        """Bind every transport; raises ``OSError`` when the address cannot be used."""
        loop = asyncio.get_running_loop()
        # Digest nonces carry wall-clock time, so that any instance can check their age.
        self.endpoint.recorder.wall_offset = time.time() - loop.time()
        self._driver = Driver(self.endpoint, loop, self.guard)
        self._wire = WireSender(self._driver)
        self._driver.wire = self._wire
        if self.config.overload_lag > 0:
            self._driver.watch_lag(self.config.overload_lag)
        self._start_media(loop)
        family = _family(self.config.host)
        port = self.config.port
        attempts = _PORT_ATTEMPTS if port == 0 else 1
        for attempt in range(attempts):
            try:
                socks = self._bind(family, port)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
        driver = self._driver
        config = self.config
        for transport, sock in socks:
            if transport == "udp":
                calls = udp_calls()
                if calls is not None:  # the compiled core: recvmmsg, C socket calls
                    self._udp = DatagramSocket(loop, sock, UdpProtocol(driver), calls)
                else:
                    self._udp, _ = await loop.create_datagram_endpoint(
                        lambda: UdpProtocol(driver), sock=sock
                    )
            else:
                if not self._streams:
                    self._limit_connections()
                self._streams.append(
                    await loop.create_server(self._stream_factory(transport), sock=sock)
                )
                driver.watch_connections(config.tcp_idle_timeout, config.message_timeout)
            name = sock.getsockname()
            self.listeners.append((transport, name[0], name[1]))
        if self.tls is not None and self.tls.self_signed:
            log.info("%s", self_signed_line(config.host, self.tls.certificate))

    def _stream_factory(self, transport: str) -> Callable[[], TcpConnection]:
        """What each accepted TCP, TLS, WS or WSS connection gets: a ``TcpConnection``,
        over TLS with a session it reads and writes through (``tls.TlsSession``), over
        WebSocket with one that frames its messages (``ws.WsSession``)."""
        driver = self._driver
        assert driver is not None
        config = self.config
        max_size, max_write = config.max_message_size, config.max_tcp_write_buffer
        if transport == "tcp":
            return lambda: TcpConnection(driver, max_size, max_write)
        secure = None
        if transport in ("tls", "wss"):
            assert self.tls is not None
            secure = TlsSessions(self.tls.context, self.guard)
        framing = None
        if transport in ("ws", "wss"):
            origins = config.ws_origins
            if origins is None and not is_loopback(config.host):
                origins = ()  # exposed: browsers only from the origins named
            framing = WsSessions(config.ws_path, origins, max_size, self.guard)
        return lambda: TcpConnection(driver, max_size, max_write, transport, secure, framing)

    def _start_media(self, loop: asyncio.AbstractEventLoop) -> None:
        """Media sessions for answered calls: the table in the core, the sockets here.
        ``--stateless`` keeps nothing per call, so no media session either."""
        config = self.config
        if config.stateless:
            return
        low, high = config.rtp_ports
        # Each session holds two sockets: room for them under the open-file limit.
        fits = (_open_files(2 * config.max_media_sessions + _FD_RESERVE) - _FD_RESERVE) // 2
        limit = max(1, min(config.max_media_sessions, fits, (high - low + 1) // 2))
        if limit < config.max_media_sessions:
            log.info("media sessions: at most %d at once (the ports or the open files)", limit)
        media = MediaDriver(loop, config.host, low, high)
        table = MediaTable(
            media.ports,
            lambda: int.from_bytes(os.urandom(4), "big"),
            limit=limit,
            timeout=config.media_timeout,
            longest=config.media_max_duration,
            no_rtp_after=config.rtp_wait,
            wall_offset=self.endpoint.recorder.wall_offset,
        )
        media.attach(table, self.endpoint.use_media(table))
        self._media = media
        assert self._driver is not None
        self._driver.media = media

    def _limit_connections(self) -> None:
        """Make room for --max-connections under the open-file limit (raising the soft
        limit when the hard one allows), or lower the limit to what fits, with a warning:
        past it, accept() would fail with EMFILE instead of a connection being refused."""
        wanted = self.config.max_connections
        fits = _open_files(wanted + _FD_RESERVE) - _FD_RESERVE
        if fits < wanted:
            self.guard.max_connections = max(1, fits)
            log.warning(
                "--max-connections %d does not fit the open-file limit: at most %d TCP "
                "connections (raise it with ulimit -n)",
                wanted,
                self.guard.max_connections,
            )

    def _bind(self, family: socket.AddressFamily, port: int) -> list[tuple[str, socket.socket]]:
        """Bind the sockets; with port 0 the first of UDP and TCP picks and the other
        follows it.  TLS, WS and WSS have ports of their own (``Config.listen_port``)."""
        socks: list[tuple[str, socket.socket]] = []
        try:
            for transport in self.config.transports:
                shared = transport in ("udp", "tcp")
                wanted = port if shared else self.config.listen_port(transport)
                if transport == "udp":
                    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
                else:
                    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted
                    # sockets only then; without it Nagle holds back the 180 behind the 100.
                    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                socks.append((transport, sock))
                if family == socket.AF_INET6:
                    # "::" listens on IPv4 too (dual stack); "::1" is IPv6 only anyway.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                if self.config.reuse_port:
                    # --workers: the kernel spreads datagrams and connections over the
                    # workers by the peer's address and port.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if transport != "udp":
                    # Not for UDP: there SO_REUSEADDR would let two servers share a port.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                elif self.config.socket_buffer:
                    _size_buffers(sock, self.config.socket_buffer)
                try:
                    sock.bind((self.config.host, wanted))
                except OSError as exc:
                    raise OSError(
                        exc.errno,
                        f"cannot listen on {transport} "
                        f"{hostport(self.config.host, wanted)}: {exc.strerror}",
                    ) from None
                if transport != "udp":
                    sock.listen(1024)
                sock.setblocking(False)
                if shared:
                    port = sock.getsockname()[1]
        except BaseException:
            for _, sock in socks:
                sock.close()
            raise
        return socks

    @property
    def draining(self) -> bool:
        """True once a graceful stop began (``drain``)."""
        return self.endpoint.draining

    async def drain(self, timeout: float, stop_now: asyncio.Event) -> None:
        """Graceful stop: accept nothing new, let what is in flight finish, then return.

        New TCP connections are refused (the listener closes) and a new out-of-dialog
        request on an open socket gets 503 with Retry-After (RFC 3261 §21.5.4), so the
        client can go elsewhere at once; requests in a dialog, retransmissions, ACK and
        CANCEL are still served.  It waits until every transaction has sent its final
        response and, for an INVITE, got its ACK (so a lost final can still be resent), for
        ``timeout`` seconds at most or until ``stop_now`` is set; what still rings then
        gets 503.  Finally each TCP connection is closed after what was written to it.
        """
        driver = self._driver
        if driver is None:
            return
        loop = asyncio.get_running_loop()
        self.endpoint.draining = True
        self._stop_listening_tcp()
        deadline = loop.time() + timeout
        left = unfinished(self.endpoint.table.transactions.values())
        if left:
            log.info(
                "stopping: %d transaction%s in flight get up to %g s to finish; new requests "
                "get 503 (a second signal stops at once)",
                left,
                "" if left == 1 else "s",
                timeout,
            )
        while left and not stop_now.is_set():
            wait = min(_DRAIN_POLL, deadline - loop.time())
            if wait <= 0:
                ended = driver.endpoint.end_pending(loop.time())
                driver.send(ended)
                log.warning(
                    "stopping: --drain-timeout %g s is up; %d request%s still ringing got 503",
                    timeout,
                    len(ended),
                    "" if len(ended) == 1 else "s",
                )
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_now.wait(), wait)
            left = unfinished(self.endpoint.table.transactions.values())
        await driver.close_connections(0.0 if stop_now.is_set() else _FLUSH_TIMEOUT)

    def close(self) -> None:
        if self.journal_file is not None:
            self.journal_file.close()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        self._stop_listening_tcp()
        if self._driver is not None:
            self._driver.close()
        if self._wire is not None:
            self._wire.close()
        if self._media is not None:
            self._media.close()
            self._media = None

    def _stop_listening_tcp(self) -> None:
        """Refuse new stream connections (TCP, TLS, WS, WSS); those accepted stay
        (``wait_closed``)."""
        for listener in self._streams:
            listener.close()
        self._closing.extend(self._streams)
        self._streams = []

    async def wait_closed(self) -> None:
        closing, self._closing = self._closing, []
        for listener in closing:
            await listener.wait_closed()


def unfinished(transactions: Iterable[ServerTransaction]) -> int:
    """Transactions a graceful stop waits for: a plan still running, or an INVITE whose
    final response awaits its ACK (a non-INVITE after its final only absorbs copies)."""
    count = 0
    for txn in transactions:
        state = txn.state
        if state in _RUNNING or (txn.invite and state in _AWAITING_ACK):
            count += 1
    return count


_RUNNING = (State.TRYING, State.PROCEEDING)
_AWAITING_ACK = (State.COMPLETED, State.ACCEPTED)


def _open_files(wanted: int) -> int:
    """The soft open-file limit, raised towards ``wanted`` as far as the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def _size_buffers(sock: socket.socket, size: int) -> None:
    """Ask for ``size``-byte UDP buffers; say so once when the kernel grants less (it caps
    them at net.core.rmem_max / wmem_max unless the process may force them)."""
    granted = []
    for opt, force, sysctl in (
        (socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None), "net.core.rmem_max"),
        (socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None), "net.core.wmem_max"),
    ):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        if force is not None and _buffer_size(sock, opt) < size:
            with contextlib.suppress(OSError):  # allowed with CAP_NET_ADMIN only
                sock.setsockopt(socket.SOL_SOCKET, force, size)
        got = _buffer_size(sock, opt)
        if got < size:
            granted.append(f"{got} bytes (raise {sysctl})")
    if granted:
        log.info("--socket-buffer %d: the kernel granted %s", size, ", ".join(granted))


def _buffer_size(sock: socket.socket, opt: int) -> int:
    """The buffer size the kernel granted: Linux reports twice what was set (its
    bookkeeping overhead), so a size capped at rmem_max reads as up to 2 × rmem_max."""
    return int(sock.getsockopt(socket.SOL_SOCKET, opt)) // 2


def _family(host: str) -> socket.AddressFamily:
    try:
        info = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(errno.EADDRNOTAVAIL, f"cannot listen on {host}: {exc.strerror}") from None
    return info[0][0]


def listener_line(transport: str, host: str, port: int) -> str:
    """``listening udp 127.0.0.1:5060`` — what the CLI prints when ready."""
    return f"listening {transport} {hostport(host, port)}"
