"""Scale-out behind a real SIP load balancer: Kamailio's dispatcher, three responders.

``examples/kamailio/kamailio.cfg`` runs as it ships (its default four workers), with its
defines set on the command line (``-A``): loopback ports for the clients' side and for
the side facing the responders, the dispatcher list this module writes (the three
responders, sharing one ``--secret``) and a 1 s OPTIONS probe.  sipp drives calls through
it over UDP and TCP — busy calls (``uac_busy`` insists on the 180 before the 486), whole
calls through the Record-Route, CANCELs and retransmitted INVITEs — and every responder
keeps a ``--journal-file``, whose JSON lines carry the Call-ID of every message, so the
test can check that

- sipp saw every call complete with the right codes (exit 0), and each responder's own
  record of it has the right final status (486, 200, 487);
- every request of a call (INVITE, ACK, BYE, CANCEL) reached ONE responder — the
  dispatcher hashes the Call-ID (algorithm 0), and does it again for a request that
  comes without a Route;
- all three responders served calls, and all three answered Kamailio's OPTIONS probes;
- with one responder stopped, calls still complete on the other two (an INVITE to the
  dead one times out after 2 s, fails over and marks it down).

Kamailio is installed from apt when missing (the test is skipped when that cannot be
done).  It runs in the foreground (``-DD``) in a session of its own, so it and the
children it forks are stopped by its PID and, if need be, by that process group only.
The journal files are flushed every second, so reads wait (bounded) for the calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from required import missing
from sipclient import Req, UdpClient, new_id
from sipprocs import ROOT, SCENARIOS, SIPP, Responder, free_port, start_responder

pytestmark = pytest.mark.sipp

KAMAILIO_CFG = ROOT / "examples" / "kamailio" / "kamailio.cfg"
INSTANCES = 3
#: How long Kamailio may take to answer its first OPTIONS, and to exit after SIGTERM.
KAMAILIO_START_TIMEOUT = 15.0
KAMAILIO_STOP_TIMEOUT = 10.0
#: How long apt-get may take to install kamailio.
APT_TIMEOUT = 600.0
#: How long the responders may take to flush their journal files (every second).
JOURNAL_TIMEOUT = 5.0


# ------------------------------------------------------------------------ kamailio


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT,
        check=False,
    )


def _which_kamailio() -> str | None:
    return shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/usr/local/sbin")


@pytest.fixture(scope="session")
def kamailio_binary() -> str:
    """The kamailio binary, installed with apt-get when missing (skips when it cannot be,
    fails under CI=true)."""
    found = _which_kamailio()
    if found is not None:
        return found
    if shutil.which("apt-get") is None:
        missing("kamailio is not installed and there is no apt-get to install it")
    try:
        result = _apt_get("install", "-y", "-qq", "kamailio")
        if result.returncode != 0:  # perhaps stale package lists
            update = _apt_get("update", "-qq")
            if update.returncode != 0:
                missing(f"apt-get update failed: {update.stderr.strip()[-500:]}")
            result = _apt_get("install", "-y", "-qq", "kamailio")
    except subprocess.TimeoutExpired:
        missing(f"apt-get did not install kamailio within {APT_TIMEOUT:.0f} s")
    if result.returncode != 0:
        missing(f"apt-get install kamailio failed: {result.stderr.strip()[-500:]}")
    found = _which_kamailio()
    if found is None:
        missing("apt-get installed kamailio, but there is no kamailio binary")
    return found


def _group_members(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _stop_kamailio(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM to Kamailio's main PID, wait; SIGKILL its own process group if need be.

    Kamailio ran with ``start_new_session=True``, so its process group is its PID and
    holds only it and the children it forked.  Returns the exit code; raises
    ``AssertionError`` when anything had to be killed.
    """
    pgid = proc.pid
    problems = []
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=KAMAILIO_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            problems.append(f"kamailio {proc.pid} ignored SIGTERM for {KAMAILIO_STOP_TIMEOUT} s")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=KAMAILIO_STOP_TIMEOUT)
    deadline = time.monotonic() + KAMAILIO_STOP_TIMEOUT
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _group_members(pgid)
    if left:
        problems.append(f"kamailio children {left} outlived their main process")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    assert not problems, "; ".join(problems)
    return proc.returncode


