"""The command line: flags -> ``Config`` -> ``Server``; exit codes 0 and 2.

What belongs here: argument parsing, turning every bad flag or unusable address into one
line on standard error with exit code 2, printing one ``listening ...`` line per listener
(and ``admin http://...`` with ``--admin``) when ready, and stopping cleanly (exit 0) on
SIGINT/SIGTERM: the first drains what is in flight (``--drain-timeout``), a second stops
at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from .admin.app import Admin
from .aio.logs import TransactionLog, setup_logging
from .aio.server import Server, listener_line, read_rules
from .aio.tuning import tune_gc, tune_malloc
from .aio.workers import supervise, worker_count
from .cli_transports import add_transport_arguments, transport_fields
from .core.config import Config
from .core.guard import exposure_warning
from .core.mediaplan import MediaMode, parse_media
from .errors import ConfigError, RulesError
from .native import build as core_build
from .native import stale as stale_core
from .version import __version__

log = logging.getLogger(__name__)
PROG = "sipresponder"
#: Stop signals this close together are one stop (delivered twice), not "stop at once".
SAME_STOP = 0.5


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One clear line, not argparse's usage block.
        print(f"{PROG}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number above 0")
    return value


def _rate(text: str) -> float:
    """``--rate-limit``: ``50/s`` or ``50``."""
    try:
        return _positive_float(text[:-2] if text.endswith("/s") else text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate above 0 like 50/s") from None


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _size(text: str) -> int:
    """A number of bytes: ``67108864``, ``64M`` or ``64MiB`` (K, M, G: powers of 1024)."""
    number = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = number[-1:] if number[-1:] in ("K", "M", "G") else ""
    digits = number[: len(number) - len(unit)]
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 67108864 or 64M")
    return int(digits) * _UNITS[unit]


def _bytes_option(p: argparse.ArgumentParser, flag: str, default: int, text: str) -> None:
    """A flag that takes a number of bytes; its help ends with the default."""
    p.add_argument(
        flag, type=int, default=default, metavar="BYTES", help=f"{text} (default {default})"
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="A stateless SIP responder: dial the code you want back "
        "(INVITE sip:486@host -> 100 Trying, 486 Busy Here).",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default %(default)s; ::1 or :: for IPv6)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=5060,
        help="port for UDP and TCP (default %(default)s; 0 picks a free one)",
    )
    p.add_argument(
        "--transport",
        default="udp,tcp",
        help="comma-separated transports: udp, tcp, tls, ws, wss (default %(default)s)",
    )
    p.add_argument(
        "--max-ring",
        type=_positive_float,
        default=120.0,
        metavar="SECONDS",
        help="a ringing request gets 408 after this long (default %(default)g)",
    )
    p.add_argument(
        "--max-message-size",
        type=int,
        default=65536,
        metavar="BYTES",
        help="larger messages get 513 (default %(default)s)",
    )
    p.add_argument(
        "--max-transactions",
        type=int,
        default=100_000,
        metavar="N",
        help="transactions that may still send something before new requests get 503 "
        "(default %(default)s)",
    )
    p.add_argument(
        "--max-transaction-bytes",
        type=_size,
        default="512M",
        metavar="SIZE",
        help="what those transactions may hold, each counted as 6 times its request's size "
        "plus 3 KiB, before new requests get 503 (default %(default)s; K, M, G)",
    )
    p.add_argument(
        "--max-absorbers",
        type=int,
        default=131_072,
        metavar="N",
        help="ACKed INVITEs kept as a bare key to absorb retransmissions, per table (Timer "
        "I, Timer L); when full the oldest goes (default %(default)s)",
    )
    p.add_argument(
        "--max-headers",
        type=int,
        default=256,
        metavar="N",
        help="header lines a message may have; more get 513 (default %(default)s)",
    )
    p.add_argument(
        "--max-header-line",
        type=int,
        default=8192,
        metavar="BYTES",
        help="longest line of a header section; longer gets 513 (default %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=10_000,
        metavar="N",
        help="TCP connections open at once; more are closed at once (default %(default)s)",
    )
    p.add_argument(
        "--max-connections-per-source",
        type=int,
        default=2000,
        metavar="N",
        help="TCP connections one address (IPv6: one /64) may hold (default %(default)s)",
    )
    p.add_argument(
        "--tcp-idle-timeout",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="close a TCP connection with no traffic for this long (default %(default)g)",
    )
    p.add_argument(
        "--message-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="close a TCP connection whose message (or first message) takes longer than "
        "this to arrive (default %(default)g)",
    )
    _bytes_option(
        p,
        "--max-tcp-write-buffer",
        1 << 20,
        "responses queued for a TCP peer that does not read them before it is dropped "
        "(its requests are not read from half of it until an eighth is left)",
    )
    _bytes_option(
        p,
        "--socket-buffer",
        4 << 20,
        "UDP receive and send buffer to ask the kernel for (0: the kernel's default)",
    )
    p.add_argument("--realm", default="sipresponder", help="Digest realm of 401/407 challenges")
    p.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument(
        "--log-rate",
        type=_positive_float,
        default=100.0,
        metavar="PER_SECOND",
        help="above this many transactions/s, INFO logs a summary per second (default %(default)g)",
    )
    p.add_argument(
        "--rules",
        metavar="FILE",
        help="YAML or JSON rules file: who gets which answer (SIGHUP reloads it)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="with --rules: validate the file, print one line per rule, exit",
    )
    p.add_argument(
        "--secret",
        default=os.environ.get("SIPRESPONDER_SECRET", ""),
        help="key of To tags and Digest nonces (default: $SIPRESPONDER_SECRET, "
        "else random per process); the same on every instance of a pool",
    )
    p.add_argument(
        "--journal-size",
        type=int,
        default=1000,
        metavar="CALLS",
        help="calls kept in the journal, oldest first out (default %(default)s; 0 keeps none)",
    )
    p.add_argument(
        "--journal-bytes",
        type=_size,
        default="64M",
        metavar="SIZE",
        help="bytes the journal may hold, messages and bookkeeping counted; the oldest calls "
        "go first, and a message over 1/4096 of it is kept cut to its headers "
        "(default %(default)s; K, M, G)",
    )
    p.add_argument(
        "--journal-file",
        metavar="FILE",
        help="append every message and violation to FILE as JSON lines",
    )
    p.add_argument(
        "--journal-file-max",
        type=_size,
        default="256M",
        metavar="SIZE",
        help="rotate --journal-file at this size to FILE.1, keeping that one previous file "
        "(default %(default)s; 0: never)",
    )
    p.add_argument(
        "--admin",
        metavar="HOST:PORT",
        help="serve the admin HTTP API (journal, rules, metrics) there; off by default",
    )
    p.add_argument(
        "--admin-token",
        metavar="TOKEN",
        default=os.environ.get("SIPRESPONDER_ADMIN_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' on the admin API "
        "(default: $SIPRESPONDER_ADMIN_TOKEN)",
    )
    p.add_argument(
        "--overload-lag",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="when the event loop lags this much, new requests get 503 with Retry-After "
        "until it recovers (default %(default)g; 0: never)",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="answer only these sources (an address or a block like 10.0.0.0/8; repeat "
        "for more); others are ignored",
    )
    p.add_argument(
        "--rate-limit",
        type=_rate,
        default=0.0,
        metavar="N/s",
        help="messages per second a source may send; beyond it the source is ignored "
        "for 10 s (default: no limit)",
    )
    p.add_argument(
        "--amplification-limit",
        type=float,
        default=None,
        metavar="FACTOR",
        help="over UDP, send a source that has not ACKed one of our responses at most "
        "FACTOR times what it sent (default: 3, off when listening on loopback; 0: off)",
    )
    _bytes_option(
        p,
        "--amplification-rate",
        1 << 20,
        "with that cap on, and whatever such a source sent, at most BYTES a second to it "
        "(0: no bound)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, let calls in flight finish for up to this long while new "
        "requests get 503; a second signal stops at once (default %(default)g; 0: at once)",
    )
    p.add_argument(
        "--media",
        default="echo",
        metavar="MODE",
        help="what an answered call's media does unless a rule or the dialled code says: "
        "echo, tone, tone:HZ, silence, play:FILE.wav, record:DIR or none "
        "(default %(default)s)",
    )
    p.add_argument(
        "--rtp-ports",
        default="20000-29999",
        metavar="LOW-HIGH",
        help="ports of the media sessions: an even one for RTP, the next for RTCP "
        "(default %(default)s)",
    )
    p.add_argument(
        "--max-media-sessions",
        type=int,
        default=1000,
        metavar="N",
        help="media sessions at once; a call answered beyond it gets none (default %(default)s)",
    )
    p.add_argument(
        "--media-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="end a media session that got no packet for this long (default %(default)g)",
    )
    p.add_argument(
        "--media-max-duration",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="end a media session this long after it began (default %(default)g)",
    )
    p.add_argument(
        "--rtp-wait",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="the verdict 'no RTP from the client' when none came this long after the "
        "ACK (default %(default)g)",
    )
    p.add_argument(
        "--workers",
        default="1",
        metavar="N",
        help="run N processes sharing the port (SO_REUSEPORT); auto: one per core "
        "(default %(default)s)",
    )
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--stateless",
        action="store_true",
        help="answer each request with its plan's last response only: no 100, no delays, "
        "no retransmissions, ACK and CANCEL ignored (RFC 3261 §8.2.7)",
    )
    p.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop: uvloop when installed (auto, the default), or asyncio",
    )
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_transport_arguments(p)
    return p


def media_from_arg(text: str) -> MediaMode:
    """``--media``: a mode's name, or ``tone:HZ``, ``play:FILE``, ``record:DIR``."""
    kind, sep, value = text.partition(":")
    if not sep:
        return parse_media(text, "--media")
    if kind == "tone":
        try:
            return parse_media({"tone": float(value)}, "--media")
        except ValueError:
            raise ConfigError(f"--media: tone:{value}: not a number of Hz") from None
    return parse_media({kind: value}, "--media")


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ConfigError(f"--rtp-ports: {text!r} is not LOW-HIGH, like 20000-29999")
    return int(low), int(high)


