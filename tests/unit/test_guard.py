"""The guard's decisions, fed with addresses, byte counts and a scripted clock."""

from __future__ import annotations

import logging

import pytest

from sipresponder.core.config import Config
from sipresponder.core.guard import FIRST_CREDIT, LOG_RATE, Guard, exposure_warning


def test_nothing_configured_screens_nothing() -> None:
    guard = Guard()
    assert not guard.screens and not guard.caps
    src = guard.admit("192.0.2.1", 500, 0.0)
    assert src is not None


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("10.1.2.3", True),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("::ffff:10.9.9.9", True),  # IPv4-mapped, from a dual-stack socket
        ("2001:db8:0:1::5", True),
        ("2001:db9::1", False),
        ("fe80::1%eth0", False),
        ("not-an-address", False),
    ],
)
def test_allow_list(host: str, allowed: bool) -> None:
    guard = Guard(allow=("10.0.0.0/8", "192.0.2.7", "2001:db8::/32"))
    assert guard.screens and not guard.caps
    assert (guard.admit(host, 100, 0.0) is not None) is allowed
    assert guard.accept(host, 0.0) is allowed  # TCP connections alike
    assert guard.stats["not_allowed"] == (0 if allowed else 2)


def test_rate_limit_blocks_a_source_for_a_while_then_lets_it_back() -> None:
    guard = Guard(rate=5.0, block=10.0)
    admitted = [guard.admit("192.0.2.1", 100, 0.0) is not None for _ in range(8)]
    assert admitted == [True] * 5 + [False] * 3  # a burst of one second's worth
    assert guard.stats["blocked"] == 1 and guard.stats["rate_limited"] == 3
    assert guard.admit("192.0.2.2", 100, 0.0) is not None  # other sources are not affected
    assert guard.admit("192.0.2.1", 100, 5.0) is None  # blocked, though tokens came back
    assert not guard.accept("192.0.2.1", 5.0)  # and its TCP connections are refused
    # The block is over, and the bucket refills from empty from its end: one message
    # each 0.2 s, not a whole second's burst at once (a flood would get that each cycle).
    assert guard.admit("192.0.2.1", 100, 10.0) is None
    assert guard.stats["blocked"] == 2
    assert guard.admit("192.0.2.1", 100, 20.25) is not None
    assert guard.admit("192.0.2.1", 100, 20.25) is None  # no burst: blocked again
    assert guard.stats["blocked"] == 3
    # At the rate itself it is never blocked: one message each 0.2 s.
    assert all(guard.admit("192.0.2.3", 100, 20 + i * 0.2) is not None for i in range(50))
    assert guard.stats["blocked"] == 3


def test_ipv6_sources_are_their_64() -> None:
    guard = Guard(rate=2.0)
    assert guard.admit("2001:db8:0:1::1", 100, 0.0) is not None
    assert guard.admit("2001:db8:0:1:ffff::2", 100, 0.0) is not None
    assert guard.admit("2001:db8:0:1::3", 100, 0.0) is None  # the same /64: the same bucket
    assert guard.admit("2001:db8:0:2::1", 100, 0.0) is not None
    # An allow list narrower than /64 makes each address a source of its own.
    narrow = Guard(allow=("2001:db8::5/128",), rate=1.0)
    assert narrow.admit("2001:db8::5", 100, 0.0) is not None
    assert narrow.admit("2001:db8::6", 100, 0.0) is None  # not allowed, not its neighbour's
    assert narrow.stats["not_allowed"] == 1 and narrow.stats["blocked"] == 0


def test_amplification_budget_until_verified() -> None:
    guard = Guard(amplification=3.0)
    assert guard.screens and guard.caps
    assert not guard.may_send("192.0.2.1", 10)  # never heard from: nothing goes there
    src = guard.admit("192.0.2.1", 200, 0.0)
    assert src is not None
    budget = FIRST_CREDIT + 3 * 200
    assert guard.may_send("192.0.2.1", budget - 100)
    assert guard.may_send("192.0.2.1", 100)
    assert not guard.may_send("192.0.2.1", 1)
    assert guard.stats["held"] == 2 and guard.stats["held_bytes"] == 11
    guard.admit("192.0.2.1", 100, 1.0)  # what it sends buys more
    assert guard.may_send("192.0.2.1", 300) and not guard.may_send("192.0.2.1", 1)
    guard.verify(src)
    assert guard.may_send("192.0.2.1", 1_000_000)
    assert guard.stats["verified"] == 1
    assert guard.accept("192.0.2.2", 2.0)  # a TCP connection verifies its source
    assert guard.admit("192.0.2.2", 10, 2.0) is not None and guard.may_send("192.0.2.2", 99_999)
    assert guard.stats["verified"] == 2


