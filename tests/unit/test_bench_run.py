"""The pure helpers of the benchmark harness (bench/run.py): SIPp's stat file, /proc."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["bench_run"]
    return module


# SIPp 3.6.1 -trace_stat: a header, then one row a period and a last one at exit; times
# are date<TAB>time<TAB>epoch; the row ends with a ';'.
STAT = (
    "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;"
    "SuccessfulCall(C);FailedCall(C);FailedUnexpectedMessage(C);CallLength(C);\n"
    "2026-11-26\t16:47:44.658975\t1795711664.658975;2026-11-26\t16:47:44.658975\t"
    "1795711664.658975;2026-11-26\t16:47:45.658975\t1795711665.658975;00:00:01;00:00:01;"
    "100000;5000;0;0;00:00:00:001000;\n"
    "2026-11-26\t16:47:44.658975\t1795711664.658975;2026-11-26\t16:47:46.972666\t"
    "1795711666.972666;2026-11-26\t16:47:46.976903\t1795711666.976903;00:00:00;00:00:02;"
    "100000;20000;3;2;00:00:00:018000;\n"
)


def test_stat_csv_last_row_by_name(bench: ModuleType) -> None:
    stat = bench.parse_stat_csv(STAT)
    assert bench.stat_int(stat, "SuccessfulCall(C)") == 20000
    assert bench.stat_int(stat, "FailedCall(C)") == 3
    assert bench.stat_int(stat, "FailedUnexpectedMessage(C)") == 2
    assert bench.stat_int(stat, "NoSuchColumn") == 0
    elapsed = bench.stat_epoch(stat["CurrentTime"]) - bench.stat_epoch(stat["StartTime"])
    assert elapsed == pytest.approx(2.317928, abs=1e-6)
    assert bench._call_length_ms(stat["CallLength(C)"]) == pytest.approx(18.0)
    assert bench.parse_stat_csv("") == {}
    assert bench.parse_stat_csv(STAT.splitlines()[0]) == {}


def test_listening_lines(bench: ModuleType) -> None:
    out = "listening udp 127.0.0.1:40123\nlistening tcp 127.0.0.1:40123\nadmin http://x\n"
    assert bench.parse_listening(out) == {"udp": 40123, "tcp": 40123}
    assert bench.parse_listening("listening udp [::1]:5070\n") == {"udp": 5070}
    assert bench.parse_listening("starting\n") == {}


def test_proc_stat_and_status(bench: ModuleType) -> None:
    # The command name may hold spaces and parentheses: fields count from the last ')'.
    line = "4242 (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0\n"
    assert bench.parse_proc_stat(line) == (17, 250, 31)
    status = "Name:\tpython\nVmPeak:\t  50000 kB\nVmHWM:\t   47576 kB\nVmRSS:\t 40000 kB\n"
    assert bench.parse_vmhwm(status) == 47576
    assert bench.parse_vmhwm("Name:\tzombie\n") == 0


def test_open_loop_search(bench: ModuleType) -> None:
    assert bench.next_rate(None, None, 10_000) == pytest.approx(8_500)
    assert bench.next_rate(8_500, None, 10_000) == pytest.approx(11_900)  # clean: up
    assert bench.next_rate(None, 8_500, 10_000) == pytest.approx(5_100)  # not: down
    assert bench.next_rate(8_500, 11_900, 10_000) == pytest.approx(10_200)  # bisect


def test_ratios_and_formats(bench: ModuleType) -> None:
    assert bench.ratio(5.0, 10.0) == 0.5
    assert bench.ratio(None, 10.0) is None and bench.ratio(5.0, 0.0) is None
    assert bench.fmt_ratio(0.25) == "0.25×" and bench.fmt_ratio(12.4) == "12×"
    assert bench.fmt_int(12_722.4) == "12,722" and bench.fmt_int(None) == "—"
