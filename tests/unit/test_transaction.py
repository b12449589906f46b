"""Server transactions on a scripted clock (RFC 3261 §17.2, §13.3.1, RFC 6026)."""

from __future__ import annotations

from helpers import request

from sipresponder.core.plans import Step, parse_plan
from sipresponder.core.transaction import (
    End,
    ServerTransaction,
    State,
    Timers,
    ack_key,
    transaction_key,
)
from sipresponder.sip.message import Request
from sipresponder.sip.parser import parse_message

TIMERS = Timers()


def build(step: Step) -> bytes:
    return str(step.code).encode()


def make(
    plan: str, method: str = "INVITE", *, reliable: bool = False, timers: Timers = TIMERS
) -> ServerTransaction:
    msg = parse_message(request(method, plan))
    assert isinstance(msg, Request)
    return ServerTransaction(
        transaction_key(msg), msg, parse_plan(plan), build, reliable=reliable, timers=timers
    )


def take(txn: ServerTransaction) -> list[bytes]:
    out = list(txn.outbox)
    txn.sent()
    return out


def run_until(txn: ServerTransaction, end: float) -> list[tuple[float, bytes]]:
    """Fire every deadline up to ``end``; returns (time, bytes) of what was sent."""
    sent: list[tuple[float, bytes]] = []
    for _ in range(10_000):
        deadline = txn.next_deadline
        if deadline is None or deadline > end:
            break
        txn.on_timer(deadline)
        sent += [(deadline, data) for data in take(txn)]
    return sent


def test_busy_over_udp_timer_g_then_h() -> None:
    txn = make("486")
    txn.start(0.0, send_trying=True)
    assert take(txn) == [b"100", b"486"]
    assert txn.state is State.COMPLETED
    sent = run_until(txn, 100.0)
    # Timer G: T1, 2T1, 4T1, then capped at T2 (§17.2.1); Timer H at 64*T1 = 32 s.
    times = [t for t, _ in sent]
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(data == b"486" for _, data in sent)
    assert max(times) < 32.0
    assert txn.terminated and txn.end is End.NO_ACK


def test_ack_confirms_then_timer_i() -> None:
    txn = make("486")
    txn.start(0.0, send_trying=True)
    take(txn)
    txn.ack(0.2)
    assert txn.state is State.CONFIRMED
    assert txn.next_deadline == 0.2 + TIMERS.t4
    txn.retransmission(1.0)
    assert take(txn) == []  # absorbed in Confirmed
    assert run_until(txn, 10.0) == []
    assert txn.terminated and txn.end is End.ACKED


def test_reliable_transport_has_no_timer_g_and_no_timer_i() -> None:
    txn = make("486", reliable=True)
    txn.start(0.0, send_trying=True)
    take(txn)
    assert txn.next_deadline == 32.0  # only Timer H
    txn.ack(1.0)
    assert txn.next_deadline == 1.0
    run_until(txn, 1.0)
    assert txn.terminated


def test_2xx_retransmitted_until_ack() -> None:
    txn = make("200")
    txn.start(0.0, send_trying=True)
    assert take(txn) == [b"100", b"200"]
    assert txn.state is State.ACCEPTED
    sent = run_until(txn, 4.0)
    assert [t for t, _ in sent] == [0.5, 1.5, 3.5]
    txn.retransmission(4.0)
    assert take(txn) == []  # RFC 6026 §8.7: absorbed; the 2xx goes on its own timer
    txn.ack(4.1)
    assert txn.terminated and txn.end is End.ACKED


def test_2xx_without_ack_gives_up_after_64_t1() -> None:
    txn = make("200")
    txn.start(0.0, send_trying=True)
    take(txn)
    sent = run_until(txn, 100.0)
    assert max(t for t, _ in sent) < 32.0
    assert txn.terminated and txn.end is End.NO_ACK


def test_delayed_steps_and_retransmission_in_proceeding() -> None:
    txn = make("180-2s-486")
    txn.start(10.0, send_trying=True)
    assert take(txn) == [b"100", b"180"]
    assert txn.next_deadline == 12.0
    txn.retransmission(11.0)
    # RFC 3261 §17.2.1: resend the last provisional on a retransmitted INVITE.
    assert take(txn) == [b"180"]
    txn.on_timer(12.0)
    assert take(txn) == [b"486"]
    txn.retransmission(12.1)
    assert take(txn) == [b"486"]


