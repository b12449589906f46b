"""The hostile load of the soak test (test_soak.py): a flood and a malformed-traffic sender.

Each runs as a process of its own (``python soakload.py flood|malformed HOST PORT
SECONDS``), so that its busy loop shares no interpreter lock with the test that watches
the responder; it prints one JSON line of counts on standard output when its time is up.
Every loop is bounded in count and in time; loopback only.

* ``flood``: one source (``127.0.0.2``) sends OPTIONS and INVITEs (3 to 1) over UDP as
  fast as its loop goes (or at ``--rate`` messages/s), reading back whatever is answered.
* ``malformed``: another source (``127.0.0.3``) sends, at a modest rate, UDP messages that
  are truncated, garbage, of a wrong Content-Length, with an oversized header line, too
  many headers or too large a body, a well-formed OPTIONS among them (a control, which
  must be answered), and over TCP: garbage, a Content-Length promising more than comes,
  connections that send nothing, and slow-loris connections that dribble a request one
  byte at a time.  It counts the answers by code, and times how long each TCP connection
  lived until the responder closed it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

FLOOD_SOURCE = "127.0.0.2"
MALFORMED_SOURCE = "127.0.0.3"
#: Messages sent between two reads of the answers (and two looks at the clock).
BATCH = 64
#: Every loop stops after this many turns, whatever the clock says.
MAX_TURNS = 100_000_000
#: How long a TCP connection of ours may stay open before we give up on the server
#: closing it (it should close it after --message-timeout).
TCP_GIVE_UP = 30.0
#: Malformed TCP connections open at once (slow-loris, idle, incomplete body).
TCP_AT_ONCE = 20


def request(method: str, user: str, host: str, port: int, local: str, n: int) -> bytes:
    """A well-formed request, unique by ``n`` (branch, Call-ID)."""
    return (
        f"{method} sip:{user}@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK-soak-{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:soak@{local}>;tag=s{n}\r\n"
        f"To: <sip:{user}@{host}:{port}>\r\n"
        f"Call-ID: soak-{n}@{local}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def status_of(data: bytes) -> str:
    """``"200"`` for a response's start line, ``"other"`` for anything else."""
    if data.startswith(b"SIP/2.0 ") and data[8:11].isdigit():
        return data[8:11].decode()
    return "other"


def drain(sock: socket.socket, codes: Counter[str]) -> None:
    """Read every datagram waiting on a non-blocking socket, counting them by code."""
    for _ in range(100_000):
        try:
            data = sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # ICMP port unreachable and the like: nothing to read
            return
        codes[status_of(data)] += 1


