"""The command line as a process: listening lines, exit codes, signals, addresses."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sipclient import Req, TcpClient, UdpClient, client, ipv6_loopback
from sipprocs import (
    SCENARIOS,
    START_TIMEOUT,
    StartResponder,
    read_lines,
    responder_command,
    stop_process,
)


def run_cli(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run the responder with ``args`` when it is expected to exit by itself.

    If it prints a ``listening`` line instead (it accepted the flags), it is stopped
    with SIGTERM; the result then has that line and the exit code of the stop.
    """
    proc = subprocess.Popen(
        [*responder_command("127.0.0.1", 0)[:3], *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = read_lines(proc, 1, timeout)
    if lines and lines[0].startswith("listening "):
        stop_process(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc, signal.SIGKILL)
        out, err = proc.communicate(timeout=timeout)
    stdout = "".join(f"{line}\n" for line in lines) + out.decode("utf-8", "replace")
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, stdout, err.decode("utf-8", "replace")
    )


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")


def test_port_zero_prints_both_lines_with_the_same_port(
    start_responder_with: StartResponder,
) -> None:
    server = start_responder_with()
    m_udp = re.fullmatch(r"listening udp 127\.0\.0\.1:([0-9]+)", server.lines[0])
    m_tcp = re.fullmatch(r"listening tcp 127\.0\.0\.1:([0-9]+)", server.lines[1])
    assert m_udp and m_tcp, server.lines
    port = int(m_udp.group(1))
    assert port == int(m_tcp.group(1)) != 0
    # Both really listen there.
    with UdpClient(("127.0.0.1", port)) as u:
        u.request(Req("OPTIONS"), 200)
    with TcpClient(("127.0.0.1", port)) as t:
        t.request(Req("OPTIONS"), 200)


def test_transport_tcp_only() -> None:
    proc = subprocess.Popen(
        responder_command("127.0.0.1", 0, "--transport", "tcp"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        lines = read_lines(proc, 1, START_TIMEOUT)
        m = re.fullmatch(r"listening tcp 127\.0\.0\.1:([0-9]+)", lines[0] if lines else "")
        assert m, lines
        port = int(m.group(1))
        with TcpClient(("127.0.0.1", port)) as t:
            t.request(Req("OPTIONS"), 200)
        with UdpClient(("127.0.0.1", port)) as u:
            u.send(Req("OPTIONS"))
            u.expect_silence(0.3)
        assert read_lines(proc, 1, 0.2) == []  # no udp line
    finally:
        code = stop_process(proc)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0


@needs_ipv6
def test_ipv6_loopback(start_responder_with: StartResponder) -> None:
    server = start_responder_with(host="::1")
    assert re.fullmatch(r"listening udp \[::1\]:[0-9]+", server.lines[0]), server.lines
    assert server.lines[1] == f"listening tcp [::1]:{server.port}"
    assert server.lines[0] == f"listening udp [::1]:{server.port}"
    with UdpClient(server.addr) as u:
        req = Req("OPTIONS")
        via = u.request(req, 200)["Via"]
        assert via.startswith(f"SIP/2.0/UDP [::1]:{u.local[1]};branch={req.branch}")
        assert f";rport={u.local[1]};received=::1" in via
        invite = Req("INVITE", "bob")
        u.send(invite)
        ok = u.expect_codes([100, 180, 200])[-1]
        assert ok["Contact"] == f"<sip:sipresponder@[::1]:{server.port}>"
        assert b"c=IN IP6 ::1" in ok.body
    with TcpClient(server.addr) as t:
        t.request(Req("INVITE", "486"), 100)
        t.expect(486)


@needs_ipv6
def test_ipv6_wildcard_is_dual_stack(start_responder_with: StartResponder) -> None:
    server = start_responder_with(host="::")
    assert server.lines == [
        f"listening udp [::]:{server.port}",
        f"listening tcp [::]:{server.port}",
    ]
    for host in ("127.0.0.1", "::1"):
        with UdpClient((host, server.port)) as u:
            via = u.request(Req("OPTIONS"), 200)["Via"]
            assert via.endswith(f";rport={u.local[1]};received={host}")
        with TcpClient((host, server.port)) as t:
            t.request(Req("OPTIONS"), 200)


BAD_FLAGS = [
    ["--transport", "foo"],
    ["--transport", ""],
    ["--port", "99999"],
    ["--port", "-1"],
    ["--port", "abc"],
    ["--max-ring", "0"],
    ["--max-message-size", "10"],
    ["--log-level", "LOUD"],
    ["--bogus"],
    ["--transport", "udp,udp"],
    ["--host", "192.0.2.1", "--port", "0"],  # TEST-NET-1: not an address of this host
    ["--log-rate", "nan"],
    ["--workers", "0"],
    ["--workers", "many"],
    ["--max-ring", "inf"],
    ["--drain-timeout", "-1"],
    ["--drain-timeout", "soon"],
    ["--allow", "10.0.0.0/33"],
    ["--allow", "somewhere"],
    ["--rate-limit", "0"],
    ["--rate-limit", "fast/s"],
    ["--amplification-limit", "0.5"],
    ["--amplification-rate", "-1"],
    ["--amplification-rate", "lots"],
    ["--socket-buffer", "100"],
    ["--socket-buffer", "big"],
    ["--max-headers", "5"],
    ["--max-header-line", "many"],
    ["--max-connections", "0"],
    ["--max-connections-per-source", "0"],
    ["--tcp-idle-timeout", "0"],
    ["--message-timeout", "-1"],
    ["--max-tcp-write-buffer", "10"],
]


@pytest.mark.parametrize("args", BAD_FLAGS, ids=" ".join)
def test_bad_flag_exits_2_with_one_line(args: list[str]) -> None:
    if "--port" not in args:
        args = [*args, "--port", "0"]
    result = run_cli(*args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sipresponder: error: "), lines


@pytest.fixture(params=["udp", "tcp"])
def busy_port(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    kind = socket.SOCK_DGRAM if request.param == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            s.listen(1)
        yield request.param, s.getsockname()[1]


def test_busy_port_exits_2_with_one_line(busy_port: tuple[str, int]) -> None:
    transport, port = busy_port
    result = run_cli("--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2, result
    assert result.stdout == ""  # no listening line, not even for the other transport
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sipresponder: error: ")
    assert f"{transport} 127.0.0.1:{port}" in lines[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_it_with_exit_0(start_responder_with: StartResponder, sig: int) -> None:
    server = start_responder_with()
    # With --drain-timeout 0 (the tests' default) work in flight does not hold it up: a
    # ringing INVITE gets 503 at once, an open TCP connection is closed.
    with UdpClient(server.addr) as u, TcpClient(server.addr) as t:
        u.send(Req("INVITE", "180"))
        u.expect_codes([100, 180])
        t.send(Req("INVITE", "180"))
        t.expect_codes([100, 180])
        assert server.stop(sig) == 0, server.log()
        u.expect(503)
        t.expect(503)
        assert t.closed_by_peer()
    assert "stopped" in server.log()


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"sipresponder \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


def test_json_log_lines(start_responder_with: StartResponder) -> None:
    server = start_responder_with("--log-format", "json")
    with UdpClient(server.addr) as u:
        u.send(Req("INVITE", "486"))
        u.expect_codes([100, 486])
    log = server.wait_for_log('"codes"')
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    invites = [r for r in records if r.get("method") == "INVITE"]
    assert invites, log
    assert invites[0]["codes"] == [100, 486]
    assert invites[0]["uri"] == f"sip:486@127.0.0.1:{server.port}"
    assert invites[0]["level"] == "INFO"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_both_event_loops_answer(
    start_responder_with: StartResponder, loop: str, transport: str
) -> None:
    """--loop asyncio and --loop uvloop (the default when installed) serve alike."""
    server = start_responder_with("--loop", loop)
    with client(transport, server.addr) as c:
        c.request(Req("INVITE", user="180-486"), 100)
        assert [m.status for m in c.expect_codes([180, 486])] == [180, 486]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_stateless_mode_answers_once_and_ignores_cancel(
    start_responder_with: StartResponder, transport: str
) -> None:
    server = start_responder_with("--stateless")
    with client(transport, server.addr) as c:
        invite = Req("INVITE", user="180-1s-486")
        c.send(invite)
        busy = c.expect_any()
        assert busy.status == 486  # the plan's last response only, at once
        c.send(invite.ack(busy.to_tag))
        c.send(Req("CANCEL", user="180"))
        c.expect_silence(0.8)  # no Timer G resend (0.5 s), nothing for ACK or CANCEL


def test_overload_sheds_with_503_and_recovers(start_responder_with: StartResponder) -> None:
    """Stop the responder's process for 0.6 s: its event loop then runs late, so the next
    new request gets 503 with Retry-After; once on time for a second it answers again."""
    server = start_responder_with("--overload-lag", "0.3")
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(0.6)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    # Judged by the process's own clock, not the test's sleeps: it says when it found
    # itself late, and it sheds from then until it has been on time for a whole second,
    # so a request sent as soon as it says so is shed however loaded the machine is
    # (a second's stall before the request is read would be a lag of its own).
    assert "overloaded" in server.wait_for_log("overloaded", timeout=10.0)
    with client("udp", server.addr) as c:
        shed = c.request(Req("OPTIONS"), 503)
        assert shed["Retry-After"] == "5"
    assert "back under capacity" in server.wait_for_log("back under capacity", timeout=10.0)
    with client("udp", server.addr) as c:
        c.request(Req("OPTIONS"), 200)


@pytest.mark.sipp
def test_two_workers_share_the_port_and_both_serve(tmp_path: Path) -> None:
    """--workers 2: one port, two processes (SO_REUSEPORT); sipp with a socket per call
    (-t un) spreads the calls, every ACK reaches the worker holding its INVITE (no
    violation), and SIGTERM to the supervisor stops them all with exit code 0."""
    err = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        responder_command("127.0.0.1", 0, "--workers", "2"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        cwd=tmp_path,
    )
    try:
        lines = read_lines(proc, 2, START_TIMEOUT)
        assert len(lines) == 2 and lines[0].startswith("listening udp 127.0.0.1:"), lines
        port = int(lines[0].rsplit(":", 1)[1])
        assert lines[1] == f"listening tcp 127.0.0.1:{port}"
        sipp = subprocess.run(
            [
                shutil.which("sipp") or "sipp",
                f"127.0.0.1:{port}",
                "-sf",
                str(SCENARIOS / "uac_busy.xml"),
                "-s",
                "180-486",
                "-m",
                "200",
                "-r",
                "100",
                "-i",
                "127.0.0.1",
                "-p",
                "0",
                "-t",
                "un",
                "-max_socket",
                "300",
                "-nostdin",
                "-timeout",
                "20s",
                "-timeout_error",
            ],
            cwd=tmp_path,
            capture_output=True,
            timeout=40,
        )
        assert sipp.returncode == 0, sipp.stdout[-3000:]
    finally:
        code = stop_process(proc)
        err.close()
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0
    log = (tmp_path / "stderr.log").read_text()
    served = {w: log.count(f" {w} INFO INVITE sip:180-486") for w in ("w0", "w1")}
    assert all(n > 0 for n in served.values()), served
    assert "violation" not in log and "Traceback" not in log
