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

This script keeps the options (``parse_args``) and the course of a run (``main``); the
harness itself is split by concern into modules beside it, which it and they import as
top-level modules (``python bench/run.py`` puts bench/ first on sys.path; bench/ is no
package): harness_parse (SIPp's and /proc's outputs read, the figures' pure helpers),
harness_procs (the processes started and /proc), harness_targets (flows, transports,
targets), harness_sipp (SIPp's runs and the cells) and harness_report (tables, ratios,
the machine).  ``--sustain`` is bench/sustain.py's.

Uses the standard library only; sipresponder is looked at for its version, nothing else.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness_procs import interrupt, stop_all
from harness_report import (
    CLEAN_TARGET,
    CPU_TARGET,
    legend,
    machine_info,
    paired,
    paired_table,
    ratios,
    scaling_legend,
    scaling_table,
    speedups,
    table,
    table_title,
)
from harness_sipp import Cell, measure, median_cell
from harness_targets import (
    BENCH,
    DEFAULT_TRANSPORTS,
    FLOWS,
    MULTI_SOCKET,
    TARGETS,
    TRANSPORTS,
    Flow,
    Kamailio,
    Responder,
    Settings,
    SippUas,
    Target,
)

#: SIPp's -buff_size with --sustain: 32 MiB.
SUSTAIN_BUFF_SIZE = 32 << 20


def _csv(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    for item in items:
        if item not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {item!r} (use {', '.join(allowed)})")
    return items


def parse_workers(value: str) -> list[int]:
    """``1,2`` -> [1, 2]: worker counts for --scaling, each 1 to 64, sorted, once each."""
    try:
        counts = {int(v) for v in value.split(",") if v.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {value!r}") from None
    if not counts or not all(1 <= n <= 64 for n in counts):
        raise argparse.ArgumentTypeError(f"worker counts from 1 to 64, e.g. 1,2: {value!r}")
    return sorted(counts)


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
        default=list(DEFAULT_TRANSPORTS),
        help="comma-separated: udp,tcp (the default), tls (SIPp over TCP through a stunnel "
        "client; needs stunnel4, and kamailio-tls-modules for Kamailio)",
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
    p.add_argument(
        "--buff-size",
        type=int,
        default=None,
        help="SIPp -buff_size (4 MiB; with --sustain 32 MiB), capped at net.core.rmem_max",
    )
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
        help="instead: SECONDS at --sustain-share of the ceiling (a closed-loop run as long, "
        "its rate from the 10th second on) for the busy and full call (or --flows) over "
        "--transports; no 503, no "
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
    p.add_argument(
        "--pin",
        action="store_true",
        help="the target on CPU 0 and SIPp on CPU 1 (taskset), so that the scheduler moves "
        "neither onto the other's core: to see whether that matters (on the 2-core "
        "reference machine it did not)",
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
        # The ceiling of a run as long as the one to hold, not of a burst: --seconds and
        # $BENCH_SECONDS do not apply.
        args.seconds = args.sustain
        if args.buff_size is None:
            # SIPp's receive buffer rides out SIPp's own pauses (its dead calls expire in
            # bursts from 33 s on): at 40,000 busy calls/s, 4 MiB held 55 ms of answers,
            # and a longer pause lost some.
            args.buff_size = SUSTAIN_BUFF_SIZE
    if args.buff_size is None:
        args.buff_size = 4 << 20
    if args.seconds is None:
        args.seconds = 1.5 if args.quick else 3.0
    if args.steps is None:
        # Four: 0.85 x ceiling, 1.4x up or 0.6x down, then two halvings; the highest
        # clean and the lowest failing rate end 6-9 % of the ceiling apart (three: 12-17 %).
        args.steps = 2 if args.quick else 4
    if args.retries is None:
        args.retries = 0 if args.quick else 1
    if args.sustain is None and not 0.5 <= args.seconds <= 60:
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
        pin=args.pin,
    )
    targets: dict[str, Target] = {
        "responder": Responder(settings),
        "sipp-uas": SippUas(settings),
        "kamailio": Kamailio(settings),
    }
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)

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
        stop_all()
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
    """``--sustain``: bench/sustain.py's cells."""
    import sustain  # bench/sustain.py, beside this script (sys.path[0] when it runs)

    try:
        status, part = sustain.main(args, settings, log)
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130
    finally:
        stop_all()
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
