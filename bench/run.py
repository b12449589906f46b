#!/usr/bin/env python3
"""The benchmark harness: SIPp against the responder, SIPp's own UAS and Kamailio.

For every target x flow x transport it drives a target on a loopback port with SIPp as
the client (bench/scenarios/uac_*.xml), starting the target afresh for every SIPp run:

* the closed-loop ceiling: ``-r`` far above capacity, at most ``--limit`` calls in
  flight, for ``--seconds``; completed calls per second;
* the highest clean open-loop rate: ``-r R -m R*seconds``, a short bisection around the
  ceiling (``--steps`` runs, the first failed one repeated at its rate: ``--retries``);
  clean means every call completed, none failed, no unexpected message, and SIPp kept
  the pace;
* the target's CPU time per successful call in the ceiling run (utime + stime of the
  target and its child processes, from /proc/PID/stat, before and after);
* its peak RSS (VmHWM from /proc/PID/status, just before it is stopped; the largest of
  its runs).

``--rounds N`` measures every cell N times, the targets taking turns, and reports each
cell's median round (by clean rate): for a machine whose speed drifts between runs.

Targets: ``responder`` (``python -m sipresponder --port 0 --log-level INFO``, the
defaults a user gets), ``sipp-uas`` (SIPp with bench/scenarios/uas_*.xml), and
``kamailio`` (bench/kamailio.cfg) when ``kamailio`` is on PATH — it is never installed
from here.  Loopback only; every process started here is stopped by its own PID, every
wait has a deadline.  Prints a Markdown table and writes JSON (bench/results/latest.json).

``--scaling`` measures, instead, the responder with ``--workers 1`` and ``--workers 2``
(``--workers LIST``) for the busy flow over UDP and TCP, SIPp with one socket per call
(``-t un``, ``-t tn``; ``-max_socket`` of them, then reused): the kernel hashes SIPp's one
socket of ``-t u1``/``-t t1`` to one worker, its many sockets over all of them.  Its own
table (speed-up over the fewest workers) and JSON key ``scaling``
(bench/results/scaling.json).

``--stateless`` measures every target doing the stateless duties of RFC 3261 §8.2.7
instead: the final response alone (no 100, no 180), never resent, ACK ignored.  The
responder runs with ``--stateless``, Kamailio with ``-A STATELESS`` (bench/kamailio.cfg:
the sl module, no tm), SIPp's UAS and the client with the ``*_stateless.xml`` scenarios
of the INVITE flows (OPTIONS is the same either way); a 100 or 180 fails the call.  The
table gets a title line, the JSON ``"stateless": true`` (bench/results/stateless.json).

Uses the standard library only; sipresponder is looked at for its version, nothing else.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SCENARIOS = BENCH / "scenarios"
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Flow:
    name: str
    uac: str
    uas: str
    service: str  # the Request-URI user: the responder's plan
    title: str
    #: --stateless: the final response alone; empty: the same scenarios and title as above.
    stateless_uac: str = ""
    stateless_uas: str = ""
    stateless_title: str = ""

    def uac_scenario(self, stateless: bool = False) -> str:
        """The client's scenario file (a name in bench/scenarios)."""
        return (stateless and self.stateless_uac) or self.uac

    def uas_scenario(self, stateless: bool = False) -> str:
        """SIPp's UAS scenario file (a name in bench/scenarios)."""
        return (stateless and self.stateless_uas) or self.uas

    def describe(self, stateless: bool = False) -> str:
        return (stateless and self.stateless_title) or self.title


FLOWS: dict[str, Flow] = {
    "options": Flow("options", "uac_options.xml", "uas_options.xml", "bench", "OPTIONS → 200"),
    "busy": Flow(
        "busy",
        "uac_busy.xml",
        "uas_busy.xml",
        "180-486",
        "INVITE → 100 180 486, ACK",
        stateless_uac="uac_busy_stateless.xml",
        stateless_uas="uas_busy_stateless.xml",
        stateless_title="INVITE → 486, ACK (ignored)",
    ),
    "call": Flow(
        "call",
        "uac_call.xml",
        "uas_call.xml",
        "bench",
        "INVITE → 100 180 200, ACK, BYE → 200",
        stateless_uac="uac_call_stateless.xml",
        stateless_uas="uas_call_stateless.xml",
        stateless_title="INVITE → 200, ACK (ignored), BYE → 200",
    ),
}
#: Our transport name -> SIPp's -t mode (one socket for all calls).
TRANSPORTS: dict[str, str] = {"udp": "u1", "tcp": "t1"}
#: ... and its -t mode with one socket per call, which SO_REUSEPORT spreads over workers.
MULTI_SOCKET: dict[str, str] = {"udp": "un", "tcp": "tn"}
TARGETS = ("responder", "sipp-uas", "kamailio")
REFERENCES = ("sipp-uas", "kamailio")
#: SIPp's CPU share (of one core) from which a rate is marked as SIPp's limit too.
CLIENT_BOUND = 90
#: CPU used by the rest of the machine (% of one core) from which a run is disturbed.
DISTURBED = 15


# --------------------------------------------------------------------- pure helpers


