"""The journal's byte bound on a real process: about 100 MB of large datagrams must not
grow its memory by what was sent (issue: a sender could make the journal hold GBs)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

from sipprocs import Responder, StartResponder
from test_access import ADMIN, metrics

MiB = 1 << 20
#: What the test sends: COUNT datagrams of about SIZE bytes over CALLS Call-IDs.
COUNT, SIZE, CALLS = 1700, 60_000, 100
#: What the bound is, and the memory allowed above the RSS before the flood besides it:
#: the interpreter's heap churn of 60 KB reads and parses, and the allocator's slack.
BOUND, MARGIN = 4 * MiB, 24 * MiB


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


def large_options(n: int, port: int, local: int) -> bytes:
    """An OPTIONS of about SIZE bytes: 40 padding header lines of 1,000 bytes (kept, in
    part, when cut) and the rest as a body (never kept when cut)."""
    call = n % CALLS
    pad = "".join(f"X-Pad-{i}: {'p' * 990}\r\n" for i in range(40))
    body = b"b" * (SIZE - 40_000)
    head = (
        f"OPTIONS sip:big@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-big-{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:flood@127.0.0.1>;tag=f{call}\r\n"
        f"To: <sip:big@127.0.0.1>\r\nCall-ID: big-{call}\r\nCSeq: {n + 1} OPTIONS\r\n"
        f"{pad}Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def journal_stats(server: Responder) -> dict[str, int]:
    assert server.admin_url is not None
    with urllib.request.urlopen(server.admin_url + "/api/journal", timeout=5.0) as resp:
        data: dict[str, int] = json.loads(resp.read())
    return data


def test_100_mb_of_large_datagrams_stay_within_the_journal_bound(
    start_responder_with: StartResponder,
) -> None:
    server = start_responder_with("--journal-bytes", str(BOUND), "--log-level", "WARNING", *ADMIN)
    pid = server.proc.pid
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)
        local = sock.getsockname()[1]
        # Warm up with a few of the same, so the baseline has the code paths' memory.
        for n in range(20):
            sock.sendto(large_options(n, server.port, local), server.addr)
            sock.recvfrom(65535)
        time.sleep(0.2)
        before = status(pid)["VmRSS"]
        sent = answered = 0
        deadline = time.monotonic() + 120
        window = 16  # in flight at once: no more than the socket buffer holds
        for n in range(20, COUNT, window):
            assert time.monotonic() < deadline, "the flood took too long"
            batch = [large_options(m, server.port, local) for m in range(n, min(n + window, COUNT))]
            for data in batch:
                sock.sendto(data, server.addr)
                sent += len(data)
            for _ in batch:
                answer, _ = sock.recvfrom(65535)
                assert answer.startswith(b"SIP/2.0 200 OK")
                answered += 1
        after = status(pid)
    assert sent > 95_000_000 and answered == COUNT - 20
    stats = journal_stats(server)
    seen = metrics(server)
    growth = after["VmHWM"] - before
    print(
        f"sent {sent / 1e6:.0f} MB in {answered} datagrams; RSS {before / MiB:.1f} MiB "
        f"-> {after['VmRSS'] / MiB:.1f} (peak {after['VmHWM'] / MiB:.1f}); journal "
        f"{stats['bytes'] / MiB:.2f} MiB, {stats['calls']} calls, "
        f"{stats['evicted_for_size']} evicted for size, {stats['cut_messages']} cut"
    )
    assert stats["bytes"] <= BOUND
    assert stats["evicted_for_size"] > 0  # the bound was reached, and held
    assert stats["cut_messages"] >= answered
    assert seen["sipresponder_journal_bytes"] == stats["bytes"]
    assert seen["sipresponder_journal_evicted_calls_total{bound=bytes}"] > 0
    # The peak RSS grew by at most the bound and the margin, not by what was sent.
    assert growth <= BOUND + MARGIN, f"RSS peak grew {growth / MiB:.1f} MiB"
