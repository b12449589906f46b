"""A call exported as a SIPp scenario (``/api/calls/{call_id}/sipp``) replays against a
fresh responder: SIPp makes a call, the real process exports it, SIPp runs the export
against a new responder started the same way, and the call passes with the same
responses — a busy call, a whole call over TCP, a cancelled call, and a call the
responder hangs up."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from examplekit import example
from sipprocs import StartResponder, run_sipp
from test_admin import Api, start

#: (scenario, user, transport, the responder's arguments, the original's codes).
CASES = [
    ("uac_busy", "180-486", "udp", (), [100, 180, 486]),
    ("uac_call", "bob", "tcp", (), [100, 180, 200]),
    ("uac_cancel", "180", "udp", (), [100, 180, 487]),
    ("uac_remote_bye", "1000", "udp", ("--rules", str(example("hangs-up"))), None),
]


def only_call(api: Api, deadline: float = 5.0) -> dict[str, Any]:
    """The journal's one INVITE call with all its messages (waits a little for the
    last ones: the responder's BYE of a hang-up comes later)."""
    [summary] = api.ok("/api/calls?method=INVITE")["calls"]
    return dict(api.ok(f"/api/calls/{urllib.parse.quote(summary['call_id'], safe='')}"))


def kinds(call: dict[str, Any]) -> list[str]:
    """What went each way, retransmissions left out: ``>INVITE``, ``<486``..."""
    return [
        ("<" if m["direction"] == "out" else ">") + str(m.get("status", m["method"]))
        for m in call["messages"]
        if not m.get("retransmission")
    ]


@pytest.mark.sipp
@pytest.mark.parametrize(("scenario", "user", "transport", "args", "codes"), CASES)
def test_an_exported_call_replays_against_a_fresh_responder(
    sipp_binary: str,
    start_responder_with: StartResponder,
    tmp_path: Path,
    scenario: str,
    user: str,
    transport: str,
    args: tuple[str, ...],
    codes: list[int] | None,
) -> None:
    first, api = start(start_responder_with, *args)
    original = run_sipp(first, scenario, user, transport, tmp_path)
    assert original.returncode == 0, original.report()
    time.sleep(0.3)  # the last message's entry (an ACK, a 200 to the BYE) is journaled
    call = only_call(api)
    if codes is not None:
        assert call["codes"] == codes
    quoted = urllib.parse.quote(call["call_id"], safe="")
    reply = api.get(f"/api/calls/{quoted}/sipp")
    assert reply.status == 200, reply
    assert reply.headers["content-type"].startswith("application/xml")
    assert reply.headers["content-disposition"].startswith('attachment; filename="call-')
    xml = reply.body.decode()
    # The Call-ID is SIPp's, run after run (the comment names the original).
    assert call["call_id"] not in xml.partition("<scenario")[2]
    exported = tmp_path / "replay.xml"
    exported.write_text(xml)

    second, api2 = start(start_responder_with, *args)
    replayed = run_sipp(second, str(exported), "ignored", transport, tmp_path)
    assert replayed.returncode == 0, replayed.report() + "\n" + xml
    time.sleep(0.3)
    again = only_call(api2)
    assert kinds(again) == kinds(call)
    assert again["violations"] == [] and again["call_id"] != call["call_id"]


def test_the_export_of_an_unknown_call_is_404(start_responder_with: StartResponder) -> None:
    _, api = start(start_responder_with)
    reply = api.get("/api/calls/nobody/sipp")
    assert reply.status == 404 and "nobody" in reply.json["error"]
