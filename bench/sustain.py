"""``bench/run.py --sustain SECONDS``: hold 0.95x the ceiling for minutes, not seconds.

The cells of ``make bench`` run for 3 s: too short to meet what builds up over a load
test that runs for minutes (transactions held through Timer I, absorbers, the journal).
For each flow x transport (default: the busy call and the full call, UDP and TCP), on a
freshly started responder each time:

1. the closed-loop ceiling, as ``make bench`` measures it, but as long as the sustained
   run and counted from its 10th second (``SETTLED``) on: what the pair of processes holds
   once both are warm, not what they do in their first seconds (the absorber tables fill
   over the first 5–10 s, SIPp's dead calls start to expire at 33 s, and either slows the
   pair by some per cent; a 10 s ceiling read 3–10 % above the steady one);
2. an open-loop run at ``--sustain-share`` (0.95) of that ceiling for SECONDS
   (``-r R -m R*SECONDS``), the responder's resident memory (VmRSS) sampled every second.

A cell holds when every call completed (none failed, no unexpected message, SIPp kept
the pace), the responder answered no 503, and its RSS at the end is within
``--sustain-growth`` (10 %) of its RSS at 10 s.  The 503s are counted from the
responder's own log (its per-transaction lines and per-second summaries at INFO, the
default), so a 503 is seen even where SIPp would count the call as failed for another
reason.  ``--targets`` adds SIPp's UAS and Kamailio under the same protocol, as controls
of what the machine and SIPp sustain at all (their 503 count is 0: not read).  Prints a
Markdown table; JSON in bench/results/sustain.json.

Imported by ``bench/run.py``; the targets, SIPp's runs and the flows are the harness's
(harness_targets, harness_sipp, imported as top-level modules beside it).  Standard
library only.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness_procs import rmem_max, udp_rcvbuf_errors, udp_socket_drops
from harness_sipp import run_ceiling, run_client
from harness_targets import FLOWS as HARNESS_FLOWS
from harness_targets import TRANSPORTS, Kamailio, Responder, Settings, SippUas, Target, TargetError

#: The flows a sustained run measures by default: those that keep per-call state.
FLOWS = ("busy", "call")
#: When the first RSS figure is taken, in seconds after the open-loop run started.
SETTLED = 10.0
_SUMMARY = re.compile(r"summary: \d+ transactions in 1 s \([^)]*\): (.*)$")
_SUMMARY_ITEM = re.compile(r"(\S+) (\d+|-): (\d+)")
_LINE_503 = re.compile(r" -> (?:\d+ )*503$")


def count_503(log_text: str) -> int:
    """503 answers in a responder log: its lines per transaction (``INVITE sip:... from
    ... -> 100 503``) and its summaries of busy seconds (``INVITE 503: 12``)."""
    total = 0
    for line in log_text.splitlines():
        summary = _SUMMARY.search(line)
        if summary is not None:
            total += sum(
                int(n) for _, code, n in _SUMMARY_ITEM.findall(summary.group(1)) if code == "503"
            )
        elif _LINE_503.search(line):
            total += 1
    return total


def vmrss_kib(text: str) -> int:
    """VmRSS from a /proc/PID/status text (0 when missing)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """Samples one process's VmRSS about once a second in a thread, until ``stop``."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        #: (seconds since ``start``, VmRSS in KiB)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._began = 0.0

    def start(self) -> None:
        self._began = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        for _ in range(100_000):  # bounded: a day of samples at most
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            self.samples.append((time.monotonic() - self._began, vmrss_kib(text)))
            if self._stop.wait(self.interval):
                return

    def at(self, seconds: float) -> int | None:
        """The first sample taken at or after ``seconds`` (None: none that late)."""
        for t, kib in self.samples:
            if t >= seconds:
                return kib
        return None

    def last(self, before: float = float("inf")) -> int | None:
        """The last sample taken at or before ``before`` seconds (None: none)."""
        for t, kib in reversed(self.samples):
            if t <= before:
                return kib
        return None


@dataclass
class SustainCell:
    flow: str
    transport: str
    target: str = "responder"
    status: str = "ok"  # ok | error
    error: str = ""
    ceiling: float | None = None  # closed-loop calls/s from SETTLED s to the end
    ceiling_first: float | None = None  # closed-loop calls/s in its first SETTLED s
    rate: float | None = None  # the open-loop rate asked for
    seconds: float = 0.0  # the open-loop run's length as SIPp measured it
    calls: int = 0  # asked for (-m)
    successful: int = 0
    failed: int = 0
    unexpected: int = 0
    answered_503: int = 0
    #: Times the responder began shedding load for a lagging event loop (its WARNING):
    #: a 503 then says the process fell behind, not that a table was full.
    overload_episodes: int = 0
    rss_settled_kib: int | None = None  # at SETTLED s
    rss_end_kib: int | None = None
    kept_pace: bool = False
    note: str = ""
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    #: Over UDP: datagrams the sustained run lost in full receive buffers, the target's
    #: own sockets' and the whole machine's (SIPp's among them).
    udp_drops_target: int = 0
    udp_drops_machine: int = 0
    #: Calls completed each second: of the ceiling run, of the sustained run.
    ceiling_per_second: list[int] = field(default_factory=list)
    per_second: list[int] = field(default_factory=list)

    @property
    def growth(self) -> float | None:
        """RSS at the end over RSS at SETTLED s, minus one."""
        if not self.rss_settled_kib or self.rss_end_kib is None:
            return None
        return self.rss_end_kib / self.rss_settled_kib - 1

    def holds(self, max_growth: float) -> bool:
        growth = self.growth
        return (
            self.status == "ok"
            and self.kept_pace
            and self.calls > 0
            and self.successful == self.calls
            and self.failed == 0
            and self.unexpected == 0
            and self.answered_503 == 0
            and growth is not None
            and growth <= max_growth
        )

    def to_dict(self, max_growth: float) -> dict[str, Any]:
        d = asdict(self)
        d["rss_growth"] = self.growth
        d["holds"] = self.holds(max_growth)
        return d


#: The targets, by name: the responder, and the references as controls (what this machine
#: and SIPp can sustain at all).
TARGET_CLASSES: dict[str, Callable[[Settings], Target]] = {
    "responder": Responder,
    "sipp-uas": SippUas,
    "kamailio": Kamailio,
}


def measure(
    settings: Any,
    flow: Any,
    transport: str,
    seconds: float,
    share: float,
    log: Any,
    target_name: str = "responder",
) -> SustainCell:
    """The ceiling, then ``seconds`` at ``share`` of it, each on a fresh responder."""
    cell = SustainCell(flow.name, transport, target=target_name)
    target = TARGET_CLASSES[target_name](settings)
    mode = TRANSPORTS[transport]
    tag = f"sustain-{target_name}-{flow.name}-{transport}"
    s = settings
    try:
        target.start(flow, transport, f"{tag}-ceiling")
        ceiling = run_ceiling(
            s, target, flow, mode, f"{tag}-ceiling", duration=seconds, steady_after=SETTLED
        )
        target.stop()
        cell.ceiling = ceiling.steady_rate if ceiling.successful else None
        cell.ceiling_first = ceiling.warm_up_rate
        cell.ceiling_per_second = ceiling.per_second
        log(
            f"  ceiling {cell.ceiling or 0:8,.0f}/s from {SETTLED:g} s to {seconds:g} s "
            f"({cell.ceiling_first or 0:,.0f}/s before){' ' + ceiling.note if ceiling.note else ''}"
        )
        if not cell.ceiling:
            cell.status, cell.error = "error", "no call completed in the ceiling run"
            return cell
        rate = cell.rate = round(cell.ceiling * share)
        cell.calls = max(1, round(rate * seconds))
        target.start(flow, transport, tag)
        drops_before = udp_rcvbuf_errors()
        sampler = RssSampler(target.pids[0])
        sampler.start()
        try:
            run = run_client(
                s,
                target,
                flow,
                mode,
                tag,
                rate=rate,
                limit=max(s.limit, round(rate * (s.recv_timeout_ms / 1000 + 1))),
                calls=cell.calls,
                duration=seconds,
            )
        finally:
            sampler.stop()
        alive = target.alive()
        if transport == "udp":  # read while the target's socket is open
            cell.udp_drops_target = udp_socket_drops(target.port)
            cell.udp_drops_machine = udp_rcvbuf_errors() - drops_before
        target.stop()
        cell.seconds = run.elapsed
        cell.per_second = run.per_second
        cell.successful, cell.failed, cell.unexpected = run.successful, run.failed, run.unexpected
        cell.kept_pace = run.elapsed <= seconds * 1.15 + 0.5 and run.exit_code == 0
        cell.note = run.note
        cell.rss_samples = sampler.samples
        cell.rss_settled_kib = sampler.at(SETTLED)
        # The last sample under load: not one taken while SIPp waited for the last calls.
        cell.rss_end_kib = sampler.last(before=seconds)
        if target_name == "responder":
            assert target.log is not None
            text = target.log.read_text(errors="replace")
            cell.answered_503 = count_503(text)
            cell.overload_episodes = text.count("overloaded (the event loop lags")
        if not alive:
            cell.status, cell.error = "error", "the responder died"
    except (TargetError, OSError) as exc:
        cell.status, cell.error = "error", str(exc)
    finally:
        target.stop()
    return cell


def _drops(cell: SustainCell) -> str:
    return (
        f", UDP datagrams lost in full buffers: {cell.udp_drops_target:,} by the target, "
        f"{cell.udp_drops_machine:,} on the machine"
    )


def _mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.0f}"


def table(cells: list[SustainCell], max_growth: float) -> str:
    rows = [
        "| target | flow | transport | ceiling (calls/s) | rate (calls/s) | seconds | calls ok "
        "| failed | 503 | RSS at 10 s (MiB) | RSS at end (MiB) | growth | holds |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for c in cells:
        growth = c.growth
        rows.append(
            f"| {c.target} | {c.flow} | {c.transport} | {c.ceiling or 0:,.0f} | {c.rate or 0:,.0f} "
            f"| {c.seconds:.1f} | {c.successful:,} of {c.calls:,} | {c.failed + c.unexpected:,} "
            f"| {c.answered_503:,} | {_mib(c.rss_settled_kib)} | {_mib(c.rss_end_kib)} "
            f"| {'–' if growth is None else f'{growth:+.1%}'} "
            f"| {'✓' if c.holds(max_growth) else '✗ ' + (c.error or c.note or 'see JSON')} |"
        )
    return "\n".join(rows)


def main(args: Any, settings: Any, log: Any) -> tuple[int, dict[str, Any]]:
    """Every flow x transport asked for; -> (exit status, the JSON's ``sustain`` part)."""
    flows = args.flows if args.flows_given else list(FLOWS)
    cells: list[SustainCell] = []
    count = len(flows) * len(args.transports) * len(args.targets)
    log(
        f"bench --sustain: {count} cells, each a {args.sustain:g} s ceiling run (its rate "
        f"from {SETTLED:g} s on), then {args.sustain:g} s at {args.sustain_share:g}x it"
    )
    cap = rmem_max()
    if cap is not None and cap < settings.buff_size:
        log(
            f"SIPp's -buff_size {settings.buff_size} is capped at net.core.rmem_max {cap}: "
            f"sudo sysctl -w net.core.rmem_max={settings.buff_size} lets it have it"
        )
    for name in flows:
        flow = HARNESS_FLOWS[name]
        for transport in args.transports:
            for target in args.targets:
                if target == "kamailio" and not settings.kamailio:
                    log(f"{target}: not installed")
                    continue
                log(f"{target} · {flow.describe()} · {transport}")
                cell = measure(
                    settings,
                    flow,
                    transport,
                    args.sustain,
                    args.sustain_share,
                    log,
                    target,
                )
                cells.append(cell)
                growth = cell.growth
                log(
                    f"  {cell.rate or 0:,.0f}/s for {cell.seconds:.1f} s: {cell.successful:,} "
                    f"of {cell.calls:,} ok, {cell.failed} failed, {cell.unexpected} unexpected, "
                    f"{cell.answered_503} answered 503 ({cell.overload_episodes} times shedding "
                    f"for lag), RSS {_mib(cell.rss_settled_kib)} → "
                    f"{_mib(cell.rss_end_kib)} MiB"
                    f"{'' if growth is None else f' ({growth:+.1%})'}"
                    f"{_drops(cell) if transport == 'udp' else ''}"
                    f"{' ' + cell.error if cell.error else ''}"
                )
    print()
    print(table(cells, args.sustain_growth))
    print()
    print(
        f"rate: {args.sustain_share:g}x the closed-loop ceiling (SIPp -l {settings.limit}, "
        f"{args.sustain:g} s, its rate from {SETTLED:g} s on); holds: every call completed, "
        f"no 503, RSS at the end within {args.sustain_growth:.0%} of RSS at {SETTLED:g} s"
    )
    held = all(c.holds(args.sustain_growth) for c in cells)
    return (0 if held else 1), {
        "seconds": args.sustain,
        "share": args.sustain_share,
        "max_growth": args.sustain_growth,
        "cells": [c.to_dict(args.sustain_growth) for c in cells],
        "holds": held,
    }