def config_from_args(args: argparse.Namespace) -> Config:
    transports = tuple(t.strip().lower() for t in args.transport.split(",") if t.strip())
    return Config(
        media=media_from_arg(args.media),
        rtp_ports=_port_range(args.rtp_ports),
        max_media_sessions=args.max_media_sessions,
        media_timeout=args.media_timeout,
        media_max_duration=args.media_max_duration,
        rtp_wait=args.rtp_wait,
        host=args.host,
        port=args.port,
        transports=transports,
        **transport_fields(args),
        max_ring=args.max_ring,
        max_message_size=args.max_message_size,
        max_transactions=args.max_transactions,
        max_transaction_bytes=args.max_transaction_bytes,
        max_absorbers=args.max_absorbers,
        max_headers=args.max_headers,
        max_header_line=args.max_header_line,
        max_connections=args.max_connections,
        max_connections_per_source=args.max_connections_per_source,
        tcp_idle_timeout=args.tcp_idle_timeout,
        message_timeout=args.message_timeout,
        max_tcp_write_buffer=args.max_tcp_write_buffer,
        socket_buffer=args.socket_buffer,
        realm=args.realm,
        log_level=args.log_level,
        log_format=args.log_format,
        log_rate=args.log_rate,
        secret=args.secret.encode(),
        rules_file=args.rules,
        stateless=args.stateless,
        reuse_port=args.reuse_port,
        worker_id=args.worker_id,
        overload_lag=args.overload_lag,
        journal_size=args.journal_size,
        journal_bytes=args.journal_bytes,
        journal_file=args.journal_file,
        journal_file_max=args.journal_file_max,
        admin=args.admin,
        admin_token=args.admin_token,
        drain_timeout=args.drain_timeout,
        allow=tuple(args.allow),
        rate_limit=args.rate_limit,
        amplification=args.amplification_limit,
        amplification_rate=args.amplification_rate,
    ).validate()