def parse_stat_csv(text: str) -> dict[str, str]:
    """The last row of SIPp's ``-trace_stat`` file, by column name ('' when empty)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    header = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(header, values, strict=False))


def stat_epoch(value: str) -> float:
    """SIPp writes times as ``date<TAB>time<TAB>epoch``: the epoch seconds."""
    return float(value.split("\t")[-1])


def stat_int(stat: dict[str, str], name: str) -> int:
    try:
        return int(float(stat.get(name, "0") or 0))
    except ValueError:
        return 0


def parse_listening(text: str) -> dict[str, int]:
    """``listening udp 127.0.0.1:PORT`` lines (the responder's stdout) -> {transport: port}."""
    ports = {}
    for match in re.finditer(r"^listening (\w+) \S+:(\d+)\s*$", text, re.MULTILINE):
        ports[match.group(1)] = int(match.group(2))
    return ports


def parse_proc_stat(text: str) -> tuple[int, int, int]:
    """(ppid, utime, stime) from a /proc/PID/stat line; the name may hold spaces and ')'."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3 of the man page): ppid is 4, utime 14, stime 15.
    return int(fields[1]), int(fields[11]), int(fields[12])


def parse_netstat(text: str) -> dict[str, int]:
    """/proc/net/netstat (a line of names, then one of values, per group) -> counters by
    nstat's names: ``TcpExtListenOverflows``."""
    counters: dict[str, int] = {}
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, names = names.partition(":")
        for name, value in zip(names.split(), values.partition(":")[2].split(), strict=False):
            with contextlib.suppress(ValueError):
                counters[group + name] = int(value)
    return counters


def parse_vmhwm(text: str) -> int:
    """VmHWM in KiB from /proc/PID/status (0 when absent, e.g. a zombie)."""
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def next_rate(lo: float | None, hi: float | None, ceiling: float) -> float:
    """The next open-loop rate to try: start just under the closed-loop ceiling, step
    up by 40 % (or down to 60 %) until a bound is found on both sides, then bisect.

    ``lo`` is the highest clean rate so far, ``hi`` the lowest that was not clean.
    """
    if lo is None and hi is None:
        return 0.85 * ceiling
    if lo is None:
        assert hi is not None
        return 0.6 * hi
    if hi is None:
        return 1.4 * lo
    return (lo + hi) / 2


def search(
    ceiling: float | None,
    steps: int,
    retries: int,
    run: Callable[[int, str, bool], ClientRun],
    runs: list[ClientRun],
) -> tuple[int | None, int | None]:
    """The open-loop search of one cell: up to ``steps`` rates from ``next_rate``, each
    run by ``run(rate, label, repeat)`` and appended to ``runs``.  -> (the highest clean
    rate, the lowest rate that was not clean), either None when none was.

    A run that is not clean is repeated once at its rate while ``retries`` last (a
    budget for the whole cell), and the repeat decides: on a machine whose speed swings,
    one disturbed run must not send the rest of the search down.
    """
    lo: int | None = None
    hi: int | None = None
    for i in range(steps if ceiling else 0):
        assert ceiling is not None
        rate = round(next_rate(lo, hi, ceiling))
        if rate < 1:
            break
        r = run(rate, f"open{i + 1}", False)
        runs.append(r)
        if not r.clean and retries > 0:
            retries -= 1
            r = run(rate, f"open{i + 1}b", True)
            runs.append(r)
        if r.clean:
            lo = rate if lo is None else max(lo, rate)
        else:
            hi = rate if hi is None else min(hi, rate)
        if lo is not None and hi is not None and hi / lo < 1.05:
            break
    return lo, hi


def ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return a / b


def fmt_int(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.2f}×" if x < 10 else f"{x:.0f}×"


def parse_workers(value: str) -> list[int]:
    """``1,2`` -> [1, 2]: worker counts for --scaling, each 1 to 64, sorted, once each."""
    try:
        counts = {int(v) for v in value.split(",") if v.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {value!r}") from None
    if not counts or not all(1 <= n <= 64 for n in counts):
        raise argparse.ArgumentTypeError(f"worker counts from 1 to 64, e.g. 1,2: {value!r}")
    return sorted(counts)


def cpu_pcts(split: Sequence[float], elapsed: float) -> list[float]:
    """CPU seconds of each process over a run -> % of one core each."""
    return [100 * cpu / elapsed for cpu in split] if elapsed > 0 else []


def fmt_pcts(pcts: Sequence[float]) -> str:
    return " · ".join(f"{p:.0f}" for p in pcts) if pcts else "—"


# ----------------------------------------------------------------- processes, /proc

_started: dict[int, subprocess.Popen[bytes]] = {}


def _spawn(cmd: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(list(cmd), **kw)
    _started[proc.pid] = proc
    return proc


def proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = parse_proc_stat(Path(entry.path, "stat").read_text())[0]
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, parents first."""
    children = proc_children()
    tree: list[int] = []
    todo = [pid]
    while todo and len(tree) < 1000:
        p = todo.pop(0)
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process; 0 when it is gone."""
    try:
        _, utime, stime = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return 0.0
    return (utime + stime) / CLK_TCK


def tree_rss_kib(pids: Sequence[int], mode: str) -> int:
    values = []
    for pid in pids:
        with contextlib.suppress(OSError):
            values.append(parse_vmhwm(Path(f"/proc/{pid}/status").read_text()))
    if not values:
        return 0
    return max(values) if mode == "max" else sum(values)


def listen_overflows() -> int:
    """Connections the kernel dropped, machine-wide so far, for a full accept queue."""
    try:
        text = Path("/proc/net/netstat").read_text()
    except OSError:
        return 0
    return parse_netstat(text).get("TcpExtListenOverflows", 0)


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    # cpu user nice system idle iowait irq softirq steal ...
    busy = [int(x) for x in fields[1:4] + fields[6:9]]
    return sum(busy) / CLK_TCK


def port_bound(port: int, transport: str) -> bool:
    """Whether something on this machine has bound ``port`` (TCP: listening)."""
    table = "/proc/net/udp" if transport == "udp" else "/proc/net/tcp"
    want = f"{port:04X}"
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        if (
            len(parts) > 3
            and parts[1].rsplit(":", 1)[-1] == want
            and (transport == "udp" or parts[3] == "0A")
        ):
            return True
    return False


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port for UDP and TCP")


def reap(proc: subprocess.Popen[bytes]) -> tuple[int | None, float]:
    """Reap ``proc`` if it has exited: (exit code or None, its CPU seconds from rusage)."""
    if proc.returncode is not None:
        return proc.returncode, 0.0
    try:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    except ChildProcessError:
        proc.returncode = proc.returncode if proc.returncode is not None else -1
        return proc.returncode, 0.0
    if pid == 0:
        return None, 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    _started.pop(proc.pid, None)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def stop(proc: subprocess.Popen[bytes], pids: Sequence[int] = (), grace: float = 5.0) -> None:
    """SIGTERM ``proc`` (its PID), then SIGKILL it and any of ``pids`` still alive."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
    _started.pop(proc.pid, None)
    # Children it forked (Kamailio's workers) go with it; any that linger go by PID.
    deadline = time.monotonic() + grace
    left = [p for p in pids if p != proc.pid]
    while left and time.monotonic() < deadline:
        left = [p for p in left if Path(f"/proc/{p}").exists() and not _zombie(p)]
        if left:
            time.sleep(0.05)
    for p in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2 :].startswith("Z")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM, SIGHUP: stop, report what was measured


def _stop_all() -> None:
    for proc in list(_started.values()):
        stop(proc, grace=2.0)


# ------------------------------------------------------------------------- targets


class TargetError(Exception):
    pass


@dataclass
class Settings:
    seconds: float
    steps: int
    #: Failed open-loop runs per cell that are repeated at their rate (the repeat decides).
    retries: int
    limit: int
    buff_size: int
    max_socket: int
    recv_timeout_ms: int
    sipp: str
    kamailio: str | None
    kamailio_modules: str | None
    kamailio_shm: int
    responder_args: list[str]
    workdir: Path
    #: Every target does the stateless duties of RFC 3261 §8.2.7 (--stateless).
    stateless: bool = False


class Target:
    name = ""
    rss_mode = "sum"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pids: list[int] = []
        self.log: Path | None = None

    def version(self) -> str:
        return ""

    def command(self, flow: Flow, transport: str, port: int) -> list[str]:
        raise NotImplementedError

    def start(self, flow: Flow, transport: str, tag: str) -> None:
        s = self.settings
        self.port = free_port()
        out = s.workdir / f"{tag}.target.out"
        self.log = s.workdir / f"{tag}.target.err"
        with open(out, "wb") as fo, open(self.log, "wb") as fe:
            self.proc = _spawn(
                self.command(flow, transport, self.port),
                stdin=subprocess.DEVNULL,
                stdout=fo,
                stderr=fe,
                cwd=s.workdir,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TargetError(f"exited with code {self.proc.returncode}: {self._tail()}")
            if self.ready(transport, out):
                self.pids = self._settled_tree(deadline)
                return
            time.sleep(0.05)
        raise TargetError(f"not ready after 15 s: {self._tail()}")

    def ready(self, transport: str, out: Path) -> bool:
        return port_bound(self.port, transport)

    def _settled_tree(self, deadline: float) -> list[int]:
        """The process tree once it stops growing (workers still forking)."""
        assert self.proc is not None
        tree = proc_tree(self.proc.pid)
        while time.monotonic() < deadline:
            time.sleep(0.1)
            again = proc_tree(self.proc.pid)
            if again == tree:
                break
            tree = again
        return tree

    def cpu_split(self) -> list[float]:
        """CPU seconds of each of its processes (``pids``: parents first), alive or 0."""
        return [proc_cpu(pid) for pid in self.pids]

    def rss_kib(self) -> int:
        return tree_rss_kib(self.pids, self.rss_mode)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, proc_tree(self.proc.pid) if self.alive() else self.pids)

    def _tail(self) -> str:
        if self.log is None:
            return ""
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-3:])[-400:]


class Responder(Target):
    name = "responder"

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        super().__init__(settings)
        self.workers = workers  # --workers N, after --responder-args; None: not given

    def version(self) -> str:
        try:
            return importlib.metadata.version("sipresponder")
        except importlib.metadata.PackageNotFoundError:
            return "?"

    def command(self, flow: Flow, transport: str, port: int) -> list[str]:
        # --port 0 and the defaults a user gets; the real port comes from stdout.  The
        # one exception, --drain-timeout 0, only shortens the stop after the measurement
        # (calls a ceiling run leaves ringing would otherwise hold it up to 5 s).
        return [
            sys.executable,
            "-m",
            "sipresponder",
            "--port",
            "0",
            "--log-level",
            "INFO",
            "--drain-timeout",
            "0",
            *self.settings.responder_args,
            *([] if self.workers is None else ["--workers", str(self.workers)]),
            *(["--stateless"] if self.settings.stateless else []),
        ]

    def ready(self, transport: str, out: Path) -> bool:
        ports = parse_listening(out.read_text(errors="replace"))
        if transport in ports:
            self.port = ports[transport]
            return True
        return False


class SippUas(Target):
    name = "sipp-uas"

    def command(self, flow: Flow, transport: str, port: int) -> list[str]:
        s = self.settings
        return [
            s.sipp,
            "-sf",
            str(SCENARIOS / flow.uas_scenario(s.stateless)),
            "-i",
            LOOPBACK,
            "-p",
            str(port),
            "-t",
            TRANSPORTS[transport],
            "-nostdin",
            "-buff_size",
            str(s.buff_size),
            "-max_socket",
            str(s.max_socket),
        ]


class Kamailio(Target):
    name = "kamailio"
    #: Kamailio's shared memory shows in every process that touches it: take the largest.
    rss_mode = "max"

    def version(self) -> str:
        if not self.settings.kamailio:
            return ""
        try:
            out = subprocess.run(
                [self.settings.kamailio, "-v"], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return "?"
        match = re.search(r"kamailio (\S+)", out)
        return match.group(1) if match else "?"

    def command(self, flow: Flow, transport: str, port: int) -> list[str]:
        s = self.settings
        assert s.kamailio
        cmd = [
            s.kamailio,
            "-f",
            str(BENCH / "kamailio.cfg"),
            "-DD",  # foreground, children kept
            "-E",  # log to standard error
            "-n",
            "1",  # one UDP worker
            "-m",
            str(s.kamailio_shm),
            "-M",
            "16",
            "-Y",
            str(s.workdir),
            "-l",
            f"udp:{LOOPBACK}:{port}",
            "-l",
            f"tcp:{LOOPBACK}:{port}",
        ]
        if s.kamailio_modules:
            cmd += ["-L", s.kamailio_modules]
        if s.stateless:
            cmd += ["-A", "STATELESS"]  # kamailio.cfg's #!ifdef STATELESS: sl only, no tm
        return cmd


# --------------------------------------------------------------------- SIPp client


@dataclass
class ClientRun:
    """One SIPp client run: what SIPp counted and what the target spent."""

    kind: str  # "ceiling" | "open"
    rate: float  # -r
    calls: int | None  # -m
    exit_code: int | None
    elapsed: float  # first call to last (SIPp's stat file)
    successful: int
    failed: int
    unexpected: int
    timeouts: int
    retransmissions: int
    dead_call_msgs: int
    out_of_call_msgs: int
    call_length_ms: float | None
    rate_achieved: float
    target_cpu: float  # seconds
    client_cpu: float  # seconds
    sipp_mode: str = ""  # SIPp's -t: u1, t1 (one socket), un, tn (one per call)
    target_cpu_split: list[float] = field(default_factory=list)  # per process, as pids
    other_cpu_pct: float = 0.0  # what the rest of the machine used, % of one core
    listen_overflows: int = 0  # TCP connections dropped for a full accept queue (machine)
    clean: bool = False
    note: str = ""
    #: An open-loop run at the rate of the failed run just before it (``--retries``).
    repeat: bool = False

    @property
    def cpu_us_per_call(self) -> float | None:
        return self.target_cpu / self.successful * 1e6 if self.successful else None

    @property
    def client_cpu_pct(self) -> float | None:
        return 100 * self.client_cpu / self.elapsed if self.elapsed > 0 else None


def _call_length_ms(value: str) -> float | None:
    # HH:MM:SS:microseconds
    parts = value.split(":")
    if len(parts) != 4:
        return None
    try:
        h, m, s, us = (int(p) for p in parts)
    except ValueError:
        return None
    return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


def stat_path(settings: Settings, tag: str) -> Path:
    """SIPp's statistics file of the client run ``tag`` (-trace_stat -stf)."""
    return settings.workdir / f"{tag}.stat.csv"


def client_command(
    settings: Settings,
    flow: Flow,
    port: int,
    sipp_mode: str,
    tag: str,
    *,
    rate: float,
    limit: int,
    calls: int | None,
) -> list[str]:
    """SIPp as the client of the target on ``port``: the flow's scenario (its stateless
    one with --stateless), its stat file and screen in the work directory."""
    s = settings
    cmd = [
        s.sipp,
        f"{LOOPBACK}:{port}",
        "-sf",
        str(SCENARIOS / flow.uac_scenario(s.stateless)),
        "-s",
        flow.service,
        "-i",
        LOOPBACK,
        "-p",
        str(free_port()),
        "-t",
        sipp_mode,
        "-r",
        str(max(1, round(rate))),
        "-rp",
        "1000",
        "-l",
        str(limit),
        "-nostdin",
        "-buff_size",
        str(s.buff_size),
        "-max_socket",
        str(s.max_socket),
        "-recv_timeout",
        str(s.recv_timeout_ms),
        "-trace_stat",
        "-stf",
        str(stat_path(s, tag)),
        "-fd",
        "1",
        "-trace_screen",
        "-screen_file",
        str(s.workdir / f"{tag}.screen.txt"),
    ]
    if calls is not None:
        cmd += ["-m", str(calls)]
    return cmd


def run_ceiling(
    settings: Settings, target: Target, flow: Flow, sipp_mode: str, tag: str
) -> ClientRun:
    """The closed-loop ceiling run: far more calls asked for than can be served, at most
    ``--limit`` in flight, for ``--seconds``."""
    s = settings
    return run_client(
        s,
        target,
        flow,
        sipp_mode,
        tag,
        rate=100_000,
        limit=s.limit,
        calls=None,
        duration=s.seconds,
    )


def run_client(
    settings: Settings,
    target: Target,
    flow: Flow,
    sipp_mode: str,
    tag: str,
    *,
    rate: float,
    limit: int,
    calls: int | None,
    duration: float,
) -> ClientRun:
    """Run SIPp against ``target``: for ``duration`` (then SIGUSR1, which stops new calls
    and waits for the rest) or until ``calls`` calls are done.  Bounded either way."""
    s = settings
    stat_file = stat_path(s, tag)
    cmd = client_command(s, flow, target.port, sipp_mode, tag, rate=rate, limit=limit, calls=calls)
    cpu_before = target.cpu_split()
    busy_before = machine_busy()
    overflows_before = listen_overflows()
    errors: IO[bytes]
    with open(s.workdir / f"{tag}.sipp.err", "wb") as errors:
        proc = _spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
    started = time.monotonic()
    drain = s.recv_timeout_ms / 1000 + 3
    # Closed loop: stop placing calls after `duration`; open loop: SIPp stops by itself
    # after -m calls, unless it falls far behind.
    soft = started + (duration if calls is None else duration * 2 + drain)
    signals = 0
    code: int | None = None
    client_cpu = 0.0
    for _ in range(100_000):  # 20 ms a turn: bounded by the deadlines below anyway
        code, client_cpu = reap(proc)
        if code is not None:
            break
        now = time.monotonic()
        if now >= soft + signals * drain:
            if signals < 2:  # 1st: stop new calls, finish the others; 2nd: quit now
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGUSR1)
                signals += 1
            else:
                stop(proc, grace=2.0)
                code = proc.returncode
                break
        time.sleep(0.02)
    split = [max(0.0, b - a) for a, b in zip(cpu_before, target.cpu_split(), strict=True)]
    target_cpu = sum(split)
    wall = time.monotonic() - started
    other = machine_busy() - busy_before - target_cpu - client_cpu
    try:
        stat = parse_stat_csv(stat_file.read_text(errors="replace"))
    except OSError:
        stat = {}
    elapsed = 0.0
    with contextlib.suppress(KeyError, ValueError, IndexError):
        elapsed = stat_epoch(stat["CurrentTime"]) - stat_epoch(stat["StartTime"])
    successful = stat_int(stat, "SuccessfulCall(C)")
    run = ClientRun(
        kind="ceiling" if calls is None else "open",
        rate=rate,
        calls=calls,
        exit_code=code,
        elapsed=elapsed,
        successful=successful,
        failed=stat_int(stat, "FailedCall(C)"),
        unexpected=stat_int(stat, "FailedUnexpectedMessage(C)"),
        timeouts=stat_int(stat, "FailedTimeoutOnRecv(C)"),
        retransmissions=stat_int(stat, "Retransmissions(C)"),
        dead_call_msgs=stat_int(stat, "DeadCallMsgs(C)"),
        out_of_call_msgs=stat_int(stat, "OutOfCallMsgs(C)"),
        call_length_ms=_call_length_ms(stat.get("CallLength(C)", "")),
        rate_achieved=successful / elapsed if elapsed > 0 else 0.0,
        target_cpu=target_cpu,
        client_cpu=client_cpu,
        sipp_mode=sipp_mode,
        target_cpu_split=split,
        other_cpu_pct=max(0.0, 100 * other / wall) if wall > 0 else 0.0,
        listen_overflows=max(0, listen_overflows() - overflows_before),
    )
    if not stat:
        run.note = "no SIPp statistics"
    if signals == 2 or code is None:
        run.note = "SIPp had to be stopped"
    if calls is not None:
        # Clean: every call done, none failed or unexpected, and at the pace asked.
        kept_pace = elapsed <= duration * 1.15 + 0.5
        run.clean = (
            code == 0
            and successful == calls
            and run.failed == 0
            and run.unexpected == 0
            and kept_pace
        )
        if not kept_pace and not run.note:
            run.note = f"fell behind: {elapsed:.1f} s for {duration:g} s of calls"
    return run


# ---------------------------------------------------------------------- one cell


@dataclass
class Cell:
    target: str
    flow: str
    transport: str
    status: str = "ok"  # ok | not installed | error | skipped
    error: str = ""
    ceiling: ClientRun | None = None
    steps: list[ClientRun] = field(default_factory=list)
    clean_rate: float | None = None
    clean_below: float | None = None  # no clean rate found: every rate tried failed
    clean_at_least: bool = False  # every rate tried was clean: the clean rate is a floor
    rss_kib: int | None = None
    processes: int = 0
    sipp_mode: str = ""  # SIPp's -t
    workers: int | None = None  # the responder's --workers, when the harness set it
    #: --rounds: what each round measured (this cell is the median one), in round order.
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def disturbed(self) -> bool:
        runs = [r for r in [self.ceiling, *self.steps] if r is not None]
        return any(r.other_cpu_pct >= DISTURBED for r in runs)

    @property
    def ceiling_rate(self) -> float | None:
        return self.ceiling.rate_achieved if self.ceiling and self.ceiling.successful else None

    @property
    def cpu_us(self) -> float | None:
        return self.ceiling.cpu_us_per_call if self.ceiling else None

    @property
    def process_cpu_pcts(self) -> list[float]:
        """Each of the target's processes' CPU in the ceiling run, % of one core."""
        c = self.ceiling
        return cpu_pcts(c.target_cpu_split, c.elapsed) if c else []

    def to_dict(self) -> dict[str, Any]:
        def run(r: ClientRun | None) -> dict[str, Any] | None:
            if r is None:
                return None
            d = dataclasses.asdict(r)
            d["cpu_us_per_call"] = r.cpu_us_per_call
            d["client_cpu_pct"] = r.client_cpu_pct
            return d

        return {
            "target": self.target,
            "flow": self.flow,
            "transport": self.transport,
            "sipp_mode": self.sipp_mode,
            "workers": self.workers,
            **self.summary(),
            "error": self.error,
            "clean_at_least": self.clean_at_least,
            "peak_rss_kib": self.rss_kib,
            "processes": self.processes,
            "process_cpu_pct": self.process_cpu_pcts,
            "client_cpu_pct": self.ceiling.client_cpu_pct if self.ceiling else None,
            "ceiling": run(self.ceiling),
            "steps": [run(r) for r in self.steps],
            "rounds": self.rounds,
        }

    def summary(self) -> dict[str, Any]:
        """The figures of the table: part of ``to_dict``, and each round's entry in the
        ``rounds`` of the median cell."""
        return {
            "status": self.status,
            "ceiling_calls_per_s": self.ceiling_rate,
            "clean_calls_per_s": self.clean_rate,
            "clean_below": self.clean_below,
            "cpu_us_per_call": self.cpu_us,
            "disturbed": self.disturbed,
        }


def median_cell(cells: list[Cell]) -> Cell:
    """Of one cell measured in several rounds, the round with the median clean rate
    (a round without one counts as 0; the ceiling breaks ties), so that the figures of a
    row come from one run; the others are kept in its ``rounds``.  With an even number
    of rounds, the upper of the two middle ones."""
    ok = [c for c in cells if c.status == "ok"]
    if not ok:
        chosen = cells[0]
    else:
        ranked = sorted(ok, key=lambda c: (c.clean_rate or 0.0, c.ceiling_rate or 0.0))
        chosen = ranked[len(ranked) // 2]
    if len(cells) > 1:
        chosen.rounds = [c.summary() for c in cells]
    return chosen


def measure(
    settings: Settings,
    target: Target,
    flow: Flow,
    transport: str,
    log: Any,
    sipp_mode: str | None = None,
) -> Cell:
    """The ceiling run, then the open-loop search, each run on a freshly started target:
    a run can leave a target with a backlog, a grown heap or a load-shedding state that
    would decide the next run (the responder over TCP does), and the runs must not
    depend on their order.  SIPp's -t is ``sipp_mode``, by default one socket."""
    sipp_mode = sipp_mode or TRANSPORTS[transport]
    workers = getattr(target, "workers", None)
    cell = Cell(target.name, flow.name, transport, sipp_mode=sipp_mode, workers=workers)
    tag = f"{target.name}-{flow.name}-{transport}"
    if sipp_mode != TRANSPORTS[transport]:
        tag += f"-{sipp_mode}"
    if workers is not None:
        tag += f"-w{workers}"
    rss = [0]
    starts = [0]

    def start() -> None:
        starts[0] += 1
        target.start(flow, transport, tag if starts[0] == 1 else f"{tag}-{starts[0]}")
        cell.processes = len(target.pids)

    def restart() -> None:
        rss[0] = max(rss[0], target.rss_kib())
        target.stop()
        start()

    try:
        start()
    except (TargetError, OSError) as exc:
        target.stop()
        cell.status, cell.error = "error", f"start: {exc}"
        return cell
    try:
        s = settings
        cell.ceiling = run_ceiling(s, target, flow, sipp_mode, f"{tag}-ceiling")
        c = cell.ceiling
        pcts = cell.process_cpu_pcts
        each = f" ({fmt_pcts(pcts)} % of a core each)" if len(pcts) > 1 else ""
        log(
            f"  ceiling {c.rate_achieved:8,.0f}/s  ({c.successful} ok, {c.failed} failed, "
            f"target {fmt_int(c.cpu_us_per_call)} µs/call{each}, SIPp CPU "
            f"{fmt_int(c.client_cpu_pct)} %){' ' + c.note if c.note else ''}{_other(c)}"
            f"{_overflows(c)}"
        )

        def open_run(rate: int, label: str, repeat: bool) -> ClientRun:
            restart()
            r = run_client(
                s,
                target,
                flow,
                sipp_mode,
                f"{tag}-{label}",
                rate=rate,
                limit=max(s.limit, round(rate * (s.recv_timeout_ms / 1000 + 1))),
                calls=max(1, round(rate * s.seconds)),
                duration=s.seconds,
            )
            r.repeat = repeat
            verdict = "clean" if r.clean else "not clean"
            why = "" if r.clean else _why(r)
            what = "again" if repeat else "open"
            log(f"  {what:<7} {rate:8,.0f}/s  {verdict}{why}{_other(r)}{_overflows(r)}")
            return r

        ceiling = cell.ceiling_rate
        lo, hi = search(ceiling, s.steps, s.retries, open_run, cell.steps)
        cell.clean_rate = lo
        cell.clean_below = hi if lo is None else None
        cell.clean_at_least = lo is not None and hi is None
        if not target.alive():
            cell.status, cell.error = "error", f"the target died: {target._tail()}"
        cell.rss_kib = max(rss[0], target.rss_kib())
    except (TargetError, OSError) as exc:
        cell.status, cell.error = "error", f"restart: {exc}"
    finally:
        target.stop()
    return cell


def _other(r: ClientRun) -> str:
    if r.other_cpu_pct < DISTURBED:
        return ""
    return f"  [other processes used {r.other_cpu_pct:.0f} % of a core]"


def _overflows(r: ClientRun) -> str:
    if not r.listen_overflows:
        return ""
    return f"  [{r.listen_overflows} TCP connections dropped: accept queue full]"


def _why(r: ClientRun) -> str:
    parts = []
    if r.failed:
        parts.append(f"{r.failed} failed")
    if r.unexpected:
        parts.append(f"{r.unexpected} unexpected")
    if r.calls is not None and r.successful + r.failed < r.calls:
        parts.append(f"{r.calls - r.successful - r.failed} not done")
    if r.note:
        parts.append(r.note)
    return f" ({', '.join(parts)})" if parts else ""


# ------------------------------------------------------------------------- report


def machine_info(settings: Settings, targets: dict[str, Target]) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = match.group(1).strip() if match else ""
    sipp_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [settings.sipp, "-v"], capture_output=True, text=True, timeout=10
        ).stdout
        match = re.search(r"SIPp (v\S+?)\.?\s", out)
        sipp_version = match.group(1) if match else out.strip()[:60]
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    try:
        uvloop = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sipp": sipp_version,
        "kamailio": targets["kamailio"].version() if settings.kamailio else None,
        "sipresponder": targets["responder"].version(),
        "uvloop_installed": uvloop,
        "commit": commit,
    }


def unmeasured(c: Cell) -> str | None:
    """The text of a row that has no figures ("skipped (...)"), or None when it has."""
    if c.status in ("not installed", "skipped") or (c.status == "error" and not c.ceiling):
        return f"{c.status} {('(' + c.error[:60] + ')') if c.error else ''}"
    return None


def fmt_ceiling(c: Cell) -> str:
    """Its ceiling, and the share of its calls that failed, if any."""
    text = fmt_int(c.ceiling_rate)
    if c.ceiling and c.ceiling.failed:
        done = c.ceiling.failed + c.ceiling.successful
        text += f" ({100 * c.ceiling.failed / done:.0f} % failed)"
    return text


def fmt_clean(c: Cell) -> str:
    """Its clean rate: ``< R`` when none was, ``≥ R`` when every rate tried was."""
    if c.clean_rate is None and c.clean_below is not None:
        return f"< {c.clean_below:,.0f}"
    return f"≥ {fmt_int(c.clean_rate)}" if c.clean_at_least else fmt_int(c.clean_rate)


def fmt_client(c: Cell) -> str:
    """SIPp's share of a core in the ceiling run, ``*`` from CLIENT_BOUND."""
    client = c.ceiling.client_cpu_pct if c.ceiling else None
    if client is None:
        return "—"
    return f"{client:.0f} %" + ("*" if client >= CLIENT_BOUND else "")


def fmt_rss(c: Cell) -> str:
    return f"{c.rss_kib / 1024:.0f}" if c.rss_kib else "—"


def fmt_status(c: Cell) -> str:
    """`` (error)`` when not ok, `` †`` when disturbed."""
    return ("" if c.status == "ok" else f" ({c.status})") + (" †" if c.disturbed else "")


def table(cells: list[Cell]) -> str:
    """Markdown: one row per flow x transport x target; references get the ratios."""
    by_key = {(c.target, c.flow, c.transport): c for c in cells}
    rows = [
        "| flow | transport | target | ceiling calls/s | clean calls/s | CPU µs/call "
        "| peak RSS MiB | SIPp client CPU | responder ÷ this: ceiling · clean · µs/call |",
        "|---|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for c in cells:
        missing = unmeasured(c)
        if missing is not None:
            rows.append(f"| {c.flow} | {c.transport} | {c.target} | {missing} | | | | | |")
            continue
        ratios = ""
        resp = by_key.get(("responder", c.flow, c.transport))
        if c.target != "responder" and resp is not None and resp.status == "ok":
            ratios = " · ".join(
                [
                    fmt_ratio(ratio(resp.ceiling_rate, c.ceiling_rate)),
                    fmt_ratio(ratio(resp.clean_rate, c.clean_rate)),
                    fmt_ratio(ratio(resp.cpu_us, c.cpu_us)),
                ]
            )
        rows.append(
            f"| {c.flow} | {c.transport} | {c.target}{fmt_status(c)} | {fmt_ceiling(c)} "
            f"| {fmt_clean(c)} | {fmt_int(c.cpu_us)} | {fmt_rss(c)} | {fmt_client(c)} "
            f"| {ratios} |"
        )
    return "\n".join(rows)


def table_title(stateless: bool) -> str:
    """The line above the table: what the targets were asked to do ('' by default)."""
    if not stateless:
        return ""
    return (
        "Stateless (--stateless, RFC 3261 §8.2.7): every target answers with the final "
        "response alone, never resent, and ignores the ACK — the responder with "
        "--stateless, Kamailio with sl only (-A STATELESS), SIPp's UAS with "
        "uas_*_stateless.xml (OPTIONS as always)."
    )


def speedups(cells: list[Cell]) -> list[dict[str, Any]]:
    """Each worker count's ceiling and clean rate over those of the fewest workers (of
    the same flow and transport), and its CPU µs/call over theirs; None where either
    measurement is not ok."""
    base: dict[tuple[str, str], Cell] = {}
    for c in cells:
        b = base.get((c.flow, c.transport))
        if c.workers is not None and (b is None or c.workers < (b.workers or 0)):
            base[(c.flow, c.transport)] = c
    out = []
    for c in cells:
        b = base.get((c.flow, c.transport))
        if c.workers is None or b is None:
            continue
        ok = c.status == "ok" and b.status == "ok"
        out.append(
            {
                "flow": c.flow,
                "transport": c.transport,
                "workers": c.workers,
                "base_workers": b.workers,
                "ceiling": ratio(c.ceiling_rate, b.ceiling_rate) if ok else None,
                "clean": ratio(c.clean_rate, b.clean_rate) if ok else None,
                "cpu_us_per_call": ratio(c.cpu_us, b.cpu_us) if ok else None,
            }
        )
    return out


def scaling_table(cells: list[Cell]) -> str:
    """Markdown: one row per flow x transport x worker count, with its speed-up."""
    ups = {(u["flow"], u["transport"], u["workers"]): u for u in speedups(cells)}
    fewest = min((u["base_workers"] for u in ups.values()), default=1)
    rows = [
        "| flow | transport | workers | ceiling calls/s | clean calls/s | CPU µs/call "
        "| CPU per process, % of a core | peak RSS MiB | SIPp client CPU "
        f"| ÷ {fewest} worker{'s' if fewest > 1 else ''}: ceiling · clean · µs/call |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for c in cells:
        head = f"| {c.flow} | {c.transport} ({c.sipp_mode}) | {c.workers}"
        missing = unmeasured(c)
        if missing is not None:
            rows.append(f"{head} | {missing} | | | | | | |")
            continue
        u = ups.get((c.flow, c.transport, c.workers))
        vs = ""
        if u is not None and u["workers"] != u["base_workers"]:
            vs = " · ".join(fmt_ratio(u[k]) for k in ("ceiling", "clean", "cpu_us_per_call"))
        rows.append(
            f"{head}{fmt_status(c)} | {fmt_ceiling(c)} | {fmt_clean(c)} | {fmt_int(c.cpu_us)} "
            f"| {fmt_pcts(c.process_cpu_pcts)} | {fmt_rss(c)} | {fmt_client(c)} | {vs} |"
        )
    return "\n".join(rows)


def scaling_legend(max_socket: int) -> str:
    return "\n".join(
        [
            "The responder alone with --workers N (N > 1: a supervisor and N workers on one "
            "port, SO_REUSEPORT); SIPp with one socket per call (-t un, -t tn), at most "
            f"{max_socket} (-max_socket), then reused, so the kernel spreads them over the "
            "workers.",
            "CPU µs/call: the supervisor's and all its workers' CPU together; CPU per "
            "process: each of them (supervisor first) over the ceiling run, % of one core.",
            "÷ fewest workers: ceiling and clean rate over theirs (above 1: faster), and "
            "µs/call over theirs (above 1: costlier per call).",
            "On two cores SIPp needs one of them: when SIPp's CPU is near 100 % (*) or the "
            "processes' CPU adds up to the cores left, the machine, not the responder, "
            "bounds the speed-up.",
            "TCP connections dropped (in the log; JSON listen_overflows, machine-wide): the "
            "accept queues were full, and SIPp's kernel resends such a SYN a second later.",
        ]
    )


def legend(limit: int, seconds: float) -> str:
    return "\n".join(
        [
            f"ceiling: closed loop, SIPp -l {limit}, {seconds:g} s, completed calls/s (and "
            "the share of calls that failed, if any).",
            "clean: open loop, the highest rate with every call completed at pace, none "
            "failed, no unexpected message (≥: every rate tried was clean).",
            "CPU µs/call (in the ceiling run) and peak RSS: the target's own processes "
            "(Kamailio: RSS of its largest process, shared memory included).",
            "responder ÷ this: rates above 1 are faster, µs/call below 1 is cheaper.",
            f"*: SIPp used {CLIENT_BOUND} % or more of a core in the ceiling run: that rate "
            "is SIPp's limit as much as the target's.",
            f"†: other processes used {DISTURBED} % of a core or more during a run of that "
            "row: its figures are disturbed.",
        ]
    )


def ratios(cells: list[Cell]) -> list[dict[str, Any]]:
    by_key = {(c.target, c.flow, c.transport): c for c in cells}
    out = []
    for c in cells:
        resp = by_key.get(("responder", c.flow, c.transport))
        if c.target == "responder" or c.status != "ok" or resp is None or resp.status != "ok":
            continue
        out.append(
            {
                "flow": c.flow,
                "transport": c.transport,
                "reference": c.target,
                "ceiling": ratio(resp.ceiling_rate, c.ceiling_rate),
                "clean": ratio(resp.clean_rate, c.clean_rate),
                "cpu_us_per_call": ratio(resp.cpu_us, c.cpu_us),
            }
        )
    return out


#: The targets of the throughput work (issue 5): the responder's clean rate at least this
#: share of the faster reference's, and its CPU per call at most this multiple of
#: Kamailio's.
CLEAN_TARGET = 0.8
CPU_TARGET = 2.0


def paired(rounds: list[list[Cell]], stateless: bool = False) -> list[dict[str, Any]]:
    """The targets judged round by round: for each flow and transport, each round's clean
    rate of the responder over the faster reference's of the same round (Kamailio's alone
    with ``stateless``: the ``sl`` comparison), and its CPU per call over Kamailio's of
    the same round, then the median of those ratios.

    The targets of one cell are measured back to back, a minute or two apart, while a
    round of every cell takes eight; the machine's speed drifts over that time (the same
    code's busy call took 39 to 70 µs in three rounds of one night). A ratio within a
    round cancels that drift; the table's rows, each a target's own median round, do not.
    A round in which the responder found no clean rate (or failed) counts as 0; one
    without a clean reference (or without Kamailio's CPU) gives no ratio.  A reference
    that died during its search counts with the highest clean rate it reached."""
    by_cell: dict[tuple[str, str], list[dict[str, Cell]]] = {}
    for index, rnd in enumerate(rounds):
        for c in rnd:
            if c.workers is not None:
                continue  # --scaling cells have no references
            per_round = by_cell.setdefault((c.flow, c.transport), [{} for _ in rounds])
            per_round[index][c.target] = c
    refs = ["kamailio"] if stateless else ["sipp-uas", "kamailio"]
    out = []
    for (flow, transport), per_round in by_cell.items():
        clean: list[float] = []
        cpu: list[float] = []
        for targets in per_round:
            resp = targets.get("responder")
            if resp is None or resp.status in ("skipped", "not installed"):
                continue
            # A reference counts with the highest clean rate it reached, even when it
            # died later in its search; the responder's error counts as no clean rate.
            rates = [
                ref.clean_rate
                for name in refs
                if (ref := targets.get(name)) is not None and ref.clean_rate
            ]
            if rates:
                resp_clean = resp.clean_rate if resp.status == "ok" else None
                clean.append((resp_clean or 0.0) / max(rates))
            kam = targets.get("kamailio")
            r = ratio(resp.cpu_us, kam.cpu_us) if kam is not None else None
            if r is not None:
                cpu.append(r)
        clean_median = statistics.median(clean) if clean else None
        cpu_median = statistics.median(cpu) if cpu else None
        out.append(
            {
                "flow": flow,
                "transport": transport,
                "clean_ratios": clean,
                "clean_median": clean_median,
                "clean_met": None if clean_median is None else clean_median >= CLEAN_TARGET,
                "cpu_ratios": cpu,
                "cpu_median": cpu_median,
                "cpu_met": None if cpu_median is None else cpu_median <= CPU_TARGET,
            }
        )
    return out


def paired_table(pairs: list[dict[str, Any]], stateless: bool = False) -> str:
    """Markdown: the targets, judged round by round (``paired``)."""
    ref = "Kamailio sl" if stateless else "the faster reference"

    def cell(values: list[float], median: float | None, met: bool | None) -> tuple[str, str]:
        each = " · ".join(f"{v:.2f}" for v in values) or "—"
        mark = "" if met is None else (" ✓" if met else " ✗")
        return each, ("—" if median is None else f"{median:.3f}{mark}")

    rows = [
        f"| flow | transport | clean ÷ {ref}, each round | median (≥ {CLEAN_TARGET:g}) "
        f"| CPU µs/call ÷ Kamailio's, each round | median (≤ {CPU_TARGET:g}) |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for p in pairs:
        clean = cell(p["clean_ratios"], p["clean_median"], p["clean_met"])
        cpu = cell(p["cpu_ratios"], p["cpu_median"], p["cpu_met"])
        rows.append(
            f"| {p['flow']} | {p['transport']} | {clean[0]} | {clean[1]} | {cpu[0]} | {cpu[1]} |"
        )
    return "\n".join(rows)


# --------------------------------------------------------------------------- main


def _csv(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    for item in items:
        if item not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {item!r} (use {', '.join(allowed)})")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env_seconds = os.environ.get("BENCH_SECONDS")
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="SIPp against the responder, SIPp's UAS and Kamailio (when installed).",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=float(env_seconds) if env_seconds else None,
        help="length of each SIPp run (default 3, or $BENCH_SECONDS; --quick: 1.5)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="open-loop runs per cell (default 4; quick 2)"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=None,
        help="failed open-loop runs per cell repeated once at their rate (default 1; quick 0)",
    )
    p.add_argument("--quick", action="store_true", help="shorter runs, fewer steps")
    p.add_argument(
        "--targets",
        type=lambda v: _csv(v, TARGETS, "target"),
        default=None,
        help="comma-separated: responder,sipp-uas,kamailio (default all)",
    )
    p.add_argument(
        "--flows",
        type=lambda v: _csv(v, tuple(FLOWS), "flow"),
        default=None,
        help="comma-separated: options,busy,call (default all; --scaling: busy)",
    )
    p.add_argument(
        "--transports",
        type=lambda v: _csv(v, tuple(TRANSPORTS), "transport"),
        default=list(TRANSPORTS),
        help="comma-separated: udp,tcp",
    )
    p.add_argument(
        "--scaling",
        action="store_true",
        help="instead: the responder with each of --workers, SIPp with one socket per "
        "call (-t un, -t tn); JSON in bench/results/scaling.json",
    )
    p.add_argument(
        "--workers",
        type=parse_workers,
        default=[1, 2],
        help="worker counts for --scaling (default 1,2)",
    )
    p.add_argument("--limit", type=int, default=1000, help="SIPp -l in the ceiling run (1000)")
    p.add_argument("--buff-size", type=int, default=4 * 1024 * 1024, help="SIPp -buff_size")
    p.add_argument(
        "--max-socket",
        type=int,
        default=1024,
        help="SIPp -max_socket (1024): with --scaling, the sockets SIPp opens, then reuses",
    )
    p.add_argument("--recv-timeout", type=int, default=2000, help="SIPp -recv_timeout, ms (2000)")
    p.add_argument("--sipp", default=shutil.which("sipp"), help="the sipp binary")
    p.add_argument(
        "--kamailio",
        default=os.environ.get("KAMAILIO") or shutil.which("kamailio"),
        help="the kamailio binary (default: kamailio on PATH, or $KAMAILIO)",
    )
    p.add_argument(
        "--kamailio-modules",
        default=os.environ.get("KAMAILIO_MODULES"),
        help="Kamailio's module directory (-L), when not the built-in one",
    )
    p.add_argument(
        "--kamailio-shm", type=int, default=2048, help="Kamailio shared memory, MiB (-m)"
    )
    p.add_argument(
        "--responder-args",
        default="",
        help="extra flags for the responder, e.g. '--log-level WARNING' (default none)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the results (default bench/results/latest.json; "
        "--scaling: bench/results/scaling.json; --stateless: bench/results/stateless.json)",
    )
    p.add_argument(
        "--stateless",
        action="store_true",
        help="every target does the stateless duties of RFC 3261 §8.2.7 (final response "
        "only, never resent, ACK ignored); JSON in bench/results/stateless.json",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir of SIPp traces")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every cell this many times, the targets taking turns; the table "
        "shows each cell's median round (default 1)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no new measurement after this long (default 12 a round)",
    )
    p.add_argument(
        "--sustain",
        type=float,
        default=None,
        metavar="SECONDS",
        help="instead: SECONDS at --sustain-share of the ceiling (a --seconds run, 10 by "
        "default) for the busy and full call (or --flows) over --transports; no 503, no "
        "failed call, RSS flat (bench/sustain.py). The responder alone unless --targets "
        "names the references too; JSON in bench/results/sustain.json",
    )
    p.add_argument(
        "--sustain-share",
        type=float,
        default=0.95,
        help="with --sustain: the open-loop rate as a share of the ceiling (0.95)",
    )
    p.add_argument(
        "--sustain-growth",
        type=float,
        default=0.10,
        help="with --sustain: the RSS growth allowed from 10 s to the end (0.10)",
    )
    args = p.parse_args(argv)
    args.flows_given = args.flows is not None
    if args.sustain is not None:
        if not 15 <= args.sustain <= 3600:
            p.error("--sustain: give 15 to 3600 seconds (RSS is first taken at 10 s)")
        if not 0 < args.sustain_share <= 2:
            p.error("--sustain-share: give a share above 0, up to 2")
        if args.scaling or args.stateless:
            p.error("--sustain: no --scaling or --stateless")
        if args.targets is None:
            args.targets = ["responder"]  # the references only when asked for, as controls
        if args.seconds is None:
            args.seconds = 10.0  # the ceiling of a run long enough to be held, not a burst
    if args.seconds is None:
        args.seconds = 1.5 if args.quick else 3.0
    if args.steps is None:
        # Four: 0.85 x ceiling, 1.4x up or 0.6x down, then two halvings; the highest
        # clean and the lowest failing rate end 6-9 % of the ceiling apart (three: 12-17 %).
        args.steps = 2 if args.quick else 4
    if args.retries is None:
        args.retries = 0 if args.quick else 1
    if not 0.5 <= args.seconds <= 60:
        p.error("--seconds: between 0.5 and 60")
    if not 0 <= args.steps <= 10:
        p.error("--steps: between 0 and 10")
    if not 0 <= args.retries <= 10:
        p.error("--retries: between 0 and 10")
    if not 1 <= args.rounds <= 9:
        p.error("--rounds: between 1 and 9")
    if args.max_minutes is None:
        args.max_minutes = 12.0 * args.rounds
    if not 1 <= args.limit <= 100_000:
        p.error("--limit: between 1 and 100000")
    if args.scaling and args.targets is not None:
        p.error("--scaling measures the responder only: no --targets")
    if args.scaling and args.stateless:
        p.error("--scaling and --stateless: one at a time")
    if args.scaling and "tcp" in args.transports and args.max_socket < args.limit:
        # SIPp 3.6.1 -t tn quits (broken pipe, exit 255) once more calls are in flight
        # than it may open connections.
        p.error("--scaling over TCP: --max-socket at least --limit")
    if args.targets is None:
        args.targets = [] if args.scaling else list(TARGETS)
    if args.flows is None:
        args.flows = ["busy"] if args.scaling else list(FLOWS)
    if args.json is None:
        name = (
            "sustain"
            if args.sustain is not None
            else "scaling"
            if args.scaling
            else "stateless"
            if args.stateless
            else "latest"
        )
        args.json = BENCH / "results" / f"{name}.json"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.sipp:
        print("bench: sipp is not installed (make sipp installs it)", file=sys.stderr)
        return 2
    began = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    workdir = Path(tempfile.mkdtemp(prefix="sipresponder-bench-"))
    settings = Settings(
        seconds=args.seconds,
        steps=args.steps,
        retries=args.retries,
        limit=args.limit,
        buff_size=args.buff_size,
        max_socket=args.max_socket,
        recv_timeout_ms=args.recv_timeout,
        sipp=args.sipp,
        kamailio=args.kamailio,
        kamailio_modules=args.kamailio_modules,
        kamailio_shm=args.kamailio_shm,
        responder_args=shlex.split(args.responder_args),
        workdir=workdir,
        stateless=args.stateless,
    )
    targets: dict[str, Target] = {
        "responder": Responder(settings),
        "sipp-uas": SippUas(settings),
        "kamailio": Kamailio(settings),
    }
    atexit.register(_stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)

    def log(line: str) -> None:
        print(line, flush=True)

    machine = machine_info(settings, targets)
    if args.sustain is not None:
        return _sustain(args, settings, machine, started_at, began, log)
    # (target, flow, transport, SIPp's -t), in the order measured.
    plan: list[tuple[Target, Flow, str, str]] = []
    for flow_name in args.flows:
        for transport in args.transports:
            plan += [
                (targets[name], FLOWS[flow_name], transport, TRANSPORTS[transport])
                for name in args.targets
            ]
            if args.scaling:
                mode = MULTI_SOCKET[transport]
                plan += [
                    (Responder(settings, workers=n), FLOWS[flow_name], transport, mode)
                    for n in args.workers
                ]
    per_cell = 1.0 + (args.seconds + 1.0) * (1 + args.steps + args.retries)
    rounds = args.rounds
    log(
        f"bench: {len(plan)} measurements{f' x {rounds} rounds' if rounds > 1 else ''}, each "
        f"a {args.seconds:g} s ceiling run and up to {args.steps + args.retries} open-loop "
        f"runs; at most {rounds * len(plan) * per_cell / 60:.1f} min (traces in {workdir})"
    )

    def one_cell(target: Target, flow: Flow, transport: str, mode: str, turn: str) -> Cell:
        workers = getattr(target, "workers", None)
        cell = Cell(target.name, flow.name, transport, sipp_mode=mode, workers=workers)
        if target.name == "kamailio" and not settings.kamailio:
            cell.status = "not installed"
        elif time.monotonic() - began > args.max_minutes * 60:
            cell.status = "skipped"
            cell.error = f"past --max-minutes {args.max_minutes:g}"
        else:
            how = "" if workers is None else f" --workers {workers}, SIPp -t {mode}"
            log(f"{target.name}{how} · {flow.describe(args.stateless)} · {transport}{turn}")
            cell = measure(settings, target, flow, transport, log, mode)
            if cell.status != "ok":
                log(f"  {cell.status}: {cell.error}")
        return cell

    #: Each cell of the plan as each round measured it.
    measured: list[list[Cell]] = [[] for _ in plan]
    try:
        for rnd in range(rounds):
            turn = f" (round {rnd + 1} of {rounds})" if rounds > 1 else ""
            for i, (target, flow, transport, mode) in enumerate(plan):
                measured[i].append(one_cell(target, flow, transport, mode, turn))
    except KeyboardInterrupt:
        log("bench: interrupted; reporting what was measured")
    finally:
        _stop_all()
    #: Each round's cells, in the order measured.
    rounds_measured = [[done[rnd] for done in measured if len(done) > rnd] for rnd in range(rounds)]
    cells: list[Cell] = []
    scaling: list[Cell] = []
    for done_cells in measured:
        if done_cells:
            cell = median_cell(done_cells)
            (cells if cell.workers is None else scaling).append(cell)
    duration = time.monotonic() - began
    result = {
        **_result_head(started_at, duration, machine),
        "stateless": args.stateless,
        "settings": {
            "seconds": args.seconds,
            "steps": args.steps,
            "retries": args.retries,
            "rounds": args.rounds,
            "limit": args.limit,
            "buff_size": args.buff_size,
            "max_socket": args.max_socket,
            "recv_timeout_ms": args.recv_timeout,
            "kamailio_shm_mib": args.kamailio_shm,
            "responder_args": settings.responder_args,
        },
        "results": [c.to_dict() for c in cells],
        "ratios": ratios(cells),
        # The targets judged round by round (the references measured in the same round).
        "targets": paired(rounds_measured, args.stateless),
        # --scaling: the responder with each of --workers, SIPp with a socket per call.
        "scaling": {
            "workers": args.workers,
            "sipp_modes": {t: MULTI_SOCKET[t] for t in args.transports},
            "results": [c.to_dict() for c in scaling],
            "speedups": speedups(scaling),
        }
        if args.scaling
        else None,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print()
    if args.stateless:
        print(table_title(args.stateless))
        print()
    if cells:
        print(table(cells))
        print()
    pairs = result["targets"]
    if pairs and any(p["clean_ratios"] or p["cpu_ratios"] for p in pairs):
        print(
            f"Targets: clean rate ≥ {CLEAN_TARGET:g}× the faster reference's, CPU per call "
            f"≤ {CPU_TARGET:g}× Kamailio's, each round's ratio from targets measured back to "
            "back, then the median over the rounds:"
        )
        print()
        print(paired_table(pairs, args.stateless))
        print()
    if scaling:
        print(scaling_table(scaling))
        print()
    m = machine
    print(
        f"{m['nproc']} × {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}, "
        f"SIPp {m['sipp']}, Kamailio {m['kamailio'] or 'not installed'}, "
        f"sipresponder {m['sipresponder']} ({m['commit']}), uvloop "
        f"{m['uvloop_installed'] or 'not installed'}"
    )
    print(legend(args.limit, args.seconds))
    if rounds > 1:
        print(
            f"rounds: every cell measured {rounds} times, the targets taking turns; each "
            "row is its median round by clean rate (every round's figures in the JSON)."
        )
    if scaling:
        print(scaling_legend(args.max_socket))
    done = cells + scaling
    print(f"{len(done)} measurements in {duration:.0f} s; JSON in {_rel(args.json)}")
    if args.keep:
        print(f"traces kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(c.status in ("ok", "not installed") for c in done) else 1


def _result_head(started_at: str, duration: float, machine: dict[str, Any]) -> dict[str, Any]:
    """What every results file opens with: when, how long, the command, the machine."""
    return {
        "schema": 1,
        "started": started_at,
        "duration_s": round(duration, 1),
        "command": " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]),
        "machine": machine,
    }


def _sustain(
    args: argparse.Namespace,
    settings: Settings,
    machine: dict[str, Any],
    started_at: str,
    began: float,
    log: Callable[[str], None],
) -> int:
    """``--sustain``: bench/sustain.py's cells, with this module as its harness."""
    import sustain  # bench/sustain.py, beside this script (sys.path[0] when it runs)

    try:
        status, part = sustain.main(sys.modules[__name__], args, settings, log)
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130
    finally:
        _stop_all()
    duration = time.monotonic() - began
    result = {**_result_head(started_at, duration, machine), "sustain": part}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    log(f"{len(part['cells'])} cells in {duration:.0f} s; JSON in {_rel(args.json)}")
    if not args.keep:
        shutil.rmtree(settings.workdir, ignore_errors=True)
    return status


def _rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
