"""The benchmark's report: tables, legends, ratios, the targets judged, the machine.

It takes measured cells (harness_sipp) and returns Markdown text or dicts for the JSON:
the table of targets, the table of worker counts (``--scaling``), the responder's ratios
to the references and the targets of the throughput work judged round by round
(``paired``), and the description of the machine and versions.  It prints nothing.
Standard library only; of its sibling modules, it imports harness_parse,
harness_targets and harness_sipp.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

from harness_parse import fmt_int, fmt_pcts, fmt_ratio, ratio
from harness_sipp import DISTURBED, Cell
from harness_targets import BENCH, Settings, Target

ROOT = BENCH.parent
#: SIPp's CPU share (of one core) from which a rate is marked as SIPp's limit too.
CLIENT_BOUND = 90


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
