"""The sans-IO core: bytes and a clock in, bytes to send out.

What belongs here: ``Endpoint``, which dispatches.  ``receive(data, flow, now)`` takes one
message and returns what to send; ``handle_timers(now)`` runs what is due;
``next_deadline()`` says when next.  A request goes to the transaction that has it
(``table``), or is ACK or CANCEL, or gets a plan (``planner``) and a new transaction;
``verdicts`` judge the client, ``recorder`` tells the journal.  ``ParseError`` becomes an
error response at exactly this boundary; a peer's input never raises.  No sockets, no
clock, no randomness.  Imports the rest of ``core`` and ``sip``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final, cast

from ..errors import FramingError, ParseError
from ..sip.message import Request, Response
from ..sip.parser import parse_message
from ..sip.responses import NO_EXTRAS, Answers, Extras, build_response, make_to_tag
from ..sip.serializer import serialize_response
from .auth import NonceSigner
from .config import Config
from .faulting import Faulting
from .flow import Flow, Reporter, Send, TransactionRecord, answering, reply_to
from .journal import Journal
from .mediahand import MediaHand
from .mediatable import MediaTable
from .planner import Builder, Planner, final_only
from .recorder import Recorder
from .rules import RuleSet
from .table import TransactionTable
from .transaction import MAGIC_COOKIE, End, ServerTransaction, State, expires_of, transaction_key
from .verdicts import Verdicts

log = logging.getLogger(__name__)

#: Why a new request is shed, by the counter it goes in.
_SHED: Final = {"draining": "shutting down", "overload": "overloaded"}


class Endpoint:
    """The responder's protocol core, driven by the transport adapters."""

    def __init__(
        self,
        config: Config,
        report: Reporter | None = None,
        rules: RuleSet | None = None,
        journal: Journal | None = None,
    ) -> None:
        if not config.secret:
            raise ValueError("Endpoint needs config.secret (the server makes one)")
        self.config = config
        self.secret = config.secret
        self.timers = dataclasses.replace(config.timers, max_ring=config.max_ring)
        self.stateless = config.stateless
        #: Set by the shell while the event loop lags behind: new requests get 503.
        self.shedding = False
        #: Set by the shell during a graceful stop: new requests get 503 (shutting down).
        self.draining = False
        self.report = report
        #: The transactions, their timers and the absorbers (RFC 3261 §17.2).
        self.table = TransactionTable(self.timers, config)
        #: The last ACK received, for ``our_tag`` (a reference kept, no work until asked).
        self.last_ack: Request | None = None
        self.signer = NonceSigner(self.secret)
        self.realm = config.realm
        #: The rules in use and the plan of each new request (``rules``, ``set_rules``).
        self.planner = Planner(self.secret, self.signer)
        self.set_rules(rules)
        #: Records every message and the client's violations; None keeps nothing.
        self.journal = journal
        self.recorder = Recorder(journal)
        #: Counters for metrics and the test report (``recorder.STATS``).
        self.stats = self.recorder.stats
        self._last_now = 0.0
        self.verdicts = Verdicts(self.timers, self.stats, self.recorder)
        #: What is done for requests with faults (drops, shaped sends, our BYEs).
        self.faulting = Faulting(self.timers, self.table, self.recorder, self.verdicts, self.stats)
        #: The calls' media sessions (``use_media``); None: no media, nothing runs.
        self.media: MediaHand | None = None

    def use_media(self, table: MediaTable) -> MediaHand:
        """Give answered calls media sessions from ``table`` (the glue binds its ports),
        in the mode ``--media`` names unless a rule or the dialled code names another."""
        self.media = MediaHand(table, self.config.media, self.recorder, self.verdicts)
        return self.media

    @property
    def rules(self) -> RuleSet | None:
        """The rules in use (None: dial-the-code)."""
        return self.planner.rules

    def set_rules(self, rules: RuleSet | None) -> None:
        """Use these rules for new transactions; those in flight keep their plan."""
        self.planner.set_rules(rules)

    # ------------------------------------------------------------ entry points

    def receive(self, data: bytes, flow: Flow, now: float) -> list[Send]:
        """One whole message from ``flow`` at ``now``; returns what to send."""
        self._last_now = now
        try:
            try:
                config = self.config
                msg = parse_message(
                    data,
                    stream=flow.stream,
                    max_size=config.max_message_size,
                    max_headers=config.max_headers,
                )
            except ParseError as exc:
                return self._reject(exc, flow)
            if isinstance(msg, Response):
                faulting = self.faulting
                if faulting.hangups.busy and faulting.answer(msg, data, flow, now):
                    return []
                self.stats["dropped"] += 1
                self.verdicts.notice(
                    "response", flow, f"dropped a {msg.status} response: we send no requests"
                )
                return []
            self.stats["requests"] += 1
            return self._request(msg, flow, now)
        except Exception:  # the server never dies because of what a peer sent
            self.stats["dropped"] += 1
            self.stats["internal_errors"] += 1
            log.exception("internal error handling a message from %s; dropped", flow.peer)
            return []

    def reject_framing(self, err: FramingError, flow: Flow) -> list[Send]:
        """The TCP framer (or a transport limit) gave up on a message: answer it if it can
        be addressed."""
        # Declared with None: compiled (mypyc), the variable's type is checked when the
        # error's request (None when nothing could be read) is assigned to it.
        msg: Request | Response | None
        try:
            msg = parse_message(err.data, stream=False, max_size=1 << 30)
        except ParseError as exc:
            msg = exc.request
        if not isinstance(msg, Request):
            self.stats["parse_errors"] += 1
            self.verdicts.notice("unanswerable", flow, f"dropped a message: {err.reason}")
            return []
        return self._reject(ParseError(err.reason, err.status, msg), flow)

    def handle_timers(self, now: float) -> list[Send]:
        """Run every transaction timer due at ``now``, and let expired absorbers go."""
        self._last_now = now
        table = self.table
        table.expire(now)
        out: list[Send] = []
        # Again until nothing is due: a timer may set another that is due already.
        for _ in range(1000):
            fired = table.due(now)
            if not fired:
                break
            for txn in fired:
                if not txn.terminated:
                    self._fire(txn, now, out)
        if self.faulting.hangups.busy:
            self.faulting.due(now, out)
        return out

    def next_deadline(self) -> float | None:
        """When ``handle_timers`` has something to do next, or None."""
        deadline = self.table.next_deadline()
        hangups = self.faulting.hangups
        if hangups.busy:
            hangup = hangups.next_deadline()
            if hangup is not None and (deadline is None or hangup < deadline):
                return hangup
        return deadline

    def end_pending(self, now: float, code: int = 503) -> list[Send]:
        """Graceful stop, drain time over: every request still unanswered gets ``code``."""
        out: list[Send] = []
        for txn in self.table.pending():
            txn.expire_now(now, code)
            self._fire(txn, now, out)
        return out

    def our_tag(self, ack: Request) -> bool:
        """Whether an ACK carries our To tag, which only our response to its INVITE had:
        proof that its sender receives what we send (the glue's anti-amplification cap)."""
        tag = ack.to_tag
        return tag is not None and tag == self._tag(ack)

    # ------------------------------------------------------------------ inside

    def _request(self, req: Request, flow: Flow, now: float) -> list[Send]:
        method = req.method
        recorder = self.recorder
        counted = recorder.count(method)
        verdicts = self.verdicts
        if req.headers.first("max-forwards") is None:
            verdicts.notice("max-forwards", flow, f"{method} without Max-Forwards (tolerated)")
        if self.stateless and method in ("ACK", "CANCEL"):
            # §8.2.7 stateless UAS: an ACK is never answered, and with no transactions a
            # CANCEL has nothing to end — both are ignored.
            if method == "ACK":
                self.last_ack = req
            recorder.incoming(req, flow, now, False)
            return []
        table = self.table
        if method == "ACK":
            self.last_ack = req
            key = None
        else:
            key = transaction_key(req)
        txn = None if key is None else table.transactions.get(key)
        absorbed = txn is None and method == "INVITE" and table.absorbs(key, now)
        dropping = self.faulting.dropping
        # A copy of a request whose first copies a fault dropped (``drop_requests``).
        dropped = bool(dropping) and txn is None and key in dropping
        if self.journal is not None:
            recorder.incoming(req, flow, now, txn is not None or absorbed or dropped)
        branch = req.branch
        if txn is None and not absorbed and not (branch and branch.startswith(MAGIC_COOKIE)):
            verdicts.no_magic_cookie(req, now)
        if method == "ACK":
            self._ack(req, now)
            return []  # RFC 3261 §17.2.1, §13.3.1.4: an ACK is never answered
        if txn is not None:
            self.stats["retransmissions"] += 1
            verdicts.copy(txn, req, flow, now)
            txn.retransmission(now)
            out: list[Send] = []
            self._after(txn, out)
            return out
        if method == "CANCEL":
            return self._cancel(req, flow, now)
        if absorbed:
            # RFC 3261 §17.2.1: absorbed in Confirmed; RFC 6026 §8.7: absorbed after a 2xx.
            self.stats["retransmissions"] += 1
            if table.confirmed.holds(key, now):
                verdicts.copy_after_ack(req, now)
            return []
        if method == "BYE":
            verdicts.bye(req, now)
            if self.media is not None:
                self.media.ended(req.call_id or "", now, "bye")
        assert key is not None
        if (self.shedding or self.draining) and req.to_tag is None:
            # RFC 3261 §21.5.4: 503 with Retry-After at once and no state, rather than
            # dropped; requests in a dialog (BYE...) are still served: they end calls.
            why = "draining" if self.draining else "overload"
            self.stats[why] += 1
            reason = f"Service Unavailable ({_SHED[why]})"
            retry = self.config.overload_retry_after
            return self._answer_now(req, flow, 503, self._tag(req), reason, retry)

        source = flow.remote
        planner = self.planner
        if dropped:
            # Its first copies were dropped on purpose: this one too, or it gets what
            # the first drew.
            kept = self.faulting.again(req, key, now)
            if kept is None:
                return []
            plan, extras, send_trying, stateful, faults = kept
        else:
            plan, extras, send_trying, stateful = planner.choose(
                req, flow.transport, flow.remote[0], now + recorder.wall_offset, flow.remote_text
            )
            if planner.verdict is not None:
                verdicts.digest(planner.verdict, req, flow, now)
            faults = planner.faults
            if faults is not None:
                if self.stateless:
                    faults = None  # --stateless keeps no transaction for a fault to act in
                else:
                    trying = self.faulting.before(req, key, now, faults, plan, extras, send_trying)
                    if trying is None:
                        return []  # the first copy, dropped
                    send_trying = trying
        if self.stateless:
            # Only the last response of the plan, at once: no 100, no provisionals, no
            # delays, no retransmissions (RFC 3261 §8.2.7).
            plan = final_only(plan)
            send_trying = stateful = False
        # In a dialog (BYE, re-INVITE) the To tag is already there and every response
        # keeps it (§8.2.6.2): no tag of ours to work out.
        tag = req.to_tag or make_to_tag(self.secret, req.call_id or "", req.from_tag, req.cseq_num)
        dest = reply_to(req, flow)
        answers = Answers(req, to_tag=tag, source=source, local=answering(req, flow))
        wall = now + recorder.wall_offset
        by_code = recorder.codes(counted)
        build = Builder(answers, extras, by_code, flow, self.signer, self.realm, wall)
        media = self.media
        if media is not None and (method == "INVITE" or method == "UPDATE"):
            build.media = media
            build.media_mode = plan.media
            build.now = now

        if self.stateless or (
            method != "INVITE" and plan.immediate and not plan.rings and not stateful
        ):
            # Stateless (§8.2.7): a retransmission is answered identically, since the To
            # tag and every byte of the response follow from the request alone.
            out = [(build(step), flow, dest) for step in plan.steps]
            if self.journal is not None:
                for data, _, _ in out:
                    recorder.outgoing(data, flow, dest, req.call_id, method, req.cseq_num, now)
            self.stats["responses_sent"] += len(out)
            codes = tuple(step.code for step in plan.steps)
            if method == "INVITE":
                verdicts.answered_at_once(req.call_id or "", req.cseq_num, codes[-1])
            self._report(req, flow, codes)
            return out

        weight = table.room_for(req)
        if not weight:
            self.stats["overload"] += 1
            reason = "Service Unavailable (too many transactions)"
            return self._answer_now(req, flow, 503, tag, reason, 5)
        if faults is None:
            txn = table.open(
                key,
                req,
                plan,
                build,
                reliable=flow.reliable,
                flow=(flow, dest),
                peer=flow.peer,
                to_tag=tag,
                weight=weight,
            )
        else:
            txn = self.faulting.open(key, req, plan, build, flow, dest, tag, weight, faults)
        expires = None
        if method == "INVITE":
            verdicts.invite(txn.call_id, txn.cseq_num)
            expires = expires_of(req)
        txn.start(now, send_trying=send_trying, expires=expires)
        out = []
        self._after(txn, out)
        return out

    def _answer_now(
        self,
        req: Request,
        flow: Flow,
        code: int,
        tag: str | None,
        reason: str | None = None,
        retry_after: int | None = None,
    ) -> list[Send]:
        """One response at once, with no transaction kept: a 503 when the table or the
        process is full, the answer to a CANCEL, a request refused as malformed."""
        extras = NO_EXTRAS if reason is None else Extras(reason=reason, retry_after=retry_after)
        resp = build_response(
            req, code, to_tag=tag, source=flow.remote, local=answering(req, flow), extras=extras
        )
        data = serialize_response(resp)
        dest = reply_to(req, flow)
        self.recorder.outgoing(
            data, flow, dest, req.call_id, req.method, req.cseq_num, self._last_now
        )
        if req.method == "INVITE":
            self.verdicts.answered_at_once(req.call_id or "", req.cseq_num, code)
        self._report(req, flow, (code,))
        return [(data, flow, dest)]

    def _ack(self, req: Request, now: float) -> None:
        self.stats["acks"] += 1
        if self.media is not None:
            self.media.acked(req.call_id or "", now)
        table = self.table
        key = transaction_key(req)
        txn = table.get(key)
        if txn is None and table.confirmed.holds(key, now):
            return  # RFC 3261 §17.2.1: Confirmed absorbs the ACK's retransmissions
        verdicts = self.verdicts
        if txn is None:
            txn = table.accepted_by(req)
        if txn is not None:
            verdicts.ack(req, txn, now)
        if txn is None:
            verdicts.stray_ack(req, req.to_tag == self._tag(req), now)
            return
        fault = txn.fault
        if fault is not None and self.faulting.ack(req, txn, fault, now):
            return  # the faults took it (ignore_ack, fork)
        accepted = txn.state is State.ACCEPTED
        txn.ack(now)
        if not table.acknowledged(txn, accepted, now):
            self._after(txn, [])

    def _cancel(self, req: Request, flow: Flow, now: float) -> list[Send]:
        """§9.2: 200 to a CANCEL that matches a transaction, 487 to its pending INVITE."""
        target = self.table.cancel_target(req)
        out = self._answer_now(req, flow, 481 if target is None else 200, self._tag(req))
        self.stats["responses_sent"] += 1
        if target is not None and target.invite and target.provisional_at is None:
            self.verdicts.early_cancel(req, now)
        if target is not None and target.cancel(now):
            self._after(target, out)
            if self.media is not None and target.invite:
                self.media.ended(target.call_id, now, "cancel")
        return out

    def _fire(self, txn: ServerTransaction, now: float, out: list[Send]) -> None:
        """Run a transaction's due timers and collect what they send."""
        resent = txn.resent
        try:
            txn.on_timer(now)
        except Exception:
            self.stats["internal_errors"] += 1
            log.exception("internal error in a transaction timer; transaction dropped")
            txn.abort()
        if txn.resent != resent:
            self.stats["resent"] += txn.resent - resent
        self._after(txn, out)

    def _after(self, txn: ServerTransaction, out: list[Send]) -> None:
        """Collect a transaction's output, tell what it became, and file or drop it."""
        outbox = txn.outbox
        if outbox:
            flow, dest = cast(tuple[Flow, tuple[str, int]], txn.flow)
            recorder = self.recorder
            fault = txn.fault
            if fault is not None:
                sent = self.faulting.send(txn, fault, flow, dest, out, self._last_now)
                self.stats["responses_sent"] += sent
            else:
                for data in outbox:
                    out.append((data, flow, dest))
                    recorder.outgoing(
                        data, flow, dest, txn.call_id, txn.method, txn.cseq_num, self._last_now
                    )
                self.stats["responses_sent"] += len(outbox)
            txn.sent()
        final = txn.final
        if final is not None and txn.take_report():
            self.table.answered(txn, final)
            if self.report is not None:
                self.report(TransactionRecord(txn.method, txn.uri, txn.peer, tuple(txn.codes)))
            if txn.invite:
                self.verdicts.answered(txn.call_id, txn.cseq_num, txn.final_code or 0)
        self.table.settle(txn)
        if txn.end is End.NO_ACK:
            if self.media is not None and txn.invite:
                self.media.ended(txn.call_id, self._last_now, "no ack")
            fault = txn.fault
            if fault is None:
                self.verdicts.no_ack(txn, self._last_now)
            else:
                self.faulting.no_ack(txn, fault, self._last_now)

    def _reject(self, exc: ParseError, flow: Flow) -> list[Send]:
        """A request we could not accept: answer it statelessly when it can be addressed."""
        self.stats["parse_errors"] += 1
        req = exc.request
        if not isinstance(req, Request) or req.top_via is None or req.method == "ACK":
            self.stats["dropped"] += 1
            self.verdicts.notice("dropped", flow, f"dropped a message: {exc.reason}")
            return []
        self.recorder.incoming(req, flow, self._last_now, False)
        self.stats["responses_sent"] += 1
        tag = self._tag(req) if req.call_id else None
        return self._answer_now(req, flow, exc.status, tag, exc.reason)

    def _tag(self, req: Request) -> str:
        """Our To tag for a request: a keyed hash of its Call-ID, From tag and CSeq."""
        return make_to_tag(self.secret, req.call_id or "", req.from_tag, req.cseq_num)

    def _report(self, req: Request, flow: Flow, codes: tuple[int, ...]) -> None:
        if self.report is not None:
            self.report(TransactionRecord(req.method, req.uri, flow.peer, codes))
