"""The pure helpers of bench/instructions.py: valgrind's summary, the per-operation figure."""

from __future__ import annotations

from types import ModuleType

import pytest
from helpers import load_script


@pytest.fixture(scope="module")
def instructions() -> ModuleType:
    return load_script("instructions")


# What valgrind 3.19's cachegrind writes to standard error at exit.
SUMMARY = """==4242== Cachegrind, a cache and branch-prediction profiler
==4242== Command: python child.py busy 500 300 2800
==4242==
==4242== I   refs:      1,995,658,414
"""


def test_parse_refs_reads_the_instruction_count(instructions: ModuleType) -> None:
    assert instructions.parse_refs(SUMMARY) == 1_995_658_414


def test_parse_refs_refuses_output_without_a_count(instructions: ModuleType) -> None:
    with pytest.raises(ValueError):
        instructions.parse_refs("==1== Cachegrind\n")


def test_per_op_cancels_what_both_runs_share(instructions: ModuleType) -> None:
    # 1,000 instructions of start-up in both, 50 an operation.
    assert instructions.per_op((10, 1_500), (30, 2_500)) == 50.0
    with pytest.raises(ValueError):
        instructions.per_op((30, 2_500), (30, 2_600))


def test_without_valgrind_it_says_so_and_exits_2(
    instructions: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(instructions.shutil, "which", lambda _: None)
    assert instructions.main([]) == 2
    assert "valgrind is not installed" in capsys.readouterr().err
