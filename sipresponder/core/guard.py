"""Who may talk to the responder, and how much: decisions per source address.

What belongs here: ``Guard``, fed by the transport with a source address, a byte count
and ``now`` for every message received and every UDP datagram to be sent; it says yes or
no.  It holds the allow list (``--allow``), a token bucket per source (``--rate-limit``),
the anti-amplification budget of sources that have not shown they receive our responses
(RFC 9000 §8.1 in spirit: at most a factor of what they sent), and the limits on what a
peer may make us hold: TCP connections in all and per source, header lines and their
length; ``Watch`` decides when a TCP connection has idled or taken too long over a
message (slow-loris).  A source is an
IPv4 address or an IPv6 /64 (one host holds a whole /64).  Every table is bounded: two
generations of at most ``max_sources / 2`` entries each, the older dropped when the newer
fills, so a flood of spoofed addresses costs memory once, not without end.  Pure: no
sockets, no clock, no SIP; logs a refusal once per source and kind per ``LOG_INTERVAL``.
Imports nothing from the package but ``config``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging

from .config import Config

log = logging.getLogger(__name__)

#: Sources remembered at most (both generations together).
MAX_SOURCES = 65536
#: Bytes an unverified source may be sent before it sent anything (one datagram's worth:
#: the answer to a small INVITE — 100, 180 and a 200 with an SDP offer — fits in it).
FIRST_CREDIT = 1500
#: Unspent budget a source may bank (so a long quiet run cannot buy a burst later).
MAX_CREDIT = 65536
#: A refusal is logged once per source and kind in this many seconds...
LOG_INTERVAL = 60.0
#: ...and at most this many such lines a second in all; the rest are counted only.
LOG_RATE = 10
#: The anti-amplification factor when ``Config.amplification`` is None (automatic).
DEFAULT_AMPLIFICATION = 3.0
#: Bytes a second an unverified source may be sent at most, whatever it sent us.
DEFAULT_UNVERIFIED_RATE = 1 << 20


class Source:
    """What the guard knows of one source address (or IPv6 /64)."""

    __slots__ = (
        "allowed",
        "blocked_until",
        "credit",
        "second",
        "sent",
        "stamp",
        "tokens",
        "verified",
    )

    def __init__(self, allowed: bool, tokens: float, now: float, credit: float) -> None:
        self.allowed = allowed
        self.tokens = tokens
        self.stamp = now
        self.blocked_until = 0.0
        self.credit = credit
        self.verified = False
        #: Bytes sent to it (while unverified) in the second ``second``.
        self.second = -1
        self.sent = 0


class Watch:
    """The clock of one TCP connection, read by a periodic sweep: the transport only sets
    flags (``active`` on any traffic, ``done`` counts whole messages, ``pending`` while a
    message is incomplete or none came yet), so reading and writing cost no clock call.
    """

    __slots__ = ("active", "done", "last_active", "pending", "seen", "since")

    def __init__(self, now: float) -> None:
        self.active = False
        self.pending = True  # the first message is due
        self.done = 0
        self.seen = 0
        self.last_active = now
        self.since: float | None = now

    def check(self, now: float, idle: float, message_time: float) -> str | None:
        """``idle`` or ``message_time`` when the connection is to be closed, else None."""
        if self.active:
            self.active = False
            self.last_active = now
        elif now - self.last_active >= idle:
            return "idle"
        if not self.pending:
            self.since = None
        elif self.since is None or self.done != self.seen:
            self.since = now  # a message began since the last look (or one completed)
            self.seen = self.done
        elif now - self.since >= message_time:
            return "message_time"
        return None


class Guard:
    """Allow list, rate limit, anti-amplification and the limits, per source.  See the
    module doc.

    ``screens`` says whether received messages need ``admit`` at all and ``caps`` whether
    UDP sends need ``may_send``: with neither configured the transport skips those (the
    limits are checked either way, at a cost of a comparison or two per message).
    """

    def __init__(
        self,
        *,
        allow: tuple[str, ...] = (),
        rate: float = 0.0,
        block: float = 10.0,
        amplification: float = 0.0,
        unverified_rate: int = DEFAULT_UNVERIFIED_RATE,
        max_sources: int = MAX_SOURCES,
        max_headers: int = 256,
        max_header_line: int = 8192,
        max_message_size: int = 65536,
        max_connections: int = 10_000,
        max_connections_per_source: int = 2000,
    ) -> None:
        self.networks = tuple(ipaddress.ip_network(text, strict=False) for text in allow)
        self.rate = rate
        self.burst = max(rate, 1.0)
        self.block = block
        self.amplification = amplification
        #: With the cap on, bytes a second an unverified source may be sent (0: no bound).
        self.unverified_rate = unverified_rate
        # An IPv6 source is its /64, unless the allow list names something narrower.
        narrow = any(n.version == 6 and n.prefixlen > 64 for n in self.networks)
        self._v6_bits = 128 if narrow else 64
        self._half = max(1, max_sources // 2)
        self._new: dict[str, Source] = {}
        self._old: dict[str, Source] = {}
        self._told: dict[tuple[str, str], float] = {}
        self._told_second = (-1, 0)
        self._now = 0.0  # of the latest message, for logging what may_send holds back
        self.screens = bool(self.networks) or rate > 0 or amplification > 0
        self.caps = amplification > 0
        #: Counters for the metrics.
        self.stats: dict[str, int] = {
            "not_allowed": 0,  # messages (and TCP connections) from outside --allow
            "rate_limited": 0,  # messages ignored while their source is blocked
            "blocked": 0,  # times a source went over --rate-limit
            "held": 0,  # UDP datagrams not sent to an unverified source
            "held_bytes": 0,
            "verified": 0,  # sources verified
            "tls_failed": 0,  # TLS connections closed for a failed handshake
        }
        self.max_headers = max_headers
        self.max_header_line = max_header_line
        self.max_message_size = max_message_size
        #: Only a message longer than this goes to ``header_problem``: shorter, it has no
        #: line over ``max_header_line``, is not over ``max_message_size``, and holds more
        #: than ``max_headers`` header lines only if they average under 8 bytes ("X: 1").
        self.long_message = min(max_header_line, max_message_size, 8 * max_headers)
        self.max_connections = max_connections
        self.max_connections_per_source = max_connections_per_source
        #: TCP connections open, in all and per source.
        self.connections = 0
        self._conns: dict[str, int] = {}
        #: Limits hit, by limit (see ``LIMITS``), for the metrics.
        self.limit_hits: dict[str, int] = dict.fromkeys(LIMITS, 0)

    @classmethod
    def from_config(cls, config: Config, loopback: bool) -> Guard:
        """The guard ``config`` asks for; ``loopback``: we listen on loopback only."""
        amplification = config.amplification
        if amplification is None:
            amplification = 0.0 if loopback else DEFAULT_AMPLIFICATION
        return cls(
            allow=config.allow,
            rate=config.rate_limit,
            block=config.rate_limit_block,
            amplification=amplification,
            unverified_rate=config.amplification_rate,
            max_headers=config.max_headers,
            max_header_line=config.max_header_line,
            max_message_size=config.max_message_size,
            max_connections=config.max_connections,
            max_connections_per_source=config.max_connections_per_source,
        )

    # ------------------------------------------------------------ per message

    def admit(self, host: str, size: int, now: float) -> Source | None:
        """A message of ``size`` bytes from ``host`` at ``now``: its source if it is to be
        handled, None if it is to be ignored."""
        self._now = now
        src = self._new.get(host if ":" not in host else _v6_source(host, self._v6_bits))
        if src is None:
            src = self._source(host, now)
        if not src.allowed:
            self._outsider(host, now)
            return None
        rate = self.rate
        if rate:
            if now < src.blocked_until:
                self.stats["rate_limited"] += 1
                return None
            tokens = src.tokens + (now - src.stamp) * rate
            if tokens > self.burst:
                tokens = self.burst
            src.stamp = now
            if tokens < 1.0:
                # Blocked; afterwards the bucket refills from empty, from the block's end:
                # a flood let back in with a full second's burst would get that burst
                # handled every cycle (found by make soak).
                src.tokens = 0.0
                src.blocked_until = now + self.block
                src.stamp = src.blocked_until
                self.stats["blocked"] += 1
                self.stats["rate_limited"] += 1
                self.tell(
                    "rate",
                    host,
                    now,
                    f"ignoring %s for {self.block:g} s: over --rate-limit {rate:g}/s",
                )
                return None
            src.tokens = tokens - 1.0
        if self.amplification and not src.verified:
            credit = src.credit + size * self.amplification
            src.credit = credit if credit < MAX_CREDIT else MAX_CREDIT
        return src

    def accept(self, host: str, now: float) -> bool:
        """A TCP connection from ``host``: whether to keep it.  Its handshake showed that
        the address receives what we send, so the source is verified."""
        src = self._source(host, now)
        if not src.allowed:
            self._outsider(host, now)
            return False
        if now < src.blocked_until:
            self.stats["rate_limited"] += 1
            return False
        self.verify(src)
        return True

    def may_send(self, host: str, size: int) -> bool:
        """Whether ``size`` bytes may go to ``host`` over UDP (anti-amplification)."""
        key = self.key(host)
        src = self._new.get(key) or self._old.get(key)
        if src is not None:
            if src.verified:
                return True
            if src.credit >= size:
                # And never more than ``unverified_rate`` bytes a second, whatever it sent:
                # its requests may carry a victim's spoofed address.
                second = int(self._now)
                if src.second != second:
                    src.second = second
                    src.sent = 0
                limit = self.unverified_rate
                if not limit or src.sent + size <= limit:
                    src.sent += size
                    src.credit -= size
                    return True
        self.stats["held"] += 1
        self.stats["held_bytes"] += size
        self.tell(
            "amplification",
            host,
            self._now,
            "holding back responses to %s: it has not shown that it receives them (no ACK "
            f"with our To tag yet), and it is sent at most {self.amplification:g}x what it sent",
        )
        return False

    def verify(self, src: Source) -> None:
        """The source (from ``admit``) showed that it receives our responses: no cap on
        it any more."""
        if not src.verified:
            src.verified = True
            self.stats["verified"] += 1

    # ---------------------------------------------------------------- limits

    def connect(self, host: str, now: float) -> bool:
        """A TCP connection from ``host`` was accepted: whether to keep it (allowed, its
        source not blocked, under the connection limits).  Kept ones are counted until
        ``disconnect``."""
        if self.screens and not self.accept(host, now):
            return False
        if self.connections >= self.max_connections:
            self.hit("connections", host, now, f"--max-connections {self.max_connections}")
            return False
        key = self.key(host)
        count = self._conns.get(key, 0)
        if count >= self.max_connections_per_source:
            self.hit(
                "connections_per_source",
                host,
                now,
                f"--max-connections-per-source {self.max_connections_per_source}",
            )
            return False
        self._conns[key] = count + 1
        self.connections += 1
        return True

    def disconnect(self, host: str) -> None:
        """A connection that ``connect`` kept is gone."""
        key = self.key(host)
        count = self._conns.get(key, 0) - 1
        if count > 0:
            self._conns[key] = count
        else:
            self._conns.pop(key, None)
        self.connections -= 1

    def header_problem(self, data: bytes, host: str, now: float) -> tuple[int, str] | None:
        """The status and reason to answer a message whose header section breaks
        ``max_headers`` or ``max_header_line`` with, else None.

        The transport calls it only for a message over ``long_message`` bytes, so the
        common message costs one comparison, and scanning it costs a microsecond or two
        where it is long.  A message over ``max_message_size`` is only counted here: the
        parser answers it (513).
        """
        if len(data) > self.max_message_size:
            self.hit("message_size", host, now, f"--max-message-size {self.max_message_size}")
            return None
        data = data.lstrip(b"\r\n")  # §7.5: empty lines before the start line
        ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
        lines = data[: min(ends) if ends else len(data)].split(b"\n")
        if len(lines) - 1 > self.max_headers:  # the start line is not a header
            self.hit("headers", host, now, f"--max-headers {self.max_headers}")
            return 513, "Too Many Header Lines"
        if len(max(lines, key=len).rstrip(b"\r")) > self.max_header_line:
            self.hit("header_line", host, now, f"--max-header-line {self.max_header_line}")
            return 513, "Header Line Too Long"
        return None

    def hit(self, limit: str, host: str, now: float, what: str) -> None:
        """Count a limit hit by ``host`` and log it once per source a minute."""
        self.limit_hits[limit] += 1
        self.tell(limit, host, now, f"%s hit {what}: {LIMITS[limit]}")

    # ----------------------------------------------------------------- inside

    def key(self, host: str) -> str:
        """The source ``host`` belongs to: itself (IPv4), its /64 (IPv6)."""
        if ":" not in host:
            return host
        return _v6_source(host, self._v6_bits)

    def allowed(self, host: str) -> bool:
        networks = self.networks
        if not networks:
            return True
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in networks)

    def _outsider(self, host: str, now: float) -> None:
        self.stats["not_allowed"] += 1
        self.tell("not-allowed", host, now, "ignoring %s: not in --allow")

    def _source(self, host: str, now: float) -> Source:
        key = host if ":" not in host else _v6_source(host, self._v6_bits)
        src = self._new.get(key)
        if src is not None:
            return src
        src = self._old.pop(key, None)
        if src is None:
            src = Source(self.allowed(host), self.burst, now, FIRST_CREDIT)
        if len(self._new) >= self._half:
            self._old = self._new
            self._new = {}
        self._new[key] = src
        return src

    def tell(self, kind: str, host: str, now: float, message: str) -> None:
        """Log ``message % host`` at most once per (kind, source) per ``LOG_INTERVAL`` and
        ``LOG_RATE`` lines a second in all."""
        told_key = (kind, self.key(host))
        last = self._told.get(told_key)
        if last is not None and now - last < LOG_INTERVAL:
            return
        second, count = self._told_second
        if int(now) != second:
            second, count = int(now), 0
        if count >= LOG_RATE:
            return
        self._told_second = (second, count + 1)
        if len(self._told) >= MAX_SOURCES:
            self._told.clear()
        self._told[told_key] = now
        log.warning(message + " (said once a minute per source)", host)


#: The limits ``Guard.hit`` counts, and what hitting each does.
LIMITS = {
    "message_size": "answered 513 (over TCP, then closed)",
    "headers": "answered 513",
    "header_line": "answered 513",
    "connections": "TCP connection closed at once",
    "connections_per_source": "TCP connection closed at once",
    "idle": "idle TCP connection closed",
    "message_time": "TCP connection closed: its message took too long to arrive",
    "write_buffer": "TCP connection closed: it does not read its responses",
}


@functools.lru_cache(maxsize=4096)
def _v6_source(host: str, bits: int) -> str:
    """An IPv6 address's source key: its /``bits`` network; an IPv4-mapped one's IPv4."""
    text = host.split("%", 1)[0]
    try:
        ip = ipaddress.IPv6Address(text)
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, bits), strict=False).network_address)


def exposure_warning(host: str, allow: tuple[str, ...]) -> str | None:
    """The warning to log when listening beyond loopback with no ``--allow``."""
    if allow or is_loopback(host):
        return None
    return (
        f"listening on {host}, beyond loopback, with no --allow: every host that can reach "
        "it is answered (see 'Running it exposed' in the README)"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