def test_plan_starting_with_a_delay_absorbs_retransmissions() -> None:
    txn = make("2s-100-486")
    txn.start(0.0, send_trying=False)
    assert take(txn) == []
    txn.retransmission(0.5)
    assert take(txn) == []
    txn.on_timer(2.0)
    assert take(txn) == [b"100", b"486"]


def test_ringing_repeats_provisional_then_408_at_max_ring() -> None:
    txn = make("180", timers=Timers(max_ring=150.0))
    txn.start(0.0, send_trying=True)
    assert take(txn) == [b"100", b"180"]
    sent = run_until(txn, 149.0)
    # §13.3.1.1: the provisional again every minute.
    assert sent == [(60.0, b"180"), (120.0, b"180")]
    txn.on_timer(150.0)
    assert take(txn) == [b"408"]
    assert txn.state is State.COMPLETED


def test_expires_ends_ringing_with_487() -> None:
    txn = make("180")
    txn.start(0.0, send_trying=True, expires=30.0)
    take(txn)
    assert txn.next_deadline == 30.0
    txn.on_timer(30.0)
    assert take(txn) == [b"487"]


def test_expires_beyond_max_ring_gives_408() -> None:
    txn = make("180", timers=Timers(max_ring=5.0))
    txn.start(0.0, send_trying=True, expires=60.0)
    take(txn)
    txn.on_timer(5.0)
    assert take(txn) == [b"408"]


def test_cancel_ends_pending_invite_only() -> None:
    txn = make("180")
    txn.start(0.0, send_trying=True)
    take(txn)
    assert txn.cancel(3.0)
    assert take(txn) == [b"487"]
    assert not txn.cancel(3.1)  # §9.2: no effect after a final response
    assert take(txn) == []


def test_non_invite_delayed() -> None:
    txn = make("2s-200", "OPTIONS")
    txn.start(0.0, send_trying=False)
    assert txn.state is State.TRYING and take(txn) == []
    txn.retransmission(0.5)
    assert take(txn) == []  # §17.2.2: absorbed in Trying
    txn.on_timer(2.0)
    assert take(txn) == [b"200"] and txn.state is State.COMPLETED
    txn.retransmission(2.5)
    assert take(txn) == [b"200"]
    assert txn.next_deadline == 2.0 + 64 * TIMERS.t1  # Timer J
    run_until(txn, 100.0)
    assert txn.terminated and txn.end is End.DONE


def test_non_invite_provisional_and_no_periodic_repeat() -> None:
    txn = make("100-2s-200", "REGISTER")
    txn.start(0.0, send_trying=False)
    assert take(txn) == [b"100"] and txn.state is State.PROCEEDING
    txn.retransmission(0.1)
    assert take(txn) == [b"100"]
    txn.on_timer(2.0)
    assert take(txn) == [b"200"]
    assert not make("200", "OPTIONS", reliable=True).cancel(0.0)


def test_keys() -> None:
    def parsed(data: bytes) -> Request:
        msg = parse_message(data)
        assert isinstance(msg, Request)
        return msg

    invite = parsed(request("INVITE", branch="z9hG4bK-x"))
    ack = parsed(request("ACK", branch="z9hG4bK-x", cseq="1 ACK"))
    cancel = parsed(request("CANCEL", branch="z9hG4bK-x", cseq="1 CANCEL"))
    assert transaction_key(invite) == transaction_key(ack)
    assert transaction_key(cancel) != transaction_key(invite)
    assert transaction_key(cancel, "INVITE") == transaction_key(invite)
    ack2 = parsed(
        request("ACK", branch="z9hG4bK-other", cseq="1 ACK", to="<sip:alice@127.0.0.1>;tag=t")
    )
    assert ack_key(ack2) == ack_key(invite)
    # RFC 2543 peers (no magic cookie): matched on the request's identity.
    old = parsed(request("INVITE", branch="1234"))
    old_ack = parsed(request("ACK", branch="1234", cseq="1 ACK"))
    assert transaction_key(old) == transaction_key(old_ack)
    assert transaction_key(old) != transaction_key(
        parsed(request("INVITE", branch="1234", cseq="2 INVITE"))
    )
