"""The pure helpers of ``bench/run.py --sustain`` (bench/sustain.py): the 503 count from
the responder's log, VmRSS, and the verdict of a cell."""

from __future__ import annotations

import os
from types import ModuleType

import pytest
from helpers import load_script


@pytest.fixture(scope="module")
def sustain() -> ModuleType:
    return load_script("sustain")


# The responder's INFO lines: one per transaction below --log-rate, then a summary per
# busy second (sipresponder/aio/logs.py).
LOG = """\
2026-12-06 16:00:00,001 INFO sipresponder 0.1 listening on udp 127.0.0.1:40000
2026-12-06 16:00:00,101 INFO INVITE sip:180-486@127.0.0.1:40000 from 127.0.0.1:5070/udp -> 100 180 486
2026-12-06 16:00:00,102 INFO INVITE sip:180-486@127.0.0.1:40000 from 127.0.0.1:5070/udp -> 503
2026-12-06 16:00:00,103 INFO OPTIONS sip:bench@127.0.0.1:40000 from 127.0.0.1:5070/udp -> 200
2026-12-06 16:00:02,000 INFO summary: 20412 transactions in 1 s (over 100/s, not logged one by one): INVITE 486: 20000, INVITE 503: 400, REGISTER 503: 12
2026-12-06 16:00:03,000 INFO summary: 300 transactions in 1 s (over 100/s, not logged one by one): BYE 200: 150, INVITE 200: 150
2026-12-06 16:00:04,000 WARNING overloaded (the event loop lags 120 ms): new requests get 503 with Retry-After
"""  # noqa: E501


def test_503s_are_counted_from_lines_and_summaries(sustain: ModuleType) -> None:
    assert sustain.count_503(LOG) == 1 + 400 + 12
    assert sustain.count_503("") == 0


def test_vmrss_from_proc_status(sustain: ModuleType) -> None:
    assert sustain.vmrss_kib("Name:\tpython\nVmHWM:\t  9000 kB\nVmRSS:\t  8123 kB\n") == 8123
    assert sustain.vmrss_kib("Name:\tpython\n") == 0


def test_the_sampler_reads_this_process(sustain: ModuleType) -> None:
    sampler = sustain.RssSampler(os.getpid(), interval=0.01)
    sampler.start()
    for _ in range(500):  # at most 5 s
        if len(sampler.samples) >= 3:
            break
        sampler._stop.wait(0.01)
    sampler.stop()
    assert len(sampler.samples) >= 3
    assert all(kib > 0 for _, kib in sampler.samples)
    assert sampler.at(0.0) == sampler.samples[0][1]
    assert sampler.at(1e9) is None
    assert sampler.last() == sampler.samples[-1][1]
    assert sampler.last(before=-1.0) is None
    sampler.samples = [(0.0, 1), (9.9, 2), (10.0, 3), (61.2, 4)]
    assert sampler.at(10.0) == 3 and sampler.last(before=60.0) == 3


def cell(sustain: ModuleType, **kw: object) -> object:
    base: dict[str, object] = {
        "flow": "busy",
        "transport": "udp",
        "ceiling": 20000.0,
        "rate": 19000,
        "seconds": 60.1,
        "calls": 1_140_000,
        "successful": 1_140_000,
        "rss_settled_kib": 100_000,
        "rss_end_kib": 105_000,
        "kept_pace": True,
    }
    base.update(kw)
    return sustain.SustainCell(**base)


def test_a_cell_holds_only_when_every_condition_does(sustain: ModuleType) -> None:
    assert cell(sustain).holds(0.10)
    assert cell(sustain).growth == pytest.approx(0.05)
    for broken in (
        {"answered_503": 1},
        {"failed": 1},
        {"unexpected": 1},
        {"successful": 1_139_999},
        {"kept_pace": False},
        {"rss_end_kib": 110_001},  # over 10 % growth
        {"rss_settled_kib": None},  # the run ended before 10 s
        {"status": "error"},
    ):
        assert not cell(sustain, **broken).holds(0.10), broken


def test_the_table_has_a_row_per_cell_and_says_why_one_fails(sustain: ModuleType) -> None:
    cells = [cell(sustain), cell(sustain, transport="tcp", answered_503=7, note="")]
    text = sustain.table(cells, 0.10)
    rows = text.splitlines()
    assert len(rows) == 4
    assert rows[2].endswith("| ✓ |") and "+5.0%" in rows[2]
    assert "| 7 |" in rows[3] and "✗" in rows[3]