def test_an_unverified_source_gets_at_most_its_bytes_a_second() -> None:
    # Whatever it sent (its requests may carry a victim's address), at most
    # unverified_rate bytes a second; the next second it gets more; once verified, all.
    guard = Guard(amplification=3.0, unverified_rate=4000)
    for _ in range(10):
        src = guard.admit("192.0.2.1", 1000, 5.2)  # 30,000 bytes of factor credit
    assert src is not None
    assert guard.may_send("192.0.2.1", 3000) and guard.may_send("192.0.2.1", 1000)
    assert not guard.may_send("192.0.2.1", 1)  # 4000 bytes in second 5
    guard.admit("192.0.2.1", 10, 6.1)
    assert guard.may_send("192.0.2.1", 4000) and not guard.may_send("192.0.2.1", 1)
    guard.verify(src)
    assert guard.may_send("192.0.2.1", 100_000)
    unbounded = Guard(amplification=3.0, unverified_rate=0)  # the factor alone
    unbounded.admit("192.0.2.1", 10_000, 0.0)
    assert unbounded.may_send("192.0.2.1", 30_000)


def test_banked_budget_is_bounded() -> None:
    guard = Guard(amplification=3.0)
    for i in range(100):
        guard.admit("192.0.2.1", 60_000, float(i))
    assert guard.may_send("192.0.2.1", 65_536)
    assert not guard.may_send("192.0.2.1", 1)


def test_tables_stay_bounded_and_keep_active_sources() -> None:
    guard = Guard(rate=1.0, max_sources=100)
    guard.admit("198.51.100.1", 10, 0.0)
    guard.admit("198.51.100.1", 10, 0.0)  # blocked
    for i in range(10_000):
        guard.admit(f"10.{i // 256 % 256}.{i % 256}.1", 10, 0.0)
        if i % 40 == 0:
            assert guard.admit("198.51.100.1", 10, 1.0) is None  # still blocked: kept
        assert len(guard._new) + len(guard._old) <= 100


def test_refusals_are_logged_once_per_source_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    guard = Guard(allow=("10.0.0.0/8",))
    with caplog.at_level(logging.WARNING, logger="sipresponder.core.guard"):
        for t in (0.0, 1.0, 59.0):
            guard.admit("192.0.2.1", 10, t)
        assert len(caplog.records) == 1
        assert "ignoring 192.0.2.1: not in --allow" in caplog.records[0].getMessage()
        guard.admit("192.0.2.1", 10, 61.0)
        assert len(caplog.records) == 2
        caplog.clear()
        for i in range(100):  # a flood of sources: a few lines a second, not a flood
            guard.admit(f"198.51.100.{i}", 10, 100.0)
        assert len(caplog.records) == LOG_RATE
    assert guard.stats["not_allowed"] == 104


def test_from_config() -> None:
    def guard(loopback: bool, **kw: object) -> Guard:
        return Guard.from_config(Config(**kw).validate(), loopback)  # type: ignore[arg-type]

    assert not guard(True).screens  # loopback: spoofing is impossible, no cap by default
    assert guard(False).caps and guard(False).amplification == 3.0
    assert not guard(False, amplification=0.0).caps
    assert guard(True, amplification=2.0).amplification == 2.0
    limited = guard(True, rate_limit=50.0, allow=("10.0.0.0/8",))
    assert limited.screens and not limited.caps and limited.burst == 50.0


@pytest.mark.parametrize(
    ("host", "allow", "warns"),
    [
        ("127.0.0.1", (), False),
        ("::1", (), False),
        ("localhost", (), False),
        ("0.0.0.0", (), True),
        ("::", (), True),
        ("192.0.2.10", (), True),
        ("0.0.0.0", ("10.0.0.0/8",), False),
    ],
)
def test_exposure_warning(host: str, allow: tuple[str, ...], warns: bool) -> None:
    assert (exposure_warning(host, allow) is not None) is warns
