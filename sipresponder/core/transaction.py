"""Sans-IO server transactions (RFC 3261 §17.2, RFC 6026) that follow a plan.

What belongs here: transaction keys (§17.2.3), the INVITE and non-INVITE server
transaction state machines with Timers G, H, I, J, the 2xx retransmission of the UAS core
(§13.3.1.4), the periodic provisional of a ringing INVITE (§13.3.1.1), the INVITE's own
``Expires`` (§13.3.1) and the ring limit.  A transaction never reads a clock: every entry
point takes ``now`` and ``next_deadline`` tells the caller when to call ``on_timer``.  It
builds no messages either: it is given ``build(step) -> bytes`` and appends what is to be
sent to ``outbox``.  Imports ``message``, ``plans`` and ``faults`` (the type of what its
owner keeps in ``fault``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

from ..sip.message import Request, decimal
from .plans import Plan, Step
from .shaping import FaultState

MAGIC_COOKIE: Final = "z9hG4bK"  # RFC 3261 §8.1.1.7
TRYING: Final = Step(100)


class State(enum.Enum):
    TRYING = "Trying"  # non-INVITE only
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"  # INVITE, after the ACK of a non-2xx
    ACCEPTED = "Accepted"  # INVITE, after a 2xx (RFC 6026 §7.1)
    TERMINATED = "Terminated"


class End(enum.Enum):
    """Why a transaction terminated, for the logs and for later verdicts."""

    ACKED = "acked"
    NO_ACK = "no ACK"  # Timer H, or the 2xx retransmissions ran out (§13.3.1.4)
    DONE = "done"  # non-INVITE after Timer J, or INVITE after Timer I


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17 timer values, in seconds (table 4 of Appendix A)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    #: §13.3.1.1: repeat a non-100 provisional this often while ringing.
    provisional_interval: float = 60.0
    #: The longest an INVITE may stay without a final response; then 408.
    max_ring: float = 120.0


def transaction_key(req: Request, method: str | None = None) -> Hashable:
    """The server transaction a request belongs to (RFC 3261 §17.2.3).

    With an RFC 3261 branch: branch, sent-by and method, where ACK matches INVITE.
    ``method`` overrides the request's own (CANCEL looks up its INVITE with it).
    Without the magic cookie (RFC 2543 peers): Request-URI, From tag, Call-ID, CSeq
    number and the whole top Via — the To tag is left out since ours is derived from the
    others and would match anyway.
    """
    if method is None:
        method = "INVITE" if req.method == "ACK" else req.method
    via = req.top_via
    assert via is not None
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), via.port, method)
    return (req.uri, req.from_tag, req.call_id, req.cseq_num, req.vias[0], method)


def ack_key(req: Request) -> Hashable:
    """What ties an ACK for a 2xx (a transaction of its own) to its INVITE: the dialog's
    Call-ID and remote tag, and the CSeq number (§13.2.2.4, §17.1.1.3)."""
    return (req.call_id, req.from_tag, req.cseq_num)


def expires_of(req: Request) -> float | None:
    """An INVITE's Expires (RFC 3261 §13.3.1): seconds it may ring, or None."""
    value = req.headers.first("expires")
    seconds = None if value is None else decimal(value.strip())
    return None if seconds is None else float(seconds)


def _earlier(a: float | None, b: float | None) -> float | None:
    """The earlier of two deadlines, either of which may be unset."""
    if a is None or (b is not None and b < a):
        return b
    return a


