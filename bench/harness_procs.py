"""The processes the benchmark harness starts, and what it reads of the machine.

Every process is started by ``spawn`` and remembered by its PID until it is reaped or
stopped, so that ``stop_all`` (at exit, or on SIGTERM and SIGHUP through ``interrupt``)
stops each of them by its own PID, never by name; every wait has a deadline.  /proc is
read here (a process tree's CPU time and peak RSS, bound ports, the machine's busy time,
TCP accept-queue overflows) and its text parsed by harness_parse.  Standard library only;
of its sibling modules, it imports harness_parse alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness_parse import parse_netstat, parse_proc_stat, parse_udp_drops, parse_vmhwm

LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

_started: dict[int, subprocess.Popen[bytes]] = {}


def spawn(cmd: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
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


def _kernel_counter(path: str, name: str) -> int:
    """One counter of /proc/net/netstat or /proc/net/snmp (0 when unreadable)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return 0
    return parse_netstat(text).get(name, 0)


def listen_overflows() -> int:
    """Connections the kernel dropped, machine-wide so far, for a full accept queue."""
    return _kernel_counter("/proc/net/netstat", "TcpExtListenOverflows")


def udp_rcvbuf_errors() -> int:
    """Datagrams the kernel dropped, machine-wide so far, for a full receive buffer."""
    return _kernel_counter("/proc/net/snmp", "UdpRcvbufErrors")


def udp_socket_drops(port: int) -> int:
    """Datagrams dropped so far by the open UDP sockets bound to ``port`` (IPv4 and 6)."""
    total = 0
    for name in ("udp", "udp6"):
        with contextlib.suppress(OSError):
            total += parse_udp_drops(Path(f"/proc/net/{name}").read_text(), port)
    return total


def rmem_max() -> int | None:
    """net.core.rmem_max: the largest receive buffer a process may ask for (None: unknown)."""
    try:
        return int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        return None


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


def interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM, SIGHUP: stop, report what was measured


def stop_all() -> None:
    for proc in list(_started.values()):
        stop(proc, grace=2.0)
