"""The server transactions in flight, their timers, and what is left of those that ended.

What belongs here: ``TransactionTable`` — the transactions that may still send something
by key (RFC 3261 §17.2.3), bounded in number (``--max-transactions``) and in bytes
(``--max-transaction-bytes``, each weighed by what it holds); the INVITEs answered with a
2xx by the key their ACK carries (a new transaction, §17.1.1.3); the timer wheel that
wakes them; and the absorbers, keys alone, for the INVITEs that only absorb
retransmissions now (Confirmed for Timer I, §17.2.1; ACKed after a 2xx for Timer L,
RFC 6026 §8.7), bounded on their own (``--max-absorbers``).

It keeps the books; the transactions decide their own states (``transaction``), and the
endpoint what to do with a request.  Sans-IO: every call takes ``now``.  Imports
``transaction``, ``wheel``, ``absorbers``, ``config`` and ``sip``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Final

from ..sip.message import Request
from ..sip.responses import KNOWN_METHODS
from .absorbers import Absorbers
from .config import Config
from .plans import Plan, Step
from .transaction import ServerTransaction, State, Timers, ack_key, transaction_key
from .wheel import TimerWheel

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


class TransactionTable:
    """The transactions by key, their weights, their wheel and their absorbers."""

    def __init__(self, timers: Timers, config: Config) -> None:
        self.timers = timers
        self.transactions: dict[Hashable, ServerTransaction] = {}
        #: The weights of the transactions held (--max-transaction-bytes).
        self.transaction_bytes = 0
        self.max_transactions = config.max_transactions
        self.max_bytes = config.max_transaction_bytes
        #: INVITEs answered with 2xx, by what their ACK (a new transaction) carries.
        self.accepted: dict[Hashable, ServerTransaction] = {}
        #: When each transaction is to be woken next.
        self.wheel = TimerWheel()
        self.confirmed = Absorbers(timers.t4, config.max_absorbers)
        self.acked = Absorbers(64 * timers.t1, config.max_absorbers)

    # ------------------------------------------------------------------ finding

    def get(self, key: Hashable) -> ServerTransaction | None:
        return self.transactions.get(key)

    def absorbs(self, key: Hashable, now: float) -> bool:
        """Whether an INVITE with this key is a retransmission of one that only absorbs."""
        return self.confirmed.holds(key, now) or self.acked.holds(key, now)

    def cancel_target(self, req: Request) -> ServerTransaction | None:
        """The transaction a CANCEL names (§9.2): the INVITE's with its branch, else any
        other method's — non-INVITE ones are keyed by their own method, which the CANCEL
        does not name."""
        target = self.transactions.get(transaction_key(req, "INVITE"))
        if target is None:
            for method in _CANCELLABLE:
                target = self.transactions.get(transaction_key(req, method))
                if target is not None:
                    break
        return target

    def accepted_by(self, ack: Request) -> ServerTransaction | None:
        """The INVITE answered with a 2xx that an ACK (a transaction of its own) is for."""
        return self.accepted.get(ack_key(ack))

    def pending(self) -> list[ServerTransaction]:
        """The transactions still without a final response."""
        return [
            txn
            for txn in self.transactions.values()
            if txn.state in (State.TRYING, State.PROCEEDING)
        ]

    # ------------------------------------------------------------------ keeping

    def room_for(self, req: Request) -> int:
        """The weight a transaction for ``req`` is counted with, if one more fits both
        bounds; else 0.  What it will hold, as a bound (--max-transaction-bytes): the
        request, its parsed headers and the responses that copy them (a Via echoed per
        response), each at most about the request's size, and a fixed part
        (tests/unit/test_limits.py)."""
        weight = TRANSACTION_WEIGHT * len(req.raw) + TRANSACTION_COST
        if (
            len(self.transactions) < self.max_transactions
            and self.transaction_bytes + weight <= self.max_bytes
        ):
            return weight
        return 0

    def open(
        self,
        key: Hashable,
        req: Request,
        plan: Plan,
        build: Callable[[Step], bytes],
        *,
        reliable: bool,
        flow: object,
        peer: str,
        to_tag: str,
        weight: int,
    ) -> ServerTransaction:
        """A new transaction for ``req``, in the table (its weight from ``room_for``)."""
        txn = ServerTransaction(
            key,
            req,
            plan,
            build,
            reliable=reliable,
            timers=self.timers,
            flow=flow,
            peer=peer,
            to_tag=to_tag,
            ack_key=ack_key(req) if req.method == "INVITE" else None,
            weight=weight,
        )
        self.transactions[key] = txn
        self.transaction_bytes += weight
        return txn

    def answered(self, txn: ServerTransaction, final: bytes) -> None:
        """A transaction got its final response: the request is let go, and what is kept
        is that response (to resend it) and the bookkeeping, so its weight shrinks to
        match; a 2xx's INVITE is found by its ACK from now on."""
        weight = ANSWERED_WEIGHT * len(final) + ANSWERED_COST
        if weight < txn.weight:
            self.transaction_bytes += txn.reweigh(weight)
        if txn.state is State.ACCEPTED and txn.ack_key is not None:
            self.accepted[txn.ack_key] = txn

    def acknowledged(self, txn: ServerTransaction, accepted: bool, now: float) -> bool:
        """An INVITE's ACK came (``txn.ack`` has run; ``accepted``: it was a 2xx's).
        Returns True when it only absorbs from now on: its key is enough, and it leaves
        the count of those that may still send."""
        if accepted:
            self.acked.add(txn.key, now)
            return False
        if txn.state is not State.CONFIRMED:
            return False
        self._forget(txn)
        self.wheel.cancel(txn)  # let go of it now, not when Timer G would come up
        if not txn.reliable:
            self.confirmed.add(txn.key, now)
        return True

    def settle(self, txn: ServerTransaction) -> None:
        """After a transaction acted: drop it if it ended, else file its next timer."""
        if txn.terminated:
            self._forget(txn)
            self.wheel.cancel(txn)  # a 2xx's Timer L is 32 s away: let go of it now
            if txn.ack_key is not None and self.accepted.get(txn.ack_key) is txn:
                del self.accepted[txn.ack_key]
            return
        deadline = txn.next_deadline
        if deadline is None:
            self.wheel.cancel(txn)
        else:
            self.wheel.schedule(txn, deadline)

    def _forget(self, txn: ServerTransaction) -> None:
        """Take a transaction out of the table and its bytes out of the count."""
        if self.transactions.pop(txn.key, None) is txn:
            self.transaction_bytes -= txn.weight

    # ------------------------------------------------------------------ timers

    def due(self, now: float) -> list[ServerTransaction]:
        """Take out the transactions whose timers are due at ``now``."""
        return self.wheel.due(now)

    def expire(self, now: float) -> None:
        """Let the absorbers whose time is over go."""
        self.confirmed.expire(now)
        self.acked.expire(now)

    def next_deadline(self) -> float | None:
        """The end of the earliest timer slot holding a transaction, or None.  Absorbers
        ask for no wake-up: they are let go by the next timer or when their table is
        full, and ``holds`` reads their expiry, so one that outlives it absorbs
        nothing."""
        return self.wheel.next_deadline()
