"""The client verdicts end to end: sipp scenarios that misbehave on purpose, and
well-behaved ones that must draw no verdict at all.

Every test starts its own responder with ``--journal-file``, runs one sipp call with a
Call-ID of its own (``-cid_str``), and then checks the verdicts in two places:

- the journal file: exactly the expected ``{"type": "violation", ...}`` lines, with the
  RFC section, a key phrase of the message, the Call-ID, the method and CSeq number;
- standard error: one ``WARNING violation: RULE: MESSAGE (CALL-ID, CSeq N METHOD)`` line
  per violation, and no other WARNING.

The journal file is buffered by the responder and only complete once it has stopped
(``Server._write_journal``: "flushed on close"), so the tests wait, bounded, for the
WARNING lines on standard error (logged at once), keep listening a little longer for a
verdict that should not come, then stop the responder by its PID (SIGTERM, exit code 0)
and read the file.

The misbehaving scenarios are ``scenarios/uac_bad_*.xml``; each says in its top comment
what it does wrong and which rule that breaks.  The no-ACK case has to wait out the
responder's Timer H (64*T1 = 32 s, not configurable from the command line): it is the
one slow test here, UDP only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sipclient import new_id
from sipprocs import SCENARIOS, Responder, StartResponder, run_sipp

pytestmark = pytest.mark.sipp

TRANSPORTS = ["udp", "tcp"]
JOURNAL = "journal.jsonl"

#: How long an expected verdict may take to show on standard error.
VERDICT_TIMEOUT = 5.0
#: How long to keep listening after the expected verdicts (or after a well-behaved call)
#: for one that should not come.  Why a sleep is safe here: it can only make a test pass
#: that should have failed (a verdict later than this is not seen), never fail one that
#: should pass, so a loaded machine cannot make it flaky.  Every verdict these calls could
#: draw is judged when its message is handled, within milliseconds of SIPp sending it;
#: none waits for a timer shorter than Timer H (32 s, tested apart below).
SETTLE_BAD = 0.5
SETTLE_GOOD = 1.0
#: The responder's Timer H: 64*T1 with its fixed T1 of 500 ms (RFC 3261 §17.2.1).
TIMER_H = 32.0

Line = dict[str, Any]


# ---------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Expected:
    """A violation the responder must record: its rule, words of its message (each must
    occur in it), and the request it was charged to."""

    rule: str
    phrases: tuple[str, ...]
    method: str
    cseq: int


@dataclass
class Outcome:
    """What one call left behind: the journal's lines (all of them) and the stderr."""

    call_id: str
    lines: list[Line]
    log: str

    @property
    def messages(self) -> list[Line]:
        return [line for line in self.lines if line["type"] == "message"]

    @property
    def violations(self) -> list[Line]:
        return [line for line in self.lines if line["type"] == "violation"]

    @property
    def warnings(self) -> list[str]:
        return warning_lines(self.log)

    def ladder(self) -> str:
        """The journal as a ladder, for assertion messages."""
        t0 = self.lines[0]["time"] if self.lines else 0.0
        out = []
        for line in self.lines:
            at = f"+{line['time'] - t0:7.3f}s"
            if line["type"] == "violation":
                out.append(f"{at}  VIOLATION {line['rule']}: {line['message']}")
            else:
                arrow = "->" if line["direction"] == "in" else "<-"
                retx = " (retransmission)" if line.get("retransmission") else ""
                out.append(
                    f"{at}  {line['transport']} {arrow} {line['summary']}  "
                    f"[{line['call_id']}, CSeq {line['cseq']} {line['method']}]{retx}"
                )
        return "\n".join(out) + "\n--- stderr ---\n" + self.log[-4000:]


def warning_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " WARNING " in line]


def start(start_responder_with: StartResponder, tmp_path: Path) -> tuple[Responder, Path]:
    journal = tmp_path / JOURNAL
    return start_responder_with("--journal-file", str(journal)), journal


def call(
    responder: Responder,
    scenario: str,
    user: str,
    transport: str,
    workdir: Path,
    extra: tuple[str, ...] = (),
) -> str:
    """Run one call of the scenario, which must pass in sipp's eyes; returns its Call-ID."""
    prefix = f"{scenario}-{transport}-{new_id()[:8]}"
    result = run_sipp(
        responder, scenario, user, transport, workdir, (*extra, "-cid_str", f"{prefix}-%u")
    )
    assert result.returncode == 0, result.report()
    return f"{prefix}-1"  # -m 1: call number 1


