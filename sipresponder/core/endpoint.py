"""The sans-IO core: bytes and a clock in, bytes to send out.

What belongs here: ``Endpoint`` joins parser -> checks -> plans -> transactions ->
responses.  ``receive(data, flow, now)`` takes one datagram or one framed stream message
and returns what to send; ``handle_timers(now)`` runs what is due; ``next_deadline()``
says when to call it next.  It turns ``ParseError`` into an error response at exactly this
boundary and never lets a peer's input raise.  No sockets, no clock, no randomness: the
secret for tags comes in with the config.  Imports everything above it, nothing below.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
from collections.abc import Callable, Hashable
from typing import Final, cast

from ..errors import FramingError, ParseError
from ..sip.message import Request, Response, decimal
from ..sip.parser import parse_message
from ..sip.responses import (
    KNOWN_METHODS,
    Answers,
    Extras,
    Local,
    build_response,
    make_to_tag,
    response_destination,
)
from ..sip.serializer import serialize_response
from ..sip.uri import hostport, is_ip, plain_ip, uri_host
from .absorbers import Absorbers
from .auth import NonceSigner, Verdict
from .config import Config
from .journal import Entry, Journal, Violation
from .planner import Planner
from .plans import Plan, Step
from .rules import RuleSet, fill, placeholder_values
from .transaction import (
    MAGIC_COOKIE,
    End,
    ServerTransaction,
    State,
    ack_key,
    transaction_key,
)
from .wheel import TimerWheel

log = logging.getLogger(__name__)

#: At most this many violation lines are logged a second; the rest are counted.
_VIOLATION_LOG_RATE: Final = 20
#: How many (oddity, source address) pairs are remembered as already logged.
_NOTICE_LIMIT: Final = 4096
#: A transaction's weight against --max-transaction-bytes while it may build responses:
#: this many times its request's length, plus a fixed part (measured with tracemalloc in
#: tests/unit/test_limits.py)...
TRANSACTION_WEIGHT: Final = 6
TRANSACTION_COST: Final = 3072
#: ... and once answered, this many times its final response's length, plus this.
ANSWERED_WEIGHT: Final = 2
ANSWERED_COST: Final = 1536
#: Methods whose transaction a CANCEL may find besides INVITE's.
_CANCELLABLE: Final = tuple(m for m in KNOWN_METHODS if m not in ("INVITE", "ACK", "CANCEL"))


class Flow:
    """Where a message came from and how to answer it.

    ``remote`` is the peer address as the socket reported it; ``conn`` is an opaque handle
    of the TCP connection (``None`` for UDP) that the transport adapter maps back.  The
    text forms of the addresses are made once, with the flow: the transport keeps a flow
    per peer, so the per-message path (logs, journal) only reads them.

    A plain class with ``Final`` attributes rather than a frozen dataclass: mypyc compiles
    it to a native class, and a dataclass with derived (``init=False``) fields it does not.
    Equal flows (transport, addresses, connection) hash alike.
    """

    __slots__ = (
        "answering",
        "conn",
        "local",
        "local_text",
        "peer",
        "reliable",
        "remote",
        "remote_text",
        "transport",
    )

    def __init__(
        self,
        transport: str,  # "udp" | "tcp"
        remote: tuple[str, int],
        local: tuple[str, int],
        conn: object = None,
    ) -> None:
        self.transport: Final = transport
        self.remote: Final = remote
        self.local: Final = local
        self.conn: Final = conn
        text = hostport(plain_ip(remote[0]), remote[1])
        #: ``host:port`` of the peer and of our socket, for the journal.
        self.remote_text: Final = text
        self.local_text: Final = hostport(plain_ip(local[0]), local[1])
        #: ``host:port/transport`` of the peer, for logs.
        self.peer: Final = f"{text}/{transport}"
        self.reliable: Final = transport != "udp"
        #: Our address as this flow reaches it (``Endpoint._local``), once worked out.
        self.answering: Local | None = None

    def _key(self) -> tuple[str, tuple[str, int], tuple[str, int], object]:
        return (self.transport, self.remote, self.local, self.conn)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Flow):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Flow(transport={self.transport!r}, remote={self.remote!r}, "
            f"local={self.local!r}, conn={self.conn!r})"
        )


#: What to send: the bytes, the flow to send on (its ``conn`` for TCP), the UDP address.
Send = tuple[bytes, Flow, tuple[str, int]]


class TransactionRecord:
    """One finished transaction, for the per-transaction log line.  Made once per
    transaction: a plain class, which mypyc builds natively (a NamedTuple's ``__new__``
    stays interpreted, about 0.3 µs a record)."""

    __slots__ = ("codes", "method", "peer", "uri")

    def __init__(self, method: str, uri: str, peer: str, codes: tuple[int, ...]) -> None:
        self.method = method
        self.uri = uri
        self.peer = peer
        self.codes = codes

    def _key(self) -> tuple[str, str, str, tuple[int, ...]]:
        return (self.method, self.uri, self.peer, self.codes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TransactionRecord):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"TransactionRecord(method={self.method!r}, uri={self.uri!r}, "
            f"peer={self.peer!r}, codes={self.codes!r})"
        )


Reporter = Callable[[TransactionRecord], None]


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
        self.transactions: dict[Hashable, ServerTransaction] = {}
        #: The weights of the transactions held (--max-transaction-bytes).
        self.transaction_bytes = 0
        #: The last ACK received, for ``our_tag`` (the glue asks about it): a reference
        #: kept, no work done until asked.
        self.last_ack: Request | None = None
        #: INVITEs answered with 2xx, by what their ACK (a new transaction) carries.
        self.accepted: dict[Hashable, ServerTransaction] = {}
        #: When each transaction is to be woken next.
        self.wheel = TimerWheel()
        # Transactions that only absorb retransmissions keep their key alone, bounded on
        # their own (--max-absorbers), outside ``transactions``: the INVITEs ACKed after a
        # non-2xx, Confirmed for Timer I (RFC 3261 §17.2.1), and those whose 2xx was
        # ACKed, for Timer L (RFC 6026 §8.7).
        self.confirmed = Absorbers(self.timers.t4, config.max_absorbers)
        self.acked = Absorbers(64 * self.timers.t1, config.max_absorbers)
        self._noticed: set[tuple[str, str]] = set()
        self.signer = NonceSigner(self.secret)
        #: ``time.time() - loop.time()``, set by the shell: nonces carry wall-clock time.
        self.wall_offset = 0.0
        #: The rules in use and the plan of each new request (``rules``, ``set_rules``).
        self.planner = Planner(self.secret, self.signer)
        self.set_rules(rules)
        #: Records every message and the client's violations; None keeps nothing.
        self.journal = journal
        #: Counters for metrics: requests by method, responses built by (method, code),
        #: violations by rule.
        self.requests_by_method: dict[str, int] = {}
        #: Responses built by plans: method -> code -> count (``responses_by_code``).
        self._codes_by_method: dict[str, dict[int, int]] = {}
        self.violations_by_rule: dict[str, int] = {}
        self._violation_window = (-1, 0)
        self._last_now = 0.0
        self.stats: dict[str, int] = {
            "requests": 0,
            "responses_sent": 0,
            "parse_errors": 0,
            "dropped": 0,
            "retransmissions": 0,
            "acks": 0,
            "stray_acks": 0,
            "recognised_acks": 0,
            "overload": 0,
            "draining": 0,
            "internal_errors": 0,
            "violations": 0,
        }

    # ------------------------------------------------------------ entry points

    @property
    def responses_by_code(self) -> dict[tuple[str, int], int]:
        """Responses built by a request's plan (not retransmissions): (method, code) ->
        count."""
        return {
            (method, code): n
            for method, codes in self._codes_by_method.items()
            for code, n in codes.items()
        }

    def receive(self, data: bytes, flow: Flow, now: float) -> list[Send]:
        """One whole message from ``flow`` at ``now``; returns what to send."""
        self._last_now = now
        try:
            try:
                config = self.config
                msg = parse_message(
                    data,
                    stream=flow.reliable,
                    max_size=config.max_message_size,
                    max_headers=config.max_headers,
                )
            except ParseError as exc:
                return self._reject(exc, flow)
            if isinstance(msg, Response):
                self.stats["dropped"] += 1
                self._notice(
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
            self._notice("unanswerable", flow, f"dropped a message: {err.reason}")
            return []
        return self._reject(ParseError(err.reason, err.status, msg), flow)

    def handle_timers(self, now: float) -> list[Send]:
        """Run every transaction timer due at ``now``, and let expired absorbers go."""
        self._last_now = now
        self.confirmed.expire(now)
        self.acked.expire(now)
        out: list[Send] = []
        wheel = self.wheel
        # Again until nothing is due: a timer may set another that is due already.
        for _ in range(1000):
            fired = wheel.due(now)
            if not fired:
                break
            for txn in fired:
                if not txn.terminated:
                    self._fire(txn, now, out)
        return out

    def _fire(self, txn: ServerTransaction, now: float, out: list[Send]) -> None:
        """Run a transaction's due timers and collect what they send."""
        try:
            txn.on_timer(now)
        except Exception:
            self.stats["internal_errors"] += 1
            log.exception("internal error in a transaction timer; transaction dropped")
            txn.abort()
        self._after(txn, out)

    def our_tag(self, ack: Request) -> bool:
        """Whether an ACK's To tag is one of ours: a keyed hash of its Call-ID, From tag
        and CSeq number that only our response to its INVITE carried, so its sender has
        shown that it receives what we send to its address (the anti-amplification cap's
        proof, asked for by the glue only while a source is unverified)."""
        tag = ack.to_tag
        return tag is not None and tag == make_to_tag(
            self.secret, ack.call_id or "", ack.from_tag, ack.cseq_num
        )

    def _forget(self, txn: ServerTransaction) -> None:
        """Take a transaction out of the table and its bytes out of the count."""
        if self.transactions.pop(txn.key, None) is txn:
            self.transaction_bytes -= txn.weight

    def end_pending(self, now: float, code: int = 503) -> list[Send]:
        """Graceful stop, drain time over: every request still without a final response
        gets ``code`` now, the way its ring limit would end it."""
        out: list[Send] = []
        for txn in list(self.transactions.values()):
            if txn.state in (State.TRYING, State.PROCEEDING):
                txn.expire_now(now, code)
                self._fire(txn, now, out)
        return out

    def next_deadline(self) -> float | None:
        """When ``handle_timers`` has something to do next: the end of the earliest timer
        slot holding a transaction, or None.  Absorbers ask for no wake-up: they are let
        go by the next timer or when their table is full, and ``holds`` reads their
        expiry, so one that outlives it absorbs nothing."""
        return self.wheel.next_deadline()

    # ------------------------------------------------------------------ inside

    def _request(self, req: Request, flow: Flow, now: float) -> list[Send]:
        method = req.method
        counts = self.requests_by_method
        # Counted by method, and every method we do not know as one: the peer picks the
        # token, and a dict (and a metric label) per token would grow with what it sends.
        counted = method if method in KNOWN_METHODS else "other"
        counts[counted] = counts.get(counted, 0) + 1
        if req.headers.first("max-forwards") is None:
            self._notice("max-forwards", flow, f"{method} without Max-Forwards (tolerated)")
        if self.stateless and method in ("ACK", "CANCEL"):
            # §8.2.7 stateless UAS: an ACK is never answered, and with no transactions a
            # CANCEL has nothing to end — both are ignored.
            if method == "ACK":
                self.last_ack = req
            if self.journal is not None:
                self._record_in(req, flow, now, False)
            return []
        if method == "ACK":
            self.last_ack = req
            key = None
        else:
            key = transaction_key(req)
        txn = None if key is None else self.transactions.get(key)
        absorbed = (
            txn is None
            and method == "INVITE"
            and (self.confirmed.holds(key, now) or self.acked.holds(key, now))
        )
        if self.journal is not None:
            self._record_in(req, flow, now, txn is not None or absorbed)
        branch = req.branch
        if txn is None and not absorbed and not (branch and branch.startswith(MAGIC_COOKIE)):
            self._violate(
                req,
                now,
                "RFC 3261 §8.1.1.7",
                f"Via branch {branch or '(none)'} lacks the magic cookie z9hG4bK",
            )
        if method == "ACK":
            self._ack(req, now)
            return []  # RFC 3261 §17.2.1, §13.3.1.4: an ACK is never answered
        if txn is not None:
            self.stats["retransmissions"] += 1
            self._judge_copy(txn, req, flow, now)
            txn.retransmission(now)
            out: list[Send] = []
            self._after(txn, out)
            return out
        if method == "CANCEL":
            return self._cancel(req, flow, now)
        if absorbed:
            # RFC 3261 §17.2.1: absorbed in Confirmed; RFC 6026 §8.7: absorbed after a 2xx.
            self.stats["retransmissions"] += 1
            if self.confirmed.holds(key, now):
                self._violate(
                    req,
                    now,
                    "RFC 3261 §17.1.1.2",
                    "INVITE retransmitted after its ACK: the final response stops Timer A",
                )
            return []
        if method == "BYE" and self.journal is not None:
            self._judge_bye(req, now)
        assert key is not None
        if (self.shedding or self.draining) and req.to_tag is None:
            return self._shed(req, flow)

        source = flow.remote
        planner = self.planner
        plan, extras, send_trying, stateful = planner.choose(
            req, flow.transport, flow.remote[0], now + self.wall_offset
        )
        if planner.verdict is not None:
            self._digest_notes(planner.verdict, req, flow, now)
        if self.stateless:
            # Only the last response of the plan, at once: no 100, no provisionals, no
            # delays, no retransmissions (RFC 3261 §8.2.7).
            plan = _final_only(plan)
            send_trying = stateful = False
        # In a dialog (BYE, re-INVITE) the To tag is already there and every response
        # keeps it (§8.2.6.2): no tag of ours to work out.
        tag = req.to_tag or make_to_tag(self.secret, req.call_id or "", req.from_tag, req.cseq_num)
        local = self._local(req, flow)
        dest = _reply_to(req, flow)
        answers = Answers(req, to_tag=tag, source=source, local=local)
        values: dict[str, str] | None = None
        # Counted by code in a dict of the method's: an int key, not a tuple to hash.
        by_code = self._codes_by_method.get(counted)
        if by_code is None:
            by_code = self._codes_by_method[counted] = {}

        def build(step: Step) -> bytes:
            nonlocal values
            step_extras = extras
            code = step.code
            if code in (401, 407) and not step.headers:
                # A dialled challenge: a real, verifiable nonce (RFC 3261 §22.1).
                step_extras = dataclasses.replace(
                    extras,
                    nonce=self.signer.make(self.config.realm, self._wall(now)),
                    realm=self.config.realm,
                )
            if step.reason or step.headers or step.body is not None or step.sdp:
                if values is None:
                    values = placeholder_values(req, flow.transport, source, local.hostport)
                step_extras = _step_extras(step, step_extras, values)
            by_code[code] = by_code.get(code, 0) + 1
            return answers.render(code, step_extras)

        if self.stateless or (
            method != "INVITE" and plan.immediate and not plan.rings and not stateful
        ):
            # Stateless (§8.2.7): a retransmission is answered identically, since the To
            # tag and every byte of the response follow from the request alone.
            out = [(build(step), flow, dest) for step in plan.steps]
            if self.journal is not None:
                for data, _, _ in out:
                    self._sent(data, flow, dest, req.call_id, method, req.cseq_num)
            self.stats["responses_sent"] += len(out)
            self._report(req, flow, tuple(step.code for step in plan.steps))
            return out

        # What it will hold, as a bound (--max-transaction-bytes): the request, its parsed
        # headers and the responses that copy them (a Via echoed per response), each at
        # most about the request's size, and a fixed part (tests/unit/test_limits.py).
        weight = TRANSACTION_WEIGHT * len(req.raw) + TRANSACTION_COST
        if (
            len(self.transactions) >= self.config.max_transactions
            or self.transaction_bytes + weight > self.config.max_transaction_bytes
        ):
            self.stats["overload"] += 1
            resp = build_response(
                req,
                503,
                to_tag=tag,
                source=source,
                local=local,
                extras=Extras(reason="Service Unavailable (too many transactions)", retry_after=5),
            )
            self._report(req, flow, (503,))
            data = serialize_response(resp)
            if self.journal is not None:
                self._sent(data, flow, dest, req.call_id, method, req.cseq_num)
            return [(data, flow, dest)]

        txn = ServerTransaction(
            key,
            req,
            plan,
            build,
            reliable=flow.reliable,
            timers=self.timers,
            flow=(flow, dest),
            peer=flow.peer,
            to_tag=req.to_tag or tag,
            ack_key=ack_key(req) if method == "INVITE" else None,
            weight=weight,
        )
        self.transactions[key] = txn
        self.transaction_bytes += weight
        expires = _expires(req) if method == "INVITE" else None
        txn.start(now, send_trying=send_trying, expires=expires)
        out = []
        self._after(txn, out)
        return out

    def _shed(self, req: Request, flow: Flow) -> list[Send]:
        """Overload: a new out-of-dialog request gets 503 with Retry-After at once, with no
        state kept (RFC 3261 §21.5.4), rather than being dropped unanswered.  Requests in
        a dialog (BYE...) are still served: they end calls.  The same while draining for a
        graceful stop (§21.5.4: 503 is for overload or maintenance)."""
        draining = self.draining
        self.stats["draining" if draining else "overload"] += 1
        tag = make_to_tag(self.secret, req.call_id or "", req.from_tag, req.cseq_num)
        dest = _reply_to(req, flow)
        resp = build_response(
            req,
            503,
            to_tag=tag,
            source=flow.remote,
            local=self._local(req, flow),
            extras=Extras(
                reason="Service Unavailable (shutting down)"
                if draining
                else "Service Unavailable (overloaded)",
                retry_after=self.config.overload_retry_after,
            ),
        )
        data = serialize_response(resp)
        if self.journal is not None:
            self._sent(data, flow, dest, req.call_id, req.method, req.cseq_num)
        self._report(req, flow, (503,))
        return [(data, flow, dest)]

    @property
    def rules(self) -> RuleSet | None:
        """The rules in use (None: dial-the-code)."""
        return self.planner.rules

    def set_rules(self, rules: RuleSet | None) -> None:
        """Use these rules for new transactions; those in flight keep their plan."""
        self.planner.set_rules(rules)

    def _digest_notes(self, verdict: Verdict, req: Request, flow: Flow, now: float) -> None:
        """What a Digest answer tells about the client besides pass or fail."""
        if verdict.rfc2069:
            self._notice(
                "digest-2069",
                flow,
                "Digest answer without qop to a qop=auth challenge, checked in the RFC 2069 "
                "form (RFC 2617 §3.2.2)",
            )
        if verdict.other_uri:
            # RFC 2617 §3.2.2.5: uri must name the Request-URI's resource.  A verdict on
            # the client; refused (400) only with the rule's check_uri.
            self._violate(
                req,
                now,
                "RFC 2617 §3.2.2.5",
                f"Digest uri {verdict.other_uri} is not the Request-URI {req.uri}",
            )

    def _wall(self, now: float) -> float:
        """Wall-clock seconds for nonce timestamps: ``now`` plus the offset the shell set."""
        return now + self.wall_offset

    def _ack(self, req: Request, now: float) -> None:
        self.stats["acks"] += 1
        key = transaction_key(req)
        txn = self.transactions.get(key)
        if txn is None and self.confirmed.holds(key, now):
            return  # RFC 3261 §17.2.1: Confirmed absorbs the ACK's retransmissions
        if txn is not None:
            final = txn.final_code
            if final is None:
                self._violate(
                    req,
                    now,
                    "RFC 3261 §17.1.1.3",
                    "ACK before any final response: a 1xx is never acknowledged",
                )
            else:
                self._judge_ack(req, txn, final, now)
        else:
            txn = self.accepted.get(ack_key(req))
            if txn is not None and txn.final_code is not None:
                self._judge_ack(req, txn, txn.final_code, now)
        if txn is None:
            self.stats["stray_acks"] += 1
            ours = req.to_tag == make_to_tag(
                self.secret, req.call_id or "", req.from_tag, req.cseq_num
            )
            if ours:
                # The To tag is a keyed hash of the request: this ACK answers a response
                # of ours — from another worker sharing the secret, or from before a
                # restart — recognised with no state at all.
                self.stats["recognised_acks"] += 1
            log.debug(
                "absorbed an ACK that matches no transaction (Call-ID %s, %s To tag)",
                req.call_id,
                "our" if ours else "a foreign",
            )
            if self.journal is not None:
                self._judge_stray_ack(req, now)
            return
        accepted = txn.state is State.ACCEPTED
        txn.ack(now)
        if accepted:
            self.acked.add(txn.key, now)
        elif txn.state is State.CONFIRMED:
            # It only absorbs from now on: its key is enough (--max-absorbers), and the
            # transaction leaves the count of those that may still send.
            self._forget(txn)
            self.wheel.cancel(txn)  # let go of it now, not when Timer G would come up
            if not txn.reliable:
                self.confirmed.add(txn.key, now)
            return
        self._after(txn, [])

    def _cancel(self, req: Request, flow: Flow, now: float) -> list[Send]:
        """§9.2: 200 to a CANCEL that matches a transaction, 487 to its pending INVITE."""
        target = self.transactions.get(transaction_key(req, "INVITE"))
        if target is None:
            # §9.2: any transaction with the CANCEL's branch matches; non-INVITE ones are
            # keyed by their own method, which the CANCEL does not name.
            for method in _CANCELLABLE:
                target = self.transactions.get(transaction_key(req, method))
                if target is not None:
                    break
        tag = make_to_tag(self.secret, req.call_id or "", req.from_tag, req.cseq_num)
        code = 481 if target is None else 200
        dest = _reply_to(req, flow)
        resp = build_response(
            req, code, to_tag=tag, source=flow.remote, local=self._local(req, flow)
        )
        data = serialize_response(resp)
        if self.journal is not None:
            self._sent(data, flow, dest, req.call_id, req.method, req.cseq_num)
        out: list[Send] = [(data, flow, dest)]
        self.stats["responses_sent"] += 1
        self._report(req, flow, (code,))
        if target is not None and target.invite and target.provisional_at is None:
            self._violate(
                req, now, "RFC 3261 §9.1", "CANCEL before any provisional response to the INVITE"
            )
        if target is not None and target.cancel(now):
            self._after(target, out)
        return out

    def _after(self, txn: ServerTransaction, out: list[Send]) -> None:
        """Collect a transaction's output, index or drop it, and schedule its timer."""
        if txn.outbox:
            flow, dest = cast(tuple[Flow, tuple[str, int]], txn.flow)
            for data in txn.outbox:
                out.append((data, flow, dest))
                if self.journal is not None:
                    self._sent(data, flow, dest, txn.call_id, txn.method, txn.cseq_num)
            self.stats["responses_sent"] += len(txn.outbox)
            txn.outbox.clear()
        final = txn.final
        if final is not None and txn.take_report():
            # Answered: the request is let go, and what is kept is the final response
            # (to resend it) and the bookkeeping.  Its weight shrinks to match.
            weight = ANSWERED_WEIGHT * len(final) + ANSWERED_COST
            if weight < txn.weight:
                self.transaction_bytes += txn.reweigh(weight)
            if self.report is not None:
                self.report(TransactionRecord(txn.method, txn.uri, txn.peer, tuple(txn.codes)))
            if txn.state is State.ACCEPTED and txn.ack_key is not None:
                self.accepted[txn.ack_key] = txn
        if txn.terminated:
            self._forget(txn)
            self.wheel.cancel(txn)  # a 2xx's Timer L is 32 s away: let go of it now
            if txn.ack_key is not None and self.accepted.get(txn.ack_key) is txn:
                del self.accepted[txn.ack_key]
            if txn.end is End.NO_ACK:
                code = txn.final_code or 0
                rule, timer = (
                    ("RFC 3261 §13.2.2.4", "64*T1")
                    if code < 300
                    else ("RFC 3261 §17.1.1.3", "Timer H")
                )
                self._violation(
                    txn.call_id,
                    txn.method,
                    txn.cseq_num,
                    self._last_now,
                    rule,
                    f"no ACK for the {code} within {timer} ({64 * self.timers.t1:g} s)",
                )
            return
        deadline = txn.next_deadline
        if deadline is None:
            self.wheel.cancel(txn)
        else:
            self.wheel.schedule(txn, deadline)

    # ------------------------------------------------------- journal, verdicts

    def _record_in(self, req: Request, flow: Flow, now: float, retransmission: bool) -> None:
        assert self.journal is not None
        top = req.top_via
        self.journal.record(
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

    def _sent(
        self,
        data: bytes,
        flow: Flow,
        dest: tuple[str, int],
        call_id: str | None,
        method: str,
        cseq: int,
    ) -> None:
        """Journal one response we send: its status read off our own bytes (the reason
        phrase is read from them when the entry is shown)."""
        assert self.journal is not None
        # Our own status line, "SIP/2.0 486 Busy Here\r\n": the code from its digits.
        status = (data[8] - 48) * 100 + (data[9] - 48) * 10 + (data[10] - 48)
        self.journal.record(
            Entry(
                self._last_now + self.wall_offset,
                "out",
                flow.transport,
                flow.local_text,
                flow.remote_text if dest == flow.remote else hostport(plain_ip(dest[0]), dest[1]),
                data,
                call_id or "",
                method,
                cseq,
                status,
            )
        )

    def _violate(self, req: Request, now: float, rule: str, message: str) -> None:
        self._violation(req.call_id or "", req.method, req.cseq_num, now, rule, message)

    def _violation(
        self,
        call_id: str,
        method: str,
        cseq: int,
        now: float,
        rule: str,
        message: str,
    ) -> None:
        """Record what a client did against an RFC: counted, journaled, logged (WARNING,
        at most ``_VIOLATION_LOG_RATE`` lines a second)."""
        self.stats["violations"] += 1
        self.violations_by_rule[rule] = self.violations_by_rule.get(rule, 0) + 1
        if self.journal is not None:
            self.journal.violation(Violation(self._wall(now), call_id, rule, message, method, cseq))
        second = int(now)
        window, count = self._violation_window
        if second != window:
            if count > _VIOLATION_LOG_RATE:
                log.warning(
                    "%d more violations in the last second were not logged",
                    count - _VIOLATION_LOG_RATE,
                )
            window, count = second, 0
        count += 1
        self._violation_window = (window, count)
        if count <= _VIOLATION_LOG_RATE:
            log.warning("violation: %s: %s (%s, CSeq %d %s)", rule, message, call_id, cseq, method)

    def _judge_copy(self, txn: ServerTransaction, req: Request, flow: Flow, now: float) -> None:
        """A retransmitted request: RFC 3261 §17.1.1.2 (Timer A) and §17.1.2.2 (Timer E)."""
        interval = txn.note_copy(now)
        rule = "RFC 3261 §17.1.1.2" if txn.invite else "RFC 3261 §17.1.2.2"
        if flow.reliable:
            self._violate(
                req,
                now,
                rule,
                f"{req.method} retransmitted over {flow.transport.upper()}: a reliable "
                "transport carries no retransmissions",
            )
            return
        t1, t2 = self.timers.t1, self.timers.t2
        n = txn.copies - 1
        heard = txn.provisional_at is not None and now - txn.provisional_at > t1 / 2
        if txn.invite:
            if heard:
                self._violate(
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
            self._violate(
                req,
                now,
                rule,
                f"retransmission {n} came {interval * 1000:.0f} ms after the last "
                f"copy; {timer} wants {expected * 1000:.0f} ms",
            )

    def _judge_ack(self, req: Request, txn: ServerTransaction, final: int, now: float) -> None:
        """An ACK that found its INVITE: RFC 3261 §17.1.1.3 (non-2xx), §13.2.2.4 (2xx)."""
        rule = "RFC 3261 §17.1.1.3" if final >= 300 else "RFC 3261 §13.2.2.4"
        if req.to_tag != txn.to_tag:
            self._violate(
                req,
                now,
                rule,
                f"the ACK's To tag {req.to_tag or '(none)'} is not the {final}'s {txn.to_tag}",
            )
        if req.cseq_num != txn.cseq_num:
            self._violate(
                req,
                now,
                rule,
                f"the ACK's CSeq number {req.cseq_num} is not the INVITE's {txn.cseq_num}",
            )

    def _judge_stray_ack(self, req: Request, now: float) -> None:
        """An ACK that found no transaction: the journal may tell what it meant."""
        assert self.journal is not None
        call = self.journal.get(req.call_id or "")
        if call is None:
            return
        invites = [t for t in call.transactions if t.method == "INVITE" and t.final_status]
        if not invites:
            return
        invite = invites[-1]
        final = invite.final_status or 0
        if invite.cseq != req.cseq_num:
            rule = "RFC 3261 §17.1.1.3" if final >= 300 else "RFC 3261 §13.2.2.4"
            self._violate(
                req,
                now,
                rule,
                f"the ACK's CSeq number {req.cseq_num} is not the INVITE's {invite.cseq}",
            )
        elif final >= 300:
            self._violate(
                req,
                now,
                "RFC 3261 §17.1.1.3",
                f"the ACK for the {final} does not carry the INVITE's Via branch",
            )

    def _judge_bye(self, req: Request, now: float) -> None:
        """RFC 3261 §15: a BYE belongs to a dialog; after a failed INVITE there is none."""
        assert self.journal is not None
        call = self.journal.get(req.call_id or "")
        if call is None:
            return
        invites = [t for t in call.transactions if t.method == "INVITE"]
        if not invites or any((t.final_status or 200) < 300 for t in invites):
            return  # established, or still pending (an early dialog may be ended by BYE)
        finals = ", ".join(str(t.final_status) for t in invites)
        self._violate(
            req,
            now,
            "RFC 3261 §15",
            f"BYE for a call that never got a 2xx (its INVITE got {finals})",
        )

    def _reject(self, exc: ParseError, flow: Flow) -> list[Send]:
        """A request we could not accept: answer it statelessly when it can be addressed."""
        self.stats["parse_errors"] += 1
        req = exc.request
        if not isinstance(req, Request) or req.top_via is None or req.method == "ACK":
            self.stats["dropped"] += 1
            self._notice("dropped", flow, f"dropped a message: {exc.reason}")
            return []
        if self.journal is not None:
            self._record_in(req, flow, self._last_now, False)
        tag = None
        if req.call_id:
            tag = make_to_tag(self.secret, req.call_id, req.from_tag, req.cseq_num)
        dest = _reply_to(req, flow)
        resp = build_response(
            req,
            exc.status,
            to_tag=tag,
            source=flow.remote,
            local=self._local(req, flow),
            extras=Extras(reason=exc.reason),
        )
        self.stats["responses_sent"] += 1
        self._report(req, flow, (exc.status,))
        data = serialize_response(resp)
        if self.journal is not None:
            self._sent(data, flow, dest, req.call_id, req.method, req.cseq_num)
        return [(data, flow, dest)]

    def _notice(self, kind: str, flow: Flow, message: str) -> None:
        """Log a peer's oddity at INFO once per kind and source address, not per message.

        The set of (kind, address) already told is bounded: it is cleared when full, so a
        flood of sources costs at most one line per ``_NOTICE_LIMIT`` of them.
        """
        key = (kind, flow.remote[0])
        if key in self._noticed:
            log.debug("%s from %s", message, flow.peer)
            return
        if len(self._noticed) >= _NOTICE_LIMIT:
            self._noticed.clear()
        self._noticed.add(key)
        log.info("%s from %s (said once per source)", message, flow.peer)

    def _local(self, req: Request, flow: Flow) -> Local:
        """Our address as the peer reached it, for Contact and SDP."""
        local = flow.answering
        if local is not None:
            return local  # the usual case: kept on the flow, which the transport keeps
        host = plain_ip(flow.local[0])
        if _unspecified(host):
            # A wildcard socket: the Request-URI says which of our addresses was used.
            uri_h = uri_host(req.uri)
            host = uri_h if uri_h is not None and is_ip(uri_h) else "127.0.0.1"
            return Local(host, flow.local[1], flow.transport)
        local = Local(host, flow.local[1], flow.transport)
        flow.answering = local
        return local

    def _report(self, req: Request, flow: Flow, codes: tuple[int, ...]) -> None:
        if self.report is not None:
            self.report(TransactionRecord(req.method, req.uri, flow.peer, codes))


def _reply_to(req: Request, flow: Flow) -> tuple[str, int]:
    """Where responses to ``req`` go: back on the connection, or over UDP by its Via
    (RFC 3261 §18.2.2).  The source is passed as two arguments: a starred call is a
    generic call for compiled code (about 1.7k instructions)."""
    remote = flow.remote
    return remote if flow.reliable else response_destination(req, remote[0], remote[1])


def _final_only(plan: Plan) -> Plan:
    """``--stateless``: the plan's last response alone, at once (RFC 3261 §8.2.7).

    Remembered per plan object (a dialled plan is made once per Request-URI, a rule's once
    per rules file): making a dataclass anew per request costs more than the answer."""
    known = _FINAL_ONLY.get(id(plan))
    if known is not None and known[0] is plan:
        return known[1]
    final = Plan((dataclasses.replace(plan.steps[-1], at=0.0),), plan.text)
    if len(_FINAL_ONLY) >= 1024:
        _FINAL_ONLY.clear()
    _FINAL_ONLY[id(plan)] = (plan, final)
    return final


#: ``_final_only``'s plans: id -> (the plan, its final step alone).  The plan is held, so
#: its id is not reused while remembered.
_FINAL_ONLY: Final[dict[int, tuple[Plan, Plan]]] = {}


def _step_extras(step: Step, extras: Extras, values: dict[str, str]) -> Extras:
    """A rule step's overrides, with the request's placeholders filled in."""
    return dataclasses.replace(
        extras,
        reason=step.reason or extras.reason,
        headers=tuple((name, fill(value, values)) for name, value in step.headers),
        # Placeholders carry the request's bytes as the parser read them (surrogate
        # escapes for what is not UTF-8): they go out as they came.
        body=None
        if step.body is None
        else fill(step.body, values).encode("utf-8", "surrogateescape"),
        content_type=step.content_type,
        sdp=step.sdp,
    )


def _expires(req: Request) -> float | None:
    value = req.headers.first("expires")
    if value is None:
        return None
    seconds = decimal(value.strip())
    return None if seconds is None else float(seconds)


@functools.lru_cache(maxsize=64)
def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
