"""The per-transaction INFO line and its switch to a per-second summary."""

from __future__ import annotations

import json
import logging

import pytest

from sipresponder.aio.logs import JsonFormatter, TransactionLog
from sipresponder.core.flow import TransactionRecord


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


REC = TransactionRecord("INVITE", "sip:486@127.0.0.1", "127.0.0.1:5061/udp", (100, 486))


def test_one_line_per_transaction(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    TransactionLog(rate=10, clock=Clock())(REC)
    assert caplog.messages == ["INVITE sip:486@127.0.0.1 from 127.0.0.1:5061/udp -> 100 486"]


def test_switches_to_summary_above_rate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    tlog = TransactionLog(rate=5, clock=clock)
    for _ in range(50):
        tlog(REC)
    tlog(TransactionRecord("OPTIONS", "sip:x", "p", (200,)))
    assert len(caplog.messages) == 5
    tlog.tick()  # same second: nothing yet
    assert len(caplog.messages) == 5
    clock.now += 1.0
    tlog.tick()
    assert len(caplog.messages) == 6
    summary = caplog.messages[-1]
    assert summary.startswith("summary: 51 transactions in 1 s")
    assert "INVITE 486: 50" in summary and "OPTIONS 200: 1" in summary
    # A quiet second logs line by line again.
    tlog(REC)
    assert len(caplog.messages) == 7


def test_the_summary_counts_unknown_methods_as_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    tlog = TransactionLog(rate=1, clock=clock)
    for i in range(1000):
        tlog(TransactionRecord(f"FOO{i}", "sip:x", "p", (501,)))
    tlog(REC)
    clock.now += 1.0
    tlog.tick()
    assert caplog.messages[-1] == (
        "summary: 1001 transactions in 1 s (over 1/s, not logged one by one): "
        "INVITE 486: 1, other 501: 1000"
    )


def test_nothing_is_formatted_above_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    TransactionLog(rate=1, clock=Clock())(REC)
    assert caplog.messages == []


def test_json_format() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "hello %s",
            "args": ("x",),
            "levelname": "INFO",
            "name": "sipresponder",
            "codes": [100, 486],
        }
    )
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "hello x" and out["level"] == "INFO" and out["codes"] == [100, 486]
