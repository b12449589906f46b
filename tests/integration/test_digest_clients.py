"""Digest authentication with the clients people use, as they are: baresip (INVITE over
UDP and TCP), pyVoIP (REGISTER, RFC 2069-style answers without qop) and SIPp (-au/-ap).

Each runs against the default ``auth`` of a rules file (realm and users only: MD5 with
qop=auth offered, answers without qop accepted) and must pass with the right password;
with a wrong one it must fail, and the journal must say why: ``403 Forbidden (wrong
password)``.  baresip comes from Debian (``baresip-core``) and pyVoIP from PyPI, both
installed by ``make test``; where one is missing the test is skipped, and under
``CI=true`` it fails instead.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from baresipconf import write_config
from required import missing
from sipprocs import Responder, StartResponder, free_port, run_sipp
from test_access import ADMIN

RULES = """\
rules:
  - name: registrar
    match: {method: REGISTER}
    auth: {realm: lab, users: {alice: secret}}
    plan: 200
  - name: callee
    match: {method: INVITE, user: "486"}
    auth: {realm: lab, users: {alice: secret}}
    plan: 180-486
  - name: proxy
    match: {method: INVITE}
    auth: {realm: lab, users: {alice: secret}, proxy: true}
    plan: 180-200
"""
#: What a wrong password must leave in the journal.
REFUSED = "403 Forbidden (wrong password)"
#: A client run's bound: it registers or places one call and is stopped.
CLIENT_SECONDS = 20


@pytest.fixture
def registrar(start_responder_with: StartResponder, tmp_path: Path) -> Responder:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return start_responder_with("--rules", str(rules), *ADMIN)


def journal_summaries(server: Responder) -> list[str]:
    """Every message of every call in the journal, as its summary, in order."""
    assert server.admin_url is not None
    with urllib.request.urlopen(server.admin_url + "/api/calls", timeout=5.0) as resp:
        calls: list[dict[str, Any]] = json.loads(resp.read())["calls"]
    out: list[str] = []
    for call in calls:
        quoted = urllib.parse.quote(call["call_id"], safe="")
        with urllib.request.urlopen(f"{server.admin_url}/api/calls/{quoted}", timeout=5.0) as r:
            out += [m["summary"] for m in json.loads(r.read())["messages"]]
    return out


def wait_for_summary(server: Responder, text: str, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        seen = journal_summaries(server)
        if any(text in s for s in seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def run_client(argv: list[str], workdir: Path) -> str:
    """Run a client to its end (it stops itself; killed past ``CLIENT_SECONDS``): what
    it printed."""
    proc = subprocess.run(
        argv,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_SECONDS,
    )
    return proc.stdout + proc.stderr


# ------------------------------------------------------------------------ baresip


def baresip(server: Responder, workdir: Path, password: str, transport: str) -> str:
    """baresip 1.0 dialling 486 with alice's ``password``; what it printed."""
    binary = shutil.which("baresip")
    if binary is None:
        missing("baresip is not installed (Debian package baresip-core; make test installs it)")
    conf = workdir / "baresip"
    write_config(conf)
    params = ";transport=tcp" if transport == "tcp" else ""
    aor = f"sip:alice@{server.host}:{server.port}{params}"
    # regint=0: no REGISTER, only the call.
    (conf / "accounts").write_text(f"<{aor}>;auth_pass={password};regint=0\n")
    dial = f"/dial sip:486@{server.host}:{server.port}"
    return run_client([binary, "-f", str(conf), "-e", dial, "-t", "3"], workdir)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_baresip_places_an_authenticated_call(
    registrar: Responder, tmp_path: Path, transport: str
) -> None:
    said = baresip(registrar, tmp_path, "secret", transport)
    assert "session closed: 486 Busy Here" in said, said
    seen = wait_for_summary(registrar, "486 Busy Here")
    assert "401 Unauthorized" in seen and "486 Busy Here" in seen, seen
    assert REFUSED not in seen


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_baresip_with_a_wrong_password_is_told_why(
    registrar: Responder, tmp_path: Path, transport: str
) -> None:
    said = baresip(registrar, tmp_path, "wrong", transport)
    assert REFUSED in said, said  # baresip prints the reason phrase it got
    seen = wait_for_summary(registrar, REFUSED)
    assert REFUSED in seen and "486 Busy Here" not in seen, seen