async def _serve(config: Config) -> int:
    tlog = TransactionLog(config.log_rate)
    try:
        server = Server(config, report=tlog)
        admin = Admin(server) if config.admin else None
    except ConfigError as exc:  # a bad rules file, an unwritable journal file, bad --admin
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        await server.start()
        if admin is not None:
            await admin.start()
    except OSError as exc:
        print(f"{PROG}: error: {exc.strerror or exc}", file=sys.stderr)
        server.close()
        await server.wait_closed()
        return 2
    tune_gc()
    tune_malloc()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stop_now = asyncio.Event()
    first_signal = 0.0

    def on_stop_signal() -> None:
        # The first SIGINT/SIGTERM drains (Server.drain); a second one cuts it short —
        # unless it is the same stop seen twice: Ctrl-C reaches --workers both from the
        # terminal and from the supervisor, as systemd's stop does, within milliseconds.
        nonlocal first_signal
        if not stop.is_set():
            first_signal = loop.time()
            stop.set()
            return
        after = loop.time() - first_signal
        if after >= SAME_STOP:
            log.info("another stop signal %.3f s after the first: stopping at once", after)
            stop_now.set()
        else:
            log.info("another stop signal %.3f s after the first: the same stop", after)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop_signal)
    loop.add_signal_handler(signal.SIGHUP, server.reload_rules)
    warning = exposure_warning(config.host, config.allow)
    if warning is not None:
        log.warning("%s", warning)
    # Which core runs (compiled or not) and on which loop: the first things to know when
    # comparing one machine's figures with another's.
    log.log(
        logging.WARNING if stale_core() else logging.INFO,
        "core: %s; event loop: %s",
        core_build(),
        type(loop).__module__.partition(".")[0],
    )
    for transport, host, port in server.listeners:
        print(listener_line(transport, host, port), flush=True)
    if admin is not None:
        print(f"admin {admin.url}", flush=True)

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1.0)
            tlog.tick()
            server.flush_journal()

    ticking = asyncio.create_task(ticker())
    try:
        await stop.wait()
        await server.drain(config.drain_timeout, stop_now)
    finally:
        ticking.cancel()
        tlog.flush()
        if admin is not None:
            await admin.close()
        server.close()
        await server.wait_closed()
    log.info("stopped")
    return 0


