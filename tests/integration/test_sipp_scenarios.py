"""The real sipp (UAC side) against the real responder, over UDP and TCP.

Each scenario in ``scenarios/`` runs one call (``-m 1``); sipp exits 0 only when the
call went exactly as the scenario says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sipprocs import Responder, run_sipp

pytestmark = pytest.mark.sipp

TRANSPORTS = ["udp", "tcp"]


def sipp_ok(
    responder: Responder,
    scenario: str,
    user: str,
    transport: str,
    workdir: Path,
    extra: tuple[str, ...] = (),
) -> float:
    """Run the scenario once and assert it passed; returns how long sipp ran."""
    result = run_sipp(responder, scenario, user, transport, workdir, extra)
    assert result.returncode == 0, result.report()
    return result.elapsed


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_options_gets_200(
    sipp_binary: str, responder: Responder, tmp_path: Path, transport: str
) -> None:
    sipp_ok(responder, "uac_options", "bob", transport, tmp_path)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("user", ["180-486", "180486"])
def test_busy(
    sipp_binary: str, responder: Responder, tmp_path: Path, transport: str, user: str
) -> None:
    sipp_ok(responder, "uac_busy", user, transport, tmp_path)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_busy_after_a_delay(
    sipp_binary: str, responder: Responder, tmp_path: Path, transport: str
) -> None:
    elapsed = sipp_ok(responder, "uac_busy", "180-1500ms-486", transport, tmp_path)
    assert elapsed >= 1.4, f"the 486 of 180-1500ms-486 came after only {elapsed:.2f} s"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_call_with_sdp_then_bye(
    sipp_binary: str, responder: Responder, tmp_path: Path, transport: str
) -> None:
    sipp_ok(responder, "uac_call", "bob", transport, tmp_path)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_of_a_ringing_invite(
    sipp_binary: str, responder: Responder, tmp_path: Path, transport: str
) -> None:
    sipp_ok(responder, "uac_cancel", "180", transport, tmp_path)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_method_gets_501(
    sipp_binary: str, responder: Responder, tmp_path: Path, transport: str
) -> None:
    sipp_ok(responder, "uac_unknown_method", "bob", transport, tmp_path)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retransmitted_invite_gets_the_180_again(
    sipp_binary: str, responder: Responder, tmp_path: Path, transport: str
) -> None:
    # -nr: without it sipp takes the resent 180 (byte for byte the last message it got)
    # for a retransmission of its own and answers it with the INVITE again, forever.
    elapsed = sipp_ok(responder, "uac_retrans", "180-1s-486", transport, tmp_path, ("-nr",))
    assert elapsed >= 0.9, f"the 486 of 180-1s-486 came after only {elapsed:.2f} s"