def udp_socket(local: str) -> tuple[socket.socket, str]:
    """A non-blocking UDP socket bound to ``local`` (any port), and its ``host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((local, 0))
    sock.setblocking(False)
    return sock, "{}:{}".format(*sock.getsockname())


# ------------------------------------------------------------------------ flood


def flood(host: str, port: int, seconds: float, rate: float) -> dict[str, object]:
    """Send OPTIONS and INVITEs (3 to 1) from FLOOD_SOURCE for ``seconds``."""
    sock, local = udp_socket(FLOOD_SOURCE)
    codes: Counter[str] = Counter()
    sent = send_errors = 0
    start = time.monotonic()
    deadline = start + seconds
    for turn in range(MAX_TURNS):
        now = time.monotonic()
        if now >= deadline:
            break
        if rate > 0 and sent >= rate * (now - start):
            time.sleep(min(BATCH / rate, deadline - now))
            continue
        for i in range(BATCH):
            n = turn * BATCH + i
            data = request("INVITE" if n % 4 == 3 else "OPTIONS", "486", host, port, local, n)
            try:
                sock.sendto(data, (host, port))
                sent += 1
            except (BlockingIOError, InterruptedError):
                send_errors += 1  # our own socket buffer is full: the kernel said no
        drain(sock, codes)
    elapsed = time.monotonic() - start
    time.sleep(1.0)  # the last answers
    drain(sock, codes)
    sock.close()
    answered = sum(codes.values())
    return {
        "sent": sent,
        "send_errors": send_errors,
        "seconds": round(elapsed, 1),
        "rate": round(sent / elapsed) if elapsed > 0 else 0,
        "answers": answered,
        "codes": dict(codes),
    }


# -------------------------------------------------------------------- malformed


def malformed_datagrams(host: str, port: int, local: str, n: int) -> list[tuple[str, bytes]]:
    """One of each kind of bad UDP message, and a good OPTIONS (the control)."""
    good = request("OPTIONS", "bob", host, port, local, n)
    invite = request("INVITE", "486", host, port, local, n + 1)
    head, _, _ = good.partition(b"Content-Length")
    rng = random.Random(n)
    return [
        ("control", good),
        ("truncated", invite[: rng.randrange(10, len(invite) - 30)]),
        ("garbage", rng.randbytes(rng.randrange(1, 1400))),
        ("long_content_length", head + b"Content-Length: 500\r\n\r\nv=0\r\n"),
        ("bad_content_length", head + b"Content-Length: -7x\r\n\r\n"),
        ("long_header_line", head + b"Subject: " + b"x" * 6000 + b"\r\nContent-Length: 0\r\n\r\n"),
        ("many_headers", head + b"X-Soak: 1\r\n" * 300 + b"Content-Length: 0\r\n\r\n"),
        ("large_body", head + b"Content-Length: 20000\r\n\r\n" + b"a" * 20000),
        ("binary_in_headers", good.replace(b"CSeq: 1", b"CSeq: \x00\xff\x07")),
    ]


@dataclass
class Conn:
    """One malformed TCP connection of ours."""

    kind: str
    sock: socket.socket
    opened: float
    pending: bytes  # what is still to be dribbled out (slow-loris), one byte per tick
    answers: int = 0
    next_byte: float = 0.0


@dataclass
class TcpStats:
    opened: Counter[str] = field(default_factory=Counter)
    closed_by_peer: Counter[str] = field(default_factory=Counter)
    gave_up: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    lifetimes: dict[str, list[float]] = field(default_factory=dict)


def open_conn(kind: str, dest: tuple[str, int], invite: bytes, now: float) -> Conn | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((MALFORMED_SOURCE, 0))
    sock.settimeout(2.0)
    try:
        sock.connect(dest)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    conn = Conn(kind, sock, now, b"")
    try:
        if kind == "garbage":
            sock.send(
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200) + b"\r\n\r\n"
            )
        elif kind == "short_body":  # promises 5000 bytes, sends 10, then waits
            sock.send(invite.replace(b"Content-Length: 0", b"Content-Length: 5000") + b"0123456789")
        elif kind == "slow_loris":
            conn.pending = invite
    except OSError:
        pass
    return conn


def malformed(host: str, port: int, seconds: float, rate: float) -> dict[str, object]:
    """Bad UDP messages at ``rate`` a second and up to TCP_AT_ONCE bad TCP connections."""
    udp, local = udp_socket(MALFORMED_SOURCE)
    dest = (host, port)
    udp_sent: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    tcp = TcpStats()
    conns: dict[int, Conn] = {}
    kinds = ("slow_loris", "idle", "short_body", "garbage")
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    deadline = start + seconds
    queue: list[tuple[str, bytes]] = []
    n = 0
    for _ in range(MAX_TURNS):
        now = time.monotonic()
        if now >= deadline and not conns:
            break
        if now < deadline and sum(udp_sent.values()) < rate * (now - start):
            if not queue:
                n += 2
                queue = malformed_datagrams(host, port, local, n)
            kind, data = queue.pop()
            try:
                udp.sendto(data, dest)
                udp_sent[kind] += 1
            except OSError:
                udp_sent["send_error"] += 1
        if now < deadline and len(conns) < TCP_AT_ONCE:
            kind = kinds[sum(tcp.opened.values()) % len(kinds)]
            invite = request("INVITE", "486", host, port, local, 1_000_000 + n)
            conn = open_conn(kind, dest, invite, now)
            if conn is None:
                tcp.refused += 1
            else:
                tcp.opened[kind] += 1
                conns[conn.sock.fileno()] = conn
                sel.register(conn.sock, selectors.EVENT_READ)
        for key, _ in sel.select(0.02):
            conn = conns[key.fd]
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                conn.answers += 1
                codes["tcp " + status_of(data)] += 1
                continue
            tcp.closed_by_peer[conn.kind] += 1
            tcp.lifetimes.setdefault(conn.kind, []).append(time.monotonic() - conn.opened)
            sel.unregister(conn.sock)
            conn.sock.close()
            del conns[key.fd]
        now = time.monotonic()
        for fd, conn in list(conns.items()):
            if now - conn.opened > TCP_GIVE_UP:
                tcp.gave_up[conn.kind] += 1
                sel.unregister(conn.sock)
                conn.sock.close()
                del conns[fd]
            elif conn.pending and now >= conn.next_byte:
                try:
                    conn.sock.send(conn.pending[:1])
                except OSError:
                    conn.pending = b""
                conn.pending = conn.pending[1:]
                conn.next_byte = now + 0.5
        drain(udp, codes)
    time.sleep(0.5)
    drain(udp, codes)
    udp.close()
    sel.close()
    return {
        "udp_sent": dict(udp_sent),
        "answers": dict(codes),
        "tcp_opened": dict(tcp.opened),
        "tcp_closed_by_peer": dict(tcp.closed_by_peer),
        "tcp_gave_up": dict(tcp.gave_up),
        "tcp_refused": tcp.refused,
        # Seconds from connect to the server's close, by kind: [median, longest].
        "tcp_lifetime": {
            kind: [round(sorted(times)[len(times) // 2], 2), round(max(times), 2)]
            for kind, times in tcp.lifetimes.items()
        },
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("role", choices=["flood", "malformed"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s (0: flat out)")
    args = parser.parse_args(argv)
    run = flood if args.role == "flood" else malformed
    print(json.dumps(run(args.host, args.port, args.seconds, args.rate)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
