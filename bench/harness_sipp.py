"""SIPp as the client: one run against a target, and one cell of the table.

A run is SIPp's command line, started and bounded by deadlines, its statistics file read
back with the target's CPU time over the run (``ClientRun``).  A cell is one target x flow
x transport: the closed-loop ceiling run, then the open-loop search for the highest clean
rate (``next_rate``, ``search``), each run on a freshly started target (``measure``), and
of several rounds the median one (``median_cell``).  Standard library only; of its
sibling modules, it imports harness_parse, harness_procs and harness_targets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness_parse import (
    cpu_pcts,
    fmt_int,
    fmt_pcts,
    parse_stat_csv,
    parse_stat_rows,
    per_period,
    rate_between,
    stat_epoch,
    stat_int,
)
from harness_procs import LOOPBACK, free_port, listen_overflows, machine_busy, reap, spawn, stop
from harness_targets import SCENARIOS, TRANSPORTS, Flow, Settings, Target, TargetError, pinned

#: SIPp's -r in a closed-loop run: far above what any target serves, so that -l bounds it.
CEILING_RATE = 100_000
#: CPU used by the rest of the machine (% of one core) from which a run is disturbed.
DISTURBED = 15


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
    #: Calls completed in each second (SIPp's ``SuccessfulCall(P)``, ``-fd 1``).
    per_second: list[int] = field(default_factory=list)
    #: Calls completed per second before and from ``steady_after`` s on (``run_client``),
    #: if asked.
    warm_up_rate: float | None = None
    steady_rate: float | None = None

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
    return pinned(s, 1, cmd)


def run_ceiling(
    settings: Settings,
    target: Target,
    flow: Flow,
    sipp_mode: str,
    tag: str,
    duration: float | None = None,
    steady_after: float | None = None,
) -> ClientRun:
    """The closed-loop ceiling run: far more calls asked for than can be served, at most
    ``--limit`` in flight, for ``duration`` (``--seconds``)."""
    s = settings
    return run_client(
        s,
        target,
        flow,
        sipp_mode,
        tag,
        rate=CEILING_RATE,
        limit=s.limit,
        calls=None,
        duration=s.seconds if duration is None else duration,
        steady_after=steady_after,
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
    steady_after: float | None = None,
) -> ClientRun:
    """Run SIPp against ``target``: for ``duration`` (then SIGUSR1, which stops new calls
    and waits for the rest) or until ``calls`` calls are done.  Bounded either way.  With
    ``steady_after``, the run's ``warm_up_rate`` and ``steady_rate`` are its rates before
    and from that second."""
    s = settings
    stat_file = stat_path(s, tag)
    cmd = client_command(s, flow, target.port, sipp_mode, tag, rate=rate, limit=limit, calls=calls)
    cpu_before = target.cpu_split()
    busy_before = machine_busy()
    overflows_before = listen_overflows()
    errors: IO[bytes]
    with open(s.workdir / f"{tag}.sipp.err", "wb") as errors:
        proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
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
        stat_text = stat_file.read_text(errors="replace")
    except OSError:
        stat_text = ""
    stat = parse_stat_csv(stat_text)
    rows = parse_stat_rows(stat_text)
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
        per_second=per_period(rows, "SuccessfulCall(P)"),
    )
    if steady_after is not None:
        run.warm_up_rate = rate_between(rows, 0.0, steady_after)
        run.steady_rate = rate_between(rows, steady_after)
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
