"""The timer wheel: each transaction in one slot, fired at the end of it, never before."""

from __future__ import annotations

from helpers import request

from sipresponder.core.plans import Plan, Step
from sipresponder.core.transaction import ServerTransaction, Timers
from sipresponder.core.wheel import TIMER_TICKS, TimerWheel, slot_of
from sipresponder.sip.message import Request
from sipresponder.sip.parser import parse_message


def txn(i: int) -> ServerTransaction:
    req = parse_message(request("INVITE", "486", branch=f"z9hG4bK-{i}"))
    assert isinstance(req, Request)
    plan = Plan((Step(486),), "486")
    return ServerTransaction(i, req, plan, lambda step: b"", reliable=False, timers=Timers())


def test_a_slot_ends_at_the_first_tick_at_or_after_the_deadline() -> None:
    assert slot_of(1.0) == TIMER_TICKS
    assert slot_of(1.0 + 1e-9) == TIMER_TICKS + 1
    assert slot_of(0.0) == 0
    assert slot_of(-0.5 / TIMER_TICKS) == 0


def test_due_fires_each_transaction_once_at_the_end_of_its_slot() -> None:
    wheel = TimerWheel()
    a, b, c = txn(1), txn(2), txn(3)
    wheel.schedule(a, 1.0)
    wheel.schedule(b, 1.001)
    wheel.schedule(c, 2.0)
    assert len(wheel) == 3
    assert wheel.next_deadline() == 1.0
    assert wheel.due(0.999) == []
    assert wheel.due(1.0) == [a]
    assert a.scheduled is None
    assert wheel.next_deadline() == slot_of(1.001) / TIMER_TICKS
    assert wheel.due(5.0) == [b, c]
    assert len(wheel) == 0 and wheel.next_deadline() is None


def test_moving_a_deadline_leaves_no_copy_behind() -> None:
    wheel = TimerWheel()
    a, b = txn(1), txn(2)
    wheel.schedule(a, 1.0)
    wheel.schedule(b, 1.0)
    wheel.schedule(a, 3.0)  # moved: swapped out of the 1.0 slot
    assert len(wheel) == 2
    assert wheel.due(1.0) == [b]
    wheel.schedule(a, 3.0)  # the same deadline again: nothing changes
    assert len(wheel) == 1
    assert wheel.due(3.0) == [a]


def test_cancel_takes_any_entry_out_and_keeps_the_others_findable() -> None:
    wheel = TimerWheel()
    txns = [txn(i) for i in range(5)]
    for t in txns:
        wheel.schedule(t, 1.0)
    wheel.cancel(txns[1])  # from the middle: the last one takes its place
    wheel.cancel(txns[4])
    wheel.cancel(txns[4])  # twice: nothing more happens
    assert len(wheel) == 3
    wheel.cancel(txns[3])  # the one that was swapped is still found where it went
    assert sorted(t.key for t in wheel.due(1.0)) == [0, 2]  # type: ignore[type-var]
    assert wheel.next_deadline() is None


def test_an_emptied_slot_asks_for_no_wake_up() -> None:
    wheel = TimerWheel()
    a, b = txn(1), txn(2)
    wheel.schedule(a, 1.0)
    wheel.schedule(b, 2.0)
    wheel.cancel(a)
    assert wheel.next_deadline() == 2.0
