"""The processes of the integration tests: the responder, started and stopped, and sipp.

``start_responder`` runs ``python -m sipresponder`` and waits for its ``listening`` lines;
``run_sipp`` plays one call of a scenario of ``scenarios/`` against it with the real sipp.
Every process started is stopped by its own PID and every wait is bounded by a deadline.
The SIP client that talks to the responder directly is ``sipclient.py``'s.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sipclient import RECV_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"

#: How long the responder may take to print its ``listening`` lines.
START_TIMEOUT = 10.0
#: How long it may take to exit after SIGTERM/SIGINT.
STOP_TIMEOUT = 5.0

_LISTENING_RE = re.compile(
    r"^listening (udp|tcp|tls|ws|wss) (\[[0-9a-fA-F:.]+\]|[0-9.]+):([0-9]+)$"
)
_ADMIN_RE = re.compile(r"^admin (http://\S+)$")


# --------------------------------------------------------------------- processes


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> list[str]:
    """Read ``count`` lines from the process's stdout, waiting at most ``timeout`` s.

    Returns fewer lines when the process exits or the time runs out.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while buf.count(b"\n") < count:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break  # EOF: the process is gone
            buf += chunk
    return buf.decode("utf-8", "replace").splitlines()[:count]


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` to the process's own PID and wait; kill it if it does not exit.

    Returns the exit code; raises ``AssertionError`` when the process had to be killed.
    """
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            return proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(
                f"process {proc.pid} did not exit within {STOP_TIMEOUT} s of signal {sig}"
            ) from None
    return proc.returncode


@dataclass
class Responder:
    """A running responder process and where it listens."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    stderr_path: Path
    lines: list[str]
    stopped: bool = False
    #: ``http://HOST:PORT`` of the admin API when started with ``--admin``.
    admin_url: str | None = None
    #: The port of each transport listened on (TLS has one of its own).
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def log(self) -> str:
        """What the responder wrote to standard error so far (its log lines)."""
        return self.stderr_path.read_text("utf-8", "replace")

    def wait_for_log(self, text: str, timeout: float = RECV_TIMEOUT) -> str:
        """The log once it contains ``text`` (log lines may lag the response a little)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            if text in log or time.monotonic() > deadline:
                return log
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.stopped = True
        try:
            return stop_process(self.proc, sig)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


#: The type of the ``start_responder_with`` fixture: ``(*args, host=...) -> Responder``.
StartResponder = Callable[..., Responder]


def responder_command(host: str = "127.0.0.1", port: int = 0, *args: str) -> list[str]:
    """The command line of a responder.  ``--drain-timeout 0``: a test's SIGTERM stops it
    at once, whatever calls the test left ringing (a test of the drain passes its own)."""
    return [
        *(sys.executable, "-m", "sipresponder", "--host", host, "--port", str(port)),
        *("--drain-timeout", "0", *args),
    ]


def start_responder(
    workdir: Path, *args: str, host: str = "127.0.0.1", name: str = "responder"
) -> Responder:
    """Start ``python -m sipresponder --host HOST --port 0 ARGS`` and wait until it listens.

    Standard error goes to ``workdir/NAME.stderr.log``.  Raises ``AssertionError`` (after
    stopping the process) when the two ``listening`` lines (and, with ``--admin``, the
    ``admin http://...`` line after them) do not come within ``START_TIMEOUT`` seconds.
    """
    stderr_path = workdir / f"{name}.stderr.log"
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            responder_command(host, 0, *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=workdir,
        )
    admin = "--admin" in args
    listening = _transport_count(args)
    lines = read_lines(proc, listening + 1 if admin else listening, START_TIMEOUT)
    by_transport: dict[str, int] = {}
    hosts = set()
    for line in lines[:listening]:
        m = _LISTENING_RE.match(line)
        if m is not None:
            hosts.add(m.group(2).strip("[]"))
            by_transport[m.group(1)] = int(m.group(3))
    shared = {port for t, port in by_transport.items() if t in ("udp", "tcp")}
    ports = shared or set(list(by_transport.values())[:1])
    m_admin = _ADMIN_RE.match(lines[listening]) if admin and len(lines) > listening else None
    if (
        len(lines) < listening
        or len(by_transport) != listening
        or len(ports) != 1
        or len(hosts) != 1
        or (admin and m_admin is None)
    ):
        code = None
        with contextlib.suppress(AssertionError):
            code = stop_process(proc, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
        raise AssertionError(
            f"responder did not start: stdout {lines!r}, exit {code}, "
            f"stderr:\n{stderr_path.read_text('utf-8', 'replace')}"
        )
    admin_url = m_admin.group(1) if m_admin is not None else None
    return Responder(
        proc, hosts.pop(), ports.pop(), stderr_path, lines, admin_url=admin_url, ports=by_transport
    )


def _transport_count(args: Sequence[str]) -> int:
    """How many ``listening`` lines a responder started with ``args`` prints."""
    for i, arg in enumerate(args):
        value = None
        if arg == "--transport" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--transport="):
            value = arg.partition("=")[2]
        if value is not None:
            return len([t for t in value.split(",") if t.strip()])
    return 2


@dataclass
class Workers:
    """A supervisor of ``--workers`` and where its workers listen; ``code`` and ``stderr``
    are set once it is stopped."""

    ports: dict[str, int]
    code: int | None = None
    stderr: str = ""


@contextlib.contextmanager
def running_workers(transports: int, *args: str, count: int = 2) -> Iterator[Workers]:
    """``python -m sipresponder --port 0 ARGS --workers COUNT``, listening on
    ``transports`` transports: yields their ports; on leaving, stops the supervisor by its
    PID and keeps its exit code and standard error."""
    proc = subprocess.Popen(
        [*responder_command("127.0.0.1", 0, *args), "--workers", str(count)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    workers = Workers({})
    try:
        lines = read_lines(proc, transports, 20.0)
        workers.ports = {x.split()[1]: int(x.rsplit(":", 1)[1]) for x in lines}
        assert len(workers.ports) == transports, lines
        yield workers
    finally:
        workers.code = stop_process(proc)
        assert proc.stderr is not None and proc.stdout is not None
        workers.stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.stdout.close()
        proc.stderr.close()


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port that is free for UDP and TCP on ``host`` right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, other) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port found in 50 attempts")


# -------------------------------------------------------------------------- sipp


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    errors: str
    argv: list[str] = field(default_factory=list)

    def report(self) -> str:
        return (
            f"sipp exited {self.returncode} after {self.elapsed:.2f} s\n"
            f"command: {' '.join(self.argv)}\n"
            f"--- stdout (tail) ---\n{self.stdout[-4000:]}\n"
            f"--- stderr ---\n{self.stderr[-4000:]}\n"
            f"--- *_errors.log ---\n{self.errors[-8000:]}"
        )


def run_sipp(
    responder: Responder,
    scenario: str,
    user: str,
    transport: str,
    workdir: Path,
    extra: Sequence[str] = (),
    timeout: float = 30.0,
) -> SippResult:
    """Run one call of ``scenarios/SCENARIO.xml`` (or of the file ``SCENARIO``, a path
    ending in ``.xml``) against the responder with the real sipp.

    ``transport`` is ``udp`` or ``tcp`` (``-t u1`` / ``-t t1``).  sipp runs in ``workdir``
    so its logs land there; the ``*_errors.log`` files are read back into the result.
    """
    mode = {"udp": "u1", "tcp": "t1"}[transport]
    file = Path(scenario) if scenario.endswith(".xml") else SCENARIOS / f"{scenario}.xml"
    argv = [
        SIPP,
        f"{responder.host}:{responder.port}",
        "-sf",
        str(file),
        "-s",
        user,
        "-t",
        mode,
        "-m",
        "1",
        "-l",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-timeout",
        "20s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        *extra,
    ]
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=STOP_TIMEOUT)
    elapsed = time.monotonic() - start
    errors = "".join(
        f"== {p.name}\n{p.read_text('utf-8', 'replace')}\n"
        for p in sorted(workdir.glob(f"{file.stem}_*_errors.log"))
    )
    return SippResult(
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        elapsed,
        errors,
        argv,
    )
