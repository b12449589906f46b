"""The timer wheel of the server transactions: when each is to be woken next.

What belongs here: ``TimerWheel``, slots of 1/``TIMER_TICKS`` s holding the transactions
whose next deadline falls in them, and a heap of the slot numbers in use.  A transaction
is in at most one slot, at a known place in its list (``slot_index``): moving it to a
later deadline, or taking it out when it ends, is a swap with the list's last entry, so
an ended transaction is let go at once, not when its old slot comes up (a 2xx's Timer L
is 32 s away).  No clock: every call takes ``now``.  Imports ``transaction`` only.
"""

from __future__ import annotations

import heapq
from typing import Final

from .transaction import ServerTransaction

#: Timer resolution: transaction timers are kept in slots of 1/TIMER_TICKS s and fire at
#: the end of theirs, up to that much late and never early.  RFC 3261's timers are no
#: finer than T1 = 500 ms (Kamailio's tick is 1/16 s); a heap of exact deadlines cost a
#: tuple and a dozen comparisons per timer with tens of thousands in flight.
TIMER_TICKS: Final = 256


def slot_of(deadline: float) -> int:
    """The timer slot of a deadline: the one whose end, ``slot / TIMER_TICKS``, is the
    first tick at or after it (a deadline on a tick keeps its exact time)."""
    ticks = deadline * TIMER_TICKS
    slot = int(ticks)  # toward zero: the ceiling of a negative number
    return slot + 1 if slot < ticks else slot


class TimerWheel:
    """Transactions by the slot of their next deadline (``ServerTransaction.scheduled``,
    which the wheel sets through the transaction's ``filed``, ``moved`` and ``unfiled``)."""

    __slots__ = ("_heap", "_slots")

    def __init__(self) -> None:
        #: Slot number -> the transactions due in it; the slot numbers in a heap.
        self._slots: dict[int, list[ServerTransaction]] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        """Transactions waiting for a deadline."""
        return sum(len(txns) for txns in self._slots.values())

    def schedule(self, txn: ServerTransaction, deadline: float) -> None:
        """Wake ``txn`` at ``deadline`` (and no longer at the one it had)."""
        scheduled = txn.scheduled
        if scheduled is not None:
            if scheduled == deadline:
                return
            self.cancel(txn)
        slot = slot_of(deadline)
        txns = self._slots.get(slot)
        if txns is None:
            txns = self._slots[slot] = []
            heapq.heappush(self._heap, slot)
        txn.filed(deadline, len(txns))
        txns.append(txn)

    def cancel(self, txn: ServerTransaction) -> None:
        """Take ``txn`` out of its slot, if it is in one."""
        deadline = txn.scheduled
        if deadline is None:
            return
        txn.unfiled()
        txns = self._slots.get(slot_of(deadline))
        index = txn.slot_index
        if txns is None or index >= len(txns) or txns[index] is not txn:
            return  # its slot is being fired (``due`` took the list)
        last = txns.pop()
        if last is not txn:
            txns[index] = last
            last.moved(index)

    def due(self, now: float) -> list[ServerTransaction]:
        """Take out every transaction whose slot has ended at ``now``, earliest first."""
        heap = self._heap
        slots = self._slots
        fired: list[ServerTransaction] = []
        limit = now * TIMER_TICKS
        while heap and heap[0] <= limit:
            for txn in slots.pop(heapq.heappop(heap)):
                txn.unfiled()
                fired.append(txn)
        return fired

    def next_deadline(self) -> float | None:
        """The end of the earliest slot holding a transaction (emptied slots met on the
        way are dropped), or None."""
        heap = self._heap
        slots = self._slots
        while heap:
            slot = heap[0]
            if slots[slot]:
                return slot / TIMER_TICKS
            heapq.heappop(heap)
            del slots[slot]
        return None
