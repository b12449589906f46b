"""What the endpoint tells the journal and the counters: every message in and out, and
each violation.

What belongs here: ``Recorder``, which turns a request as parsed, or the bytes of a
response we send, into a journal ``Entry`` stamped with wall-clock time, and a verdict
into a ``Violation``; and counts requests by method and the responses plans build by
method and code, for metrics.  It holds the offset from the endpoint's clock to the wall clock,
which the glue sets.  It decides nothing: the endpoint says what happened, the verdicts
what was wrong, the faults what was done wrong on purpose.  Sans-IO; imports ``sip``,
``calls`` and ``journal``.
"""

from __future__ import annotations

from typing import Final

from ..sip.message import Request
from ..sip.responses import KNOWN_METHODS
from ..sip.uri import hostport, plain_ip
from .calls import Entry, FaultedEntry, FaultNote, MediaView, Violation
from .flow import Flow
from .journal import Journal

#: The endpoint's counters (``stats``), for metrics and the test report.
STATS: Final = (
    "requests",
    "responses_sent",
    "parse_errors",
    "dropped",
    "retransmissions",
    "resent",
    "acks",
    "stray_acks",
    "recognised_acks",
    "overload",
    "draining",
    "internal_errors",
    "violations",
)


class Recorder:
    """Feeds one journal, or none (``journal`` None: the journal's calls do nothing),
    and the counters."""

    __slots__ = ("_codes_by_method", "journal", "requests_by_method", "stats", "wall_offset")

    def __init__(self, journal: Journal | None) -> None:
        self.journal = journal
        #: ``time.time() - loop.time()``, set by the glue: entries and nonces carry
        #: wall-clock time.
        self.wall_offset = 0.0
        #: The endpoint's counters, by the names in ``STATS``.
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)
        #: Requests by method (``other`` for any we do not know).
        self.requests_by_method: dict[str, int] = {}
        #: Responses built by plans: method -> code -> count (``responses_by_code``).
        self._codes_by_method: dict[str, dict[int, int]] = {}

    def count(self, method: str) -> str:
        """A request of ``method`` came: counted, under the name returned.  Every method
        we do not know counts as one, ``other``: the peer picks the token, and a dict (and
        a metric label) per token would grow with what it sends."""
        counted = method if method in KNOWN_METHODS else "other"
        counts = self.requests_by_method
        counts[counted] = counts.get(counted, 0) + 1
        return counted

    def codes(self, counted: str) -> dict[int, int]:
        """The dict the responses built for a method (as ``count`` named it) are counted
        in by code: an int key, not a tuple to hash."""
        by_code = self._codes_by_method.get(counted)
        if by_code is None:
            by_code = self._codes_by_method[counted] = {}
        return by_code

    @property
    def responses_by_code(self) -> dict[tuple[str, int], int]:
        """Responses built by a request's plan (not retransmissions): (method, code) ->
        count."""
        return {
            (method, code): n
            for method, codes in self._codes_by_method.items()
            for code, n in codes.items()
        }

    def incoming(self, req: Request, flow: Flow, now: float, retransmission: bool) -> None:
        """A request as it came, whether answered or not."""
        journal = self.journal
        if journal is None:
            return
        top = req.top_via
        journal.record(
            Entry(
                now + self.wall_offset,
                "in",
                flow.transport,
                flow.remote_text,
                flow.local_text,
                req.raw,
                req.call_id or "",
                req.method,
                req.cseq_num,
                None,
                "",
                req.uri,
                (top.branch or "") if top is not None else "",
                retransmission,
            )
        )

    def outgoing(
        self,
        data: bytes,
        flow: Flow,
        dest: tuple[str, int],
        call_id: str | None,
        method: str,
        cseq: int,
        now: float,
    ) -> None:
        """One response we send: its status read off our own bytes (the reason phrase is
        read from them when the entry is shown)."""
        journal = self.journal
        if journal is None:
            return
        # Our own status line, "SIP/2.0 486 Busy Here\r\n": the code from its digits.
        status = (data[8] - 48) * 100 + (data[9] - 48) * 10 + (data[10] - 48)
        journal.record(
            Entry(
                now + self.wall_offset,
                "out",
                flow.transport,
                flow.local_text,
                # inline, not _dest_text: this runs for every response
                flow.remote_text if dest == flow.remote else hostport(plain_ip(dest[0]), dest[1]),
                data,
                call_id or "",
                method,
                cseq,
                status,
            )
        )

    def faulted(
        self,
        data: bytes,
        flow: Flow,
        dest: tuple[str, int],
        call_id: str,
        method: str,
        cseq: int,
        status: int,
        now: float,
        fault: str,
    ) -> None:
        """A response of a transaction with faults: ``status`` is what the plan meant
        (the bytes may be broken on purpose), ``fault`` what was done to it ("" for
        nothing)."""
        journal = self.journal
        if journal is None:
            return
        if not fault:  # its bytes are as built: read as any other response's
            self.outgoing(data, flow, dest, call_id, method, cseq, now)
            return
        journal.record(
            FaultedEntry(
                now + self.wall_offset,
                flow.transport,
                flow.local_text,
                _dest_text(flow, dest),
                data,
                call_id,
                method,
                cseq,
                status,
                fault,
            )
        )

    def request_out(
        self,
        data: bytes,
        flow: Flow,
        dest: tuple[str, int],
        uri: str,
        call_id: str,
        cseq: int,
        now: float,
        retransmission: bool,
    ) -> None:
        """A BYE of ours (``hangup``), as it went."""
        if self.journal is None:
            return
        remote = _dest_text(flow, dest)
        self.journal.record(
            Entry(
                now + self.wall_offset,
                "out",
                flow.transport,
                flow.local_text,
                remote,
                data,
                call_id,
                "BYE",
                cseq,
                None,
                "",
                uri,
                "",
                retransmission,
            )
        )

    def response_in(
        self,
        data: bytes,
        flow: Flow,
        call_id: str,
        method: str,
        cseq: int,
        status: int,
        now: float,
    ) -> None:
        """A client's answer to a request of ours."""
        if self.journal is None:
            return
        self.journal.record(
            Entry(
                now + self.wall_offset,
                "in",
                flow.transport,
                flow.remote_text,
                flow.local_text,
                data,
                call_id,
                method,
                cseq,
                status,
            )
        )

    def fault(
        self, call_id: str, method: str, cseq: int, now: float, kind: str, message: str
    ) -> None:
        """Something done wrong on purpose that no response of ours shows."""
        if self.journal is not None:
            self.journal.fault(
                FaultNote(now + self.wall_offset, call_id, kind, message, method, cseq)
            )

    def media(self, call_id: str, session: MediaView, now: float) -> None:
        """A media session opened for the call."""
        if self.journal is not None:
            self.journal.media(call_id, session, now + self.wall_offset)

    def media_done(self, call_id: str, session: MediaView) -> None:
        """A media session is over (its figures are final)."""
        if self.journal is not None:
            self.journal.media_done(call_id, session)

    def violation(
        self, call_id: str, method: str, cseq: int, now: float, rule: str, message: str
    ) -> None:
        """What a client did against an RFC, beside its call's messages."""
        if self.journal is not None:
            self.journal.violation(
                Violation(now + self.wall_offset, call_id, rule, message, method, cseq)
            )


def _dest_text(flow: Flow, dest: tuple[str, int]) -> str:
    """Where a message of ours went, as text: the flow's peer, unless sent elsewhere."""
    return flow.remote_text if dest == flow.remote else hostport(plain_ip(dest[0]), dest[1])