def _check(config: Config) -> int:
    """``--check``: validate the rules file and print one summary line per rule."""
    if config.rules_file is None:
        print(f"{PROG}: error: --check needs --rules FILE", file=sys.stderr)
        return 2
    try:
        rules = read_rules(config.rules_file)
    except RulesError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for line in rules.summary():
        print(line)
    for line in rules.warnings:
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    count = len(rules.rules)
    default = " and a default" if rules.default else ""
    print(f"{config.rules_file}: OK, {count} rule{'' if count == 1 else 's'}{default}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        return _check(config)
    try:
        workers = worker_count(args.workers)
    except ValueError:
        print(
            f"{PROG}: error: --workers: {args.workers!r} is not auto or 1 to 256", file=sys.stderr
        )
        return 2
    if workers > 1 and config.worker_id is None:
        return supervise(
            list(sys.argv[1:] if argv is None else argv),
            workers,
            config.host,
            config.port,
            config.transports,
            config.drain_timeout,
        )
    setup_logging(config.log_level, config.log_format, config.worker_id)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            return runner.run(_serve(config))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 0


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when asked for or, with ``auto``, when installed (``pip install
    'sipresponder[fast]'``); else the default asyncio loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            print(
                f"{PROG}: warning: --loop uvloop: uvloop is not installed; using asyncio",
                file=sys.stderr,
            )
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
