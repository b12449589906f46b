"""The one configuration object.

What belongs here: ``Config``, a frozen dataclass with a docstring per field, and its
validation.  The CLI turns flags into a ``Config``; everything else only reads it.  Pure
data: imports ``errors`` and ``transaction`` (for the timer defaults) only.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

from ..errors import ConfigError
from .mediaplan import ECHO, MediaMode
from .transaction import Timers

TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")
#: What ``--transport`` listens on unless told otherwise.
DEFAULT_TRANSPORTS = ("udp", "tcp")
#: The default port of each transport that has its own: TLS's is RFC 3261 §19.1.2's;
#: WebSocket's are those WebRTC gateways use (FreeSWITCH's), not RFC 7118's 80 and 443,
#: which need privileges.
DEFAULT_PORTS = {"tls": 5061, "ws": 5066, "wss": 7443}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    """Address to listen on: IPv4, IPv6 (``::1``) or a wildcard (``0.0.0.0``, ``::``)."""

    port: int = 5060
    """Port for UDP and TCP; 0 picks a free one, the same for both (and a free one for
    each other transport whose port is not given)."""

    transports: tuple[str, ...] = DEFAULT_TRANSPORTS
    """Which of ``udp``, ``tcp``, ``tls``, ``ws`` and ``wss`` to listen on."""

    tls_port: int | None = None
    """Port for TLS; None: 5061, or a free one when ``port`` is 0."""

    ws_port: int | None = None
    """Port for SIP over WebSocket (RFC 7118); None: 5066, or a free one when ``port`` is 0."""

    wss_port: int | None = None
    """Port for SIP over secure WebSocket; None: 7443, or a free one when ``port`` is 0."""

    ws_path: str = "/"
    """The path of the WebSocket upgrade; another path gets 404."""

    ws_origins: tuple[str, ...] | None = None
    """``Origin`` values allowed to open a WebSocket (``scheme://host[:port]``).  None:
    any when listening on loopback, else only clients that send none (not browsers)."""

    tls_cert: str | None = None
    """PEM file of the TLS certificate (its chain may follow it); None: a self-signed one
    is made at start for ``host`` and loopback, and its SHA-256 fingerprint logged."""

    tls_key: str | None = None
    """PEM file of the certificate's private key; None: it is in ``tls_cert``."""

    tls_ca: str | None = None
    """PEM file of the certificate authorities a client certificate is checked against."""

    tls_verify_client: bool = False
    """Mutual TLS: a client must present a certificate that ``tls_ca`` signed."""

    max_ring: float = 120.0
    """Seconds a request may stay without a final response before it gets 408."""

    max_message_size: int = 65536
    """Largest message accepted, in bytes; larger ones get 513 (or the TCP
    connection is closed)."""

    max_transactions: int = 100_000
    """Transactions that may still send something (Proceeding, Completed before the ACK,
    a 2xx being resent, a delayed answer), kept at once; beyond it new requests get 503."""

    max_transaction_bytes: int = 512 << 20
    """What the transactions may hold, each counted as 6 times its request's length plus
    3 KiB (once answered: twice its final response's plus 1.5 KiB); a new request past it
    gets 503, as past ``max_transactions``."""

    max_absorbers: int = 131_072
    """Ended transactions kept as a bare key to absorb retransmissions, in each of two
    tables: INVITEs ACKed after a non-2xx (Timer I, RFC 3261 §17.2.1) and INVITEs whose
    2xx was ACKed (Timer L, RFC 6026 §8.7).  When one is full its oldest key goes."""

    max_headers: int = 256
    """Header lines a message may have (folded lines count); more get 513."""

    max_header_line: int = 8192
    """Bytes a line of the header section may have (start line included); longer, 513."""

    max_connections: int = 10_000
    """TCP connections open at once (also capped by the open-file limit); a new one
    beyond it is closed at once."""

    max_connections_per_source: int = 2000
    """TCP connections one source (an address, an IPv6 /64) may hold open at once."""

    tcp_idle_timeout: float = 300.0
    """Seconds a TCP connection may go without any traffic either way before it is
    closed (RFC 5626 keep-alives count; a ringing call repeats its 180 each minute)."""

    message_timeout: float = 10.0
    """Seconds a TCP peer has to complete a message once it began one — and to send its
    first one after connecting — before the connection is closed (slow-loris)."""

    max_tcp_write_buffer: int = 1 << 20
    """Bytes of responses queued for a TCP peer that does not read them before the
    connection is dropped."""

    socket_buffer: int = 4 << 20
    """Receive and send buffer asked for on the UDP socket, in bytes (a burst of datagrams
    waits there while the event loop is busy; the kernel may grant less, see
    ``net.core.rmem_max``).  0: the kernel's default."""

    timers: Timers = field(default_factory=Timers)
    """RFC 3261 timers T1, T2, T4, the provisional repeat interval and the ring limit."""

    realm: str = "sipresponder"
    """Realm of the Digest challenge in 401/407 responses."""

    log_level: str = "INFO"
    """Logging threshold: DEBUG, INFO, WARNING or ERROR."""

    log_format: str = "text"
    """``text`` for people, ``json`` (one object per line) for machines."""

    log_rate: float = 100.0
    """Transactions per second above which INFO switches to a once-per-second summary."""

    secret: bytes = b""
    """Key of the To tags and Digest nonces; empty means a random one per process.  Give
    every instance behind a load balancer the same one, so any of them verifies a nonce."""

    rules_file: str | None = None
    """A YAML or JSON rules file (see README); dial-the-code stays the fallback."""

    stateless: bool = False
    """RFC 3261 §8.2.7 stateless mode: one response per request (the plan's last), no 100,
    no delays, no retransmissions, ACK and CANCEL ignored — for maximum-rate load tests."""

    overload_lag: float = 0.5
    """Event-loop lag (seconds) past which new requests are shed with 503; 0 never sheds."""

    overload_retry_after: int = 5
    """Retry-After (seconds) of the 503 sent while shedding load."""

    reuse_port: bool = False
    """Bind with SO_REUSEPORT, to share the port with other workers (``--workers``)."""

    worker_id: int | None = None
    """This process's number among the workers (None: not a worker)."""

    journal_size: int = 1000
    """Calls kept in the journal (the oldest go first); 0 keeps none (the verdicts
    still judge: they keep what they need, ``core/verdicts.py``)."""

    journal_bytes: int = 64 << 20
    """Bytes the journal may hold, messages and their bookkeeping counted (the oldest
    calls go first); a message over 1/4096 of it (at least 4 KiB) is kept cut to its head."""

    journal_file: str | None = None
    """Append every journaled message and violation to this file as JSON lines."""

    journal_file_max: int = 256 << 20
    """Rotate ``journal_file`` at this size, to ``FILE.1`` (one previous file kept); 0
    never rotates."""

    admin: str | None = None
    """``HOST:PORT`` of the admin HTTP API (off when None; loopback unless told)."""

    admin_token: str | None = None
    """Bearer token the admin API requires, when set."""

    allow: tuple[str, ...] = ()
    """Addresses or CIDR blocks (``10.0.0.0/8``, ``2001:db8::/32``) answered; every other
    source is ignored.  Empty: every source is answered."""

    rate_limit: float = 0.0
    """Messages per second a source may send (a token bucket of one second's worth);
    beyond it the source is ignored for ``rate_limit_block`` seconds.  0: no limit."""

    rate_limit_block: float = 10.0
    """Seconds a source that went over ``rate_limit`` is ignored."""

    amplification: float | None = None
    """Over UDP, a source not yet verified (by an ACK carrying our To tag, or a TCP
    connection) is sent at most this many times the bytes received from it, plus a first
    1500.  None: 3 unless listening on loopback (where no source can be spoofed), then
    off; 0: off."""

    amplification_rate: int = 1 << 20
    """With the cap on, bytes a second a source not yet verified may be sent at most,
    whatever it sent (0: no such bound, the factor alone)."""

    media: MediaMode = ECHO
    """What an answered call's media session does unless a rule or the dialled code
    says otherwise: echo, tone, silence, play, record, or ``none`` (no session: the SDP
    names a port nobody listens on, and nothing of the media layer runs)."""

    rtp_ports: tuple[int, int] = (20000, 29999)
    """The ports media sessions take, low and high: an even port for RTP, the next for
    RTCP (RFC 3550 §11).  With ``--workers`` each worker takes its share."""

    max_media_sessions: int = 1000
    """Media sessions at once (each two sockets; also capped by the ports and the
    open-file limit); a call answered beyond it gets no session."""

    media_timeout: float = 60.0
    """Seconds a media session may go without a packet from the client before it ends."""

    media_max_duration: float = 3600.0
    """Seconds a media session lasts at most, whatever the signalling does."""

    rtp_wait: float = 5.0
    """The verdict "no RTP from the client" is given when none came this many seconds
    after the ACK."""

    drain_timeout: float = 5.0
    """Seconds a graceful stop (SIGTERM, SIGINT) lets transactions in flight finish their
    plan; what still rings then gets 503.  0 stops at once."""

    def listen_port(self, transport: str) -> int:
        """The port ``transport`` is to listen on (0: a free one)."""
        given = {"tls": self.tls_port, "ws": self.ws_port, "wss": self.wss_port}
        if transport not in given:
            return self.port
        port = given[transport]
        if port is not None:
            return port
        return 0 if self.port == 0 else DEFAULT_PORTS[transport]

    def _validate_transport_flags(self) -> None:
        """The flags of TLS and WebSocket: each with its transport, ports apart."""
        named = self.transports
        tls = "tls" in named or "wss" in named
        web = "ws" in named or "wss" in named
        for flag, given, needs, which in (
            ("--tls-port", self.tls_port is not None, "tls" in named, "tls"),
            ("--tls-cert", self.tls_cert, tls, "tls or wss"),
            ("--tls-key", self.tls_key, tls, "tls or wss"),
            ("--tls-ca", self.tls_ca, tls, "tls or wss"),
            ("--tls-verify-client", self.tls_verify_client, tls, "tls or wss"),
            ("--ws-port", self.ws_port is not None, "ws" in named, "ws"),
            ("--wss-port", self.wss_port is not None, "wss" in named, "wss"),
            ("--ws-path", self.ws_path != "/", web, "ws or wss"),
            ("--ws-origin", self.ws_origins is not None, web, "ws or wss"),
        ):
            if given and not needs:
                raise ConfigError(f"{flag}: {which} is not among --transport {','.join(named)}")
        for flag, port in (
            ("--tls-port", self.tls_port),
            ("--ws-port", self.ws_port),
            ("--wss-port", self.wss_port),
        ):
            if port is not None and not 0 <= port <= 65535:
                raise ConfigError(f"{flag}: {port} is not a port number (0-65535)")
        if self.tls_key and not self.tls_cert:
            raise ConfigError("--tls-key: give its certificate with --tls-cert")
        if self.tls_verify_client and not self.tls_ca:
            raise ConfigError("--tls-verify-client: give the authorities to check with --tls-ca")
        if not self.ws_path.startswith("/") or any(c in self.ws_path for c in " ?#"):
            raise ConfigError(f"--ws-path: {self.ws_path!r} is not a path like / or /ws")
        for origin in self.ws_origins or ():
            scheme, sep, rest = origin.partition("://")
            if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
                raise ConfigError(
                    f"--ws-origin: {origin!r} is not an origin like https://app.example.com"
                )
        ports = [(t, self.listen_port(t)) for t in named if t != "udp"]
        for i, (t, port) in enumerate(ports):
            for other, other_port in ports[:i]:
                if port != 0 and port == other_port:
                    raise ConfigError(
                        f"--transport: {other} and {t} would both listen on port {port}"
                    )

    def validate(self) -> Config:
        """Return self, or raise ``ConfigError`` naming the field and the problem."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port: {self.port} is not a port number (0-65535)")
        names = ", ".join(TRANSPORTS)
        if not self.transports:
            raise ConfigError(f"--transport: name at least one of {names}")
        for t in self.transports:
            if t not in TRANSPORTS:
                raise ConfigError(f"--transport: unknown transport {t!r} (use {names})")
        if len(set(self.transports)) != len(self.transports):
            raise ConfigError("--transport: a transport is named twice")
        self._validate_transport_flags()
        if not (math.isfinite(self.max_ring) and 0 < self.max_ring <= 86400):
            raise ConfigError(f"--max-ring: {self.max_ring:g} is not in 0-86400 seconds")
        if not 1024 <= self.max_message_size <= 16 * 1024 * 1024:
            raise ConfigError("--max-message-size: must be between 1024 and 16777216 bytes")
        if not math.isfinite(self.overload_lag) or self.overload_lag < 0:
            raise ConfigError("--overload-lag: must be 0 (off) or more seconds")
        for text in self.allow:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ConfigError(
                    f"--allow: {text!r} is not an address or CIDR block "
                    "(like 192.0.2.0/24 or 2001:db8::/32)"
                ) from None
        if not math.isfinite(self.rate_limit) or self.rate_limit < 0:
            raise ConfigError("--rate-limit: must be 0 (off) or more messages per second")
        if not (math.isfinite(self.rate_limit_block) and 0 < self.rate_limit_block <= 86400):
            raise ConfigError("rate_limit_block: must be in 0-86400 seconds")
        amp = self.amplification
        if amp is not None and not (math.isfinite(amp) and (amp == 0 or 1 <= amp <= 100)):
            raise ConfigError("--amplification-limit: must be 0 (off) or a factor from 1 to 100")
        if not 0 <= self.amplification_rate <= 1 << 30:
            raise ConfigError("--amplification-rate: must be 0 (no bound) to 1073741824 bytes")
        if not (math.isfinite(self.drain_timeout) and 0 <= self.drain_timeout <= 3600):
            raise ConfigError(f"--drain-timeout: {self.drain_timeout:g} is not in 0-3600 seconds")
        if self.journal_size < 0:
            raise ConfigError("--journal-size: must be 0 or more")
        if not 1 << 20 <= self.journal_bytes <= 1 << 40:
            raise ConfigError(
                f"--journal-bytes: {self.journal_bytes} is not between 1 MiB (1048576) and 1 TiB"
            )
        if self.journal_file_max and not 1 << 16 <= self.journal_file_max <= 1 << 50:
            raise ConfigError(
                f"--journal-file-max: {self.journal_file_max} is not 0 (never rotate) or at "
                "least 64 KiB (65536)"
            )
        if self.max_transactions < 1:
            raise ConfigError("--max-transactions: must be at least 1")
        if not 1 << 20 <= self.max_transaction_bytes <= 1 << 40:
            raise ConfigError(
                f"--max-transaction-bytes: {self.max_transaction_bytes} is not between 1 MiB "
                "(1048576) and 1 TiB"
            )
        if self.max_absorbers < 1:
            raise ConfigError("--max-absorbers: must be at least 1")
        low, high = self.rtp_ports
        if not (1024 <= low < high <= 65535):
            raise ConfigError(
                f"--rtp-ports: {low}-{high} is not a range of ports from 1024 to 65535"
            )
        if not 1 <= self.max_media_sessions <= 100_000:
            raise ConfigError("--max-media-sessions: must be from 1 to 100000")
        for flag, seconds in (
            ("--media-timeout", self.media_timeout),
            ("--media-max-duration", self.media_max_duration),
            ("--rtp-wait", self.rtp_wait),
        ):
            if not (math.isfinite(seconds) and 0 < seconds <= 86400):
                raise ConfigError(f"{flag}: {seconds:g} is not in 0-86400 seconds")
        for flag, value, least in (
            ("--max-headers", self.max_headers, 16),
            ("--max-header-line", self.max_header_line, 256),
            ("--max-connections", self.max_connections, 1),
            ("--max-connections-per-source", self.max_connections_per_source, 1),
            ("--max-tcp-write-buffer", self.max_tcp_write_buffer, 65536),
        ):
            if value < least:
                raise ConfigError(f"{flag}: {value} is below the least allowed, {least}")
        if self.socket_buffer and not 4096 <= self.socket_buffer <= 1 << 30:
            raise ConfigError(
                f"--socket-buffer: {self.socket_buffer} is not 0 (the kernel's default) "
                "or 4096-1073741824 bytes"
            )
        for flag, seconds in (
            ("--tcp-idle-timeout", self.tcp_idle_timeout),
            ("--message-timeout", self.message_timeout),
        ):
            if not (math.isfinite(seconds) and 0 < seconds <= 86400):
                raise ConfigError(f"{flag}: {seconds:g} is not in 0-86400 seconds")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level: {self.log_level!r} is not one of {LOG_LEVELS}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"--log-format: {self.log_format!r} is not text or json")
        if not math.isfinite(self.log_rate) or self.log_rate <= 0:
            raise ConfigError("--log-rate: must be above 0")
        return self
