"""The absorber table: keys with an expiry, first in first out, bounded."""

from __future__ import annotations

import pytest

from sipresponder.core.absorbers import Absorbers


def test_a_key_absorbs_until_its_lifetime_is_over() -> None:
    table = Absorbers(5.0, 10)
    table.add("a", 1.0)
    assert table.holds("a", 1.0) and table.holds("a", 5.99)
    assert not table.holds("a", 6.0)  # expired, even before it is let go
    assert not table.holds("b", 1.0)
    assert len(table) == 1
    table.expire(6.0)
    assert len(table) == 0


def test_expire_lets_go_of_the_expired_only() -> None:
    table = Absorbers(10.0, 10)
    for i in range(5):
        table.add(i, float(i))  # expires at i + 10
    assert len(table) == 5
    table.expire(12.0)
    assert len(table) == 2
    assert [k for k in range(5) if table.holds(k, 12.0)] == [3, 4]
    table.expire(100.0)
    assert len(table) == 0 and table.evicted == 0


def test_a_full_table_lets_the_oldest_go_and_takes_the_new_key() -> None:
    table = Absorbers(60.0, 3)
    for i in range(5):
        table.add(i, i * 0.1)
    assert len(table) == 3 and table.evicted == 2
    assert [k for k in range(5) if table.holds(k, 0.5)] == [2, 3, 4]


def test_adding_a_key_again_renews_it_without_eviction() -> None:
    table = Absorbers(1.0, 2)
    table.add("a", 0.0)
    table.add("b", 0.5)
    table.add("a", 0.9)  # renewed: expires at 1.9, the table still holds two keys
    assert table.evicted == 0 and len(table) == 2
    table.expire(1.0)  # the first "a" entry comes up, but "a" was renewed since
    assert table.holds("a", 1.5) and table.holds("b", 1.4)
    table.expire(1.5)
    assert not table.holds("b", 1.5) and table.holds("a", 1.5)
    table.expire(1.9)
    assert len(table) == 0


def test_the_bound_holds_under_any_number_of_keys() -> None:
    table = Absorbers(1000.0, 100)
    for i in range(10_000):
        table.add(("z9hG4bK", i), i * 0.001)
        assert len(table) <= 100
    assert table.evicted == 9_900
    assert table.holds(("z9hG4bK", 9_999), 10.0)
    assert not table.holds(("z9hG4bK", 9_899), 10.0)


def test_a_table_holds_at_least_one_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Absorbers(1.0, 0)
