"""The limits' decisions: header lines, TCP connections, idle and slow connections."""

from __future__ import annotations

import logging

import pytest
from helpers import SDP_OFFER, request

from sipresponder.core.guard import Guard, Watch


def headers(count: int, size: int = 10) -> list[tuple[str, str]]:
    return [(f"X-H{i}", "v" * size) for i in range(count)]


def problem(guard: Guard, data: bytes) -> tuple[int, str] | None:
    """What the transport does: the cheap bound on the whole message, then the check."""
    if len(data) > guard.long_message:
        return guard.header_problem(data, "192.0.2.1", 0.0)
    return None


def test_header_lines_are_counted_in_the_header_section_only() -> None:
    guard = Guard(max_headers=16)
    assert problem(guard, request("OPTIONS", extra=headers(9))) is None  # 6 + 9 + 1 = 16
    assert problem(guard, request("OPTIONS", extra=headers(10))) == (513, "Too Many Header Lines")
    body = SDP_OFFER * 3  # 33 body lines do not count
    invite = request("INVITE", extra=[("Content-Type", "application/sdp")], body=body)
    assert problem(guard, invite) is None
    assert problem(guard, b"\r\n\r\n" + request("OPTIONS", extra=headers(9))) is None  # §7.5
    lf_only = request("OPTIONS", extra=headers(10)).replace(b"\r\n", b"\n")
    assert problem(guard, lf_only) == (513, "Too Many Header Lines")
    assert guard.limit_hits["headers"] == 2


def test_header_line_length() -> None:
    guard = Guard(max_header_line=256)
    assert problem(guard, request("OPTIONS", extra=headers(1, 240))) is None  # "X-H0: " + 240
    long_line = request("OPTIONS", extra=headers(1, 251))
    assert problem(guard, long_line) == (513, "Header Line Too Long")
    assert problem(guard, request("OPTIONS", uri="sip:" + "a" * 300 + "@h")) == (
        513,
        "Header Line Too Long",
    )  # the start line too
    big_body = request("MESSAGE", body=b"x" * 1000)  # a long body line is no header line
    assert problem(guard, big_body) is None
    assert guard.limit_hits["header_line"] == 2


def test_an_oversized_message_is_counted_and_left_to_the_parser() -> None:
    guard = Guard(max_message_size=2048)
    assert problem(guard, request("MESSAGE", body=b"x" * 4000)) is None
    assert guard.limit_hits["message_size"] == 1


def test_connection_limits_in_all_and_per_source() -> None:
    guard = Guard(max_connections=4, max_connections_per_source=2)
    assert guard.connect("192.0.2.1", 0.0) and guard.connect("192.0.2.1", 0.0)
    assert not guard.connect("192.0.2.1", 0.0)  # its third
    assert guard.connect("198.51.100.1", 0.0) and guard.connect("198.51.100.2", 0.0)
    assert not guard.connect("198.51.100.3", 0.0)  # a fifth in all
    assert guard.limit_hits["connections_per_source"] == 1
    assert guard.limit_hits["connections"] == 1
    guard.disconnect("198.51.100.2")
    assert guard.connect("198.51.100.3", 0.0)  # room again
    assert guard.connections == 4


def test_an_ipv6_source_is_its_64_for_connections_too() -> None:
    guard = Guard(max_connections_per_source=2)
    assert guard.connect("2001:db8::1", 0.0) and guard.connect("2001:db8::2", 0.0)
    assert not guard.connect("2001:db8::3", 0.0)
    assert guard.connect("2001:db8:0:1::1", 0.0)  # another /64
    guard.disconnect("2001:db8::1")
    assert guard.connect("2001:db8::3", 0.0)


def test_connections_of_a_screened_guard() -> None:
    guard = Guard(allow=("10.0.0.0/8",), max_connections=1)
    assert not guard.connect("192.0.2.1", 0.0)
    assert guard.stats["not_allowed"] == 1 and guard.connections == 0
    assert guard.connect("10.0.0.1", 0.0) and not guard.connect("10.0.0.2", 0.0)


def test_limit_hits_are_logged_once_per_source_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = Guard(max_connections=1)
    guard.connect("192.0.2.1", 0.0)
    with caplog.at_level(logging.WARNING, logger="sipresponder.core.guard"):
        for t in range(30):
            guard.connect("192.0.2.2", float(t))
    assert [r.getMessage() for r in caplog.records] == [
        "192.0.2.2 hit --max-connections 1: TCP connection closed at once "
        "(said once a minute per source)"
    ]
    assert guard.limit_hits["connections"] == 30


def test_watch_closes_an_idle_connection() -> None:
    watch = Watch(0.0)
    watch.done, watch.pending = 1, False  # one message came, nothing is pending
    watch.active = True
    assert watch.check(1.0, idle=5.0, message_time=2.0) is None
    assert watch.check(5.9, idle=5.0, message_time=2.0) is None
    watch.active = True  # a response went out, or a keep-alive came in
    assert watch.check(6.0, idle=5.0, message_time=2.0) is None
    assert watch.check(10.5, idle=5.0, message_time=2.0) is None
    assert watch.check(11.0, idle=5.0, message_time=2.0) == "idle"


