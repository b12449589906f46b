"""``--workers N``: N responder processes sharing one port with SO_REUSEPORT.

What belongs here: the supervisor.  It fixes the port (port 0: it reserves one with a
bound, never-listening TCP socket), starts N copies of the CLI — each with
``--reuse-port --worker-id I``, the same ``--secret`` so To tags and Digest nonces agree,
``--admin`` on worker 0 only and a ``.wI`` suffix on any ``--journal-file`` of the others
— waits until each is listening, prints the ``listening`` lines once, forwards SIGINT,
SIGTERM and SIGHUP to every worker by its PID (so a second SIGTERM cuts the workers'
drain short too), and exits 0 when they all did.  The kernel
hashes UDP datagrams and TCP connections over the workers by the peer's address and port,
so a client's retransmissions, ACK and CANCEL reach the worker that holds its
transaction.  With TLS, WS and WSS, every worker serves the same port (port 0:
another reserved one each) and the same certificate: without ``--tls-cert`` the supervisor makes the
self-signed one, in a private directory it removes when it exits.  No protocol logic;
imports only ``tls`` (for that certificate).
"""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType

from .tls import self_signed, self_signed_line, write_pems

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

#: Flags that take a value and that the supervisor sets per worker.
_OWN = (
    "--workers",
    "--port",
    "--tls-port",
    "--ws-port",
    "--wss-port",
    "--secret",
    "--admin",
    "--admin-token",
    "--journal-file",
)


def worker_count(text: str) -> int:
    """``N`` or ``auto`` (one per core)."""
    if text == "auto":
        return os.cpu_count() or 1
    value = int(text)
    if not 1 <= value <= 256:
        raise ValueError("--workers: must be auto or 1 to 256")
    return value


def _strip(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """argv without the flags in ``_OWN``, and their values."""
    rest: list[str] = []
    values: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _OWN:
            if eq:
                values[name] = value
                i += 1
            else:
                values[name] = argv[i + 1] if i + 1 < len(argv) else ""
                i += 2
            continue
        rest.append(arg)
        i += 1
    return rest, values


def supervise(
    argv: list[str],
    workers: int,
    host: str,
    port: int,
    transports: tuple[str, ...],
    drain_timeout: float = 0.0,
) -> int:
    """Run ``workers`` copies of ``sipresponder ARGV`` on one port; returns the exit code.

    A worker stopped by the supervisor itself (another one failed) gets ``drain_timeout``
    seconds more than ``STOP_TIMEOUT`` before it is killed."""
    stop_timeout = STOP_TIMEOUT + drain_timeout
    rest, values = _strip(argv)
    secret = values.get("--secret") or os.environ.get("SIPRESPONDER_SECRET") or ""
    secret = secret or secrets.token_hex(16)
    reserved: list[socket.socket] = []
    shared: list[str] = []  # the flags every worker gets alike
    try:
        own = {t: values.get(f"--{t}-port") or ("0" if port == 0 else "") for t in _OWN_PORTS}
        if port == 0:
            port = _reserve(host, reserved)
        for transport, wanted in own.items():
            if transport in transports and wanted:
                if wanted == "0":
                    wanted = str(_reserve(host, reserved))
                shared += [f"--{transport}-port", wanted]
    except OSError as exc:
        for sock in reserved:
            sock.close()
        print(f"sipresponder: error: cannot listen on {host}: {exc.strerror}", file=sys.stderr)
        return 2
    tls = "tls" in transports or "wss" in transports
    folder = None
    if tls and not any(a == "--tls-cert" or a.startswith("--tls-cert=") for a in rest):
        folder = tempfile.mkdtemp(prefix="sipresponder-tls-")
        shared += _certificate(folder, host)
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ, SIPRESPONDER_SECRET=secret)
    try:
        try:
            for i in range(workers):
                cmd = [
                    sys.executable,
                    "-m",
                    "sipresponder",
                    *rest,
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--reuse-port",
                    "--worker-id",
                    str(i),
                    *shared,
                ]
                if i == 0 and "--admin" in values:
                    cmd += ["--admin", values["--admin"]]
                    if "--admin-token" in values:
                        cmd += ["--admin-token", values["--admin-token"]]
                if "--journal-file" in values:
                    suffix = "" if i == 0 else f".w{i}"
                    cmd += ["--journal-file", values["--journal-file"] + suffix]
                procs.append(
                    subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
                )
            expected = len(transports)
            first: list[str] = []
            for i, proc in enumerate(procs):
                lines = _ready_lines(proc, expected + (1 if i == 0 and "--admin" in values else 0))
                if lines is None:
                    print(f"sipresponder: error: worker {i} did not start", file=sys.stderr)
                    _stop(procs, stop_timeout)
                    return 2
                if i == 0:
                    first = lines
        finally:
            for sock in reserved:
                sock.close()
        for line in first:
            print(line, flush=True)

        def forward(signum: int, frame: FrameType | None) -> None:
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signum)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, forward)
        codes: dict[int, int] = {}
        while len(codes) < len(procs):
            for i, proc in enumerate(procs):
                if i not in codes and proc.poll() is not None:
                    codes[i] = proc.returncode
                    if proc.returncode != 0 and len(codes) < len(procs):
                        print(
                            f"sipresponder: worker {i} exited with {proc.returncode}; "
                            "stopping the others",
                            file=sys.stderr,
                        )
                        _stop(procs, stop_timeout)
            time.sleep(0.1)
        for proc in procs:
            if proc.stdout is not None:
                proc.stdout.close()
        return 0 if all(code == 0 for code in codes.values()) else 1
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


#: The transports with a port of their own, which the workers must share.
_OWN_PORTS = ("tls", "ws", "wss")


def _reserve(host: str, reserved: list[socket.socket]) -> int:
    """A free port, held by a bound, never-listening TCP socket until the workers listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    reserved.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return int(sock.getsockname()[1])


def _certificate(folder: str, host: str) -> list[str]:
    """The workers' one self-signed certificate, written to ``folder``: their flags."""
    cert, key = self_signed(host)
    cert_path, key_path = write_pems(folder, cert, key)
    print(f"sipresponder: {self_signed_line(host, cert)}", file=sys.stderr)
    return ["--tls-cert", cert_path, "--tls-key", key_path]


def _ready_lines(proc: subprocess.Popen[bytes], count: int) -> list[str] | None:
    """The worker's first ``count`` stdout lines (its ``listening`` lines), or None."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + READY_TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while buf.count(b"\n") < count:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            buf += chunk
    return buf.decode("utf-8", "replace").splitlines()[:count]


def _stop(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