def _options(port: int, timeout: float) -> bytes | None:
    """One OPTIONS to the proxy itself on ``127.0.0.1:port``; its response, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{new_id()};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:test@127.0.0.1:{local}>;tag={new_id()}\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: ready-{new_id()}@kamailio-test\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), ("127.0.0.1", port))
        try:
            return sock.recv(65536)
        except (TimeoutError, ConnectionRefusedError):
            return None


# ------------------------------------------------------------------------- cluster


@dataclass
class Cluster:
    """Kamailio on ``127.0.0.1:port`` (UDP and TCP) in front of the responders, which it
    reaches from ``127.0.0.1:instances_port``."""

    workdir: Path
    port: int
    instances_port: int
    kamailio: subprocess.Popen[bytes]
    kamailio_log: Path
    responders: list[Responder]
    journals: list[Path]
    #: Call-IDs of the calls sipp made, by the label of the run that made them.
    calls: dict[str, list[str]] = field(default_factory=dict)

    def kamailio_log_text(self) -> str:
        return self.kamailio_log.read_text("utf-8", "replace")

    def read_journals(self) -> list[list[dict[str, Any]]]:
        """Every message line of each responder's journal file, as far as it is flushed."""
        out = []
        for path in self.journals:
            lines = []
            text = path.read_text("utf-8", "replace") if path.exists() else ""
            # Only whole lines: a full write buffer may end in the middle of one.
            for line in text[: text.rfind("\n") + 1].splitlines():
                entry = json.loads(line)
                if entry.get("type") == "message":
                    lines.append(entry)
            out.append(lines)
        return out


def _stop_responder(responder: Responder) -> str | None:
    """Stop it by its PID (SIGTERM); what went wrong, or None."""
    if responder.stopped:
        return None
    try:
        code = responder.stop()
    except AssertionError as exc:
        return str(exc)
    if code != 0:
        return f"responder {responder.port} exited with {code}:\n{responder.log()[-2000:]}"
    if "Traceback" in responder.log():
        return f"responder {responder.port} logged an exception:\n{responder.log()[-4000:]}"
    return None


