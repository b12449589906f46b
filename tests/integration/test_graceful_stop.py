"""SIGTERM drains: calls in flight finish their plan, new ones are refused, exit 0.

Each test starts its own responder process and signals it by its PID; the drain is
timed from the signal to the exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sipclient import Req, TcpClient, UdpClient, client
from sipprocs import START_TIMEOUT, StartResponder, read_lines, responder_command, stop_process

from sipresponder.cli import SAME_STOP

#: Slack for a loaded two-core machine on top of what a drain should take.
SLACK = 1.5


def wait_exit(proc: subprocess.Popen[bytes], within: float) -> tuple[int, float]:
    """The exit code and how long it took, waiting at most ``within`` seconds."""
    start = time.monotonic()
    try:
        code = proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        stop_process(proc, signal.SIGKILL)
        raise AssertionError(f"did not exit within {within:.1f} s of SIGTERM") from None
    return code, time.monotonic() - start


def refused(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(addr, timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sigterm_lets_a_ringing_call_finish_and_refuses_new_ones(
    start_responder_with: StartResponder, tmp_path: Path, transport: str
) -> None:
    journal = tmp_path / "journal.jsonl"
    server = start_responder_with("--drain-timeout", "5", "--journal-file", str(journal))
    with client(transport, server.addr) as c:
        invite = Req("INVITE", "180-2s-486")
        c.send(invite)
        c.expect_codes([100, 180])
        os.kill(server.proc.pid, signal.SIGTERM)
        signalled = time.monotonic()
        assert "stopping:" in server.wait_for_log("stopping:")
        with UdpClient(server.addr) as late:
            refusal = late.request(Req("INVITE", "486"), 503)  # a new call: refused
        assert refusal.reason == "Service Unavailable (shutting down)"
        assert refusal["Retry-After"] == "5"
        assert refused(server.addr)  # no new TCP connections
        busy = c.expect(486, timeout=3.0)  # the plan still runs to its end
        c.send(invite.ack(busy.to_tag))
        code, took = wait_exit(server.proc, 5.0 + SLACK)
    server.stop()
    assert code == 0, server.log()
    # The 486 came 2 s after the INVITE; with its ACK nothing is left to wait for.
    assert busy.at - signalled < 2.5 and took < 2.5 + SLACK, (busy.at - signalled, took)
    log = server.log()
    assert "1 transaction in flight get up to 5 s" in log and "stopped" in log
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    sent = [line.get("status") for line in lines if line.get("direction") == "out"]
    assert 503 in sent and sent[-1] == 486, sent  # the journal file was flushed


def test_drain_timeout_ends_what_still_rings_with_503(
    start_responder_with: StartResponder,
) -> None:
    server = start_responder_with("--drain-timeout", "1")
    with UdpClient(server.addr) as u, TcpClient(server.addr) as t:
        u_invite, t_invite = Req("INVITE", "180"), Req("INVITE", "180")
        u.send(u_invite)
        t.send(t_invite)
        u.expect_codes([100, 180])
        t.expect_codes([100, 180])
        os.kill(server.proc.pid, signal.SIGTERM)
        signalled = time.monotonic()
        ended = [u.expect(503, timeout=1.0 + SLACK), t.expect(503, timeout=1.0)]
        assert all(0.9 < m.at - signalled < 1.0 + SLACK for m in ended)
        assert t.closed_by_peer(timeout=SLACK)  # closed once the 503 was written
        code, _ = wait_exit(server.proc, SLACK)
    server.stop()
    assert code == 0
    assert "--drain-timeout 1 s is up; 2 requests still ringing got 503" in server.log()


def test_a_second_signal_stops_at_once(start_responder_with: StartResponder) -> None:
    """A repeat within 0.5 s of the first signal (the process's own clock) is the same
    stop; one later stops at once.  The process logs which it judged each repeat to be,
    with the gap it measured, so the test holds on a loaded machine: its repeat is sent
    right after the first was handled, and judged by the process, not by the test's
    sleeps."""
    server = start_responder_with("--drain-timeout", "60")
    with UdpClient(server.addr) as u:
        u.send(Req("INVITE", "180"))
        u.expect_codes([100, 180])
        os.kill(server.proc.pid, signal.SIGTERM)
        server.wait_for_log("stopping:")  # the first is handled: the drain began
        os.kill(server.proc.pid, signal.SIGINT)  # the same stop delivered twice
        log = server.wait_for_log("after the first:")
        if "after the first: the same stop" in log:
            assert server.proc.poll() is None  # ignored: still draining
            # Sent at least SAME_STOP after the first was handled: a later stop, whatever
            # the load, since the process measures the gap from its own handling.
            time.sleep(SAME_STOP + 0.2)
            os.kill(server.proc.pid, signal.SIGTERM)
        else:  # the process took longer than SAME_STOP to see the repeat: a later stop
            assert "after the first: stopping at once" in log
        code, took = wait_exit(server.proc, SLACK)
        u.expect_silence()  # stopped at once: no 503 for the ringing call
    server.stop()
    assert code == 0 and took < SLACK
    assert "stopping at once" in server.log()


def test_healthz_says_draining(start_responder_with: StartResponder) -> None:
    """A load balancer polling /healthz sees 503 once the drain begins."""
    server = start_responder_with("--drain-timeout", "5", "--admin", "127.0.0.1:0")
    assert server.admin_url is not None
    with UdpClient(server.addr) as u:
        u.send(Req("INVITE", "180"))
        u.expect_codes([100, 180])
        assert health(server.admin_url) == (200, "ok")
        os.kill(server.proc.pid, signal.SIGTERM)
        assert "stopping:" in server.wait_for_log("stopping:")
        assert health(server.admin_url) == (503, "draining")
        time.sleep(0.6)  # a second signal within half a second is the same stop
        os.kill(server.proc.pid, signal.SIGTERM)  # enough
        code, _ = wait_exit(server.proc, SLACK)
    server.stop()
    assert code == 0


def health(base: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=3.0) as resp:
            return resp.status, json.load(resp)["status"]
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)["status"]


def test_workers_drain_on_sigterm_to_the_supervisor(tmp_path: Path) -> None:
    """--workers 2: the supervisor forwards SIGTERM by PID; the worker holding the call
    lets it finish, and the whole pool exits 0."""
    err = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        responder_command("127.0.0.1", 0, "--workers", "2", "--drain-timeout", "5"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        cwd=tmp_path,
    )
    try:
        lines = read_lines(proc, 2, START_TIMEOUT)
        assert len(lines) == 2 and lines[0].startswith("listening udp 127.0.0.1:"), lines
        addr = ("127.0.0.1", int(lines[0].rsplit(":", 1)[1]))
        with UdpClient(addr) as u:
            invite = Req("INVITE", "180-1s-486")
            u.send(invite)
            u.expect_codes([100, 180])
            os.kill(proc.pid, signal.SIGTERM)
            busy = u.expect(486, timeout=2.0)
            u.send(invite.ack(busy.to_tag))
            code, took = wait_exit(proc, 5.0 + SLACK)
    finally:
        stop_process(proc)
        err.close()
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0 and took < 1.0 + SLACK, (code, took)
    log = (tmp_path / "stderr.log").read_text()
    assert log.count("stopped") == 2 and "Traceback" not in log, log