def test_watch_closes_a_connection_whose_message_dribbles_in() -> None:
    watch = Watch(0.0)
    assert watch.check(1.0, idle=60.0, message_time=2.0) is None
    assert watch.check(2.0, idle=60.0, message_time=2.0) == "message_time"  # no first message
    slow = Watch(0.0)
    slow.done, slow.pending = 1, False
    for t in range(1, 4):
        slow.active = True  # a byte at a time: never idle...
        slow.pending = True  # ...but the message never completes
        verdict = slow.check(float(t), idle=60.0, message_time=2.0)
    assert verdict == "message_time"


def test_watch_keeps_a_busy_connection_that_always_has_a_message_in_flight() -> None:
    watch = Watch(0.0)
    for t in range(1, 100):
        watch.active = True
        watch.done += 5  # messages complete between looks...
        watch.pending = True  # ...and another has always begun
        assert watch.check(float(t), idle=60.0, message_time=2.0) is None


# ------------------------------------------- what transactions hold (--max-transaction-bytes)


def _ringing(i: int, shape: str, user: str = "180") -> bytes:
    """An INVITE that rings (dial 180): its transaction keeps the request until it ends;
    dialling 486 or 200, only the final response, until the ACK."""
    extra: list[tuple[str, str]] = [("Contact", "<sip:caller@192.0.2.1:5062>")]
    body = b""
    if shape == "softphone":
        extra.append(("Content-Type", "application/sdp"))
        body = SDP_OFFER
    elif shape == "vias":  # 60 Vias of 1,000 bytes: every response copies them
        extra += [
            ("Via", f"SIP/2.0/UDP 192.0.2.{k}:5060;branch=z9hG4bK{'v' * 950}") for k in range(60)
        ]
    elif shape == "headers":  # as many small header lines as allowed
        extra += [(f"X{k}", "p") for k in range(240)]
    elif shape == "padded":  # 60 KB in header lines no response copies
        extra += [(f"X-Pad-{k}", "p" * 990) for k in range(60)]
    return request("INVITE", user, branch=f"z9hG4bK-{i}", call_id=f"c{i}", extra=extra, body=body)


@pytest.mark.parametrize("user", ["180", "486", "200"])
@pytest.mark.parametrize("shape", ["softphone", "vias", "headers", "padded"])
def test_a_transactions_weight_covers_what_it_holds(shape: str, user: str) -> None:
    import tracemalloc

    from test_endpoint import UDP, make

    ep, _ = make()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300):
            out = ep.receive(_ringing(i, shape, user), UDP, 0.001 * i)
            assert codes_of(out) == [100, int(user)]
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(ep.table.transactions) == 300
    assert ep.table.transaction_bytes >= traced, (ep.table.transaction_bytes, traced)
    assert ep.table.transaction_bytes <= 8 * traced  # a bound, not a guess off by orders


def codes_of(out: list[tuple[bytes, object, object]]) -> list[int]:
    return [int(data[8:11]) for data, _, _ in out]


def test_new_requests_get_503_past_the_transaction_bytes_and_room_comes_back() -> None:
    from test_endpoint import UDP, make

    ep, _ = make(max_transaction_bytes=1 << 20)
    weight = 6 * len(_ringing(0, "padded")) + 3072  # about 365 KB: two fit in 1 MiB
    for i in range(2):
        assert codes_of(ep.receive(_ringing(i, "padded"), UDP, 0.0)) == [100, 180]
    assert ep.table.transaction_bytes == 2 * weight
    refused = ep.receive(_ringing(2, "padded"), UDP, 0.0)
    assert codes_of(refused) == [503]
    assert b"too many transactions" in refused[0][0] and b"Retry-After: 5" in refused[0][0]
    assert ep.stats["overload"] == 1
    # A small request still fits where a large one does not.
    assert codes_of(ep.receive(_ringing(4, "softphone"), UDP, 0.0)) == [100, 180]
    # One call ends (CANCEL, 487, ACK): its bytes are given back, and a large one fits again.
    cancel = request("CANCEL", "180", branch="z9hG4bK-0", call_id="c0", cseq="1 CANCEL")
    assert codes_of(ep.receive(cancel, UDP, 0.1)) == [200, 487]
    assert ep.table.transaction_bytes == sum(t.weight for t in ep.table.transactions.values())
    ep.handle_timers(40.0)  # no ACK: Timer H ends it
    assert "c0" not in {t.call_id for t in ep.table.transactions.values()}
    assert ep.table.transaction_bytes == sum(t.weight for t in ep.table.transactions.values())
    assert codes_of(ep.receive(_ringing(5, "padded"), UDP, 40.0)) == [100, 180]


def test_methods_we_do_not_know_are_counted_as_one() -> None:
    """The peer picks the method token: counting each apart would grow a dict (and a
    metric's labels) with every token it sends."""
    from test_endpoint import UDP, make

    ep, _ = make()
    for i in range(500):
        out = ep.receive(request(f"FOO{i}", branch=f"z9hG4bK-{i}", cseq=f"1 FOO{i}"), UDP, 0.0)
        assert codes_of(out) == [501]
    ep.receive(request("OPTIONS"), UDP, 0.0)
    assert ep.recorder.requests_by_method == {"other": 500, "OPTIONS": 1}
    assert ep.recorder.responses_by_code == {("other", 501): 500, ("OPTIONS", 200): 1}