@pytest.fixture(scope="module")
def cluster(
    kamailio_binary: str, sipp_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("kamailio")
    responders: list[Responder] = []
    kamailio: subprocess.Popen[bytes] | None = None
    errors: list[str] = []
    try:
        journals = [workdir / f"responder{i}.journal.jsonl" for i in range(INSTANCES)]
        secret = new_id()  # one pool, one secret: To tags and nonces agree (README)
        for i, journal in enumerate(journals):
            args = ("--secret", secret, "--journal-file", str(journal))
            responders.append(start_responder(workdir, *args, name=f"responder{i}"))
        dispatcher_list = workdir / "dispatcher.list"
        dispatcher_list.write_text(
            "# setid destination flags priority\n"
            + "".join(f"1 sip:127.0.0.1:{r.port} 0 0\n" for r in responders)
        )
        run_dir = workdir / "run"
        run_dir.mkdir()
        port = free_port()  # the clients' side, UDP and TCP
        # the side facing the responders, UDP
        instances_port = next(p for p in (free_port() for _ in range(10)) if p != port)
        log_path = workdir / "kamailio.log"
        argv = [
            kamailio_binary,
            "-f",
            str(KAMAILIO_CFG),
            "-DD",  # foreground: the main process is the one we started
            "-E",  # log to standard error
            "-m",
            "64",  # shared memory (MiB) for tm
            "-M",
            "8",
            "-Y",
            str(run_dir),
            "-A",
            f"LISTEN_UDP=udp:127.0.0.1:{port}",
            "-A",
            f"LISTEN_TCP=tcp:127.0.0.1:{port}",
            "-A",
            f'DISPATCHER_LIST="{dispatcher_list}"',
            "-A",
            f"LISTEN_INSTANCES=udp:127.0.0.1:{instances_port}",
            "-A",
            "DS_PING_INTERVAL=1",
        ]
        with log_path.open("wb") as log:
            kamailio = subprocess.Popen(
                argv,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Cluster(workdir, port, instances_port, kamailio, log_path, responders, journals)
        deadline = time.monotonic() + KAMAILIO_START_TIMEOUT
        answer = None
        while answer is None and kamailio.poll() is None and time.monotonic() < deadline:
            answer = _options(port, 0.2)
        assert answer is not None and answer.startswith(b"SIP/2.0 200 "), (
            f"kamailio did not answer OPTIONS within {KAMAILIO_START_TIMEOUT} s "
            f"(exit {kamailio.poll()}): {answer!r}\n{server.kamailio_log_text()[-4000:]}"
        )
        # Its dispatcher probes every responder with OPTIONS once a second.
        probe = f"from 127.0.0.1:{instances_port}/udp -> 200"
        for responder in responders:
            seen = responder.wait_for_log(probe, timeout=5.0)
            assert probe in seen, f"responder {responder.port} saw no OPTIONS probe:\n{seen}"
        yield server
    finally:
        if kamailio is not None:
            try:
                code = _stop_kamailio(kamailio)
                if code != 0:
                    errors.append(f"kamailio exited with {code} after SIGTERM")
            except AssertionError as exc:
                errors.append(str(exc))
        for responder in responders:
            problem = _stop_responder(responder)
            if problem is not None:
                errors.append(problem)
    assert not errors, "\n".join(errors)


# ---------------------------------------------------------------------------- sipp


@dataclass(frozen=True)
class Run:
    """One sipp run through Kamailio, and what each of its calls must look like."""

    scenario: str  # scenarios/SCENARIO.xml, or sipp's built-in one for "sn:NAME"
    user: str  # the dialled plan (-s)
    transport: str
    calls: int
    #: The requests every call brings to its responder (retransmissions aside).
    methods: frozenset[str]
    #: The final status the responder gives the INVITE.
    final: int
    extra: tuple[str, ...] = ()

    def scenario_args(self) -> tuple[str, str]:
        if self.scenario.startswith("sn:"):
            return ("-sn", self.scenario[3:])
        return ("-sf", str(SCENARIOS / f"{self.scenario}.xml"))


BUSY = frozenset({"INVITE", "ACK"})
CALL = frozenset({"INVITE", "ACK", "BYE"})
CANCEL = frozenset({"INVITE", "CANCEL", "ACK"})

RUNS = {
    "busy-udp": Run("uac_busy", "180-486", "udp", 60, BUSY, 486),
    "call-udp": Run("uac_call", "bob", "udp", 30, CALL, 200),
    # SIPp's own uac ignores Record-Route: its ACK and BYE name the proxy, no Route, and
    # the proxy hashes their Call-ID again.
    "uac-no-route-udp": Run("sn:uac", "bob", "udp", 10, CALL, 200),
    "cancel-udp": Run("uac_cancel", "180", "udp", 6, CANCEL, 487),
    # The client retransmits its INVITE: Kamailio's tm answers it with the latest 180.
    "retrans-udp": Run("uac_retrans", "180-1s-486", "udp", 6, BUSY, 486, ("-nr",)),
    "busy-tcp": Run("uac_busy", "180-486", "tcp", 20, BUSY, 486),
    "call-tcp": Run("uac_call", "bob", "tcp", 10, CALL, 200),
    "cancel-tcp": Run("uac_cancel", "180", "tcp", 3, CANCEL, 487),
}


def drive(cluster: Cluster, label: str, run: Run, rate: int = 30) -> list[str]:
    """Make the run's calls through Kamailio; asserts sipp passed them all (exit 0).

    Returns their Call-IDs (``-cid_str``: the label, a run id and the call number), also
    kept in ``cluster.calls[label]``.
    """
    prefix = f"{label}-{new_id()[:8]}"
    argv = [
        SIPP,
        f"127.0.0.1:{cluster.port}",
        *run.scenario_args(),
        *("-s", run.user),
        *("-t", {"udp": "u1", "tcp": "t1"}[run.transport]),
        *("-m", str(run.calls), "-r", str(rate), "-l", str(run.calls)),
        *("-i", "127.0.0.1", "-p", str(free_port())),
        *("-cid_str", f"{prefix}-%u@kamailio-test"),
        *("-timeout", "30s", "-timeout_error", "-nostdin", "-trace_err"),
        *run.extra,
    ]
    rundir = cluster.workdir / prefix
    rundir.mkdir()
    proc = subprocess.Popen(
        argv, cwd=rundir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=5)
    errors = "".join(
        f"== {p.name}\n{p.read_text('utf-8', 'replace')[-6000:]}\n"
        for p in sorted(rundir.glob("*_errors.log"))
    )
    assert proc.returncode == 0, (
        f"sipp exited {proc.returncode}: {' '.join(argv)}\n"
        f"--- stdout (tail) ---\n{out.decode('utf-8', 'replace')[-3000:]}\n"
        f"--- stderr ---\n{err.decode('utf-8', 'replace')[-2000:]}\n"
        f"--- errors ---\n{errors}\n"
        f"--- kamailio (tail) ---\n{cluster.kamailio_log_text()[-3000:]}"
    )
    call_ids = [f"{prefix}-{n}@kamailio-test" for n in range(1, run.calls + 1)]
    cluster.calls[label] = call_ids
    return call_ids


# ------------------------------------------------------------------------ journals


@dataclass
class Seen:
    """What the responders' journals say about one Call-ID."""

    instances: set[int] = field(default_factory=set)  # indexes into cluster.responders
    methods: set[str] = field(default_factory=set)  # of the requests received
    invite_finals: set[int] = field(default_factory=set)


def seen_by_call(cluster: Cluster) -> dict[str, Seen]:
    seen: dict[str, Seen] = defaultdict(Seen)
    for index, entries in enumerate(cluster.read_journals()):
        for entry in entries:
            call = seen[entry["call_id"]]
            if entry["direction"] == "in":
                call.instances.add(index)
                call.methods.add(entry["method"])
            elif entry["method"] == "INVITE" and entry.get("status", 0) >= 200:
                call.invite_finals.add(entry["status"])
    return seen


def wait_for_journals(cluster: Cluster, expected: dict[str, frozenset[str]]) -> dict[str, Seen]:
    """The journals once they hold, for every call of each run (by label), the requests
    expected of it; bounded by ``JOURNAL_TIMEOUT`` (they are flushed every second)."""
    deadline = time.monotonic() + JOURNAL_TIMEOUT
    while True:
        seen = seen_by_call(cluster)
        complete = all(
            methods <= seen[call_id].methods
            for label, methods in expected.items()
            for call_id in cluster.calls[label]
        )
        if complete or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


@pytest.fixture(scope="module")
def traffic(cluster: Cluster) -> dict[str, Seen]:
    """Every run of ``RUNS`` through Kamailio, one after the other (each must pass)."""
    for label, run in RUNS.items():
        drive(cluster, label, run)
    return wait_for_journals(cluster, {label: run.methods for label, run in RUNS.items()})


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("label", list(RUNS))
def test_every_call_completes_on_one_instance(
    cluster: Cluster, traffic: dict[str, Seen], label: str
) -> None:
    run = RUNS[label]
    call_ids = cluster.calls[label]
    assert len(call_ids) == run.calls
    problems = []
    for call_id in call_ids:
        call = traffic[call_id]
        ports = sorted(cluster.responders[i].port for i in call.instances)
        if len(ports) != 1:
            problems.append(f"{call_id}: its requests reached {ports or 'no responder'}")
        if call.methods != run.methods:
            problems.append(f"{call_id}: the responder saw {sorted(call.methods)}")
        if call.invite_finals != {run.final}:
            problems.append(f"{call_id}: the INVITE was answered {sorted(call.invite_finals)}")
    assert not problems, "\n".join(problems[:20])


def test_all_instances_served_calls_and_probes(cluster: Cluster, traffic: dict[str, Seen]) -> None:
    calls = [0] * INSTANCES
    for label in RUNS:
        for call_id in cluster.calls[label]:
            for index in traffic[call_id].instances:
                calls[index] += 1
    assert all(calls), f"calls per responder: {calls}"
    total = sum(run.calls for run in RUNS.values())
    assert sum(calls) == total, f"calls per responder: {calls}, calls made: {total}"
    kamailio = f"127.0.0.1:{cluster.instances_port}"
    for responder, entries in zip(cluster.responders, cluster.read_journals(), strict=True):
        probes = [
            e
            for e in entries
            if e["direction"] == "in" and e["method"] == "OPTIONS" and e["src"] == kamailio
        ]
        assert probes, f"responder {responder.port} logged no OPTIONS probe from Kamailio"


def test_the_call_id_hash_alone_keeps_a_call_on_its_instance(
    cluster: Cluster, traffic: dict[str, Seen]
) -> None:
    """No transaction, no Route: separate requests of one Call-ID (an OPTIONS, then a BYE
    with a To tag sent to Kamailio itself, as after a proxy restart) meet on one instance,
    and the Call-IDs spread over all three."""
    call_ids = [f"hash-{new_id()}@kamailio-test" for _ in range(30)]
    with UdpClient(("127.0.0.1", cluster.port)) as sip:
        for call_id in call_ids:
            first = Req("OPTIONS", user="bob", call_id=call_id)
            answer = sip.request(first, 200)
            sip.send(first.in_dialog("BYE", answer.to_tag or new_id(), 2))
            final = sip.expect_any()
            assert final.status >= 200, final.text
    cluster.calls["hash"] = call_ids
    seen = wait_for_journals(cluster, {"hash": frozenset({"OPTIONS", "BYE"})})
    used = set()
    for call_id in call_ids:
        assert seen[call_id].methods == {"OPTIONS", "BYE"}, (call_id, seen[call_id])
        assert len(seen[call_id].instances) == 1, (call_id, seen[call_id])
        used |= seen[call_id].instances
    assert used == set(range(INSTANCES)), f"30 Call-IDs reached only responders {used}"


def test_calls_fail_over_when_an_instance_stops(cluster: Cluster, traffic: dict[str, Seen]) -> None:
    """Runs last: it stops one responder for good (by its PID, exit code 0)."""
    gone = cluster.responders[1]
    problem = _stop_responder(gone)
    assert problem is None, problem
    started = time.monotonic()
    drive(cluster, "failover", Run("uac_busy", "180-486", "udp", 30, BUSY, 486))
    # The calls hashed to the stopped responder waited for tm's fr_timer (2 s) first.
    assert time.monotonic() - started < 20
    seen = wait_for_journals(cluster, {"failover": BUSY})
    per_instance = [0] * INSTANCES
    for call_id in cluster.calls["failover"]:
        assert len(seen[call_id].instances) == 1, (call_id, seen[call_id])
        assert seen[call_id].invite_finals == {486}, (call_id, seen[call_id])
        for index in seen[call_id].instances:
            per_instance[index] += 1
    assert per_instance[1] == 0, f"calls per responder: {per_instance}"
    assert per_instance[0] and per_instance[2], f"calls per responder: {per_instance}"
    log = cluster.kamailio_log_text()
    down = f"instance sip:127.0.0.1:{gone.port} is down"
    assert down in log, f"no {down!r} in the Kamailio log:\n{log[-3000:]}"