# ------------------------------------------------------------------------- pyVoIP

PYVOIP = """\
import sys
from pyVoIP.VoIP import VoIPPhone
host, port, password, sip_port, rtp = sys.argv[1:6]
phone = VoIPPhone(host, int(port), "alice", password, myIP="127.0.0.1",
                  sipPort=int(sip_port), rtpPortLow=int(rtp), rtpPortHigh=int(rtp) + 1)
try:
    phone.start()
finally:
    print("status", phone.get_status().name, flush=True)
    phone.stop()
"""


def pyvoip(server: Responder, workdir: Path, password: str) -> str:
    """pyVoIP 1.6 registering alice with ``password`` (in a process of its own: it starts
    threads and timers); the status it reached."""
    if importlib.util.find_spec("pyVoIP") is None:
        missing("pyVoIP is not installed (PyPI; make test installs it)")
    script = workdir / "pyvoip_register.py"
    script.write_text(PYVOIP)
    argv = [sys.executable, str(script), server.host, str(server.port), password]
    return run_client([*argv, str(free_port()), str(free_port())], workdir)


def test_pyvoip_registers_with_an_answer_without_qop(registrar: Responder, tmp_path: Path) -> None:
    said = pyvoip(registrar, tmp_path, "secret")
    assert "status REGISTERED" in said, said
    seen = wait_for_summary(registrar, "200 OK")
    assert "401 Unauthorized" in seen and "200 OK" in seen and REFUSED not in seen, seen
    # Its answer carries no qop: checked in the RFC 2069 form, and said so once.
    assert "checked in the RFC 2069 form" in registrar.wait_for_log("RFC 2069")


def test_pyvoip_with_a_wrong_password_is_told_why(registrar: Responder, tmp_path: Path) -> None:
    said = pyvoip(registrar, tmp_path, "wrong")
    assert "status REGISTERED" not in said, said
    seen = wait_for_summary(registrar, REFUSED)
    assert REFUSED in seen and "200 OK" not in seen, seen


# --------------------------------------------------------------------------- SIPp


@pytest.mark.parametrize(
    ("scenario", "user"), [("uac_register_auth", "alice"), ("uac_invite_auth", "1001")]
)
def test_sipp_authenticates(
    registrar: Responder, tmp_path: Path, sipp_binary: str, scenario: str, user: str
) -> None:
    result = run_sipp(registrar, scenario, user, "udp", tmp_path, ("-au", "alice", "-ap", "secret"))
    assert result.returncode == 0, result.report() + registrar.log()
    assert REFUSED not in journal_summaries(registrar)
    if scenario == "uac_invite_auth":
        # SIPp answers with uri="sip:HOST:PORT", not the Request-URI: a verdict, not a
        # refusal (RFC 2617 §3.2.2.5; a rule's check_uri would refuse it).
        log = registrar.wait_for_log("RFC 2617 §3.2.2.5")
        assert "violation: RFC 2617 §3.2.2.5: Digest uri sip:127.0.0.1:" in log


def test_sipp_with_a_wrong_password_is_told_why(
    registrar: Responder, tmp_path: Path, sipp_binary: str
) -> None:
    result = run_sipp(
        registrar, "uac_register_auth", "alice", "udp", tmp_path, ("-au", "alice", "-ap", "x")
    )
    assert result.returncode != 0
    seen = wait_for_summary(registrar, REFUSED)
    # Only its BYE (SIPp's default behaviour on an unexpected answer) gets a 200.
    assert REFUSED in seen and seen.count("200 OK") == sum(s.startswith("BYE") for s in seen)
