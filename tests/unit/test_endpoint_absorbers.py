"""Transactions that only absorb leave the transaction count (--max-transactions) and are
kept as bare keys (--max-absorbers): RFC 3261 §17.2.1's Confirmed, RFC 6026's Timer L."""

from __future__ import annotations

import re
from collections import deque

from helpers import request
from test_endpoint import UDP, codes, make, responses

from sipresponder.core.endpoint import Endpoint
from sipresponder.core.transaction import Timers
from sipresponder.core.wheel import TIMER_TICKS

_TAG = re.compile(rb"\r\nTo: ([^\r]*)\r\n")


def busy_call(i: int) -> tuple[bytes, bytes]:
    """An INVITE dialling 180-486 and the template of its ACK (``{to}`` to fill in)."""
    invite = request("INVITE", "180-486", branch=f"z9hG4bK-{i}", call_id=f"c{i}")
    ack = request("ACK", "180-486", branch=f"z9hG4bK-{i}", call_id=f"c{i}", cseq="1 ACK", to="{to}")
    return invite, ack


def ack_for(template: bytes, final: bytes) -> bytes:
    """The ACK of a final response: its To, tag and all (RFC 3261 §17.1.1.3)."""
    match = _TAG.search(final)
    assert match is not None
    return template.replace(b"{to}", match.group(1))


def run_busy_calls(ep: Endpoint, calls: int, seconds: float) -> dict[int, int]:
    """``calls`` busy calls spread evenly over ``seconds`` of the scripted clock, each ACKed
    10 ms after its 486, with the timers run every tick.  -> count of each code sent."""
    seen: dict[int, int] = {}
    step = seconds / calls
    tick = 1 / TIMER_TICKS
    next_tick = tick
    acks: deque[tuple[float, bytes]] = deque()
    held = 0
    for i in range(calls):
        now = i * step
        if now >= next_tick:
            ep.handle_timers(now)
            next_tick = now + tick
        invite, template = busy_call(i)
        out = ep.receive(invite, UDP, now)
        for data, _, _ in out:
            code = int(data[8:11])
            seen[code] = seen.get(code, 0) + 1
        acks.append((now + 0.01, ack_for(template, out[-1][0])))
        while acks and acks[0][0] <= now:
            at, ack = acks.popleft()
            assert ep.receive(ack, UDP, at) == []
        held = max(held, len(ep.table.transactions))
    for at, ack in acks:
        ep.receive(ack, UDP, at)
    seen[-1] = held  # the most transactions held at once
    return seen


def test_150000_busy_calls_in_5_seconds_are_all_answered_under_the_default_cap() -> None:
    ep, _ = make(max_transactions=100_000)
    seen = run_busy_calls(ep, 150_000, 5.0)
    assert seen[100] == seen[180] == seen[486] == 150_000
    assert 503 not in seen and ep.stats["overload"] == 0
    # Only the calls between their 486 and its ACK (10 ms of them) hold a transaction.
    assert seen[-1] <= 400
    # The keys held for Timer I are bounded: 30,000 calls/s for 5 s is above the default
    # bound, so the oldest went early, and counted; no call was refused for it.
    bound = ep.config.max_absorbers
    assert len(ep.table.confirmed) == bound < 150_000
    assert ep.table.confirmed.evicted == 150_000 - bound
    assert ep.stats["stray_acks"] == 0 and ep.stats["violations"] == 0
    # Timer I over, everything goes: nothing grows with the number of calls.
    ep.handle_timers(5.0 + Timers().t4 + 0.1)
    assert len(ep.table.confirmed) == 0 and ep.table.transactions == {}


def test_a_full_absorber_table_lets_the_oldest_go_never_a_new_call() -> None:
    ep, _ = make(max_transactions=100, max_absorbers=1000)
    seen = run_busy_calls(ep, 5000, 1.0)
    assert seen[486] == 5000 and 503 not in seen
    assert len(ep.table.confirmed) == 1000 and ep.table.confirmed.evicted == 4000
    # The newest call still absorbs a copy of its INVITE; the oldest's was let go, and a
    # late copy of it is a new transaction again.
    newest, _ = busy_call(4999)
    assert ep.receive(newest, UDP, 1.1) == []
    oldest, _ = busy_call(0)
    assert codes(ep.receive(oldest, UDP, 1.1)) == [100, 180, 486]


