"""What the journal keeps of a call: its messages, transactions, violations and faults.

What belongs here: ``Entry`` (one message: time, direction, transport, addresses, the raw
bytes and a parsed summary), ``Violation`` (something the client did against an RFC,
with the section), ``FaultNote`` (something the responder did wrong on purpose that no
message shows), ``Transaction`` (a request and its codes) and ``Call`` (all of them for
one Call-ID, with what a test wants to know: final status, ACKed or not, its ladder), and
what each costs against the journal's byte bound.  The ring that holds them is
``journal``'s.  Pure.  Imports ``uri`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..sip.uri import uri_user

#: What the journal counts for each thing it keeps, beyond the bytes of its strings: the
#: object, its slots' values (floats, ints), shared address strings, and its place in the
#: lists and the ordered dict.  Measured with tracemalloc (tests/unit/test_journal.py
#: checks that what is counted covers what is allocated), rounded up.
ENTRY_COST: Final = 512
CALL_COST: Final = 768
TRANSACTION_COST: Final = 320
VIOLATION_COST: Final = 320
#: A media session kept with its call (its figures, DTMF digits and decoder state): a
#: bound on it, not a measure.
MEDIA_COST: Final = 8192


class MediaView(Protocol):
    """A media session as the journal shows it (``media.MediaSession``)."""

    def summary(self) -> dict[str, Any]: ...


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
        transport: str,  # "udp" | "tcp" | "tls" | "ws" | "wss"
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
    def fault(self) -> str:
        """What a rule's faults did to it on purpose ("" for nothing: ``FaultedEntry``)."""
        return ""

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
        if self.fault:
            out["fault"] = self.fault
        out["size"] = self.size or len(self.raw)
        if self.size:
            out["cut"] = True
        if raw:
            out["raw"] = self.raw.decode("utf-8", "replace")
        return out


class FaultedEntry(Entry):
    """A response of ours that a rule's faults acted on (``faults``): an ``Entry`` that
    also says what was done to it.  A class of its own, so that every other entry has
    one slot fewer to make, walk and free."""

    __slots__ = ("_fault",)

    def __init__(
        self,
        time: float,
        transport: str,
        src: str,
        dst: str,
        raw: bytes,
        call_id: str,
        method: str,
        cseq: int,
        status: int,
        fault: str,
    ) -> None:
        super().__init__(time, "out", transport, src, dst, raw, call_id, method, cseq, status)
        self._fault = fault

    @property
    def fault(self) -> str:
        return self._fault


def _from_of(raw: bytes) -> str:
    """The From header's value in a message's head (``From:`` or ``f:``), tag left out."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"from", b"f"):
            params = value.decode("utf-8", "replace").strip().split(";")
            kept = [p for p in params[1:] if not p.strip().lower().startswith("tag=")]
            return ";".join([params[0], *kept])
    return ""


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


@dataclass(frozen=True, slots=True)
class FaultNote:
    """Something the responder did wrong on purpose that no message of ours shows: a
    request's copy dropped, a 100 left out, an ACK paid no heed to (``faults``)."""

    time: float
    call_id: str
    kind: str  # e.g. "drop_requests"
    message: str
    method: str = ""
    cseq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "call_id": self.call_id,
            "kind": self.kind,
            "message": self.message,
            "method": self.method,
            "cseq": self.cseq,
        }

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


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
        "_faults",
        "_media",
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
        #: Made with the call's first fault note: most calls have none.
        self._faults: list[FaultNote] | None = None
        #: Made with the call's first media session: most calls of a load test have none.
        self._media: list[MediaView] | None = None
        self.dropped_entries = 0
        #: What the journal counts for this call against ``--journal-bytes``.
        self.bytes = CALL_COST + len(call_id)

    def __repr__(self) -> str:
        return f"Call({self.call_id!r}, {len(self.entries)} entries)"

    @property
    def faults(self) -> list[FaultNote]:
        """What the responder did wrong on purpose that no message of its own shows."""
        return [] if self._faults is None else self._faults

    def add_fault(self, note: FaultNote) -> None:
        if self._faults is None:
            self._faults = []
        self._faults.append(note)

    @property
    def media(self) -> list[dict[str, Any]]:
        """The call's media streams and what came on them (live while the call is up)."""
        return [] if self._media is None else [m.summary() for m in self._media]

    def add_media(self, session: MediaView) -> None:
        if self._media is None:
            self._media = []
        self._media.append(session)

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

    @property
    def caller(self) -> str:
        """The From header of the call's first request, its tag left out ("" if none)."""
        first = next((e for e in self.entries if e.direction == "in" and e.status is None), None)
        return "" if first is None else _from_of(first.raw)

    @property
    def transport(self) -> str:
        """The transport of the call's first message ("" before any)."""
        return self.entries[0].transport if self.entries else ""

    def to_dict(self, messages: bool = False, raw: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "method": self.method,
            "uri": self.uri,
            "user": self.user,
            "from": self.caller,
            "transport": self.transport,
            "first": self.first,
            "last": self.last,
            "final_status": self.final_status,
            "codes": self.codes,
            "acked": self.acked,
            "transactions": [t.to_dict() for t in self.transactions],
            "violations": [v.to_dict() for v in self.violations],
            "faults": [f.to_dict() for f in self.faults],
            "media": self.media,
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
            if e.fault:
                note += f" [fault: {e.fault}]"
            if e.size:
                note += f" (cut: {e.size:,} bytes, {len(e.raw):,} kept)"
            lines.append(
                f"  +{e.time - t0:8.3f}s  {peer:>{width}} {arrow} responder  "
                f"{e.summary}  [CSeq {e.cseq} {e.method}]{note}"
            )
        for m in self.media:
            lines.append(
                f"  media: {m['codec']} {m['mode']}, port {m['port']}, client {m['client']}: "
                f"{m['packets_in']} packets in, {m['packets_out']} out, loss {m['loss']:.1%}, "
                f"jitter {m['jitter_ms']} ms" + (f", DTMF {m['dtmf']!r}" if m["dtmf"] else "")
            )
        for f in self.faults:
            lines.append(f"  fault: {f}")
        for v in self.violations:
            lines.append(f"  violation: {v}")
        return "\n".join(lines)
