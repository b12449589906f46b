"""The journal's bounds: calls, bytes (with large messages kept cut), and the file."""

from __future__ import annotations

import logging
import os
import tracemalloc
from pathlib import Path

import pytest

from sipresponder.aio.journal_file import JournalFile
from sipresponder.core.journal import (
    CALL_COST,
    ENTRY_COST,
    TRANSACTION_COST,
    Entry,
    Journal,
    Violation,
    cut_length,
    cut_message,
)

SRC, DST = "127.0.0.1:5061", "127.0.0.1:5060"
MiB = 1 << 20


def options(call: int, n: int, body: int = 0) -> bytes:
    head = (
        f"OPTIONS sip:{call}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{call}-{n}\r\n"
        f"From: <sip:a@127.0.0.1>;tag={call}\r\nTo: <sip:b@127.0.0.1>\r\n"
        f"Call-ID: c{call}\r\nCSeq: {n} OPTIONS\r\nContent-Length: {body}\r\n\r\n"
    ).encode()
    return head + b"x" * body


def request(call: int, n: int, body: int = 0, time: float = 0.0) -> Entry:
    return Entry(
        time,
        "in",
        "udp",
        SRC,
        DST,
        options(call, n, body),
        f"c{call}",
        "OPTIONS",
        n,
        None,
        "",
        f"sip:{call}@127.0.0.1",
        f"z9hG4bK-{call}-{n}",
    )


def response(call: int, n: int, time: float = 0.0) -> Entry:
    raw = f"SIP/2.0 200 OK\r\nCall-ID: c{call}\r\nCSeq: {n} OPTIONS\r\n\r\n".encode()
    return Entry(time, "out", "udp", DST, SRC, raw, f"c{call}", "OPTIONS", n, 200)


def held(journal: Journal) -> int:
    """What the calls say they hold: must add up to the journal's count."""
    return sum(call.bytes for call in journal.calls())


# ------------------------------------------------------------------ the byte bound


