#!/usr/bin/env python3
"""SIP over secure WebSocket (RFC 7118): the responder against Kamailio's websocket module.

SIPp speaks no WebSocket, so the load comes from a client of our own, the same for both
targets: one WSS connection (as SIPp's one socket), ``--in-flight`` calls at a time, each
a busy call (INVITE -> 100, 180, 486 -> ACK) or a whole call (INVITE with SDP -> 100, 180,
200 -> ACK -> BYE -> 200), placed again as soon as one ends, for ``--seconds``.  The
client runs in this process on uvloop; when it uses a whole core the rate is its limit,
and the figure to compare is the targets' CPU per call.

Targets, each started fresh on free loopback ports and stopped by its PID:

- the responder: ``python -m sipresponder --transport udp,wss --wss-port P --tls-cert
  C --tls-key K --media none --log-level INFO --drain-timeout 0``;
- Kamailio 5.6 with ``bench/kamailio.cfg`` and ``-A WITH_TLS -A WITH_WEBSOCKET``: the
  xhttp and websocket modules take the upgrade, the tls module the same certificate, one
  TCP worker; the same SIP duties as in ``make bench``.

Prints a table (calls/s, the target's CPU per call, the client's CPU) and writes
``bench/results/ws.json``.  Run: ``python bench/ws.py`` (needs Debian's
``kamailio-websocket-modules`` and ``kamailio-tls-modules`` for Kamailio's rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from harness_procs import free_port, port_bound, proc_cpu, proc_tree, spawn, stop
from harness_targets import BENCH, certificate, tls_config

ROOT = BENCH.parent
RESULTS = BENCH / "results"
SDP = (
    b"v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def request(
    method: str, uri: str, call_id: str, cseq: int, tag: str, to_tag: str = "", branch: str = ""
) -> bytes:
    """A request; ``branch``: the INVITE's, for the ACK of a non-2xx (RFC 3261 §17.1.1.3),
    else a new one."""
    body = SDP if method == "INVITE" else b""
    branch = branch or f"z9hG4bK{uuid.uuid4().hex[:16]}"
    to = f"<{uri}>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:bench@example.invalid>;tag={tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:bench@df7jal23ls0d.invalid;transport=ws>\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def field(message: bytes, name: bytes) -> bytes:
    start = message.find(b"\r\n" + name + b":")
    if start < 0:
        return b""
    end = message.find(b"\r\n", start + 2)
    return message[start + len(name) + 3 : end].strip()


class Load:
    """The client: calls over one WebSocket, each waiting for its responses by Call-ID."""

    def __init__(self, ws: Any, flow: str, port: int) -> None:
        self.ws = ws
        self.flow = flow
        self.user = "180-486" if flow == "busy" else "bench"
        self.uri = f"sip:{self.user}@127.0.0.1:{port};transport=ws"
        self.waiting: dict[bytes, asyncio.Queue[bytes]] = {}
        self.done = 0
        self.failed = 0
        #: Failed calls by the final status they got (0: none in time).
        self.odd: dict[int, int] = {}

    async def read(self) -> None:
        async for message in self.ws:
            data = message.encode() if isinstance(message, str) else message
            queue = self.waiting.get(field(data, b"Call-ID"))
            if queue is not None:
                queue.put_nowait(data)

    async def final(self, queue: asyncio.Queue[bytes]) -> bytes:
        while True:
            data = await asyncio.wait_for(queue.get(), 5.0)
            if int(data[8:11]) >= 200:
                return data

    async def call(self) -> None:
        call_id = uuid.uuid4().hex
        tag = uuid.uuid4().hex[:8]
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.waiting[call_id.encode()] = queue
        try:
            branch = f"z9hG4bK{uuid.uuid4().hex[:16]}"
            await self.ws.send(request("INVITE", self.uri, call_id, 1, tag, branch=branch))
            final = await self.final(queue)
            status = int(final[8:11])
            to_tag = field(final, b"To").partition(b"tag=")[2].decode()
            same = branch if status >= 300 else ""  # a 2xx's ACK is a transaction of its own
            await self.ws.send(request("ACK", self.uri, call_id, 1, tag, to_tag, same))
            if self.flow == "busy":
                ok = status == 486
                if not ok:
                    self.odd[status] = self.odd.get(status, 0) + 1
            else:
                await self.ws.send(request("BYE", self.uri, call_id, 2, tag, to_tag))
                ok = status == 200 and int((await self.final(queue))[8:11]) == 200
        except (TimeoutError, ValueError):
            self.odd[0] = self.odd.get(0, 0) + 1
            ok = False
        finally:
            del self.waiting[call_id.encode()]
        if ok:
            self.done += 1
        else:
            self.failed += 1

    async def run(self, in_flight: int, seconds: float) -> float:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                await self.call()

        reader = asyncio.ensure_future(self.read())
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.monotonic() - started
        reader.cancel()
        return elapsed


async def drive(port: int, flow: str, in_flight: int, seconds: float) -> tuple[int, int, float]:
    from websockets.asyncio.client import connect

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    async with connect(
        f"wss://127.0.0.1:{port}/",
        subprotocols=["sip"],
        ssl=context,
        max_queue=None,  # type: ignore[list-item]
    ) as ws:
        load = Load(ws, flow, port)
        elapsed = await load.run(in_flight, seconds)
    if load.odd:
        print(f"failed calls by final status (0: none in 5 s): {load.odd}", file=sys.stderr)
    return load.done, load.failed, elapsed


def start(target: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cert, key = certificate(workdir)
    if target == "responder":
        cmd = [
            sys.executable,
            *("-m", "sipresponder", "--port", "0", "--transport", "udp,wss"),
            *("--wss-port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)),
            *("--media", "none", "--log-level", "INFO", "--drain-timeout", "0"),
        ]
    else:
        kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
        cmd = [
            kamailio,
            *("-f", str(BENCH / "kamailio.cfg"), "-DD", "-E", "-n", "1", "-m", "2048"),
            *("-M", "16", "-Y", str(workdir)),
            *("-l", f"udp:127.0.0.1:{free_port()}", "-l", f"tls:127.0.0.1:{port}"),
            *("-A", "WITH_TLS", "-A", f'TLS_CONFIG="{tls_config(workdir)}"'),
            *("-A", "WITH_WEBSOCKET"),
        ]
    with open(workdir / f"{target}.err", "wb") as err:
        proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 15
    while not port_bound(port, "tcp"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(
                f"{target} did not start: {(workdir / f'{target}.err').read_text()[-400:]}"
            )
        time.sleep(0.05)
    time.sleep(0.5)  # Kamailio's workers fork after the listener binds
    return proc, port


def measure(target: str, flow: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    proc, port = start(target, workdir)
    try:
        pids = proc_tree(proc.pid)
        before = sum(proc_cpu(p) for p in pids)
        client_before = time.process_time()
        done, failed, elapsed = asyncio.run(drive(port, flow, args.in_flight, args.seconds))
        client = time.process_time() - client_before
        used = sum(proc_cpu(p) for p in pids) - before
    finally:
        stop(proc, proc_tree(proc.pid))
    return {
        "target": target,
        "flow": flow,
        "calls": done,
        "failed": failed,
        "seconds": round(elapsed, 2),
        "rate": round(done / elapsed) if elapsed else 0,
        "target_us_per_call": round(used / done * 1e6, 1) if done else None,
        "target_cpu_pct": round(100 * used / elapsed) if elapsed else None,
        "client_cpu_pct": round(100 * client / elapsed) if elapsed else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--in-flight", type=int, default=200)
    p.add_argument("--flows", default="busy,call")
    p.add_argument("--targets", default="responder,kamailio")
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    rows = []
    with tempfile.TemporaryDirectory(prefix="sipresponder-ws-") as folder:
        for flow in args.flows.split(","):
            for target in args.targets.split(","):
                row = measure(target, flow, args, Path(folder))
                print(json.dumps(row), flush=True)
                rows.append(row)
    print()
    print("| flow | target | calls/s | failed | target CPU | µs/call | client CPU |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['flow']} | {r['target']} | {r['rate']:,} | {r['failed']} | "
            f"{r['target_cpu_pct']} % | {r['target_us_per_call']} | {r['client_cpu_pct']} % |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ws.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
