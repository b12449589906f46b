"""The verdicts on the client: what it did against the RFCs, and what it did oddly.

What belongs here: ``Verdicts``, told by the endpoint what came (a retransmission, an
ACK, a BYE, a Digest answer) and what was answered, and judging it — Timer A and E
intervals (RFC 3261 §17.1.1.2, §17.1.2.2), the ACK's To tag and CSeq (§17.1.1.3,
§13.2.2.4), a BYE without a dialog (§15), a missing ACK (Timer H, 64·T1), and what the
client did about a rule's faults (``fault_sent``: no retransmission without a 100, a
resent final response not ACKed again, the provisionals' To tag used after the 2xx's).
A violation is counted by rule, handed to the recorder for the journal and logged at
WARNING, at most ``LOG_RATE`` lines a second; an oddity that is no violation (a missing
Max-Forwards, an RFC 2069 Digest answer) is logged once per kind and source.

It needs no journal: what it must remember of a call — its last INVITE's CSeq number and
final status, and whether any INVITE of it got a 2xx — it keeps itself, packed in one int
per call (no object to allocate or for the garbage collector to visit), for the last
``CALLS`` to twice ``CALLS`` calls: when twice is reached, the older half goes at once
(about 150 bytes a call).  Sans-IO; imports ``sip``,
``recorder``, ``transaction``, ``faults`` and ``auth``.
"""

from __future__ import annotations

import itertools
import logging
from typing import Final

from ..sip.message import Request
from .auth import Verdict
from .flow import Flow
from .hangup import FIRST_CSEQ
from .recorder import Recorder
from .shaping import FaultState
from .transaction import ServerTransaction, Timers

log = logging.getLogger(__name__)

#: At most this many violation lines are logged a second; the rest are counted.
LOG_RATE: Final = 20
#: How many (oddity, source address) pairs are remembered as already logged.
NOTICE_LIMIT: Final = 4096
#: Calls whose last INVITE's outcome is remembered, for the ACK and BYE verdicts.
CALLS: Final = 4096


#: A call's memory, one int: its last answered INVITE's CSeq number, above ``_PENDING``
#: (another INVITE of the call is waiting for its answer), above ``_ESTABLISHED`` (any
#: INVITE of the call got a 2xx), above that INVITE's final status.
_CSEQ_SHIFT: Final = 12
_PENDING: Final = 1 << 11
_ESTABLISHED: Final = 1 << 10
_FINAL: Final = _ESTABLISHED - 1


def _once(fault: FaultState, kind: str) -> bool:
    """True the first time a verdict of ``kind`` is given on this transaction."""
    if kind in fault.judged:
        return False
    fault.judged.add(kind)
    return True


def _refused(value: int) -> bool:
    """Whether a BYE of this call now comes without a dialog: its INVITE was refused,
    none got a 2xx, and none is pending (an early dialog may be ended by BYE)."""
    return value & (_PENDING | _ESTABLISHED) == 0 and value & _FINAL >= 300