def test_confirmed_absorbs_the_ack_and_the_invite_until_timer_i() -> None:
    ep, records = make()
    invite, template = busy_call(1)
    out = ep.receive(invite, UDP, 0.0)
    ack = ack_for(template, out[-1][0])
    assert ep.receive(ack, UDP, 0.1) == []
    # Confirmed (§17.2.1): the transaction no longer counts, its key absorbs.
    assert ep.table.transactions == {} and len(ep.table.confirmed) == 1
    assert ep.receive(ack, UDP, 0.2) == []  # a copy of the ACK: absorbed, not stray
    assert ep.receive(invite, UDP, 0.3) == []  # a late copy of the INVITE: absorbed
    assert ep.stats["stray_acks"] == 0 and ep.stats["retransmissions"] == 1
    # ... and judged: the client had the final response, which stops Timer A.
    assert ep.verdicts.by_rule == {"RFC 3261 §17.1.1.2": 1}
    assert len(records) == 1
    # Timer I (T4 = 5 s) over: the key has gone, an ACK is stray now.
    assert ep.receive(ack, UDP, 5.2) == []
    assert ep.stats["stray_acks"] == 1
    ep.handle_timers(5.2)  # the next timer lets it go
    assert len(ep.table.confirmed) == 0


def test_over_tcp_the_ack_ends_the_transaction_with_no_absorber() -> None:
    from test_endpoint import TCP

    ep, _ = make()
    invite, template = busy_call(1)
    out = ep.receive(invite, TCP, 0.0)
    assert ep.receive(ack_for(template, out[-1][0]), TCP, 0.1) == []
    assert ep.table.transactions == {} and len(ep.table.confirmed) == 0  # Timer I is 0 (§17.2.1)


def test_the_ack_of_a_2xx_keeps_the_invite_key_for_timer_l() -> None:
    ep, _ = make(max_absorbers=2)
    for i in range(3):
        invite = request("INVITE", "200", branch=f"z9hG4bK-{i}", call_id=f"ok{i}")
        ok = responses(ep.receive(invite, UDP, float(i)))[-1]
        assert ok.status == 200
        ack = request(
            "ACK", "200", branch=f"z9hG4bK-a{i}", call_id=f"ok{i}", cseq="1 ACK", to=ok.header("To")
        )
        assert ep.receive(ack, UDP, i + 0.1) == []
    assert ep.table.transactions == {} and len(ep.table.acked) == 2 and ep.table.acked.evicted == 1
    late = request("INVITE", "200", branch="z9hG4bK-2", call_id="ok2")
    assert ep.receive(late, UDP, 3.0) == []  # RFC 6026 §8.7: absorbed
    assert ep.stats["violations"] == 0  # not judged: a copy the network delayed may come
    # 64*T1 after its ACK, the key has gone.
    assert codes(ep.receive(late, UDP, 2.1 + 32.0)) == [100, 200]


def test_an_ended_transaction_leaves_the_timer_wheel_at_once() -> None:
    from test_endpoint import TCP

    # Over TCP a 2xx is not resent: its next deadline is Timer L, 32 s away.  Once ACKed
    # the transaction must not wait there for 32 s (tens of MiB at a load test's rate).
    ep, _ = make()
    for i in range(100):
        invite = request("INVITE", "200", branch=f"z9hG4bK-{i}", call_id=f"ok{i}")
        ok = responses(ep.receive(invite, TCP, i * 0.01))[-1]
        ack = request(
            "ACK", "200", branch=f"z9hG4bK-a{i}", call_id=f"ok{i}", cseq="1 ACK", to=ok.header("To")
        )
        ep.receive(ack, TCP, i * 0.01 + 0.005)
    assert ep.table.transactions == {} and len(ep.table.wheel) == 0 and ep.next_deadline() is None
    # Over UDP, a Confirmed one leaves Timer G's slot when its ACK comes.
    invite, template = busy_call(1000)
    out = ep.receive(invite, UDP, 2.0)
    assert len(ep.table.wheel) == 1
    ep.receive(ack_for(template, out[-1][0]), UDP, 2.01)
    assert len(ep.table.wheel) == 0
