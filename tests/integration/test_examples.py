"""The rule files in ``examples/``, each driven by the real sipp over UDP and TCP.

Every example is started as its top comment says (``--rules examples/NAME.yaml``) and a
scenario from ``scenarios/`` plays the caller; sipp exits 0 only when the call went as
the scenario says.  What the file promises beyond that (codes, Retry-After, Contact,
SDP, timing) is checked on sipp's message trace (``-trace_msg``) and on the
responder's log.  Also here: ``--check`` on every example and on a broken file, and
SIGHUP reloads (a new file takes effect, a broken one is refused and the old rules keep
answering, a call in flight keeps its plan, a weighted sequence starts afresh), and two
responder bugs found on the way (now fixed: TCP_NODELAY, the stateful challenge).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from sipclient import RECV_TIMEOUT, Msg, Req, TcpClient, UdpClient, client, parse
from sipprocs import ROOT, Responder, SippResult, StartResponder, run_sipp

from sipresponder.sip.digest import credentials

EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
TRANSPORTS = ["udp", "tcp"]

#: Every example and the sipp scenario that plays its caller (the tests below).
EXAMPLE_SCENARIOS = {
    "busy": "uac_busy",
    "no-answer": "uac_no_answer",
    "redirect": "uac_redirect",
    "auth": "uac_register_auth, uac_invite_auth",
    "flaky-trunk": "uac_flaky",
    "early-media": "uac_early_media",
    "slow-answer": "uac_slow_answer",
}

#: The responder's per-transaction log line: ``INVITE sip:1001@h:p from h:p/udp -> 100 486``.
_LOG_RE = re.compile(r" INFO ([A-Z]+) (\S+) from \S+/(udp|tcp) -> ([0-9 ]+)$", re.M)


def example(name: str) -> Path:
    path = EXAMPLES / f"{name}.yaml"
    assert path.is_file(), f"missing example {path}"
    return path


def start_example(start: StartResponder, name: str, *args: str) -> Responder:
    return start("--rules", str(example(name)), *args)


def transactions(responder: Responder, method: str, text: str = "") -> list[tuple[str, str]]:
    """``(Request-URI, codes)`` of the logged ``method`` transactions whose URI has ``text``."""
    return [
        (m.group(2), m.group(4).strip())
        for m in _LOG_RE.finditer(responder.log())
        if m.group(1) == method and text in m.group(2)
    ]


def wait_for_count(responder: Responder, text: str, count: int, timeout: float = 5.0) -> str:
    """The log once ``text`` occurs in it at least ``count`` times (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        log = responder.log()
        if log.count(text) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


def sighup(responder: Responder) -> None:
    """SIGHUP to the responder's own PID (``python -m sipresponder``, no shell between)."""
    assert responder.proc.poll() is None, "the responder is not running"
    os.kill(responder.proc.pid, signal.SIGHUP)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` at once, so a reload never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -------------------------------------------------------------- sipp's trace


@dataclass
class Traced:
    """One message of sipp's ``-trace_msg`` file, as sipp sent or received it."""

    at: float  # seconds since the epoch, from sipp's timestamp
    sent: bool
    msg: Msg

    @property
    def status(self) -> int | None:
        return self.msg.status if self.msg.start.startswith("SIP/2.0 ") else None


_TRACE_RE = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
    r"(?:UDP|TCP) message (sent|received) [^\n]*\n",
    re.M,
)


def read_trace(workdir: Path, scenario: str) -> list[Traced]:
    """Every message in ``workdir/SCENARIO_*_messages.log``, in order."""
    files = sorted(workdir.glob(f"{scenario}_*_messages.log"))
    assert len(files) == 1, f"expected one sipp message trace, found {files}"
    data = files[0].read_bytes()
    text = data.decode("latin-1")  # byte for byte, whatever the bodies hold
    out: list[Traced] = []
    marks = list(_TRACE_RE.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        raw = text[mark.end() : end].lstrip("\r\n").encode("latin-1")
        head_end = raw.find(b"\r\n\r\n")
        assert head_end >= 0, f"no end of headers in a traced message: {raw[:300]!r}"
        length = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", raw[:head_end])
        size = head_end + 4 + (int(length.group(1)) if length else 0)
        stamp = datetime.strptime(mark.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append(Traced(stamp, mark.group(2) == "sent", parse(raw[:size], stamp)))
    return out


def received(trace: list[Traced], code: int) -> list[Traced]:
    """The responses with ``code`` that sipp received (retransmissions included)."""
    return [t for t in trace if not t.sent and t.status == code]


def first(trace: list[Traced], code: int) -> Traced:
    found = received(trace, code)
    assert found, f"sipp received no {code}; got {[t.msg.start for t in trace if not t.sent]}"
    return found[0]


def sent(trace: list[Traced], method: str) -> list[Traced]:
    return [t for t in trace if t.sent and t.msg.start.startswith(f"{method} ")]


def sipp_ok(
    responder: Responder,
    scenario: str,
    user: str,
    transport: str,
    workdir: Path,
    *extra: str,
) -> tuple[SippResult, list[Traced]]:
    """Run ``scenario`` with ``-trace_msg`` in ``workdir``; it must pass."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_sipp(responder, scenario, user, transport, workdir, ("-trace_msg", *extra))
    assert result.returncode == 0, result.report() + f"\n--- responder ---\n{responder.log()}"
    return result, read_trace(workdir, scenario)


# ------------------------------------------------------------------ --check


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    """``sipresponder --rules PATH --check``; it exits by itself (killed after 20 s)."""
    return subprocess.run(
        [sys.executable, "-m", "sipresponder", "--rules", str(path), "--check"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_every_example_has_a_sipp_test() -> None:
    assert {p.stem for p in EXAMPLE_FILES} == set(EXAMPLE_SCENARIOS)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_passes_check(path: Path) -> None:
    result = run_check(path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = yaml.safe_load(path.read_text("utf-8"))
    rules = doc["rules"]
    lines = result.stdout.splitlines()
    # One summary line per rule, in order, then the default and the seed if any, then OK.
    expected = len(rules) + ("default" in doc) + ("seed" in doc) + 1
    assert len(lines) == expected, result.stdout
    for i, rule in enumerate(rules, start=1):
        assert lines[i - 1].startswith(f"rule {i} {rule['name']!r} (line "), lines[i - 1]
    if "seed" in doc:
        assert f"seed {doc['seed']}" in result.stdout
    assert re.fullmatch(rf"{re.escape(str(path))}: OK, {len(rules)} rules?", lines[-1]), lines


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_says_what_it_does_and_how_to_run_it(path: Path) -> None:
    text = path.read_text("utf-8")
    head = text.split("\n\n", 1)[0]
    assert head.startswith(f"# {path.name} — "), head[:80]
    assert f"sipresponder --rules examples/{path.name}" in text


BROKEN = """\
# A typo in the second rule's second step.
rules:
  - name: fine
    match: {method: OPTIONS}
    plan: 200

  - name: busy
    match: {method: INVITE}
    plan:
      - code: 180
      - {code: 486, after: 2s, retry_afer: 60}
"""


def test_broken_file_fails_check_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    result = run_check(path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    # The file, the rule (index and line), the field, the problem.
    assert lines[0].startswith("sipresponder: error: "), lines[0]
    # The line is the faulty step's own (11), within rule 2 (which starts on line 7).
    assert f"{path}: rule 2 (line 11): plan[1].retry_afer: unknown field" in lines[0]


def test_broken_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "sipresponder", "--port", "0", "--rules", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "listening" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and f"{path}: rule 2 (line " in lines[0], result.stderr
    assert "plan[1].retry_afer" in lines[0]


# --------------------------------------------------------------------- busy


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_busy(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "busy")
    result, trace = sipp_ok(responder, "uac_busy", "1001", transport, tmp_path)
    ringing, busy = first(trace, 180), first(trace, 486)
    assert busy.msg.reason == "Busy Here"
    assert busy.msg["Retry-After"] == "300"
    assert busy.msg["Reason"] == 'Q.850;cause=17;text="User busy"'
    assert busy.at - ringing.at >= 0.95, "the 486 came less than 1 s after the 180"
    assert result.elapsed < 5, result.report()
    assert transactions(responder, "INVITE") == [
        (f"sip:1001@{responder.host}:{responder.port}", "100 180 486")
    ]


# ---------------------------------------------------------------- no answer


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_answer_rings_until_the_caller_cancels(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "no-answer")
    # -d 1000: sipp rings for a second, and nothing may arrive meanwhile.
    _, trace = sipp_ok(responder, "uac_no_answer", "1001", transport, tmp_path, "-d", "1000")
    ringing = first(trace, 180)
    cancel = sent(trace, "CANCEL")
    assert len(cancel) == 1
    assert cancel[0].at - ringing.at >= 0.95
    between = [t.msg.start for t in trace if not t.sent and ringing.at < t.at < cancel[0].at]
    assert between == [], f"the ringing was interrupted by {between}"
    assert first(trace, 487).msg["CSeq"] == "1 INVITE"
    assert first(trace, 200).msg["CSeq"] == "1 CANCEL"
    responder.wait_for_log("INVITE sip:1001")
    assert transactions(responder, "INVITE") == [
        (f"sip:1001@{responder.host}:{responder.port}", "100 180 487")
    ]
    assert [codes for _, codes in transactions(responder, "CANCEL")] == ["200"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_answer_gives_up_after_max_ring(
    start_responder_with: StartResponder, transport: str
) -> None:
    # The example's comment: --max-ring seconds of ringing end in 408.
    responder = start_example(start_responder_with, "no-answer", "--max-ring", "0.5")
    with client(transport, responder.addr) as c:
        invite = Req(method="INVITE", user="1001")
        c.send(invite)
        c.expect(100)
        ringing = c.expect(180)
        timeout = c.expect(408, timeout=RECV_TIMEOUT + 1)
        assert timeout.at - ringing.at >= 0.45
        c.send(invite.ack(timeout.to_tag))
        c.expect_silence()


# ----------------------------------------------------------------- redirect


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redirect_302_is_followed_to_the_mobile(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "redirect")
    _, trace = sipp_ok(responder, "uac_redirect", "1001", transport, tmp_path)
    moved = first(trace, 302).msg
    hostport = f"{responder.host}:{responder.port}"
    target = f"sip:mobile-1001@{hostport};transport={transport}"
    assert moved.reason == "Moved Temporarily"
    assert moved.get_all("Contact") == [f"<{target}>"]
    assert moved["Diversion"] == f"<sip:1001@{responder.host}>;reason=unconditional"
    # sipp followed the Contact; the responder answered it with the dial-the-code default.
    assert [t.msg.start for t in sent(trace, "INVITE")] == [
        f"INVITE sip:1001@{hostport} SIP/2.0",
        f"INVITE {target} SIP/2.0",
    ]
    responder.wait_for_log("BYE ")
    assert transactions(responder, "INVITE") == [
        (f"sip:1001@{hostport}", "100 302"),
        (target, "100 180 200"),
    ]


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redirect_301_for_the_other_user(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "redirect")
    _, trace = sipp_ok(responder, "uac_redirect", "1002", transport, tmp_path)
    moved = first(trace, 301).msg
    assert moved.reason == "Moved Permanently"
    assert moved.get_all("Contact") == ["<sip:1002@new-office.example.com>"]
    assert moved.get("Diversion") is None
    assert received(trace, 302) == []
    assert len(sent(trace, "INVITE")) == 1


# --------------------------------------------------------------------- auth


def single_md5_challenge(msg: Msg, header: str) -> dict[str, str]:
    """The one challenge ``header`` of ``msg``, as parameters; it must be MD5 only."""
    values = msg.get_all(header)
    assert len(values) == 1, f"expected one {header}, got {values}"
    value = values[0]
    assert value.startswith("Digest "), value
    params = dict(re.findall(r'([a-z]+)=("[^"]*"|[^,\s]+)', value))
    assert params["realm"] == '"lab.example"'
    assert params["algorithm"] == "MD5"
    assert params["qop"] == '"auth"'
    return params


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_register_is_challenged_then_accepted(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "auth")
    _, trace = sipp_ok(
        responder,
        "uac_register_auth",
        "alice",
        transport,
        tmp_path,
        "-au",
        "alice",
        "-ap",
        "secret",
    )
    challenge = first(trace, 401).msg
    nonce = single_md5_challenge(challenge, "WWW-Authenticate")["nonce"]
    registers = sent(trace, "REGISTER")
    assert len(registers) == 2
    answer = registers[1].msg["Authorization"]
    assert 'username="alice"' in answer and f"nonce={nonce}" in answer
    ok = first(trace, 200).msg
    assert ok["CSeq"] == "2 REGISTER"
    assert ok["Contact"].endswith(";expires=3600")
    responder.wait_for_log("-> 200")
    assert [codes for _, codes in transactions(responder, "REGISTER")] == ["401", "200"]


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_invite_is_challenged_by_the_proxy_then_answered(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "auth")
    _, trace = sipp_ok(
        responder,
        "uac_invite_auth",
        "1001",
        transport,
        tmp_path,
        "-au",
        "bob",
        "-ap",
        "hunter2",
    )
    challenge = first(trace, 407).msg
    assert challenge.get("WWW-Authenticate") is None
    single_md5_challenge(challenge, "Proxy-Authenticate")
    invites = sent(trace, "INVITE")
    assert len(invites) == 2
    assert invites[0].msg.get("Proxy-Authorization") is None
    assert 'username="bob"' in invites[1].msg["Proxy-Authorization"]
    answer = first(trace, 200).msg
    assert answer["CSeq"] == "2 INVITE"
    assert answer["Content-Type"] == "application/sdp"
    responder.wait_for_log("BYE ")
    assert [codes for _, codes in transactions(responder, "INVITE")] == ["407", "100 180 200"]
    assert [codes for _, codes in transactions(responder, "BYE")] == ["200"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_wrong_password_or_unknown_user_is_forbidden(
    start_responder_with: StartResponder, transport: str
) -> None:
    responder = start_example(start_responder_with, "auth")
    with client(transport, responder.addr) as c:
        for username, password in (("alice", "wrong"), ("mallory", "secret")):
            first_try = Req(method="REGISTER", user="alice")
            challenge = c.request(first_try, 401)
            params = single_md5_challenge(challenge, "WWW-Authenticate")
            uri = f"sip:alice@{responder.host}:{responder.port}"
            value = credentials(
                username,
                password,
                "lab.example",
                params["nonce"].strip('"'),
                "REGISTER",
                uri,
            )
            retry = Req(
                method="REGISTER",
                user="alice",
                call_id=first_try.call_id,
                from_tag=first_try.from_tag,
                cseq=2,
                headers=[("Authorization", value)],
            )
            c.request(retry, 403)
        # The right password still works on the same connection.
        again = Req(method="REGISTER", user="alice")
        challenge = c.request(again, 401)
        nonce = single_md5_challenge(challenge, "WWW-Authenticate")["nonce"].strip('"')
        value = credentials(
            "alice",
            "secret",
            "lab.example",
            nonce,
            "REGISTER",
            f"sip:alice@{responder.host}:{responder.port}",
        )
        c.request(
            Req(
                method="REGISTER",
                user="alice",
                call_id=again.call_id,
                from_tag=again.from_tag,
                cseq=2,
                headers=[("Authorization", value)],
            ),
            200,
        )


# -------------------------------------------------------------- flaky trunk

FLAKY_CALLS = 100


def flaky_run(start: StartResponder, transport: str, workdir: Path) -> tuple[int, int]:
    """FLAKY_CALLS calls on a fresh responder -> (answered, unavailable)."""
    # --log-rate: one log line per transaction even at 200 calls/s.
    responder = start_example(start, "flaky-trunk", "--log-rate", "100000")
    _, trace = sipp_ok(
        responder,
        "uac_flaky",
        "0123456789",
        transport,
        workdir,
        "-m",
        str(FLAKY_CALLS),
        "-l",
        "20",
        "-r",
        "200",
    )
    for traced in received(trace, 503):
        assert traced.msg["Retry-After"] == "30"
        assert traced.msg["Reason"] == 'Q.850;cause=34;text="No circuit/channel available"'
    logged = wait_for_count(responder, " INVITE ", FLAKY_CALLS)
    outcomes = [codes for _, codes in transactions(responder, "INVITE")]
    assert len(outcomes) == FLAKY_CALLS, logged[-3000:]
    assert set(outcomes) <= {"100 180 200", "100 503"}, set(outcomes)
    answered = outcomes.count("100 180 200")
    unavailable = outcomes.count("100 503")
    # Every 503 that sipp saw first is one call (UDP may repeat a 503 until the ACK).
    call_ids = {t.msg["Call-ID"] for t in received(trace, 503)}
    assert len(call_ids) == unavailable
    return answered, unavailable


@pytest.mark.sipp
def test_flaky_trunk_is_flaky_at_the_configured_ratio_and_reproducible(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path
) -> None:
    udp = flaky_run(start_responder_with, "udp", tmp_path / "udp")
    tcp = flaky_run(start_responder_with, "tcp", tmp_path / "tcp")
    answered, unavailable = udp
    # Weights 4:1 -> 20 % of 100; allow three standard deviations (binomial: 4 calls).
    assert 8 <= unavailable <= 32, udp
    assert answered + unavailable == FLAKY_CALLS
    # seed: 42 -> a fresh responder picks the same sequence, whatever the transport.
    assert tcp == udp


def flaky_outcomes(c: UdpClient, count: int) -> list[int]:
    """``count`` INVITEs to the flaky trunk, one after the other -> their final codes."""
    codes = []
    for _ in range(count):
        invite = Req(method="INVITE", user="0123456789")
        c.send(invite)
        c.expect(100)
        final = c.expect_any()
        if final.status == 180:
            final = c.expect(200)
            c.send(invite.ack_2xx(final.to_tag))
        else:
            assert final.status == 503, final.text
            c.send(invite.ack(final.to_tag))
        codes.append(final.status)
    return codes


def test_flaky_trunk_sequence_restarts_on_reload(
    start_responder_with: StartResponder, tmp_path: Path
) -> None:
    rules = tmp_path / "flaky.yaml"
    write_atomically(rules, example("flaky-trunk").read_text("utf-8"))
    responder = start_responder_with("--rules", str(rules))
    with UdpClient(responder.addr) as c:
        before = flaky_outcomes(c, 20)
        sighup(responder)  # the same file again: the seeded sequence starts afresh
        wait_for_count(responder, "reloaded", 1)
        after = flaky_outcomes(c, 20)
    assert 503 in before and 200 in before, before
    assert after == before


# -------------------------------------------------------------- early media


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_early_media_then_answer(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "early-media")
    _, trace = sipp_ok(responder, "uac_early_media", "1001", transport, tmp_path)
    progress, answer = first(trace, 183), first(trace, 200)
    assert progress.msg.reason == "Session Progress"
    assert progress.msg["Content-Type"] == "application/sdp"
    assert b"\r\nm=audio " in progress.msg.body
    assert answer.msg["Content-Type"] == "application/sdp"
    assert answer.msg.body == progress.msg.body, "the 200 carries another SDP than the 183"
    assert received(trace, 180) == []
    assert answer.at - progress.at >= 1.95, "the 200 came less than 2 s after the 183"
    responder.wait_for_log("BYE ")
    assert [codes for _, codes in transactions(responder, "INVITE")] == ["100 183 200"]


# ------------------------------------------------------------- slow answer


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_slow_answer_takes_five_seconds(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    responder = start_example(start_responder_with, "slow-answer")
    result, trace = sipp_ok(responder, "uac_slow_answer", "1001", transport, tmp_path)
    ringing, answer = first(trace, 180), first(trace, 200)
    assert 4.95 <= answer.at - ringing.at < 6.5, answer.at - ringing.at
    assert result.elapsed >= 5.0, result.report()
    assert b"\r\nm=audio " in answer.msg.body
    responder.wait_for_log("BYE ")
    assert [codes for _, codes in transactions(responder, "INVITE")] == ["100 180 200"]


# ------------------------------------------------------------------- SIGHUP


@pytest.mark.sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sighup_switches_examples_and_keeps_them_on_a_broken_file(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    rules = tmp_path / "rules.yaml"
    write_atomically(rules, example("redirect").read_text("utf-8"))
    responder = start_responder_with("--rules", str(rules))
    _, trace = sipp_ok(responder, "uac_redirect", "1002", transport, tmp_path / "1")
    assert first(trace, 301)

    # The auth example replaces it: 1002 now needs credentials.
    write_atomically(rules, example("auth").read_text("utf-8"))
    sighup(responder)
    log = wait_for_count(responder, "reloaded", 1)
    assert f"reloaded {rules}: 2 rules" in log, log
    auth = ("-au", "bob", "-ap", "hunter2")
    _, trace = sipp_ok(responder, "uac_invite_auth", "1002", transport, tmp_path / "2", *auth)
    assert first(trace, 407) and first(trace, 200)

    # A broken file is refused with a logged error; the auth rules keep answering.
    write_atomically(rules, BROKEN)
    sighup(responder)
    log = wait_for_count(responder, "keeping the rules in use", 1)
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert f"{rules}: rule 2 (line " in errors[0] and "plan[1].retry_afer" in errors[0]
    assert log.count("reloaded") == 1
    _, trace = sipp_ok(responder, "uac_invite_auth", "1002", transport, tmp_path / "3", *auth)
    assert first(trace, 407) and first(trace, 200)
    codes = [c for _, c in transactions(responder, "INVITE", "sip:1002@")]
    assert codes == ["100 301", "407", "100 180 200", "407", "100 180 200"]


def test_sighup_reload_then_broken_file_then_fixed(
    start_responder_with: StartResponder, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"

    def version(n: int, code: int) -> str:
        return (
            "rules:\n"
            "  - name: alice\n"
            "    match: {user: alice}\n"
            f"    plan: [{{code: {code}, reason: rules v{n}}}]\n"
        )

    write_atomically(rules, version(1, 480))
    responder = start_responder_with("--rules", str(rules))
    with UdpClient(responder.addr) as c:
        assert c.request(Req(user="alice"), 480).reason == "rules v1"
        c.request(Req(user="bob"), 200)  # no rule: dial-the-code as before

        write_atomically(rules, version(2, 486))
        sighup(responder)
        wait_for_count(responder, "reloaded", 1)
        assert c.request(Req(user="alice"), 486).reason == "rules v2"

        write_atomically(rules, "rules:\n  - name: alice\n    match: {user: alice}\n")
        sighup(responder)
        log = wait_for_count(responder, "keeping the rules in use", 1)
        error = rf"ERROR {re.escape(str(rules))}: rule 1 \(line 2\): plan: .*; keeping the rules"
        assert re.search(error, log), log
        assert c.request(Req(user="alice"), 486).reason == "rules v2"

        rules.unlink()  # a file that is gone is no better
        sighup(responder)
        log = wait_for_count(responder, "keeping the rules in use", 2)
        assert f"ERROR {rules}: cannot read: No such file or directory; keeping" in log, log
        assert c.request(Req(user="alice"), 486).reason == "rules v2"

        write_atomically(rules, version(3, 603))
        sighup(responder)
        wait_for_count(responder, "reloaded", 2)
        assert c.request(Req(user="alice"), 603).reason == "rules v3"


def test_sighup_leaves_a_call_in_flight_on_its_plan(
    start_responder_with: StartResponder, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    write_atomically(rules, example("busy").read_text("utf-8"))
    responder = start_responder_with("--rules", str(rules))
    with UdpClient(responder.addr) as c:
        invite = Req(method="INVITE", user="1001")
        c.send(invite)
        c.expect(100)
        c.expect(180)
        # Mid-ring, the file now declines every INVITE at once.
        write_atomically(rules, "rules:\n  - match: {method: INVITE}\n    plan: 603\n")
        sighup(responder)
        wait_for_count(responder, "reloaded", 1)
        busy = c.expect(486, timeout=RECV_TIMEOUT)
        assert busy["Retry-After"] == "300"
        c.send(invite.ack(busy.to_tag))
        second = Req(method="INVITE", user="1001")
        c.send(second)
        c.expect(100)
        declined = c.expect(603)
        c.send(second.ack(declined.to_tag))


def test_sighup_without_a_rules_file_changes_nothing(
    start_responder_with: StartResponder,
) -> None:
    responder = start_responder_with()
    sighup(responder)
    log = responder.wait_for_log("SIGHUP: no --rules file to reload")
    assert "SIGHUP: no --rules file to reload" in log, log
    with UdpClient(responder.addr) as c:
        c.request(Req(user="486"), 486)  # still dial-the-code, still running


# -------------------------------------------------------- found on the way


def test_tcp_responses_in_a_row_are_not_held_back(
    start_responder_with: StartResponder,
) -> None:
    # Seen with the flaky trunk over TCP: 100 Trying goes out, the 180 and 200 (or the
    # 503) written a few microseconds later arrive ~40 ms after it.
    responder = start_example(start_responder_with, "flaky-trunk")
    gaps = []
    with TcpClient(responder.addr) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # not our side
        for _ in range(9):
            invite = Req(method="INVITE", user="0123456789")
            c.send(invite)
            trying = c.expect(100)
            final = c.expect_any()
            gaps.append(final.at - trying.at)
            if final.status == 180:
                final = c.expect(200)
                c.send(invite.ack_2xx(final.to_tag))
            else:
                c.send(invite.ack(final.to_tag))
    gaps.sort()
    median = gaps[len(gaps) // 2]
    assert median < 0.015, f"responses after the 100 came {median * 1000:.0f} ms later"


def test_auth_challenge_to_a_retransmitted_register_is_the_same(
    start_responder_with: StartResponder,
) -> None:
    responder = start_example(start_responder_with, "auth")
    with UdpClient(responder.addr) as c:
        register = Req(method="REGISTER", user="alice")
        data = c.build(register)
        c.send(data)
        first_401 = c.expect(401)
        time.sleep(0.02)
        c.send(data)  # the very same bytes: a retransmission
        second_401 = c.expect(401)
    assert second_401.get_all("WWW-Authenticate") == first_401.get_all("WWW-Authenticate")
    assert second_401.raw == first_401.raw
