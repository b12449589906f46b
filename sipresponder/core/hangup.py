"""Hanging up: the BYEs the responder sends itself, and their client transactions.

What belongs here: ``Dialog``, what a request in a dialog the responder answered needs
(RFC 3261 §12.1.1: the remote target is the INVITE's Contact, the route set its
Record-Route in order; our tag and theirs) and the BYE built from it (§12.2.1.1, §15.1.1:
From and To swapped, a CSeq of our own, the route set as Route, loose or strict
routing); ``Bye``, one non-INVITE client transaction (§17.1.2.2: over UDP Timer E resends
from T1 doubling to T2, T2 once a provisional came; Timer F gives up at 64·T1); and
``Hangups``, the BYEs due and in flight — one heap of deadlines, the BYEs in flight by
branch — at most ``MAX_HANGUPS``, the oldest let go first (counted).  A BYE goes back
where its INVITE came from (the client, or the proxy that record-routed it), over the
same transport and, over TCP, the same connection.  Sans-IO: every call takes ``now``.
Imports ``sip`` only.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ParseError
from ..sip.grammar import split_commas
from ..sip.message import Request, Response, parse_via
from ..sip.serializer import serialize_request
from ..sip.uri import uri_of

#: BYEs due and in flight, at most; the one due first goes when one more comes.
MAX_HANGUPS: Final = 4096
#: The CSeq number of the first request the responder sends in a dialog (§12.1.1: the
#: UAS's local sequence number starts empty; any value will do).
FIRST_CSEQ: Final = 1


@dataclass(frozen=True, slots=True)
class Dialog:
    """What the responder keeps of a dialog it answered with a 2xx, to end it."""

    call_id: str
    #: Our side: the INVITE's To with our tag (the BYE's From).
    local: str
    #: Their side: the INVITE's From with its tag (the BYE's To).
    remote: str
    #: The INVITE's Contact URI (the BYE's Request-URI, unless a strict router).
    target: str
    #: The INVITE's Record-Route URIs, in order (§12.1.1: the UAS keeps them so).
    routes: tuple[str, ...] = ()

    @staticmethod
    def of(req: Request, to_tag: str) -> Dialog:
        """The dialog a 2xx with our ``to_tag`` makes of ``req`` (an INVITE)."""
        contact = req.headers.first("contact") or ""
        target = uri_of(contact) if contact else req.uri
        routes = tuple(
            uri_of(value)
            for line in req.headers.get_all("record-route")
            for value in split_commas(line)
        )
        to = req.to or ""
        local = to if req.to_tag is not None or not to_tag else f"{to};tag={to_tag}"
        return Dialog(req.call_id or "", local, req.from_ or "", target, routes)

    @property
    def request_uri(self) -> str:
        """The BYE's Request-URI: the target, or a strict router (§12.2.1.1)."""
        routes = self.routes
        return routes[0] if routes and ";lr" not in routes[0] else self.target

    def bye(self, transport: str, sent_by: str, branch: str, cseq: int) -> bytes:
        """The BYE of this dialog, with a Via of ours (``sent_by``, ``branch``)."""
        routes = list(self.routes)
        uri = self.target
        if routes and ";lr" not in routes[0]:
            # §12.2.1.1: a strict router first: it is the Request-URI, the target is last.
            uri = routes.pop(0)
            routes.append(self.target)
        headers = [
            ("Via", f"SIP/2.0/{transport.upper()} {sent_by};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", self.local),
            ("To", self.remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} BYE"),
        ]
        headers += [("Route", f"<{route}>") for route in routes]
        return serialize_request("BYE", uri, headers)


class Bye:
    """One BYE of ours in flight (§17.1.2.2), and where it goes."""

    __slots__ = (
        "answered",
        "branch",
        "call_id",
        "copies",
        "data",
        "deadline",
        "dest",
        "flow",
        "interval",
        "reliable",
        "t_end",
        "uri",
        "why",
    )

    def __init__(
        self,
        data: bytes,
        branch: str,
        call_id: str,
        flow: Any,
        dest: tuple[str, int],
        reliable: bool,
        why: str,
    ) -> None:
        self.data = data
        self.branch = branch
        self.call_id = call_id
        self.flow = flow
        self.dest = dest
        self.reliable = reliable
        #: What sent it: ``bye_after``, or the 2xx no ACK came for (§13.3.1.4).
        self.why = why
        self.interval = 0.0
        self.deadline = 0.0  # its next timer: Timer E's resend, or Timer F
        self.t_end = 0.0
        #: The final status it got, or 0 while none came.
        self.answered = 0
        #: Its Request-URI, and how often it was sent so far.
        self.uri = ""
        self.copies = 0


