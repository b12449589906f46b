"""The journal: every request received and response sent, grouped into calls.

What belongs here: ``Entry`` (one message: time, direction, transport, addresses, the raw
bytes and a parsed summary), ``Violation`` (something the client did against an RFC,
with the section), ``Call`` (the entries, transactions and violations of one Call-ID,
with what a test wants to know: final status, ACKed or not), and ``Journal``, a ring of
calls bounded in calls, in entries per call and in bytes — the oldest call goes first, and
a message too large for its share of the bytes is kept cut to its head.  A sink callable
may take every entry and violation as a JSON-ready dict (``--journal-file``).  Pure: the
caller passes wall-clock times.  Imports ``uri`` only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from ..sip.uri import uri_user

Sink = Callable[[dict[str, Any]], None]

#: What the journal counts for each thing it keeps, beyond the bytes of its strings: the
#: object, its slots' values (floats, ints), shared address strings, and its place in the
#: lists and the ordered dict.  Measured with tracemalloc (tests/unit/test_journal.py
#: checks that what is counted covers what is allocated), rounded up.
ENTRY_COST: Final = 512
CALL_COST: Final = 768
TRANSACTION_COST: Final = 320
VIOLATION_COST: Final = 320

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


class Entry:
    """One message on the wire, as the responder saw it.

    Nothing changes an entry once recorded.  A plain class with an explicit ``__init__``
    (so are ``Transaction`` and ``Call``), not a dataclass: one is made for every message,
    and mypyc compiles this ``__init__`` but not a dataclass's generated one.
    """

    __slots__ = (
        "_reason",
        "branch",
        "call_id",
        "cseq",
        "direction",
        "dst",
        "method",
        "raw",
        "retransmission",
        "size",
        "src",
        "status",
        "time",
        "transport",
        "uri",
    )

    def __init__(
        self,
        time: float,  # wall clock, seconds since the epoch
        direction: str,  # "in" (received) | "out" (sent)
        transport: str,  # "udp" | "tcp"
        src: str,  # "ip:port"
        dst: str,
        raw: bytes,
        call_id: str,
        method: str,  # the request's method, or the CSeq method of a response
        cseq: int,
        status: int | None = None,  # responses only
        reason: str = "",  # "": read off ``raw`` when shown
        uri: str = "",  # requests only
        branch: str = "",
        retransmission: bool = False,
    ) -> None:
        self.time = time
        self.direction = direction
        self.transport = transport
        self.src = src
        self.dst = dst
        self.raw = raw
        self.call_id = call_id
        self.method = method
        self.cseq = cseq
        self.status = status
        self._reason = reason
        self.uri = uri
        self.branch = branch
        self.retransmission = retransmission
        #: The message's length on the wire when ``raw`` holds only its head; else 0.
        self.size = 0

    def __repr__(self) -> str:
        return f"Entry({self.direction} {self.src} -> {self.dst}: {self.summary!r})"

    @property
    def cut(self) -> bool:
        """Only the head of the message was kept (it was too large for the journal)."""
        return self.size > 0

    @property
    def reason(self) -> str:
        """A response's reason phrase: as given, else read off its status line (for the
        responses we send, only when someone looks)."""
        if self._reason or self.status is None:
            return self._reason
        return _reason_of(self.raw)

    @property
    def summary(self) -> str:
        """``INVITE sip:486@host`` or ``486 Busy Here``."""
        if self.status is None:
            return f"{self.method} {self.uri}"
        return f"{self.status} {self.reason}"

    def to_dict(self, raw: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time,
            "direction": self.direction,
            "transport": self.transport,
            "src": self.src,
            "dst": self.dst,
            "call_id": self.call_id,
            "method": self.method,
            "cseq": self.cseq,
            "summary": self.summary,
        }
        if self.status is not None:
            out["status"] = self.status
        else:
            out["uri"] = self.uri
        if self.branch:
            out["branch"] = self.branch
        if self.retransmission:
            out["retransmission"] = True
        out["size"] = self.size or len(self.raw)
        if self.size:
            out["cut"] = True
        if raw:
            out["raw"] = self.raw.decode("utf-8", "replace")
        return out


def _reason_of(raw: bytes) -> str:
    """The reason phrase of a status line, ``SIP/2.0 486 Busy Here``: read when an entry
    is shown, not for each response recorded."""
    end = raw.find(b"\r\n")
    line = raw if end < 0 else raw[:end]
    return line[12:].decode("utf-8", "replace") if line.startswith(b"SIP/2.0 ") else ""


@dataclass(frozen=True, slots=True)
class Violation:
    """Something a client did that an RFC says it must not (or must but did not)."""

    time: float
    call_id: str
    rule: str  # e.g. "RFC 3261 §17.1.1.3"
    message: str
    method: str = ""
    cseq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "call_id": self.call_id,
            "rule": self.rule,
            "message": self.message,
            "method": self.method,
            "cseq": self.cseq,
        }

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


class Transaction:
    """A request of a call and what was answered to it."""

    __slots__ = ("acked", "cancelled", "codes", "cseq", "first", "method", "retransmissions", "uri")

    def __init__(
        self,
        method: str,
        cseq: int,
        uri: str,
        first: float,
        codes: list[int] | None = None,
        acked: bool = False,
        retransmissions: int = 0,
        cancelled: bool = False,
    ) -> None:
        self.method = method
        self.cseq = cseq
        self.uri = uri
        self.first = first
        self.codes: list[int] = [] if codes is None else codes
        self.acked = acked
        self.retransmissions = retransmissions
        self.cancelled = cancelled

    def __repr__(self) -> str:
        return f"Transaction({self.method} {self.cseq} {self.uri}: {self.codes})"

    @property
    def final_status(self) -> int | None:
        finals = [c for c in self.codes if c >= 200]
        return finals[-1] if finals else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "cseq": self.cseq,
            "uri": self.uri,
            "time": self.first,
            "codes": list(self.codes),
            "final_status": self.final_status,
            "acked": self.acked,
            "retransmissions": self.retransmissions,
            "cancelled": self.cancelled,
        }


class Call:
    """Everything the journal holds about one Call-ID."""

    __slots__ = (
        "bytes",
        "call_id",
        "dropped_entries",
        "entries",
        "first",
        "last",
        "transactions",
        "violations",
    )

    def __init__(self, call_id: str, first: float, last: float) -> None:
        self.call_id = call_id
        self.first = first
        self.last = last
        self.entries: list[Entry] = []
        self.transactions: list[Transaction] = []
        self.violations: list[Violation] = []
        self.dropped_entries = 0
        #: What the journal counts for this call against ``--journal-bytes``.
        self.bytes = CALL_COST + len(call_id)

    def __repr__(self) -> str:
        return f"Call({self.call_id!r}, {len(self.entries)} entries)"

    @property
    def first_request(self) -> Transaction | None:
        return self.transactions[0] if self.transactions else None

    @property
    def method(self) -> str:
        first = self.first_request
        return first.method if first is not None else ""

    @property
    def uri(self) -> str:
        first = self.first_request
        return first.uri if first is not None else ""

    @property
    def user(self) -> str:
        return uri_user(self.uri) or ""

    def main(self) -> Transaction | None:
        """The call's first INVITE, else its first request."""
        for txn in self.transactions:
            if txn.method == "INVITE":
                return txn
        return self.first_request

    @property
    def final_status(self) -> int | None:
        main = self.main()
        return main.final_status if main is not None else None

    @property
    def codes(self) -> list[int]:
        main = self.main()
        return list(main.codes) if main is not None else []

    @property
    def acked(self) -> bool:
        """The INVITE's final response was ACKed (False for a call without INVITE)."""
        main = self.main()
        return main is not None and main.method == "INVITE" and main.acked

    def transaction(self, method: str, cseq: int) -> Transaction | None:
        for txn in reversed(self.transactions):
            if txn.cseq == cseq and txn.method == method:
                return txn
        return None

    def to_dict(self, messages: bool = False, raw: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "method": self.method,
            "uri": self.uri,
            "user": self.user,
            "first": self.first,
            "last": self.last,
            "final_status": self.final_status,
            "codes": self.codes,
            "acked": self.acked,
            "transactions": [t.to_dict() for t in self.transactions],
            "violations": [v.to_dict() for v in self.violations],
        }
        if messages:
            out["messages"] = [e.to_dict(raw) for e in self.entries]
            out["dropped_messages"] = self.dropped_entries
        return out

    def ladder(self) -> str:
        """The SIP ladder of the call, one line a message: who sent what, when."""
        if not self.entries:
            return f"(no messages recorded for Call-ID {self.call_id})"
        t0 = self.entries[0].time
        width = max(len(e.src) for e in self.entries)
        lines = [f"Call-ID {self.call_id}"]
        for e in self.entries:
            arrow = "->" if e.direction == "in" else "<-"
            peer = e.src if e.direction == "in" else e.dst
            note = " (retransmission)" if e.retransmission else ""
            if e.size:
                note += f" (cut: {e.size:,} bytes, {len(e.raw):,} kept)"
            lines.append(
                f"  +{e.time - t0:8.3f}s  {peer:>{width}} {arrow} responder  "
                f"{e.summary}  [CSeq {e.cseq} {e.method}]{note}"
            )
        for v in self.violations:
            lines.append(f"  violation: {v}")
        return "\n".join(lines)


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
        call = self._call(violation.call_id, violation.time)
        if call is not None:
            cost = VIOLATION_COST + len(violation.message) + len(violation.call_id)
            if self.bytes + cost <= self.max_bytes or self._make_room(call, cost):
                call.violations.append(violation)
                call.bytes += cost
                self.bytes += cost
        for callback in self.on_violation:
            callback(violation)
        if call is not None:
            for update in self.on_update:
                update(call)

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