class ServerTransaction:
    """One INVITE or non-INVITE server transaction running a plan.

    The caller feeds it events (``start``, ``retransmission``, ``ack``, ``cancel``,
    ``on_timer``), each with ``now``, then takes ``outbox`` and asks ``next_deadline``.
    """

    __slots__ = (
        "ack_key",
        "build",
        "call_id",
        "codes",
        "copies",
        "cseq_num",
        "end",
        "expire_code",
        "fault",
        "final",
        "flow",
        "invite",
        "key",
        "last_copy",
        "last_provisional",
        "method",
        "outbox",
        "peer",
        "plan",
        "provisional_at",
        "reliable",
        "reported",
        "request",
        "resent",
        "retx_interval",
        "scheduled",
        "slot_index",
        "start_time",
        "state",
        "step_index",
        "t_end",
        "t_expire",
        "t_prov",
        "t_retx",
        "t_step",
        "timers",
        "to_tag",
        "uri",
        "weight",
    )

    def __init__(
        self,
        key: Hashable,
        request: Request,
        plan: Plan,
        build: Callable[[Step], bytes],
        *,
        reliable: bool,
        timers: Timers,
        flow: object = None,
        peer: str = "",
        to_tag: str = "",
        ack_key: Hashable = None,
        weight: int = 0,
    ) -> None:
        self.key = key
        self.request: Request | None = request
        self.invite = request.method == "INVITE"
        self.plan = plan
        self.build: Callable[[Step], bytes] | None = build
        self.reliable = reliable
        self.timers = timers
        self.flow = flow
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.outbox: list[bytes] = []
        self.codes: list[int] = []
        self.last_provisional: bytes | None = None
        self.final: bytes | None = None
        self.end: End | None = None
        self.step_index = 0
        self.start_time = 0.0
        self.t_step: float | None = None
        self.t_expire: float | None = None
        self.expire_code = 408
        self.t_prov: float | None = None
        self.t_retx: float | None = None
        self.retx_interval = 0.0
        #: Final responses resent on Timer G or the 2xx's timer (not for a copy received).
        self.resent = 0
        self.t_end: float | None = None
        #: The deadline the owner's timer wheel filed it under (None: in no slot), and
        #: its place in that slot's list: set through ``filed``, ``moved`` and ``unfiled``.
        self.scheduled: float | None = None
        self.slot_index = 0
        #: For an INVITE: the key its 2xx's ACK will be found by (given by the owner).
        self.ack_key: Hashable = ack_key
        #: What it does wrong on purpose (``faults``), for the owner; None for nothing.
        self.fault: FaultState | None = None
        self.method = request.method
        self.uri = request.uri
        self.call_id = request.call_id or ""
        self.cseq_num = request.cseq_num
        #: Our To tag, for judging an ACK (given by the owner).
        self.to_tag = to_tag
        #: The copies of the request seen, and when the last came (retransmission timing).
        self.copies = 1
        self.last_copy = 0.0
        #: When the first provisional was sent (a client stops retransmitting on it).
        self.provisional_at: float | None = None
        self.peer = peer
        self.reported = False
        #: What the owner counts it for against its byte bound (``reweigh``).
        self.weight = weight

    # ------------------------------------------------------------------ events

    def start(self, now: float, *, send_trying: bool, expires: float | None = None) -> None:
        """The request arrived.  ``send_trying``: send 100 Trying first (§17.2.1)."""
        self.start_time = now
        self.last_copy = now
        if send_trying:
            self._provisional(TRYING, now)
        # §13.3.1: the INVITE's Expires ends the ringing with 487; the ring limit with 408.
        limit = self.timers.max_ring
        if expires is not None and expires < limit:
            self.t_expire = now + expires
            self.expire_code = 487
        else:
            self.t_expire = now + limit
            self.expire_code = 408
        self.t_step = now + self.plan.steps[0].at
        self._run_steps(now)

    def note_copy(self, now: float) -> float:
        """A copy of the request arrived: counted; the seconds since the last one."""
        interval = now - self.last_copy
        self.copies += 1
        self.last_copy = now
        return interval

    def expire_now(self, now: float, code: int) -> None:
        """End the ringing at ``now`` with ``code`` (a graceful stop's drain is over), the
        way its ring limit would; ``on_timer(now)`` sends it."""
        self.expire_code = code
        self.t_expire = now

    def abort(self) -> None:
        """An internal error: the transaction ends here and sends nothing more."""
        self.state = State.TERMINATED

    def filed(self, deadline: float, index: int) -> None:
        """The owner's timer wheel filed it under ``deadline``, at ``index`` in the slot."""
        self.scheduled = deadline
        self.slot_index = index

    def moved(self, index: int) -> None:
        """The owner's timer wheel moved it within its slot's list."""
        self.slot_index = index

    def unfiled(self) -> None:
        """The owner's timer wheel took it out of its slot."""
        self.scheduled = None

    def sent(self) -> None:
        """The owner has taken what ``outbox`` held."""
        self.outbox.clear()

    def take_report(self) -> bool:
        """True once, when the final response has gone out: the time to report it."""
        if self.final is None or self.reported:
            return False
        self.reported = True
        return True

    def reweigh(self, weight: int) -> int:
        """Count it as ``weight`` from now on; returns the change."""
        change = weight - self.weight
        self.weight = weight
        return change

    def retransmission(self, now: float) -> None:
        """The same request again (§17.2.1, §17.2.2): resend the latest response."""
        state = self.state
        if state is State.PROCEEDING:
            # RFC 3261 §17.2.1: resend the last provisional on a retransmitted INVITE.
            if self.last_provisional is not None:
                self.outbox.append(self.last_provisional)
        elif state is State.COMPLETED:
            # §17.2.1 (and §17.2.2 for non-INVITE): the final again.
            assert self.final is not None
            self.outbox.append(self.final)
        # TRYING: absorbed (§17.2.2); CONFIRMED: absorbed (§17.2.1); ACCEPTED: absorbed
        # (RFC 6026 §8.7) — the 2xx is resent on its own timer until the ACK.

    def ack(self, now: float) -> None:
        """An ACK for this INVITE's final response.  Never answered."""
        if self.state is State.COMPLETED:
            # §17.2.1: ACK stops Timer G and H; Timer I absorbs ACK retransmissions.
            self.state = State.CONFIRMED
            self.end = End.ACKED
            self.t_retx = None
            self.final = None  # Confirmed only absorbs: nothing is sent again
            self.t_end = now + (0.0 if self.reliable else self.timers.t4)
        elif self.state is State.ACCEPTED:
            # §13.3.1.4: the ACK ends the 2xx retransmissions.  We keep no dialog; the
            # owner remembers the key for RFC 6026's Timer L, to absorb late INVITEs.
            self.end = End.ACKED
            self._terminate()

    def cancel(self, now: float) -> bool:
        """A matching CANCEL (§9.2).  True when it ended a pending INVITE with 487."""
        if self.invite and self.state is State.PROCEEDING:
            self._final(Step(487), now)
            return True
        return False

    def on_timer(self, now: float) -> None:
        """Run every timer that is due at ``now``."""
        if self.t_step is not None and self.t_step <= now:
            self._run_steps(now)
        if self.t_expire is not None and self.t_expire <= now:
            self.t_expire = None
            if self.state in (State.TRYING, State.PROCEEDING):
                self._final(Step(self.expire_code), now)
        if self.t_prov is not None and self.t_prov <= now:
            if self.state is State.PROCEEDING and self.last_provisional is not None:
                self.outbox.append(self.last_provisional)
                self.t_prov = now + self.timers.provisional_interval
            else:
                self.t_prov = None
        if self.t_retx is not None and self.t_retx <= now:
            # Timer G (§17.2.1) or the 2xx retransmission (§13.3.1.4): T1 doubling to T2.
            assert self.final is not None
            self.outbox.append(self.final)
            self.resent += 1
            self.retx_interval = min(self.retx_interval * 2, self.timers.t2)
            self.t_retx = now + self.retx_interval
        if self.t_end is not None and self.t_end <= now:
            if self.invite and self.state in (State.COMPLETED, State.ACCEPTED):
                self.end = End.NO_ACK  # Timer H, or 64*T1 of 2xx retransmissions
            elif self.end is None:
                self.end = End.DONE
            self._terminate()

    @property
    def next_deadline(self) -> float | None:
        # Pairwise, not a loop over a tuple of the five: that costs mypyc a tuple and a
        # generic iterator, and this is read after every event.
        soonest = _earlier(_earlier(self.t_step, self.t_expire), _earlier(self.t_prov, self.t_retx))
        return _earlier(soonest, self.t_end)

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    @property
    def final_code(self) -> int | None:
        return self.codes[-1] if self.codes and self.codes[-1] >= 200 else None

    # ----------------------------------------------------------------- inside

    def _run_steps(self, now: float) -> None:
        steps = self.plan.steps
        while self.step_index < len(steps):
            if self.state not in (State.TRYING, State.PROCEEDING):
                self.t_step = None
                return
            step = steps[self.step_index]
            due = self.start_time + step.at
            if due > now:
                self.t_step = due
                return
            self.step_index += 1
            if step.code < 200:
                self._provisional(step, now)
            else:
                self._final(step, now)
        self.t_step = None

    def _provisional(self, step: Step, now: float) -> None:
        assert self.build is not None
        code = step.code
        data = self.build(step)
        self.outbox.append(data)
        self.codes.append(code)
        self.last_provisional = data
        if self.provisional_at is None:
            self.provisional_at = now
        if self.state is State.TRYING:
            self.state = State.PROCEEDING
        if code != 100 and self.invite:
            # §13.3.1.1: while ringing, repeat the provisional so proxies keep waiting.
            self.t_prov = now + self.timers.provisional_interval

    def _final(self, step: Step, now: float) -> None:
        assert self.build is not None
        code = step.code
        data = self.build(step)
        self.outbox.append(data)
        self.codes.append(code)
        self.final = data
        self.last_provisional = None
        self.t_step = None
        self.t_expire = None
        self.t_prov = None
        # Nothing more is built: let the request and its closure go (memory per call).
        self.request = None
        self.build = None
        t = self.timers
        if not self.invite:
            # §17.2.2: Completed absorbs retransmissions for Timer J (64*T1, 0 on TCP).
            self.state = State.COMPLETED
            self.t_end = now + (0.0 if self.reliable else 64 * t.t1)
        elif code < 300:
            # §13.3.1.4 / RFC 6026 §7.1: resend the 2xx until the ACK, up to 64*T1.
            self.state = State.ACCEPTED
            self.t_end = now + 64 * t.t1
            self.retx_interval = t.t1
            self.t_retx = None if self.reliable else now + t.t1
        else:
            # §17.2.1: Timer G (UDP only) until the ACK, Timer H gives up.
            self.state = State.COMPLETED
            self.t_end = now + 64 * t.t1
            self.retx_interval = t.t1
            self.t_retx = None if self.reliable else now + t.t1

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self.t_step = self.t_expire = self.t_prov = self.t_retx = self.t_end = None
        self.request = None
        self.build = None
        self.final = self.last_provisional = None
