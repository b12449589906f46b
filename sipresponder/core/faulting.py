"""What the endpoint does for a request whose rule (or dialled plan) has faults.

What belongs here: ``Faulting``, the endpoint's hand for faults — before a transaction
starts (drop the request's first copies, kept by key; leave out the 100), the faulted
transaction it opens (``shaping``'s builder and state), what such a transaction sends
(shaped, judged, journaled with what was done), its ACKs (paid no heed, one per fork,
a hang-up to come) and its end (the verdicts on forks, a BYE after a 2xx whose ACKs
were ignored), and the BYEs of ours (``hangup``: due, resent, answered).  The endpoint
dispatches; the faults' decisions are taken here and in ``shaping``.  Sans-IO: every
call takes ``now``.  Imports the rest of ``core`` below ``endpoint``, and ``sip``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any, cast

from ..sip.message import Request, Response
from ..sip.responses import Extras
from .faults import FaultPlan, drop_again, drop_first
from .flow import Flow, Send
from .hangup import FIRST_CSEQ, Dialog, Hangups
from .planner import Builder
from .plans import Plan
from .recorder import Recorder
from .shaping import FaultBuilder, FaultState
from .table import TransactionTable
from .transaction import ServerTransaction, State, Timers
from .verdicts import Verdicts

#: What a request whose first copies are dropped gets once they are: (plan, extras,
#: send 100, keep state, faults).
Choice = tuple[Plan, Extras, bool, bool, FaultPlan | None]


class Faulting:
    """The faults' part of the endpoint's work, and the state it needs (bounded)."""

    def __init__(
        self,
        timers: Timers,
        table: TransactionTable,
        recorder: Recorder,
        verdicts: Verdicts,
        stats: dict[str, int],
    ) -> None:
        self.table = table
        self.recorder = recorder
        self.verdicts = verdicts
        self.stats = stats
        #: Requests whose first copies a fault drops (``drop_requests``), by key.
        self.dropping: dict[Hashable, list[Any]] = {}
        #: BYEs of ours (``bye_after``; a 2xx whose ACKs a fault ignored), due and sent.
        self.hangups = Hangups(timers.t1, timers.t2)

    # ------------------------------------------------------------- a new request

    def again(self, req: Request, key: Hashable, now: float) -> Choice | None:
        """A copy of a request whose first copies were dropped on purpose: dropped too
        (None), or what the first copy drew."""
        copy, kept = drop_again(self.dropping, key)
        if kept is None:
            self.recorder.fault(
                req.call_id or "",
                req.method,
                req.cseq_num,
                now,
                "drop_requests",
                f"copy {copy} of the request dropped",
            )
            return None
        return cast(Choice, kept)

    def before(
        self,
        req: Request,
        key: Hashable,
        now: float,
        faults: FaultPlan,
        plan: Plan,
        extras: Extras,
        send_trying: bool,
    ) -> bool | None:
        """What a rule's faults do before a transaction starts: drop the first copy of the
        request (None), or leave out the 100 Trying (False); else ``send_trying``."""
        rule = faults.faults
        if rule is None:
            return send_trying
        call_id, method, cseq = req.call_id or "", req.method, req.cseq_num
        if rule.drop_requests:
            choice: Choice = (plan, extras, send_trying, True, faults)
            drop_first(self.dropping, key, rule.drop_requests, choice)
            self.recorder.fault(
                call_id,
                method,
                cseq,
                now,
                "drop_requests",
                f"copy 1 of the request dropped ({rule.drop_requests} will be)",
            )
            return None
        if rule.no_trying and send_trying:
            self.recorder.fault(call_id, method, cseq, now, "no_trying", "no 100 Trying sent")
            return False
        return send_trying

    def open(
        self,
        key: Hashable,
        req: Request,
        plan: Plan,
        build: Builder,
        flow: Flow,
        dest: tuple[str, int],
        tag: str,
        weight: int,
        faults: FaultPlan,
    ) -> ServerTransaction:
        """A new transaction whose responses a rule's faults act on."""
        state = FaultState(faults, flow.reliable)
        rule = faults.faults
        if (
            req.method == "INVITE"
            and rule is not None
            and (rule.bye_after is not None or rule.ignore_ack)
        ):
            state.dialog = Dialog.of(req, tag)
        txn = self.table.open(
            key,
            req,
            plan,
            FaultBuilder(build, state, tag),
            reliable=flow.reliable,
            flow=(flow, dest),
            peer=flow.peer,
            to_tag=tag,
            weight=weight,
        )
        txn.fault = state
        return txn

    # ------------------------------------------------------------ a transaction

    def send(
        self,
        txn: ServerTransaction,
        fault: FaultState,
        flow: Flow,
        dest: tuple[str, int],
        out: list[Send],
        now: float,
    ) -> int:
        """What a faulted transaction's ``outbox`` becomes: shaped, judged, sent and
        journaled with what was done to each.  -> the responses counted as sent."""
        shaped = fault.shape(txn.outbox)
        if shaped:
            self.verdicts.fault_sent(txn, fault, [code for _, code, _ in shaped], now)
        for data in fault.wire(shaped):
            out.append((data, flow, dest))
        recorder = self.recorder
        for data, code, label in shaped:
            recorder.faulted(
                data, flow, dest, txn.call_id, txn.method, txn.cseq_num, code, now, label
            )
        return len(shaped)

    def ack(self, req: Request, txn: ServerTransaction, fault: FaultState, now: float) -> bool:
        """An ACK for a faulted INVITE: True when the faults took it (the transaction is
        not to hear of it)."""
        if fault.ignore_ack:
            # As if it never came: the final response keeps being resent until Timer H
            # (a non-2xx) or 64*T1 (a 2xx, RFC 3261 §13.3.1.4).
            fault.ignored_acks += 1
            fault.acked_since = True
            self.recorder.fault(
                req.call_id or "",
                "ACK",
                req.cseq_num,
                now,
                "ignore_ack",
                f"ACK {fault.ignored_acks} paid no heed",
            )
            return True
        if txn.state is not State.ACCEPTED:
            return False
        if fault.forks:
            # fork: an ACK for each 2xx; the transaction stays until 64*T1, resending those
            # not ACKed yet, so that the verdicts see every ACK and BYE.
            fault.fork_acked.add(req.to_tag or "")
            return True
        rule = fault.plan.faults
        if rule is not None and rule.bye_after is not None:
            self._hang_up(txn, fault, now + rule.bye_after, "bye_after")
        return False

    def no_ack(self, txn: ServerTransaction, fault: FaultState, now: float) -> None:
        """A faulted INVITE's final response ran out of time (Timer H, 64*T1)."""
        if fault.forks:
            self.verdicts.fork_end(txn, fault, now)
        elif not fault.ignored_acks:
            self.verdicts.no_ack(txn, now)
        if fault.ignore_ack and (txn.final_code or 0) < 300:
            # RFC 3261 §13.3.1.4: no ACK for 64*T1: the session is ended with a BYE.
            self._hang_up(txn, fault, now, "no ACK heeded for the 2xx")

    def _hang_up(self, txn: ServerTransaction, fault: FaultState, at: float, why: str) -> None:
        """Send a BYE in the dialog of ``txn``'s 2xx at ``at``."""
        dialog = fault.dialog
        if dialog is None:
            return
        fault.dialog = None  # once
        if fault.final_tag and txn.to_tag:
            # to_tag: change: the 2xx's tag made the dialog, not the provisionals'.
            local = dialog.local.replace(f";tag={txn.to_tag}", f";tag={fault.final_tag}")
            dialog = dataclasses.replace(dialog, local=local)
        flow, dest = cast(tuple[Flow, tuple[str, int]], txn.flow)
        self.hangups.schedule(dialog, flow, dest, flow.reliable, at, why)

    # -------------------------------------------------------------- our BYEs

    def due(self, now: float, out: list[Send]) -> None:
        """Send the BYEs of ours that are due (new, or resent on Timer E); judge those
        Timer F gave up on."""
        sends, gave_up = self.hangups.due(now)
        recorder = self.recorder
        for bye in sends:
            out.append((bye.data, bye.flow, bye.dest))
            recorder.request_out(
                bye.data, bye.flow, bye.dest, bye.uri, bye.call_id, FIRST_CSEQ, now, bye.copies > 1
            )
        for bye in gave_up:
            self.verdicts.bye_answered(bye.call_id, bye.why, 0, now)

    def answer(self, resp: Response, data: bytes, flow: Flow, now: float) -> bool:
        """A client's response to a BYE of ours: journaled and judged; False when it
        answers nothing of ours."""
        bye = self.hangups.response(resp)
        if bye is None:
            return False
        self.recorder.response_in(data, flow, bye.call_id, "BYE", FIRST_CSEQ, resp.status, now)
        if bye.answered:
            self.verdicts.bye_answered(bye.call_id, bye.why, bye.answered, now)
        return True
