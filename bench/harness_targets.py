"""What the benchmark measures: the flows, the transports, and the targets that answer.

A flow names SIPp's scenarios (bench/scenarios) for the client and for SIPp's own UAS.  A
target — the responder, SIPp's UAS, Kamailio — knows its command line, starts on a free
loopback port, says when it is ready, and gives the CPU time and peak RSS of its process
tree; ``Settings`` holds the harness's options that they and SIPp's client share.
Standard library only (sipresponder is looked at for its version, nothing else); of its
sibling modules, it imports harness_parse and harness_procs.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness_parse import parse_listening
from harness_procs import (
    LOOPBACK,
    free_port,
    port_bound,
    proc_cpu,
    proc_tree,
    spawn,
    stop,
    tree_rss_kib,
)

BENCH = Path(__file__).resolve().parent
SCENARIOS = BENCH / "scenarios"


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
TRANSPORTS: dict[str, str] = {"udp": "u1", "tcp": "t1", "tls": "t1"}
#: What ``make bench`` measures unless ``--transports`` says more.  TLS: Debian's SIPp has
#: no TLS, so SIPp speaks TCP to a stunnel client that speaks TLS to the target
#: (``TlsFront``): the same front for every target, its CPU counted for none.
DEFAULT_TRANSPORTS = ("udp", "tcp")
#: ... and its -t mode with one socket per call, which SO_REUSEPORT spreads over workers.
MULTI_SOCKET: dict[str, str] = {"udp": "un", "tcp": "tn"}
TARGETS = ("responder", "sipp-uas", "kamailio")
REFERENCES = ("sipp-uas", "kamailio")


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
    #: --pin: the target on CPU 0 and SIPp on CPU 1, so neither is moved under the other.
    pin: bool = False


def pinned(settings: Settings, cpu: int, cmd: list[str]) -> list[str]:
    """``cmd`` under ``taskset -c cpu`` with --pin (children inherit it); else as it is."""
    return ["taskset", "-c", str(cpu), *cmd] if settings.pin else cmd


class Target:
    name = ""
    rss_mode = "sum"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pids: list[int] = []
        self.log: Path | None = None
        #: The stunnel client in front of a TLS target.
        self.front: TlsFront | None = None

    def version(self) -> str:
        return ""

    def command(self, flow: Flow, transport: str, port: int) -> list[str]:
        raise NotImplementedError

    #: Whether it can be measured over TLS (SIPp's UAS cannot).
    speaks_tls = True

    def start(self, flow: Flow, transport: str, tag: str) -> None:
        if transport == "tls" and not self.speaks_tls:
            raise TargetError("no TLS here")
        self._start(flow, transport, tag)
        if transport == "tls":
            self.front = TlsFront(self.settings, self.port, tag)
            self.port = self.front.port  # SIPp connects to the front

    def _start(self, flow: Flow, transport: str, tag: str) -> None:
        s = self.settings
        self.port = free_port()
        out = s.workdir / f"{tag}.target.out"
        self.log = s.workdir / f"{tag}.target.err"
        with open(out, "wb") as fo, open(self.log, "wb") as fe:
            self.proc = spawn(
                pinned(s, 0, self.command(flow, transport, self.port)),
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
        if self.front is not None:
            self.front.stop()
            self.front = None
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
        # --port 0 and the defaults a user gets; the real port comes from stdout.  Two
        # exceptions: --drain-timeout 0 only shortens the stop after the measurement
        # (calls a ceiling run leaves ringing would otherwise hold it up to 5 s), and
        # --media none does the duties SIPp's UAS and Kamailio do: neither carries media
        # (an echo session per call measures something else).
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
            "--media",
            "none",
            *self.settings.responder_args,
            *(self._tls_args() if transport == "tls" else []),
            *([] if self.workers is None else ["--workers", str(self.workers)]),
            *(["--stateless"] if self.settings.stateless else []),
        ]

    def _tls_args(self) -> list[str]:
        cert, key = certificate(self.settings.workdir)
        return ["--transport", "udp,tcp,tls", "--tls-cert", str(cert), "--tls-key", str(key)]

    def ready(self, transport: str, out: Path) -> bool:
        ports = parse_listening(out.read_text(errors="replace"))
        if transport in ports:
            self.port = ports[transport]
            return True
        return False


class SippUas(Target):
    name = "sipp-uas"
    speaks_tls = False

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
            f"{'tls' if transport == 'tls' else 'tcp'}:{LOOPBACK}:{port}",
        ]
        if transport == "tls":
            # kamailio.cfg's #!ifdef WITH_TLS: the tls module, with the same certificate.
            cmd += ["-A", "WITH_TLS", "-A", f'TLS_CONFIG="{tls_config(s.workdir)}"']
        if s.kamailio_modules:
            cmd += ["-L", s.kamailio_modules]
        if s.stateless:
            cmd += ["-A", "STATELESS"]  # kamailio.cfg's #!ifdef STATELESS: sl only, no tm
        return cmd


def certificate(workdir: Path) -> tuple[Path, Path]:
    """The TLS targets' certificate and key (made once per work directory)."""
    cert, key = workdir / "tls-cert.pem", workdir / "tls-key.pem"
    if not cert.exists():
        from sipresponder.aio.tls import self_signed

        pem, private = self_signed(LOOPBACK)
        key.write_bytes(private)
        cert.write_bytes(pem)
    return cert, key


def tls_config(workdir: Path) -> Path:
    """Kamailio's tls module configuration: the same certificate, TLS 1.2 at least."""
    cert, key = certificate(workdir)
    path = workdir / "kamailio-tls.cfg"
    path.write_text(
        "[server:default]\n"
        "method = TLSv1.2+\n"
        "verify_certificate = no\n"
        "require_certificate = no\n"
        f"private_key = {key}\n"
        f"certificate = {cert}\n"
        "\n[client:default]\nverify_certificate = no\nrequire_certificate = no\n"
    )
    return path


class TlsFront:
    """A stunnel client on a free loopback port that SIPp connects to over TCP, speaking
    TLS to the target's ``port``; stopped by its PID."""

    def __init__(self, settings: Settings, port: int, tag: str) -> None:
        binary = shutil.which("stunnel4") or shutil.which("stunnel")
        if binary is None:
            raise TargetError("stunnel is not installed (Debian: apt-get install stunnel4)")
        self.port = free_port()
        conf = settings.workdir / f"{tag}.stunnel.conf"
        conf.write_text(
            "foreground = yes\n"
            "pid =\n"
            "debug = 3\n"
            "[sip]\n"
            "client = yes\n"
            f"accept = {LOOPBACK}:{self.port}\n"
            f"connect = {LOOPBACK}:{port}\n"
            "verifyPeer = no\n"
        )
        with open(settings.workdir / f"{tag}.stunnel.err", "wb") as err:
            self.proc = spawn(
                pinned(settings, 1, [binary, str(conf)]),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        deadline = time.monotonic() + 10
        while not port_bound(self.port, "tcp"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise TargetError("stunnel did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        stop(self.proc)