class Hangups:
    """The BYEs due (``schedule``) and in flight, their timers, the answers to them."""

    def __init__(self, t1: float, t2: float, limit: int = MAX_HANGUPS) -> None:
        self.t1 = t1
        self.t2 = t2
        self.limit = limit
        #: (when, order, Bye or None): a BYE's timer, or (None) a BYE due in ``_due``.
        self._heap: list[tuple[float, int, Bye | None]] = []
        self._order = itertools.count()
        #: A BYE due: its dialog and where to send it.
        self._due: dict[int, tuple[Dialog, Any, tuple[str, int], bool, str]] = {}
        self._flight: dict[str, Bye] = {}
        #: BYEs let go because the bound was reached.
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._due) + len(self._flight)

    @property
    def busy(self) -> bool:
        """A BYE is due or in flight (asked for every timer and every response)."""
        return bool(self._due) or bool(self._flight)

    def schedule(
        self,
        dialog: Dialog,
        flow: Any,
        dest: tuple[str, int],
        reliable: bool,
        at: float,
        why: str,
    ) -> None:
        """Send a BYE in ``dialog`` at ``at``."""
        if len(self) >= self.limit:
            self._make_room()
        order = next(self._order)
        self._due[order] = (dialog, flow, dest, reliable, why)
        heapq.heappush(self._heap, (at, order, None))

    def _make_room(self) -> None:
        self.evicted += 1
        if self._due:
            del self._due[min(self._due)]
        elif self._flight:
            del self._flight[next(iter(self._flight))]

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _live(self, event: tuple[float, int, Bye | None]) -> bool:
        """Whether a heap entry still stands (entries are let go lazily)."""
        at, order, bye = event
        if bye is None:
            return order in self._due
        return self._flight.get(bye.branch) is bye and bye.deadline == at and not bye.answered

    def due(self, now: float) -> tuple[list[Bye], list[Bye]]:
        """What is due at ``now``: the BYEs to send (new, or Timer E's resends), and those
        Timer F gave up on."""
        sends: list[Bye] = []
        gave_up: list[Bye] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            event = heapq.heappop(heap)
            if not self._live(event):
                continue
            _, order, bye = event
            if bye is None:
                bye = self._start(order, now)
                bye.copies = 1
                sends.append(bye)
            elif now >= bye.t_end:
                del self._flight[bye.branch]
                gave_up.append(bye)
                continue
            else:
                sends.append(bye)  # Timer E (§17.1.2.2): T1 doubling to T2
                bye.copies += 1
                bye.interval = min(bye.interval * 2, self.t2)
            bye.deadline = min(now + bye.interval, bye.t_end) if not bye.reliable else bye.t_end
            heapq.heappush(heap, (bye.deadline, next(self._order), bye))
        return sends, gave_up

    def _start(self, order: int, now: float) -> Bye:
        dialog, flow, dest, reliable, why = self._due.pop(order)
        seed = f"{dialog.call_id}:{dialog.local}:{order}".encode()
        branch = "z9hG4bK-bye-" + hashlib.blake2s(seed, digest_size=8).hexdigest()
        data = dialog.bye(flow.transport, flow.local_text, branch, FIRST_CSEQ)
        bye = Bye(data, branch, dialog.call_id, flow, dest, reliable, why)
        bye.uri = dialog.request_uri
        bye.interval = self.t1
        bye.t_end = now + 64 * self.t1  # Timer F
        self._flight[branch] = bye
        return bye

    def response(self, resp: Response) -> Bye | None:
        """The BYE ``resp`` answers (by its top Via's branch), or None: not to ours.  A
        final response ends it; a provisional slows Timer E to T2 (§17.1.2.2)."""
        via = resp.header("via")
        if via is None or not self._flight:
            return None
        try:
            branch = parse_via(split_commas(via)[0]).branch
        except ParseError:
            return None
        bye = self._flight.get(branch or "")
        if bye is None:
            return None
        if resp.status >= 200:
            bye.answered = resp.status
            del self._flight[bye.branch]
        else:
            bye.interval = self.t2
        return bye
