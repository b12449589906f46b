"""The journal: every request received and response sent, grouped into calls.

What belongs here: ``Journal``, a ring of calls (``calls.Call``: entries, transactions,
violations and fault notes) bounded in calls, in entries per call and in bytes — the
oldest call goes first, and a message too large for its share of the bytes is kept cut
to its head (``cut_message``).  A sink callable may take every entry, violation and fault
note as a JSON-ready dict (``--journal-file``).  Pure: the caller passes wall-clock
times.  Imports ``calls``, whose records it keeps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Final

from .calls import (
    CALL_COST,
    ENTRY_COST,
    MEDIA_COST,
    TRANSACTION_COST,
    VIOLATION_COST,
    Call,
    Entry,
    FaultedEntry,
    FaultNote,
    MediaView,
    Transaction,
    Violation,
)

__all__ = [
    "CALL_COST",
    "DEFAULT_MAX_BYTES",
    "ENTRY_COST",
    "TRANSACTION_COST",
    "VIOLATION_COST",
    "Call",
    "Entry",
    "FaultNote",
    "FaultedEntry",
    "Journal",
    "Sink",
    "Transaction",
    "Violation",
    "cut_length",
    "cut_message",
]

Sink = Callable[[dict[str, Any]], None]

#: The default byte bound (``--journal-bytes``).
DEFAULT_MAX_BYTES: Final = 64 << 20
#: A message longer than this share of the byte bound (1/4096: 16 KiB at the default),
#: and never less than ``MIN_CUT`` bytes, is kept cut to its start line and headers.
CUT_SHARE: Final = 12
MIN_CUT: Final = 4096


def cut_length(max_bytes: int) -> int:
    """The longest message the journal keeps whole under a bound of ``max_bytes``."""
    return max(MIN_CUT, max_bytes >> CUT_SHARE)


def cut_message(raw: bytes, limit: int) -> bytes:
    """The head of a message too large to keep: its start line and as many whole header
    lines as fit in ``limit`` bytes (the start line alone, cut to ``limit``, when it does
    not fit), never its body."""
    end = raw.find(b"\r\n\r\n", 0, limit + 2)
    if end >= 0:  # all the headers fit: keep them, not the body
        return raw[: end + 2]
    last = raw.rfind(b"\n", 0, limit)
    if last < 0:
        return raw[:limit]
    return raw[: last + 1]


class Journal:
    """A bounded ring of calls: at most ``max_calls`` and ``max_bytes``, oldest first out.

    ``max_entries`` bounds the messages kept per call (later ones are counted, not
    kept).  ``max_calls=0`` keeps nothing (the sink still sees everything).  The bytes
    counted are each kept message's and string's length plus a fixed cost per object
    (``ENTRY_COST``...); a message longer than ``cut_length(max_bytes)`` is kept cut to
    its head (``cut_message``), marked with its size.  The call being recorded is never
    the one evicted for it: when it alone would pass the bound, its new entry is counted
    in ``dropped_entries`` instead of kept.
    """

    def __init__(
        self,
        max_calls: int = 1000,
        max_entries: int = 200,
        sink: Sink | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_calls = max_calls
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.cut_at = cut_length(max_bytes)
        self.sink = sink
        self._calls: OrderedDict[str, Call] = OrderedDict()
        self.violation_count = 0
        #: What the calls held count against ``max_bytes``.
        self.bytes = 0
        #: Calls let go early: for room in calls (``max_calls``) or in bytes.
        self.evicted_calls = 0
        self.evicted_for_size = 0
        #: Messages kept cut to their head.
        self.cut_messages = 0
        #: Called with each new violation (logs, metrics, waiters).
        self.on_violation: list[Callable[[Violation], None]] = []
        #: Called with the call after each entry (waiters).
        self.on_update: list[Callable[[Call], None]] = []

    def __len__(self) -> int:
        return len(self._calls)

    def stats(self) -> dict[str, int]:
        """What the journal holds and let go, for the admin API and the metrics."""
        return {
            "calls": len(self._calls),
            "max_calls": self.max_calls,
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "evicted_calls": self.evicted_calls,
            "evicted_for_size": self.evicted_for_size,
            "cut_messages": self.cut_messages,
        }

    def _call(self, call_id: str, now: float) -> Call | None:
        call = self._calls.get(call_id)
        if call is None:
            if self.max_calls <= 0:
                return None
            call = Call(call_id, now, now)
            self._calls[call_id] = call
            self.bytes += call.bytes
            while len(self._calls) > self.max_calls:
                _, old = self._calls.popitem(last=False)
                self.bytes -= old.bytes
                self.evicted_calls += 1
            if self.bytes > self.max_bytes:
                self._make_room(call, 0)
        return call

    def _make_room(self, call: Call, cost: int) -> bool:
        """Let the oldest calls other than ``call`` go until ``cost`` more bytes fit;
        False when they do not fit even then."""
        calls = self._calls
        limit = self.max_bytes - cost
        while self.bytes > limit and len(calls) > 1:
            call_id, old = calls.popitem(last=False)
            if old is call:  # the oldest is the one being recorded: it stays, as newest
                calls[call_id] = old
                continue
            self.bytes -= old.bytes
            self.evicted_for_size += 1
        return self.bytes <= limit

    def record(self, entry: Entry) -> Entry:
        """Add one message: a request opens its transaction, a response adds its code (a
        response repeating the transaction's last code is marked a retransmission), an
        ACK marks its INVITE acknowledged.  Returns the entry as recorded."""
        call = self._calls.get(entry.call_id)
        if call is None:
            call = self._call(entry.call_id, entry.time)
        if call is not None:
            raw = entry.raw
            if len(raw) > self.cut_at:
                # Too large for its share of the bound: keep the head, say how long it was.
                entry.raw = cut_message(raw, self.cut_at)
                entry.size = len(raw)
                self.cut_messages += 1
            method = entry.method
            status = entry.status
            txns = call.transactions
            txn = txns[-1] if txns else None  # the usual case: the call's latest request
            if txn is None or txn.cseq != entry.cseq or txn.method != method:
                txn = call.transaction("INVITE" if method == "ACK" else method, entry.cseq)
            if status is None:
                if method == "ACK":
                    if txn is not None and txn.final_status is not None:
                        txn.acked = True
                elif entry.retransmission:
                    if txn is not None:
                        txn.retransmissions += 1
                elif txn is None and len(call.transactions) < self.max_entries:
                    txn = Transaction(method, entry.cseq, entry.uri, entry.time)
                    call.transactions.append(txn)
                    call.bytes += TRANSACTION_COST
                    self.bytes += TRANSACTION_COST
                    if self.bytes > self.max_bytes:
                        self._make_room(call, 0)  # kept even so: verdicts read it
            elif txn is not None:
                codes = txn.codes
                if codes and codes[-1] == status:
                    entry.retransmission = True  # not yet shared: set in place
                else:
                    codes.append(status)
                    if status == 487 and method == "INVITE":
                        txn.cancelled = True
            call.last = entry.time
            if len(call.entries) < self.max_entries:
                cost = (
                    ENTRY_COST
                    + len(entry.raw)
                    + len(entry.uri)
                    + len(entry.branch)
                    + len(entry.call_id)
                )
                if self.bytes + cost <= self.max_bytes or self._make_room(call, cost):
                    call.entries.append(entry)
                    call.bytes += cost
                    self.bytes += cost
                else:
                    call.dropped_entries += 1
            else:
                call.dropped_entries += 1
        if self.sink is not None:
            self.sink({"type": "message", **entry.to_dict()})
        if call is not None and self.on_update:
            for callback in self.on_update:
                callback(call)
        return entry

    def violation(self, violation: Violation) -> None:
        self.violation_count += 1
        if self.sink is not None:
            self.sink({"type": "violation", **violation.to_dict()})
        call = self._note(violation.call_id, violation.time, len(violation.message))
        if call is not None:
            call.violations.append(violation)
        for callback in self.on_violation:
            callback(violation)
        if call is not None:
            for update in self.on_update:
                update(call)

    def fault(self, note: FaultNote) -> None:
        """What was done wrong on purpose, beside the call's messages."""
        if self.sink is not None:
            self.sink({"type": "fault", **note.to_dict()})
        call = self._note(note.call_id, note.time, len(note.message))
        if call is not None:
            call.add_fault(note)
            for update in self.on_update:
                update(call)

    def media(self, call_id: str, session: MediaView, time: float) -> None:
        """A media session of the call: its figures are read from it when shown."""
        call = self._call(call_id, time)
        if call is None:
            return
        if self.bytes + MEDIA_COST <= self.max_bytes or self._make_room(call, MEDIA_COST):
            call.bytes += MEDIA_COST
            self.bytes += MEDIA_COST
            call.add_media(session)
            for update in self.on_update:
                update(call)

    def media_done(self, call_id: str, session: MediaView) -> None:
        """A media session is over: its figures go to the journal file, and watchers are
        told."""
        if self.sink is not None:
            self.sink({"type": "media", "call_id": call_id, **session.summary()})
        call = self._calls.get(call_id)
        if call is not None:
            for update in self.on_update:
                update(call)

    def _note(self, call_id: str, time: float, length: int) -> Call | None:
        """The call a note of ``length`` characters is kept in, counted; None when it
        cannot be kept."""
        call = self._call(call_id, time)
        if call is None:
            return None
        cost = VIOLATION_COST + length + len(call_id)
        if self.bytes + cost <= self.max_bytes or self._make_room(call, cost):
            call.bytes += cost
            self.bytes += cost
            return call
        return None

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def calls(
        self,
        method: str | None = None,
        user: str | None = None,
        status: int | None = None,
        since: float | None = None,
    ) -> list[Call]:
        """Calls, oldest first, filtered by first method, Request-URI user, final status
        and last activity at or after ``since``."""
        out: Iterable[Call] = self._calls.values()
        if method is not None:
            out = [c for c in out if c.method == method.upper()]
        if user is not None:
            out = [c for c in out if c.user == user]
        if status is not None:
            out = [c for c in out if c.final_status == status]
        if since is not None:
            out = [c for c in out if c.last >= since]
        return list(out)

    def clear(self) -> None:
        self._calls.clear()
        self.violation_count = 0
        self.bytes = 0
