"""SIGHUP reloads the rule file: the examples switched on a running responder.

A new file takes effect, a broken or missing one is refused with a logged error and the
old rules keep answering, a call in flight keeps its plan, a weighted sequence starts
afresh, and without ``--rules`` SIGHUP changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from examplekit import (
    BROKEN,
    example,
    first,
    sighup,
    sipp_ok,
    transactions,
    wait_for_count,
    write_atomically,
)
from sipclient import RECV_TIMEOUT, Req, UdpClient
from sipprocs import StartResponder

TRANSPORTS = ["udp", "tcp"]


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