def test_large_messages_past_the_byte_bound_evict_the_oldest_calls_first() -> None:
    journal = Journal(max_calls=1000, max_bytes=2 * MiB)
    cut = cut_length(journal.max_bytes)
    peak = 0
    for i in range(3000):  # 100 calls, about 180 MB sent
        call = i % 100 if i < 1000 else 100 + i // 30  # then new calls, in order
        journal.record(request(call, i, body=60_000, time=float(i)))
        journal.record(response(call, i, time=float(i)))
        peak = max(peak, journal.bytes)
        assert journal.bytes <= journal.max_bytes
    assert peak > journal.max_bytes * 0.9  # it was filled, not left empty
    assert journal.bytes == held(journal)
    assert journal.evicted_for_size > 0
    assert journal.evicted_calls == 0  # not the call bound: the byte bound
    kept = [int(c.call_id[1:]) for c in journal.calls()]
    # The oldest went first: what is left is the newest calls, oldest first, unbroken.
    assert kept == list(range(kept[0], 100 + 2999 // 30 + 1))
    # Each 60 KB message was kept cut to its head: start line and headers, no body.
    entry = journal.calls()[-1].entries[0]
    assert entry.cut and entry.size == len(entry.raw) + len(b"\r\n") + 60_000
    assert len(entry.raw) <= cut
    assert entry.raw.startswith(b"OPTIONS sip:")
    assert entry.raw.endswith(b"Content-Length: 60000\r\n")
    assert journal.cut_messages == 3000


def test_the_call_being_recorded_is_never_evicted_for_its_own_entry() -> None:
    journal = Journal(max_calls=10, max_entries=1000, max_bytes=MiB)
    journal.record(request(1, 1, time=0.0))
    for n in range(2, 400):  # one call, 398 entries of about 3.7 KiB: more than the bound
        journal.record(request(2, n, body=3000, time=float(n)))
        # Past the bound only by its transactions' records, which verdicts read.
        assert journal.bytes <= journal.max_bytes + n * TRANSACTION_COST
    call = journal.get("c2")
    assert call is not None and call.dropped_entries > 0
    assert len(call.entries) + call.dropped_entries == 398
    assert journal.get("c1") is None  # the older call went first
    assert journal.evicted_for_size == 1
    assert journal.bytes == held(journal)
    # Its verdicts still have every transaction to read.
    assert len(call.transactions) == 398


def test_the_oldest_call_stays_when_it_is_the_one_being_recorded() -> None:
    journal = Journal(max_calls=10, max_entries=1000, max_bytes=MiB)
    for call in range(3):
        journal.record(request(call, 1, body=3000, time=float(call)))
    for n in range(2, 300):  # call 0, the oldest, keeps going
        journal.record(request(0, n, body=3000, time=10.0 + n))
        assert journal.bytes <= journal.max_bytes + n * TRANSACTION_COST
    assert [c.call_id for c in journal.calls()] == ["c0"]
    assert journal.get("c0").dropped_entries > 0  # type: ignore[union-attr]
    assert journal.evicted_for_size == 2


def test_the_call_bound_still_evicts_and_gives_back_the_bytes() -> None:
    journal = Journal(max_calls=5, max_bytes=64 * MiB)
    for call in range(20):
        journal.record(request(call, 1, time=float(call)))
        journal.violation(Violation(float(call), f"c{call}", "RFC 3261 §8.1.1", "odd"))
    assert [c.call_id for c in journal.calls()] == [f"c{n}" for n in range(15, 20)]
    assert journal.evicted_calls == 15 and journal.evicted_for_size == 0
    assert journal.bytes == held(journal)
    assert journal.stats()["calls"] == 5
    journal.clear()
    assert journal.bytes == 0 and len(journal) == 0


def test_a_message_within_its_share_is_kept_whole() -> None:
    journal = Journal(max_bytes=64 * MiB)
    assert journal.cut_at == 16 * 1024  # 1/4096 of the default bound
    assert cut_length(MiB) == 4096  # never less than 4 KiB
    entry = journal.record(request(1, 1, body=15_000))
    assert not entry.cut and entry.size == 0
    assert entry.to_dict()["size"] == len(entry.raw)
    assert "cut" not in entry.to_dict()


def test_a_cut_message_says_so_in_the_ladder_and_the_api() -> None:
    journal = Journal(max_bytes=MiB)
    journal.record(request(1, 1, body=50_000))
    call = journal.get("c1")
    assert call is not None
    out = call.to_dict(messages=True)["messages"][0]
    assert out["cut"] is True and out["size"] == len(options(1, 1, 50_000))
    assert "x" not in out["raw"].split("\r\n")[-1]
    assert f"(cut: {len(options(1, 1, 50_000)):,} bytes, " in call.ladder()


@pytest.mark.parametrize(
    ("raw", "limit", "kept"),
    [
        # The headers fit: they are kept, the body is not.
        (b"A\r\nB: 1\r\n\r\nbody" + b"x" * 100, 50, b"A\r\nB: 1\r\n"),
        # They do not: whole lines as far as they fit.
        (b"A\r\nB: 1\r\nC: " + b"c" * 100 + b"\r\n\r\n", 50, b"A\r\nB: 1\r\n"),
        # Not even the start line: its first bytes.
        (b"A" * 100 + b"\r\n\r\n", 50, b"A" * 50),
    ],
)
def test_cut_message_keeps_whole_header_lines(raw: bytes, limit: int, kept: bytes) -> None:
    assert cut_message(raw, limit) == kept


def test_what_is_counted_covers_what_is_allocated() -> None:
    """The byte bound is a bound on memory: the fixed costs per object are measured."""
    journal = Journal(max_calls=100_000, max_bytes=1 << 40)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for call in range(1000):
            for n in range(0, 6, 2):
                journal.record(request(call, n, time=float(n)))
                journal.record(response(call, n, time=float(n)))
            journal.violation(Violation(0.0, f"c{call}", "RFC 3261 §8.1.1", f"odd {call}"))
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert journal.bytes >= traced, (journal.bytes, traced)
    # ... and not so loosely that the bound means little.
    assert journal.bytes <= 2 * traced, (journal.bytes, traced)
    assert CALL_COST > ENTRY_COST > 0


# ------------------------------------------------------------------ the file


def test_the_file_rotates_at_its_size_keeping_one_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"old": true}\n')  # what an earlier run left counts
    out = JournalFile(str(path), max_bytes=65536)
    assert out.bytes == len('{"old": true}\n')
    for n in range(1000):
        out.write({"type": "message", "n": n, "pad": "p" * 200})
        assert out.bytes <= 65536
    out.close()
    assert out.rotations >= 2
    previous = tmp_path / "journal.jsonl.1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.jsonl", "journal.jsonl.1"]
    assert os.path.getsize(path) == out.bytes
    assert 65536 - 300 < os.path.getsize(previous) <= 65536
    last = path.read_text().splitlines()
    assert '"n": 999' in last[-1]
    assert '"n": ' in previous.read_text().splitlines()[0]


def test_the_file_never_rotates_at_zero(tmp_path: Path) -> None:
    out = JournalFile(str(tmp_path / "j"), max_bytes=0)
    for n in range(500):
        out.write({"n": n, "pad": "p" * 200})
    out.close()
    assert out.rotations == 0 and out.bytes > 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["j"]


def test_a_write_error_stops_the_file_not_the_responder(caplog: pytest.LogCaptureFixture) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    out = JournalFile("/dev/full", max_bytes=0)
    with caplog.at_level(logging.ERROR, logger="sipresponder"):
        for n in range(10_000):  # more than the buffer: the write itself fails
            out.write({"n": n, "pad": "p" * 100})
        out.flush()
        out.write({"n": "after"})
    assert not out.writing
    errors = [r for r in caplog.records if "--journal-file" in r.getMessage()]
    assert len(errors) == 1 and "no longer writing it" in errors[0].getMessage()