class Verdicts:
    """Judges the client, message by message, as the endpoint tells it."""

    def __init__(
        self,
        timers: Timers,
        stats: dict[str, int],
        recorder: Recorder,
        calls: int = CALLS,
    ) -> None:
        self.timers = timers
        #: The endpoint's counters: ``violations`` is counted here.
        self.stats = stats
        self.recorder = recorder
        #: Violations by rule (the RFC section), for metrics.
        self.by_rule: dict[str, int] = {}
        self._calls: dict[str, int] = {}
        self._limit = max(1, calls)
        #: How many remembered calls are refused (``_refused``): none, nothing to look up.
        self._refused_calls = 0
        self._window = (-1, 0)
        self._noticed: set[tuple[str, str]] = set()
        #: Calls whose 2xx a fault gave another To tag than the provisionals': Call-ID ->
        #: (the provisionals' tag, the 2xx's), at most ``CALLS``, the oldest first out.
        self._retagged: dict[str, tuple[str, str]] = {}
        #: Calls a ``fork`` answered: Call-ID -> the To tags of the BYEs that came.
        self._forked: dict[str, set[str]] = {}

    # ---------------------------------------------------------------- telling

    def violate(self, req: Request, now: float, rule: str, message: str) -> None:
        self.violation(req.call_id or "", req.method, req.cseq_num, now, rule, message)

    def violation(
        self, call_id: str, method: str, cseq: int, now: float, rule: str, message: str
    ) -> None:
        """Record what a client did against an RFC: counted, journaled, logged (WARNING,
        at most ``LOG_RATE`` lines a second)."""
        self.stats["violations"] += 1
        self.by_rule[rule] = self.by_rule.get(rule, 0) + 1
        self.recorder.violation(call_id, method, cseq, now, rule, message)
        second = int(now)
        window, count = self._window
        if second != window:
            if count > LOG_RATE:
                log.warning(
                    "%d more violations in the last second were not logged", count - LOG_RATE
                )
            window, count = second, 0
        count += 1
        self._window = (window, count)
        if count <= LOG_RATE:
            log.warning("violation: %s: %s (%s, CSeq %d %s)", rule, message, call_id, cseq, method)

    def notice(self, kind: str, flow: Flow, message: str) -> None:
        """Log a peer's oddity at INFO once per kind and source address, not per message.

        The set of (kind, address) already told is bounded: it is cleared when full, so a
        flood of sources costs at most one line per ``NOTICE_LIMIT`` of them.
        """
        key = (kind, flow.remote[0])
        if key in self._noticed:
            log.debug("%s from %s", message, flow.peer)
            return
        if len(self._noticed) >= NOTICE_LIMIT:
            self._noticed.clear()
        self._noticed.add(key)
        log.info("%s from %s (said once per source)", message, flow.peer)

    # ------------------------------------------------------ what a call became

    def invite(self, call_id: str, cseq: int) -> None:
        """A new INVITE of a call: pending until ``answered``.  Only a refused call needs
        to know (its BYE is judged), so nothing is looked up while there is none."""
        if not self._refused_calls:
            return
        calls = self._calls
        known = calls.get(call_id)
        if known is not None and _refused(known):
            calls[call_id] = known | _PENDING
            self._refused_calls -= 1

    def answered(self, call_id: str, cseq: int, final: int) -> None:
        """An INVITE got its final response."""
        calls = self._calls
        if final < 300 and not self._refused_calls:
            # Nothing refused to forget: the established call is written without a look.
            self._put(call_id, cseq << _CSEQ_SHIFT | _ESTABLISHED | final)
            return
        known = calls.get(call_id)
        established = _ESTABLISHED if final < 300 else 0
        if known is not None:
            if cseq < known >> _CSEQ_SHIFT:
                return  # an older INVITE's answer: the call has moved on
            established |= known & _ESTABLISHED
            if _refused(known):
                self._refused_calls -= 1
        value = cseq << _CSEQ_SHIFT | established | (final & _FINAL)
        if _refused(value):
            self._refused_calls += 1
        self._put(call_id, value)

    def _put(self, call_id: str, value: int) -> None:
        """Remember a call.  Past twice ``CALLS``, the older half goes at once: a copy of
        the newer half, cheaper per call than a deletion per call."""
        calls = self._calls
        calls[call_id] = value
        if len(calls) >= 2 * self._limit:
            kept = dict(itertools.islice(calls.items(), self._limit, None))
            self._calls = kept
            self._refused_calls = sum(1 for v in kept.values() if _refused(v))

    def answered_at_once(self, call_id: str, cseq: int, final: int) -> None:
        """An INVITE answered with no transaction (stateless, shed, refused)."""
        self.invite(call_id, cseq)
        self.answered(call_id, cseq, final)

    # ------------------------------------------------------------------ judging

    def no_magic_cookie(self, req: Request, now: float) -> None:
        """A new request whose branch is not RFC 3261's (§8.1.1.7)."""
        branch = req.branch
        message = f"Via branch {branch or '(none)'} lacks the magic cookie z9hG4bK"
        self.violate(req, now, "RFC 3261 §8.1.1.7", message)

    def copy_after_ack(self, req: Request, now: float) -> None:
        """An INVITE again after its ACK (§17.1.1.2: the final response stops Timer A)."""
        message = "INVITE retransmitted after its ACK: the final response stops Timer A"
        self.violate(req, now, "RFC 3261 §17.1.1.2", message)

    def early_cancel(self, req: Request, now: float) -> None:
        """A CANCEL before any provisional response to its INVITE (§9.1)."""
        message = "CANCEL before any provisional response to the INVITE"
        self.violate(req, now, "RFC 3261 §9.1", message)

    def copy(self, txn: ServerTransaction, req: Request, flow: Flow, now: float) -> None:
        """A retransmitted request: RFC 3261 §17.1.1.2 (Timer A) and §17.1.2.2 (Timer E)."""
        interval = txn.note_copy(now)
        rule = "RFC 3261 §17.1.1.2" if txn.invite else "RFC 3261 §17.1.2.2"
        if flow.reliable:
            self.violate(
                req,
                now,
                rule,
                f"{req.method} retransmitted over {flow.transport.upper()}: a reliable "
                "transport carries no retransmissions",
            )
            return
        t1, t2 = self.timers.t1, self.timers.t2
        n = txn.copies - 1
        heard_at = txn.provisional_at
        if txn.fault is not None and txn.fault.holding:
            heard_at = None  # final_first: its provisionals are built, held back, unheard
        heard = heard_at is not None and now - heard_at > t1 / 2
        if txn.invite:
            if heard:
                self.violate(
                    req,
                    now,
                    rule,
                    "INVITE retransmitted after a provisional response (Proceeding stops Timer A)",
                )
                return
            expected = t1 * 2 ** (n - 1)
            timer = "Timer A"
        else:
            expected = t2 if heard else min(t1 * 2 ** (n - 1), t2)
            timer = "Timer E"
        if interval < expected / 2:
            self.violate(
                req,
                now,
                rule,
                f"retransmission {n} came {interval * 1000:.0f} ms after the last "
                f"copy; {timer} wants {expected * 1000:.0f} ms",
            )

    def ack(self, req: Request, txn: ServerTransaction, now: float) -> None:
        """An ACK that found its INVITE: RFC 3261 §17.1.1.3 (non-2xx), §13.2.2.4 (2xx)."""
        final = txn.final_code
        if final is None:
            self.violate(
                req,
                now,
                "RFC 3261 §17.1.1.3",
                "ACK before any final response: a 1xx is never acknowledged",
            )
            return
        rule = "RFC 3261 §17.1.1.3" if final >= 300 else "RFC 3261 §13.2.2.4"
        expected = txn.to_tag
        fault = txn.fault
        if fault is not None and fault.final_tag is not None:
            expected = fault.final_tag  # changed on purpose ("": left out, nothing to match)
        if fault is not None and any(tag == req.to_tag for tag, _ in fault.forks):
            expected = req.to_tag or ""  # fork: the ACK of one of the 2xx
        if expected and req.to_tag != expected:
            if expected != txn.to_tag and req.to_tag == txn.to_tag:
                message = (
                    f"to_tag: change: the ACK carries the provisionals' To tag {txn.to_tag}, "
                    f"not the {final}'s {expected}"
                )
            else:
                message = (
                    f"the ACK's To tag {req.to_tag or '(none)'} is not the {final}'s {expected}"
                )
            self.violate(req, now, rule, message)
        if req.cseq_num != txn.cseq_num:
            self.violate(
                req,
                now,
                rule,
                f"the ACK's CSeq number {req.cseq_num} is not the INVITE's {txn.cseq_num}",
            )

    def stray_ack(self, req: Request, ours: bool, now: float) -> None:
        """An ACK that found no transaction (``ours``: it carries our To tag): counted,
        and the call's last INVITE may tell what it meant."""
        self.stats["stray_acks"] += 1
        if ours:
            # The To tag is a keyed hash of the request: this ACK answers a response of
            # ours — from another worker sharing the secret, or from before a restart —
            # recognised with no state at all.
            self.stats["recognised_acks"] += 1
        log.debug(
            "absorbed an ACK that matches no transaction (Call-ID %s, %s To tag)",
            req.call_id,
            "our" if ours else "a foreign",
        )
        known = self._calls.get(req.call_id or "")
        if known is None:
            return
        final = known & _FINAL
        cseq = known >> _CSEQ_SHIFT
        if cseq != req.cseq_num:
            rule = "RFC 3261 §17.1.1.3" if final >= 300 else "RFC 3261 §13.2.2.4"
            self.violate(
                req,
                now,
                rule,
                f"the ACK's CSeq number {req.cseq_num} is not the INVITE's {cseq}",
            )
        elif final >= 300:
            self.violate(
                req,
                now,
                "RFC 3261 §17.1.1.3",
                f"the ACK for the {final} does not carry the INVITE's Via branch",
            )

    def bye(self, req: Request, now: float) -> None:
        """RFC 3261 §15: a BYE belongs to a dialog; after a failed INVITE there is none.
        §12.1.2: the dialog's remote tag is the 2xx's, whatever a provisional said."""
        if self._forked:
            byes = self._forked.get(req.call_id or "")
            if byes is not None:
                byes.add(req.to_tag or "")
        if self._retagged:
            tags = self._retagged.get(req.call_id or "")
            if tags is not None and req.to_tag == tags[0]:
                self.violate(
                    req,
                    now,
                    "RFC 3261 §12.1.2",
                    f"to_tag: change: the BYE carries the provisionals' To tag {tags[0]}, not "
                    f"the 2xx's {tags[1]}, which made the dialog",
                )
        if not self._refused_calls:
            return  # no refused call remembered: nothing to look up
        known = self._calls.get(req.call_id or "")
        if known is None or not _refused(known):
            return  # established, or pending (an early dialog may be ended by BYE)
        final = known & _FINAL
        self.violate(
            req,
            now,
            "RFC 3261 §15",
            f"BYE for a call that never got a 2xx (its INVITE got {final})",
        )

    def fault_sent(
        self, txn: ServerTransaction, fault: FaultState, codes: list[int], now: float
    ) -> None:
        """Responses of a transaction with faults went out (``codes``, copies included):
        what the client did about the faults so far, judged once per kind."""
        rule = fault.plan.faults
        if not fault.sent_any:
            fault.sent_any = True
            if rule is not None and rule.no_trying and txn.invite and not txn.reliable:
                waited = now - txn.start_time
                t1 = self.timers.t1
                if txn.copies == 1 and waited >= 1.5 * t1 and _once(fault, "no_trying"):
                    self.violation(
                        txn.call_id,
                        txn.method,
                        txn.cseq_num,
                        now,
                        "RFC 3261 §17.1.1.2",
                        f"no_trying: the INVITE was not retransmitted in the {waited * 1000:.0f} "
                        f"ms before the first response (Timer A fires at T1, {t1 * 1000:.0f} ms)",
                    )
        final = max(codes)
        if final < 200:
            return
        if fault.forks and txn.call_id not in self._forked:
            forked = self._forked
            if len(forked) >= self._limit:
                del forked[next(iter(forked))]
            forked[txn.call_id] = set()
        if fault.final_tag and txn.invite and final < 300:
            retagged = self._retagged
            if len(retagged) >= self._limit:
                del retagged[next(iter(retagged))]
            retagged[txn.call_id] = (txn.to_tag, fault.final_tag)
        if (
            fault.final_sends
            and not fault.acked_since
            and fault.ignored_acks
            and _once(fault, "ignore_ack")
        ):
            self.violation(
                txn.call_id,
                txn.method,
                txn.cseq_num,
                now,
                "RFC 3261 §17.1.1.2" if final >= 300 else "RFC 3261 §13.2.2.4",
                f"ignore_ack: the {final} came again, {now - txn.start_time:.2f} s in, and the "
                "copy before it got no ACK: each copy of a final response is ACKed",
            )
        fault.final_sends += 1
        fault.acked_since = False

    def bye_answered(self, call_id: str, why: str, status: int, now: float) -> None:
        """A client's final answer to a BYE of ours: §15.1.2, a BYE in its dialog gets 2xx
        (0: none came, Timer F)."""
        if 200 <= status < 300:
            return
        message = (
            f"our BYE ({why}) got no final response within 64*T1 ({64 * self.timers.t1:g} s)"
            if status == 0
            else f"our BYE ({why}) was answered {status}: a BYE in its dialog gets a 2xx"
        )
        self.violation(call_id, "BYE", FIRST_CSEQ, now, "RFC 3261 §15.1.2", message)

    def fork_end(self, txn: ServerTransaction, fault: FaultState, now: float) -> None:
        """``fork``, 64*T1 after the 2xx: each 2xx ACKed, each dialog but one ended with
        a BYE (RFC 3261 §13.2.2.4)."""
        tags = [tag for tag, _ in fault.forks]
        unacked = [tag for tag in tags if tag not in fault.fork_acked]
        byes = self._forked.pop(txn.call_id, set())
        kept = [tag for tag in tags if tag not in byes]
        problems = []
        if unacked:
            problems.append(
                f"fork: {len(unacked)} of the {len(tags)} 2xx got no ACK (To tags "
                f"{', '.join(unacked)}): each 2xx is ACKed"
            )
        if len(kept) > 1:
            problems.append(
                f"fork: {len(kept)} of the {len(tags)} dialogs were not ended with a BYE "
                f"(To tags {', '.join(kept)}): a UAC that keeps one call ends the others"
            )
        for message in problems:
            self.violation(
                txn.call_id, txn.method, txn.cseq_num, now, "RFC 3261 §13.2.2.4", message
            )

    def no_ack(self, txn: ServerTransaction, now: float) -> None:
        """An INVITE's final response was never acknowledged (Timer H, or 64·T1 for a
        2xx)."""
        code = txn.final_code or 0
        rule, timer = (
            ("RFC 3261 §13.2.2.4", "64*T1") if code < 300 else ("RFC 3261 §17.1.1.3", "Timer H")
        )
        self.violation(
            txn.call_id,
            txn.method,
            txn.cseq_num,
            now,
            rule,
            f"no ACK for the {code} within {timer} ({64 * self.timers.t1:g} s)",
        )

    def digest(self, verdict: Verdict, req: Request, flow: Flow, now: float) -> None:
        """What a Digest answer tells about the client besides pass or fail."""
        if verdict.rfc2069:
            self.notice(
                "digest-2069",
                flow,
                "Digest answer without qop to a qop=auth challenge, checked in the RFC 2069 "
                "form (RFC 2617 §3.2.2)",
            )
        if verdict.other_uri:
            # RFC 2617 §3.2.2.5: uri must name the Request-URI's resource.  A verdict on
            # the client; refused (400) only with the rule's check_uri.
            self.violate(
                req,
                now,
                "RFC 2617 §3.2.2.5",
                f"Digest uri {verdict.other_uri} is not the Request-URI {req.uri}",
            )