def wait_for_warnings(responder: Responder, count: int, timeout: float) -> None:
    """Until the responder has logged ``count`` WARNING lines, or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    while len(warning_lines(responder.log())) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_and_read(responder: Responder, journal: Path, call_id: str) -> Outcome:
    """Stop the responder by its PID (which flushes the journal file) and read it back."""
    code = responder.stop()
    log = responder.log()
    assert code == 0, f"responder exited with {code} after SIGTERM; stderr:\n{log[-4000:]}"
    assert "Traceback" not in log, f"the responder logged an exception:\n{log[-4000:]}"
    text = journal.read_text("utf-8")
    lines = [json.loads(raw) for raw in text.splitlines() if raw.strip()]
    assert all(line.get("type") in ("message", "violation") for line in lines), text[-4000:]
    outcome = Outcome(call_id, lines, log)
    assert outcome.messages, f"the journal recorded no message:\n{outcome.ladder()}"
    call_ids = {line["call_id"] for line in lines}
    assert call_ids == {call_id}, f"expected only {call_id}:\n{outcome.ladder()}"
    return outcome


def warning_text(violation: Line) -> str:
    """The log line the responder writes for a violation, after time and level."""
    return (
        f"violation: {violation['rule']}: {violation['message']} "
        f"({violation['call_id']}, CSeq {violation['cseq']} {violation['method']})"
    )


def assert_verdicts(outcome: Outcome, expected: list[Expected]) -> None:
    """Exactly the expected violations, in order, in the journal and on stderr."""
    found = outcome.violations
    assert len(found) == len(expected), (
        f"expected {len(expected)} violation(s) {[e.rule for e in expected]}, "
        f"the journal has {len(found)}:\n{outcome.ladder()}"
    )
    for got, want in zip(found, expected, strict=True):
        assert got["rule"] == want.rule, outcome.ladder()
        for phrase in want.phrases:
            assert phrase in got["message"], f"{phrase!r} not in {got['message']!r}"
        assert got["call_id"] == outcome.call_id, outcome.ladder()
        assert (got["method"], got["cseq"]) == (want.method, want.cseq), outcome.ladder()
        assert isinstance(got["time"], float), got
    warnings = outcome.warnings
    assert len(warnings) == len(found), (
        f"expected one WARNING line per violation:\n{outcome.ladder()}"
    )
    for line, got in zip(warnings, found, strict=True):
        assert line.endswith(f" WARNING {warning_text(got)}"), (
            f"{line!r}\ndoes not end with\n{warning_text(got)!r}"
        )


def requests_in(outcome: Outcome, method: str) -> list[Line]:
    return [m for m in outcome.messages if m["direction"] == "in" and m["method"] == method]


def responses_out(outcome: Outcome, method: str = "INVITE") -> list[Line]:
    return [m for m in outcome.messages if m["direction"] == "out" and m["method"] == method]


def index_of(outcome: Outcome, line: Line) -> int:
    return outcome.messages.index(line)


# ------------------------------------------------------- what each bad call must show


def premise_never_acked_before(outcome: Outcome) -> None:
    """ACK to a 180: the ACK came while the INVITE had no final response yet."""
    ack = requests_in(outcome, "ACK")[0]
    first_final = next(m for m in responses_out(outcome) if m["status"] >= 200)
    assert first_final["status"] == 487, outcome.ladder()
    assert index_of(outcome, ack) < index_of(outcome, first_final), outcome.ladder()
    assert any(m["status"] == 180 for m in responses_out(outcome)), outcome.ladder()


def premise_cancel_before_provisional(outcome: Outcome) -> None:
    """Early CANCEL: no 1xx went out before the CANCEL came in; the INVITE got 487."""
    cancel = requests_in(outcome, "CANCEL")[0]
    before = outcome.messages[: index_of(outcome, cancel)]
    assert not [m for m in before if m["direction"] == "out"], outcome.ladder()
    assert [m["status"] for m in responses_out(outcome)][:1] == [487], outcome.ladder()


def premise_two_invites(outcome: Outcome) -> None:
    """Fast retransmission: two copies of the INVITE, the second 50 ms after the first
    (scenarios/uac_bad_fast_retrans.xml).  The upper bound is the verdict's own: a copy
    sooner than half of Timer A's 500 ms is judged, so the premise fails only where the
    verdict could not have been drawn, never on its own; sent 50 ms apart, the copies
    leave a loaded machine 200 ms of slack."""
    invites = requests_in(outcome, "INVITE")
    assert len(invites) == 2, outcome.ladder()
    assert invites[1].get("retransmission") is True, outcome.ladder()
    gap = invites[1]["time"] - invites[0]["time"]
    assert 0.03 <= gap < 0.25, f"the copy came {gap * 1000:.0f} ms later:\n{outcome.ladder()}"


def premise_bye_after_486(outcome: Outcome) -> None:
    """BYE after a failed INVITE: the 486 was ACKed before the BYE came."""
    finals = [m["status"] for m in responses_out(outcome) if m["status"] >= 200]
    assert finals == [486], outcome.ladder()
    bye = requests_in(outcome, "BYE")[0]
    ack = requests_in(outcome, "ACK")[0]
    assert index_of(outcome, ack) < index_of(outcome, bye), outcome.ladder()


def premise_answered(outcome: Outcome) -> None:
    """The responder answered the request anyway (no 4xx for the bad branch)."""
    assert [m["status"] for m in responses_out(outcome, "OPTIONS")] == [200], outcome.ladder()


def no_premise(outcome: Outcome) -> None:
    pass


@dataclass(frozen=True)
class Bad:
    scenario: str
    user: str
    expected: dict[str, list[Expected]]  # per transport
    premise: Callable[[Outcome], None] = no_premise
    extra: tuple[str, ...] = ()
    xfail: str | None = None

    @property
    def id(self) -> str:
        return self.scenario.removeprefix("uac_bad_")


def same(*expected: Expected) -> dict[str, list[Expected]]:
    return {transport: list(expected) for transport in TRANSPORTS}


BAD_CALLS = [
    Bad(
        "uac_bad_ack_to_tag",
        "486",
        same(
            Expected(
                "RFC 3261 §17.1.1.3", ("the ACK's To tag wrong-", "is not the 486's"), "ACK", 1
            )
        ),
    ),
    Bad(
        "uac_bad_ack_cseq",
        "486",
        same(
            Expected(
                "RFC 3261 §17.1.1.3", ("the ACK's CSeq number 2 is not the INVITE's 1",), "ACK", 2
            )
        ),
    ),
    Bad(
        "uac_bad_ack_180",
        "180",
        same(
            Expected(
                "RFC 3261 §17.1.1.3",
                ("ACK before any final response", "a 1xx is never acknowledged"),
                "ACK",
                1,
            )
        ),
        premise_never_acked_before,
    ),
    Bad(
        "uac_bad_early_cancel",
        "2s-100-486",
        same(Expected("RFC 3261 §9.1", ("CANCEL before any provisional response",), "CANCEL", 1)),
        premise_cancel_before_provisional,
    ),
    Bad(
        "uac_bad_branch",
        "bob",
        same(
            Expected(
                "RFC 3261 §8.1.1.7",
                ("Via branch nocookie-", "lacks the magic cookie z9hG4bK"),
                "OPTIONS",
                1,
            )
        ),
        premise_answered,
    ),
    Bad(
        "uac_bad_bye",
        "486",
        same(
            Expected(
                "RFC 3261 §15",
                ("BYE for a call that never got a 2xx", "(its INVITE got 486)"),
                "BYE",
                2,
            )
        ),
        premise_bye_after_486,
    ),
    Bad(
        "uac_bad_fast_retrans",
        "1s-100-486",
        {
            "udp": [
                Expected(
                    "RFC 3261 §17.1.1.2",
                    ("retransmission 1 came", "Timer A wants 500 ms"),
                    "INVITE",
                    1,
                )
            ],
            "tcp": [
                Expected(
                    "RFC 3261 §17.1.1.2",
                    ("INVITE retransmitted over TCP", "carries no retransmissions"),
                    "INVITE",
                    1,
                )
            ],
        },
        premise_two_invites,
        # -nr: no retransmissions of sipp's own on UDP, only the scenario's early copy.
        ("-nr",),
    ),
]


def bad_params() -> list[Any]:
    out = []
    for bad in BAD_CALLS:
        marks = [pytest.mark.xfail(strict=True, reason=bad.xfail)] if bad.xfail else []
        for transport in TRANSPORTS:
            out.append(pytest.param(bad, transport, id=f"{bad.id}-{transport}", marks=marks))
    return out


# ------------------------------------------------------------------------ the tests


@pytest.mark.parametrize(("bad", "transport"), bad_params())
def test_misbehaving_client_draws_the_verdict(
    sipp_binary: str,
    start_responder_with: StartResponder,
    tmp_path: Path,
    bad: Bad,
    transport: str,
) -> None:
    responder, journal = start(start_responder_with, tmp_path)
    call_id = call(responder, bad.scenario, bad.user, transport, tmp_path, bad.extra)
    expected = bad.expected[transport]
    wait_for_warnings(responder, len(expected), VERDICT_TIMEOUT)
    time.sleep(SETTLE_BAD)  # a verdict too many would show up by now
    outcome = stop_and_read(responder, journal, call_id)
    assert_verdicts(outcome, expected)
    bad.premise(outcome)


@pytest.mark.slow
def test_no_ack_for_a_486_draws_the_timer_h_verdict(
    sipp_binary: str, start_responder_with: StartResponder, tmp_path: Path
) -> None:
    """SLOW (~33 s): the 486 is never ACKed; the verdict comes when Timer H (32 s) fires.

    sipp itself ends right after the 486 (scenarios/uac_bad_no_ack.xml); the responder
    keeps resending the 486 on Timer G to its closed port until Timer H gives up.
    """
    responder, journal = start(start_responder_with, tmp_path)
    began = time.monotonic()
    call_id = call(responder, "uac_bad_no_ack", "486", "udp", tmp_path)
    assert time.monotonic() - began < 10, "sipp itself waited for something"
    wait_for_warnings(responder, 1, TIMER_H + 8)
    time.sleep(SETTLE_BAD)
    outcome = stop_and_read(responder, journal, call_id)
    assert_verdicts(
        outcome,
        [
            Expected(
                "RFC 3261 §17.1.1.3",
                ("no ACK for the 486 within Timer H (32 s)",),
                "INVITE",
                1,
            )
        ],
    )
    assert not requests_in(outcome, "ACK"), outcome.ladder()
    sent_486 = [m for m in responses_out(outcome) if m["status"] == 486]
    assert len(sent_486) >= 2, f"no Timer G retransmission of the 486:\n{outcome.ladder()}"
    waited = outcome.violations[0]["time"] - sent_486[0]["time"]
    assert TIMER_H - 0.5 <= waited <= TIMER_H + 4, (
        f"the verdict came {waited:.2f} s after the 486, not after Timer H:\n{outcome.ladder()}"
    )


#: Well-behaved calls: (scenario, user, extra sipp flags).
GOOD_CALLS = [
    pytest.param("uac_options", "bob", (), id="options"),
    pytest.param("uac_busy", "180-486", (), id="busy-180-486"),
    pytest.param("uac_call", "bob", (), id="call-bob"),
    pytest.param("uac_cancel", "180", (), id="cancel-180"),
    # The INVITE's 100 is held back 2 s: over UDP sipp retransmits the INVITE on Timer A
    # (500 ms, then 1 s), which is on time and must draw no verdict.
    pytest.param("uac_call", "2s-100-180-200", (), id="call-timer-a-retransmissions"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("scenario", "user", "extra"), GOOD_CALLS)
def test_well_behaved_client_draws_no_verdict(
    sipp_binary: str,
    start_responder_with: StartResponder,
    tmp_path: Path,
    scenario: str,
    user: str,
    extra: tuple[str, ...],
    transport: str,
) -> None:
    responder, journal = start(start_responder_with, tmp_path)
    call_id = call(responder, scenario, user, transport, tmp_path, extra)
    time.sleep(SETTLE_GOOD)  # a late verdict (an ACK judged, a timer) would show up by now
    outcome = stop_and_read(responder, journal, call_id)
    assert_verdicts(outcome, [])
    assert "violation" not in outcome.log, outcome.ladder()
    if user == "2s-100-180-200":
        copies = [m for m in requests_in(outcome, "INVITE") if m.get("retransmission")]
        if transport == "udp":
            assert copies, f"sipp did not retransmit the INVITE:\n{outcome.ladder()}"
        else:
            assert not copies, outcome.ladder()


def test_scenarios_say_what_they_break() -> None:
    """Every misbehaving scenario names its broken rule in its top comment."""
    files = sorted(SCENARIOS.glob("uac_bad_*.xml"))
    assert {p.stem for p in files} == {b.scenario for b in BAD_CALLS} | {"uac_bad_no_ack"}
    for path in files:
        head = path.read_text("iso-8859-1").split("<scenario", 1)[0]
        assert "MISBEHAVES ON PURPOSE" in head and "Broken rule: RFC 3261" in head, path.name
