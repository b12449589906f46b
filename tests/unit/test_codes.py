"""The reason-phrase table against the shared IANA list."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipresponder.sip.codes import REGISTERED, is_valid_code, reason_phrase

SHARED = Path(__file__).resolve().parents[3] / "shared" / "sip-response-codes.tsv"


def test_table_has_the_75_registered_codes() -> None:
    assert len(REGISTERED) == 75
    for code in (
        199,
        204,
        380,
        412,
        417,
        422,
        428,
        429,
        430,
        433,
        436,
        437,
        438,
        439,
        440,
        469,
        470,
        494,
        555,
        580,
        607,
        608,
    ):
        assert code in REGISTERED


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/sip-response-codes.tsv not present")
def test_table_matches_the_shared_tsv() -> None:
    rows = [line.split("\t") for line in SHARED.read_text().splitlines() if line[:1].isdigit()]
    assert {int(r[0]): r[1] for r in rows} == {c: e[0] for c, e in REGISTERED.items()}


@pytest.mark.parametrize(
    ("code", "phrase"),
    [
        (100, "Trying"),
        (486, "Busy Here"),
        (607, "Unwanted"),
        (199, "Early Dialog Terminated"),
        (150, "Provisional"),
        (299, "Successful"),
        (399, "Redirection"),
        (499, "Request Failure"),
        (599, "Server Failure"),
        (699, "Global Failure"),
    ],
)
def test_reason_phrase(code: int, phrase: str) -> None:
    assert reason_phrase(code) == phrase


def test_out_of_range() -> None:
    assert not is_valid_code(99) and not is_valid_code(700)
    with pytest.raises(ValueError):
        reason_phrase(700)
