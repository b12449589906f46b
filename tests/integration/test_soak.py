"""The soak test (issue 6 item 4): minutes of good calls, malformed traffic and a flood.

Not part of ``make test``: pyproject's addopts deselect the ``soak`` marker; ``make soak``
selects it.  ``SOAK_SECONDS`` (default 180) sets how long the load runs, ``SOAK_RATE``
the good client's calls/s (default 300), ``SOAK_FLOOD_RATE`` the flood's messages/s (0:
as fast as its loop goes; default 5000).

One responder process (``python -m sipresponder`` with the flags of EXPOSED_FLAGS, what a
user exposing it would give it) is driven, on loopback, by

* the good client, 127.0.0.1: three ``sipp`` processes at a steady rate — busy calls
  (``180-486``) over UDP and over TCP, whole calls (INVITE, 200, ACK, BYE) over UDP;
* malformed traffic, 127.0.0.3 (soakload.py): bad UDP messages, and TCP connections that
  send garbage, nothing, too short a body, or a request one byte every half second;
* a flood, 127.0.0.2 (soakload.py): OPTIONS and INVITEs over UDP, far beyond
  ``--rate-limit``.

and it checks that every call of the good client completed with the expected codes
(sipp: none failed, none unexpected), that the flood was rate-limited (the responder's
``/metrics``, and the answers the flood got), that resident memory (VmRSS) at the end is
within MEMORY_MARGIN of where it was after the warm-up, that no file descriptor leaked
(``/proc/PID/fd`` before the load and after it, once the TCP connections are gone), and
that the log holds no ERROR or traceback.  Each process started here is stopped by its
own PID; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sipprocs import SCENARIOS, Responder, StartResponder, free_port, stop_process
from test_access import metrics

pytestmark = pytest.mark.soak

HERE = Path(__file__).resolve().parent
SECONDS = float(os.environ.get("SOAK_SECONDS", "180"))
#: Memory is compared with what it was after this long: long enough for the journal to
#: fill, the flood's unanswered INVITEs to reach Timer H (32 s) and its 10 s blocks to
#: come round.
WARMUP = float(os.environ.get("SOAK_WARMUP", min(45.0, SECONDS / 3)))
RATE = float(os.environ.get("SOAK_RATE", "300"))
#: Flat out (0), one Python loop sends some 200,000 datagrams a second: more than the
#: responder reads on a two-core machine, so the kernel drops the good client's datagrams
#: with the flood's before any rate limit is consulted.  10,000/s still loses a few: each
#: time the flood's 10 s block ends, a second's worth of its requests (--rate-limit) is
#: handled in full, at about the responder's ceiling (some 11,000 OPTIONS/s), and what
#: arrives meanwhile overflows the socket buffer.  The default, 2.5 times --rate-limit
#: and some 6 times the good client's messages, stays inside that.
FLOOD_RATE = float(os.environ.get("SOAK_FLOOD_RATE", "5000"))
#: Bad UDP messages a second from the malformed source (and up to 20 bad TCP connections).
MALFORMED_RATE = 20.0

RATE_LIMIT = 2000
MESSAGE_TIMEOUT = 3
IDLE_TIMEOUT = 15
#: How long each kind of bad TCP connection of soakload.py may live: slow-loris, idle and
#: too short a body until --message-timeout; after garbage the connection is framed
#: afresh and idle, until --tcp-idle-timeout.  Plus the sweep's period and slack.
TCP_CLOSED_WITHIN = {
    "slow_loris": MESSAGE_TIMEOUT + 2.0,
    "idle": MESSAGE_TIMEOUT + 2.0,
    "short_body": MESSAGE_TIMEOUT + 2.0,
    "garbage": IDLE_TIMEOUT + 2.0,
}
#: The flags of an exposed responder; a new limit goes here.
EXPOSED_FLAGS = (
    *("--allow", "127.0.0.0/8"),
    *("--rate-limit", f"{RATE_LIMIT}/s"),
    *("--amplification-limit", "3"),  # the default off loopback
    *("--max-message-size", "16384"),
    *("--max-headers", "64"),
    *("--max-header-line", "4096"),
    *("--max-transactions", "20000"),
    *("--max-connections", "256"),
    *("--max-connections-per-source", "64"),
    *("--message-timeout", str(MESSAGE_TIMEOUT)),
    *("--tcp-idle-timeout", str(IDLE_TIMEOUT)),
    *("--admin", "127.0.0.1:0"),
)
#: The good client: (scenario, user, transport, share of RATE).
CLIENTS = (
    ("uac_busy", "180-486", "udp", 0.5),
    ("uac_call", "bob", "udp", 0.3),
    ("uac_busy", "180-486", "tcp", 0.2),
)
#: Resident memory at the end may exceed what it was after the warm-up by this much.
MEMORY_MARGIN = 0.10
MEMORY_SLACK_KIB = 4096
#: Seconds between two looks at the responder's memory and descriptors.
SAMPLE_EVERY = 2.0
#: WARNING lines a second, on average, beyond which the log is a flood (INFO is capped by
#: --log-rate: 100 transactions a second one by one, then a summary line).
WARNINGS_PER_SECOND = 25


# ------------------------------------------------------------------------ /proc


def rss_kib(pid: int) -> int:
    """VmRSS of the process, in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match is not None, f"no VmRSS in /proc/{pid}/status"
    return int(match.group(1))


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fds_settled(pid: int) -> dict[str, str]:
    """The process's descriptors and what they are, once two looks half a second apart
    agree (a connection the admin API just answered may still be closing)."""
    last: dict[str, str] = {}
    for _ in range(20):
        now = {}
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                now[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        if now == last:
            break
        last = now
        time.sleep(0.5)
    return last


def udp_receive_errors() -> int:
    """Datagrams the kernel dropped for a full socket buffer, machine-wide so far (any
    process's: a figure to report, not to judge by)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [line for line in lines if line and line[0] == "Udp:"]
    return int(dict(zip(udp[0], udp[1], strict=False)).get("RcvbufErrors", 0))


# ------------------------------------------------------------------------- sipp


@dataclass
class Sipp:
    proc: subprocess.Popen[bytes]
    name: str
    calls: int
    stat_file: Path


def start_sipp(
    sipp: str, server: Responder, client: tuple[str, str, str, float], workdir: Path
) -> Sipp:
    """sipp placing its share of RATE calls/s for SECONDS, then stopping by itself."""
    scenario, user, transport, share = client
    rate = RATE * share
    name = f"{scenario}-{transport}"
    calls = max(1, round(rate * SECONDS))
    stat_file = workdir / f"{name}.stat.csv"
    argv = [
        sipp,
        f"{server.host}:{server.port}",
        *("-sf", str(SCENARIOS / f"{scenario}.xml"), "-s", user),
        *("-t", {"udp": "u1", "tcp": "t1"}[transport]),
        *("-r", str(round(rate)), "-m", str(calls), "-l", str(max(50, round(rate * 5)))),
        *("-i", "127.0.0.1", "-p", str(free_port())),
        *("-recv_timeout", "10000", "-buff_size", "4194304"),
        *("-trace_stat", "-stf", str(stat_file), "-fd", "5", "-trace_err", "-nostdin"),
    ]
    with open(workdir / f"{name}.sipp.log", "wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return Sipp(proc, name, calls, stat_file)


def sipp_stats(sipp: Sipp) -> dict[str, int]:
    """The counters of the last row of sipp's ``-trace_stat`` file (cumulative ones)."""
    rows = [r for r in sipp.stat_file.read_text("utf-8", "replace").splitlines() if r.strip()]
    if len(rows) < 2:
        return {}
    row = dict(zip(rows[0].split(";"), rows[-1].split(";"), strict=False))
    names = {
        "created": "TotalCallCreated",
        "successful": "SuccessfulCall(C)",
        "failed": "FailedCall(C)",
        "unexpected": "FailedUnexpectedMessage(C)",
        "timeouts": "FailedTimeoutOnRecv(C)",
        "retransmissions": "Retransmissions(C)",
    }
    return {key: int(float(row.get(col) or 0)) for key, col in names.items()}


def finish(proc: subprocess.Popen[bytes], within: float, name: str) -> int:
    """Wait for a process of the load to exit; past ``within`` s, stop it by its PID."""
    try:
        return proc.wait(timeout=max(0.1, within))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(AssertionError):
            stop_process(proc, signal.SIGKILL)
        raise AssertionError(f"{name} (PID {proc.pid}) was still running: stopped") from None


# -------------------------------------------------------------------- the test


def start_load(role: str, server: Responder, rate: float) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(HERE / "soakload.py"), role, server.host, str(server.port)]
    return subprocess.Popen(
        [*argv, str(SECONDS), "--rate", str(rate)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def load_result(proc: subprocess.Popen[bytes], within: float, name: str) -> dict[str, object]:
    try:
        out, err = proc.communicate(timeout=max(0.1, within))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(AssertionError):
            stop_process(proc, signal.SIGKILL)
        raise AssertionError(f"the {name} (PID {proc.pid}) was still running: stopped") from None
    assert proc.returncode == 0, f"the {name} exited {proc.returncode}:\n{err.decode()[-3000:]}"
    result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def wait_for(predicate: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return bool(predicate())


def log_levels(log: str) -> Counter[str]:
    levels: Counter[str] = Counter()
    for line in log.splitlines():
        parts = line.split(" ", 3)
        if line.startswith("Traceback"):
            levels["Traceback"] += 1
        elif len(parts) > 2:
            levels[parts[2]] += 1
    return levels


def test_soak(start_responder_with: StartResponder, sipp_binary: str, tmp_path: Path) -> None:
    server = start_responder_with(*EXPOSED_FLAGS)
    pid = server.proc.pid
    metrics(server)  # the admin API's first request opens what it keeps open
    fds_before = fds_settled(pid)
    rss_start = rss_kib(pid)
    drops_before = udp_receive_errors()
    started = time.monotonic()
    load: list[subprocess.Popen[bytes]] = []
    try:
        sipps = [start_sipp(sipp_binary, server, client, tmp_path) for client in CLIENTS]
        load += [s.proc for s in sipps]
        flood = start_load("flood", server, FLOOD_RATE)
        load.append(flood)
        bad = start_load("malformed", server, MALFORMED_RATE)
        load.append(bad)

        samples: list[tuple[float, int, int]] = []  # (seconds in, RSS KiB, fds)
        rss_warm = fds_max = 0
        for _ in range(int(SECONDS / SAMPLE_EVERY) + 2):
            elapsed = time.monotonic() - started
            if elapsed >= SECONDS:
                break
            assert server.proc.poll() is None, f"the responder exited:\n{server.log()[-4000:]}"
            samples.append((elapsed, rss_kib(pid), fd_count(pid)))
            fds_max = max(fds_max, samples[-1][2])
            if not rss_warm and elapsed >= WARMUP:
                rss_warm = samples[-1][1]
            time.sleep(min(SAMPLE_EVERY, max(0.0, SECONDS - elapsed)))
        rss_end = rss_kib(pid)
        seen_under_load = metrics(server)

        # The load winds down: sipp ends its last calls, the senders print their counts.
        stats = {}
        for s in sipps:
            code = finish(s.proc, started + SECONDS + 60 - time.monotonic(), s.name)
            stats[s.name] = {**sipp_stats(s), "planned": s.calls, "exit": code}
        flooded = load_result(flood, started + SECONDS + 30 - time.monotonic(), "flood")
        malformed = load_result(bad, started + SECONDS + 60 - time.monotonic(), "malformed")
    finally:
        for proc in load:
            with contextlib.suppress(AssertionError):
                stop_process(proc, signal.SIGKILL)
    duration = time.monotonic() - started

    # Once every TCP connection is closed the descriptors are what they were.
    assert wait_for(lambda: metrics(server)["sipresponder_tcp_connections"] == 0, 30.0)
    fds_after = fds_settled(pid)
    seen = metrics(server)
    drops = udp_receive_errors() - drops_before
    log = server.log()
    levels = log_levels(log)

    calls = sum(st["created"] for st in stats.values())
    failed = sum(st["failed"] for st in stats.values())
    flood_sent = int(flooded["sent"])  # type: ignore[call-overload]
    flood_answers = int(flooded["answers"])  # type: ignore[call-overload]
    limited = seen["sipresponder_ignored_total{reason=rate_limited}"]
    summary = {
        "duration_s": round(duration, 1),
        "load_s": SECONDS,
        "good_client": stats,
        "calls": calls,
        "failed": failed,
        "flood": flooded,
        "flood_rate_limited": limited,
        "flood_blocks": seen["sipresponder_blocked_sources_total"],
        "flood_accepted": flood_sent - limited,
        "malformed": malformed,
        "limit_hits": {
            k.split("=", 1)[1].rstrip("}"): v
            for k, v in seen.items()
            if k.startswith("sipresponder_limit_hits_total") and v
        },
        "parse_errors": seen["sipresponder_parse_errors_total"],
        "held_responses": seen["sipresponder_held_total"],
        "rss_kib": {"start": rss_start, "after_warmup": rss_warm, "end": rss_end},
        "rss_max_kib": max(r for _, r, _ in samples),
        "fds": {"before": len(fds_before), "max": fds_max, "after": len(fds_after)},
        "udp_datagrams_dropped_by_the_kernel": drops,
        "in_flight_at_end_of_load": seen_under_load["sipresponder_in_flight_transactions"],
        "log_lines": dict(levels),
    }
    print("\nsoak summary:", json.dumps(summary, indent=1))
    (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1))

    problems = []
    for name, st in stats.items():
        if st["exit"] or st["failed"] or st["unexpected"] or st["successful"] != st["planned"]:
            problems.append(f"sipp {name}: {st}")
    # A burst of --rate-limit, and what refills while the flood spends it, per block.
    blocks = seen["sipresponder_blocked_sources_total"]
    if not blocks or flood_sent - limited > 2 * RATE_LIMIT * (blocks + 1):
        problems.append(f"the flood was not limited: {limited} of {flood_sent} ignored")
    if flood_answers > 0.2 * flood_sent:
        problems.append(f"the flood got {flood_answers} answers to {flood_sent} requests")
    for source in ("127.0.0.1", "127.0.0.3"):
        if f"ignoring {source} " in log:
            problems.append(f"{source} was rate-limited: it is not the flood")
    bad_answers: dict[str, int] = malformed["answers"]  # type: ignore[assignment]
    controls: dict[str, int] = malformed["udp_sent"]  # type: ignore[assignment]
    if bad_answers.get("200", 0) < 0.95 * controls.get("control", 0):
        problems.append(f"the malformed source's OPTIONS went unanswered: {malformed}")
    if malformed["tcp_gave_up"]:
        problems.append(f"the responder did not close bad TCP connections: {malformed}")
    lifetimes: dict[str, list[float]] = malformed["tcp_lifetime"]  # type: ignore[assignment]
    for kind, within in TCP_CLOSED_WITHIN.items():
        if kind not in lifetimes or lifetimes[kind][1] > within:
            problems.append(f"{kind} TCP connections were not closed within {within} s")
    if rss_end > rss_warm * (1 + MEMORY_MARGIN) + MEMORY_SLACK_KIB:
        problems.append(f"resident memory grew from {rss_warm} KiB to {rss_end} KiB")
    if len(fds_after) != len(fds_before):
        new = {fd: what for fd, what in fds_after.items() if fds_before.get(fd) != what}
        problems.append(
            f"file descriptors: {len(fds_before)} before the load, {len(fds_after)} after: "
            f"new {new}, gone {sorted(set(fds_before) - set(fds_after))}"
        )
    for level in ("ERROR", "CRITICAL", "Traceback"):
        if levels[level]:
            problems.append(f"{levels[level]} {level} lines in the log")
    if levels["WARNING"] > WARNINGS_PER_SECOND * duration:
        problems.append(f"the log holds {levels['WARNING']} WARNING lines in {duration:.0f} s")
    assert not problems, "\n".join(problems)
