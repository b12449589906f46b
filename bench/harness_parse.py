"""Reading what SIPp, the responder and /proc write; the small pure helpers of the figures.

Part of the benchmark harness (bench/run.py): SIPp's ``-trace_stat`` file, the
responder's ``listening`` lines, /proc/PID/stat, /proc/PID/status and /proc/net/netstat
go in as text and come out as numbers; ratios, CPU shares and the formats of the tables'
figures.  No I/O and no clock here: every function takes text or numbers.  Standard
library only; it imports none of its sibling modules.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence


def parse_stat_csv(text: str) -> dict[str, str]:
    """The last row of SIPp's ``-trace_stat`` file, by column name ('' when empty)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    header = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(header, values, strict=False))


def parse_stat_rows(text: str) -> list[dict[str, str]]:
    """Every row of SIPp's ``-trace_stat`` file (one per ``-fd`` period), by column name."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return []
    header = lines[0].rstrip(";").split(";")
    return [dict(zip(header, line.rstrip(";").split(";"), strict=False)) for line in lines[1:]]


def rate_between(
    rows: Sequence[dict[str, str]], start: float, end: float = float("inf")
) -> float | None:
    """Calls completed per second between ``start`` and ``end`` seconds into the run: the
    cumulative ``SuccessfulCall(C)`` of the first row at or past ``start`` (the run's
    start itself, with none done, for 0) and of the last row at or before ``end``, over
    the time between them (None: no two such rows)."""
    timed = [(0.0, 0)]
    for row in rows:
        with contextlib.suppress(KeyError, ValueError, IndexError):
            elapsed = stat_epoch(row["CurrentTime"]) - stat_epoch(row["StartTime"])
            timed.append((elapsed, stat_int(row, "SuccessfulCall(C)")))
    first = next((t for t in timed if t[0] >= start), None)
    last = next((t for t in reversed(timed) if t[0] <= end), None)
    if first is None or last is None or last[0] <= first[0]:
        return None
    return (last[1] - first[1]) / (last[0] - first[0])


def per_period(rows: Sequence[dict[str, str]], column: str) -> list[int]:
    """A periodic column (``SuccessfulCall(P)``...) of every row: its value each period."""
    return [stat_int(row, column) for row in rows]


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


def parse_udp_drops(text: str, port: int) -> int:
    """Datagrams dropped for a full receive buffer by the UDP sockets bound to ``port``,
    from a /proc/net/udp (or udp6) text: the last column, ``drops``, of their rows."""
    total = 0
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        local = fields[1]
        with contextlib.suppress(ValueError):
            if int(local.rsplit(":", 1)[1], 16) == port:
                total += int(fields[-1])
    return total


def parse_vmhwm(text: str) -> int:
    """VmHWM in KiB from /proc/PID/status (0 when absent, e.g. a zombie)."""
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


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


def cpu_pcts(split: Sequence[float], elapsed: float) -> list[float]:
    """CPU seconds of each process over a run -> % of one core each."""
    return [100 * cpu / elapsed for cpu in split] if elapsed > 0 else []


def fmt_pcts(pcts: Sequence[float]) -> str:
    return " · ".join(f"{p:.0f}" for p in pcts) if pcts else "—"
