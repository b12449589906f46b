"""Calls exported as pcap by the real process's admin API, read by the real tshark: SIPp
places a busy call over UDP and a whole call over TCP; each call's pcap
(``/api/calls/{call_id}/pcap``) and the filtered list's (``/api/calls.pcap``) are read
with ``tshark -r``, which must decode every message the journal holds, in order, on the
right addresses."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from required import missing
from sipprocs import StartResponder, run_sipp
from test_admin import Api, start

TSHARK_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def tshark() -> str:
    found = shutil.which("tshark")
    if found is None:
        missing("tshark is not installed: make test installs it (Debian package tshark)")
    return found


def sip_rows(tshark: str, pcap: Path) -> list[tuple[str, str, str, str]]:
    """(source, destination, method or status, transport) of each SIP message tshark
    decodes, in the file's order."""
    done = subprocess.run(
        [
            tshark,
            "-r",
            str(pcap),
            "-Y",
            "sip",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "frame.protocols",
            # Wireshark checks no checksum by default; these must hold all the same.
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
        ],
        capture_output=True,
        text=True,
        timeout=TSHARK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = []
    for line in done.stdout.splitlines():
        src, dst, method, status, protocols = line.split("|")
        transport = "tcp" if ":tcp:" in protocols else "udp" if ":udp:" in protocols else "?"
        rows.append((src, dst, method or status, transport))
    return rows


def expected(call: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for m in call["messages"]:
        kind = str(m["status"]) if "status" in m else m["method"]
        rows.append(
            (m["src"].rpartition(":")[0], m["dst"].rpartition(":")[0], kind, m["transport"])
        )
    return rows


def download(api: Api, path: str, into: Path) -> Path:
    reply = api.get(path)
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/vnd.tcpdump.pcap"
    assert reply.headers["content-disposition"].startswith("attachment; filename=")
    into.write_bytes(reply.body)
    return into


@pytest.mark.sipp
def test_tshark_decodes_every_message_of_an_exported_call(
    sipp_binary: str, tshark: str, start_responder_with: StartResponder, tmp_path: Path
) -> None:
    server, api = start(start_responder_with)
    busy = run_sipp(server, "uac_busy", "180-486", "udp", tmp_path)
    assert busy.returncode == 0, busy.report()
    whole = run_sipp(server, "uac_call", "ok", "tcp", tmp_path)
    assert whole.returncode == 0, whole.report()
    calls = api.ok("/api/calls")["calls"]
    assert len(calls) == 2
    total = 0
    for n, summary in enumerate(calls):
        quoted = urllib.parse.quote(summary["call_id"], safe="")
        call = api.ok(f"/api/calls/{quoted}")
        want = expected(call)
        assert len(want) >= 5  # INVITE, 100, 180, 486 / 200, ACK (and BYE, 200)
        pcap = download(api, f"/api/calls/{quoted}/pcap", tmp_path / f"call{n}.pcap")
        assert sip_rows(tshark, pcap) == want
        total += len(want)
    assert {
        r[3] for r in sip_rows(tshark, download(api, "/api/calls.pcap", tmp_path / "all.pcap"))
    } == {"udp", "tcp"}
    assert len(sip_rows(tshark, tmp_path / "all.pcap")) == total
    # The list's filter applies: the busy call alone.
    only = download(api, "/api/calls.pcap?status=486", tmp_path / "busy.pcap")
    assert [r[2] for r in sip_rows(tshark, only)] == ["INVITE", "100", "180", "486", "ACK"]


def test_a_pcap_of_no_call_or_a_bad_filter_is_refused(start_responder_with: StartResponder) -> None:
    _, api = start(start_responder_with)
    missing_call = api.get("/api/calls/no-such-call/pcap")
    assert missing_call.status == 404 and "no-such-call" in missing_call.json["error"]
    bad = api.get("/api/calls.pcap?status=99")
    assert bad.status == 400 and bad.json["parameter"] == "status"
    empty = api.get("/api/calls.pcap")
    assert empty.status == 200 and len(empty.body) == 24  # the file's header alone
