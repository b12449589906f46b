"""The journal: every request received and response sent, grouped into calls.

What belongs here: ``Entry`` (one message: time, direction, transport, addresses, the raw
bytes and a parsed summary), ``Violation`` (something the client did against an RFC,
with the section), ``Call`` (the entries, transactions and violations of one Call-ID,
with what a test wants to know: final status, ACKed or not), and ``Journal``, a ring of
calls bounded in calls and in entries per call — the oldest call goes first.  A sink
callable may take every entry and violation as a JSON-ready dict (``--journal-file``).
Pure: the caller passes wall-clock times.  Imports ``message`` only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .message import uri_user

Sink = Callable[[dict[str, Any]], None]


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

    def __repr__(self) -> str:
        return f"Entry({self.direction} {self.src} -> {self.dst}: {self.summary!r})"

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
            lines.append(
                f"  +{e.time - t0:8.3f}s  {peer:>{width}} {arrow} responder  "
                f"{e.summary}  [CSeq {e.cseq} {e.method}]{note}"
            )
        for v in self.violations:
            lines.append(f"  violation: {v}")
        return "\n".join(lines)


class Journal:
    """A bounded ring of calls: at most ``max_calls``, oldest first out.

    ``max_entries`` bounds the messages kept per call (later ones are counted, not
    kept).  ``max_calls=0`` keeps nothing (the sink still sees everything).
    """

    def __init__(
        self, max_calls: int = 1000, max_entries: int = 200, sink: Sink | None = None
    ) -> None:
        self.max_calls = max_calls
        self.max_entries = max_entries
        self.sink = sink
        self._calls: OrderedDict[str, Call] = OrderedDict()
        self.violation_count = 0
        #: Called with each new violation (logs, metrics, waiters).
        self.on_violation: list[Callable[[Violation], None]] = []
        #: Called with the call after each entry (waiters).
        self.on_update: list[Callable[[Call], None]] = []

    def __len__(self) -> int:
        return len(self._calls)

    def _call(self, call_id: str, now: float) -> Call | None:
        call = self._calls.get(call_id)
        if call is None:
            if self.max_calls <= 0:
                return None
            call = Call(call_id, now, now)
            self._calls[call_id] = call
            while len(self._calls) > self.max_calls:
                self._calls.popitem(last=False)
        return call

    def record(self, entry: Entry) -> Entry:
        """Add one message: a request opens its transaction, a response adds its code (a
        response repeating the transaction's last code is marked a retransmission), an
        ACK marks its INVITE acknowledged.  Returns the entry as recorded."""
        call = self._calls.get(entry.call_id)
        if call is None:
            call = self._call(entry.call_id, entry.time)
        if call is not None:
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
                call.entries.append(entry)
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
            call.violations.append(violation)
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
