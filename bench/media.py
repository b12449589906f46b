"""How many echoed RTP streams the responder sustains, beside SIPp's ``-rtp_echo``.

``python bench/media.py [--streams 100,250,500,750] [--seconds 10]`` (``make bench-media``)
runs, for each count of streams and each target, on a freshly started target:

- **responder**: ``python -m sipresponder --port 0 --media echo`` (the compiled core,
  uvloop); one call per stream is placed first (INVITE with SDP, 200, ACK), each with a
  session and a port of its own;
- **sipp**: ``sipp -sn uas -rtp_echo``: SIPp's echo of every packet that comes to its
  media port, back to its sender (no signalling, no session: the floor of the job).

Then every stream sends a 172-byte PCMU packet every 20 ms (50 packets a second), from
one client socket, paced from the start (no drift), the streams spread over the 20 ms in
10 groups, for ``--seconds``; the echoes are counted per stream. For the responder, one
OPTIONS a tick is timed on its SIP port meanwhile, against 100 sent before the streams:
what the media does to signalling. Reported per run: packets sent and echoed, loss (1 −
echoed/sent), the target's CPU (user + system, ``/proc/PID/stat``) over the streaming
seconds and per echoed packet, and the client's own CPU (it shares the two cores). The
JSON goes to ``bench/results/media.json``. Only loopback, every loop bounded, every
process stopped by its own PID. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness_procs import proc_cpu, stop

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PACKET_TIME = 0.020
PAYLOAD = b"\xff" * 160
#: The streams' packets go out in this many groups over each 20 ms.
SPREAD = 10


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------- targets


def start_responder(streams: int) -> tuple[subprocess.Popen[bytes], int]:
    """The responder and its SIP port."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sipresponder",
            "--port",
            "0",
            "--media",
            "echo",
            "--rtp-ports",
            "40000-49999",
            "--max-media-sessions",
            str(streams + 10),
            "--media-timeout",
            "600",
            "--log-level",
            "WARNING",
            "--drain-timeout",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        found = re.match(r"listening udp 127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, int(found.group(1))
        if not line and proc.poll() is not None:
            break
    stop(proc)
    raise RuntimeError("the responder did not start")


def place_calls(sip_port: int, client_port: int, streams: int) -> list[int]:
    """One call per stream: INVITE with SDP naming ``client_port``, 200, ACK; the media
    port of each 200."""
    ports: list[int] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
        sock.settimeout(5)
        for n in range(streams):
            call_id = f"media-bench-{n}@127.0.0.1"
            sdp = (
                "v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {client_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            )
            head = (
                f"INVITE sip:200@127.0.0.1:{sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-mb{n}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:bench@127.0.0.1>;tag=f{n}\r\nTo: <sip:200@127.0.0.1>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
                f"Contact: <sip:bench@127.0.0.1:{local}>\r\n"
                f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
            )
            sock.sendto((head + sdp).encode(), ("127.0.0.1", sip_port))
            for _ in range(10):
                data = sock.recv(65536)
                if data.startswith(b"SIP/2.0 200"):
                    break
            port = re.search(rb"m=audio (\d+) ", data)
            tag = re.search(rb"\r\nTo: [^\r]*;tag=([^;\r]+)", data)
            if port is None or tag is None:
                raise RuntimeError(f"call {n}: no media port in the 200")
            ports.append(int(port.group(1)))
            ack = (
                f"ACK sip:200@127.0.0.1:{sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-mba{n}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:bench@127.0.0.1>;tag=f{n}\r\n"
                f"To: <sip:200@127.0.0.1>;tag={tag.group(1).decode()}\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(ack.encode(), ("127.0.0.1", sip_port))
    return ports


def start_sipp() -> tuple[subprocess.Popen[bytes], int]:
    """SIPp's UAS echoing RTP on its media port, and that port."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise RuntimeError("sipp is not installed (make sipp)")
    media = free_port()
    proc = subprocess.Popen(
        [
            sipp,
            "-sn",
            "uas",
            "-rtp_echo",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(media),
            "-nostdin",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    if proc.poll() is not None:
        raise RuntimeError("sipp -rtp_echo did not start")
    return proc, media


# ---------------------------------------------------------------------- streaming


class Prober:
    """OPTIONS to the responder's SIP port, one a tick, each answer's delay noted: what
    the media does to signalling."""

    def __init__(self, sip_port: int) -> None:
        self.sip_port = sip_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.sent: dict[str, float] = {}
        self.delays: list[float] = []
        self.count = 0

    def send(self) -> None:
        self.count += 1
        branch = f"z9hG4bK-probe{self.count}"
        local = self.sock.getsockname()[1]
        self.sock.sendto(
            (
                f"OPTIONS sip:probe@127.0.0.1:{self.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch}\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:b@127.0.0.1>;tag=p\r\n"
                f"To: <sip:probe@127.0.0.1>\r\nCall-ID: probe{self.count}\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", self.sip_port),
        )
        self.sent[branch] = time.monotonic()

    def read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            found = re.search(rb"branch=(z9hG4bK-probe\d+)", data)
            if found is not None:
                start = self.sent.pop(found.group(1).decode(), None)
                if start is not None:
                    self.delays.append(time.monotonic() - start)

    def summary(self) -> dict[str, Any]:
        delays = sorted(self.delays)
        if not delays:
            return {"probes": self.count, "answered": 0}
        return {
            "probes": self.count,
            "answered": len(delays),
            "p50_ms": round(delays[len(delays) // 2] * 1000, 2),
            "p99_ms": round(delays[min(len(delays) - 1, len(delays) * 99 // 100)] * 1000, 2),
        }

    def idle(self, count: int) -> dict[str, Any]:
        """``count`` probes with nothing else going on, 20 ms apart."""
        for _ in range(count):
            self.send()
            select.select([self.sock], [], [], 1.0)
            self.read()
            time.sleep(PACKET_TIME)
        out = self.summary()
        self.delays, self.sent, self.count = [], {}, 0
        return out


def stream(
    client: socket.socket,
    ports: list[int],
    seconds: float,
    pid: int,
    prober: Prober | None = None,
) -> dict[str, Any]:
    """Every stream one packet each 20 ms for ``seconds``; the echoes counted (and, with
    ``prober``, one OPTIONS a tick timed)."""
    count = len(ports)
    sent = [0] * count
    echoed = [0] * count
    index = {port: i for i, port in enumerate(ports)}
    packets = [struct.pack("!BBHII", 0x80, 0, 0, 0, 0x10000 + i) + PAYLOAD for i in range(count)]
    start = time.monotonic()
    cpu0 = proc_cpu(pid)
    me0 = time.process_time()
    ticks = int(seconds / PACKET_TIME)
    # The streams are spread over the 20 ms in SPREAD groups, as independent phones'
    # clocks would be, rather than sent in one burst a tick.
    slot = PACKET_TIME / SPREAD
    for tick in range(ticks):
        for group in range(SPREAD):
            for i in range(group, count, SPREAD):
                packet = bytearray(packets[i])
                struct.pack_into("!HI", packet, 2, tick & 0xFFFF, tick * 160)
                try:
                    client.sendto(packet, ("127.0.0.1", ports[i]))
                    sent[i] += 1
                except BlockingIOError:
                    pass
            if prober is not None and group == 0:
                prober.send()
            due = start + tick * PACKET_TIME + (group + 1) * slot
            _drain(client, index, echoed, due, prober)
    _drain(client, index, echoed, time.monotonic() + 0.5, prober)
    elapsed = time.monotonic() - start
    cpu = proc_cpu(pid) - cpu0
    total_sent, total_echoed = sum(sent), sum(echoed)
    probes = {} if prober is None else {"options_under_media": prober.summary()}
    return {
        **probes,
        "streams": count,
        "seconds": round(elapsed, 2),
        "sent": total_sent,
        "echoed": total_echoed,
        "loss": round(1 - total_echoed / total_sent, 5) if total_sent else None,
        "worst_stream_loss": round(max(1 - e / s for s, e in zip(sent, echoed, strict=True)), 4)
        if total_sent
        else None,
        "target_cpu_share": round(cpu / elapsed, 3),
        "cpu_us_per_packet": round(cpu / total_echoed * 1e6, 2) if total_echoed else None,
        "client_cpu_share": round((time.process_time() - me0) / elapsed, 3),
    }


def _drain(
    client: socket.socket,
    index: dict[int, int],
    echoed: list[int],
    until: float,
    prober: Prober | None = None,
) -> None:
    """Read echoes (and the prober's answers, as they come) until ``until``."""
    client.setblocking(False)
    watched = [client] if prober is None else [client, prober.sock]
    while True:
        wait = until - time.monotonic()
        if wait <= 0:
            return
        ready, _, _ = select.select(watched, [], [], wait)
        if prober is not None and prober.sock in ready:
            prober.read()
        if client not in ready:
            continue
        for _ in range(256):
            try:
                _, source = client.recvfrom(2048)
            except BlockingIOError:
                break
            i = index.get(source[1])
            if i is not None:
                echoed[i] += 1


def run(target: str, streams: int, seconds: float) -> dict[str, Any]:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    client.bind(("127.0.0.1", 0))
    try:
        prober = None
        idle: dict[str, Any] = {}
        if target == "responder":
            proc, sip_port = start_responder(streams)
            ports = place_calls(sip_port, client.getsockname()[1], streams)
            prober = Prober(sip_port)
        else:
            proc, media = start_sipp()
            ports = [media] * streams
        try:
            time.sleep(0.5)
            if prober is not None:
                idle = {"options_idle": prober.idle(100)}
            result = {**idle, **stream(client, ports, seconds, proc.pid, prober)}
        finally:
            stop(proc)
    finally:
        client.close()
    if target == "sipp":
        # One port for every stream: the echoes come from it alone, so only the totals
        # are known, not each stream's.
        result["worst_stream_loss"] = None
    return {"target": target, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="100,250,500,750")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--targets", default="responder,sipp")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    targets = [t.strip() for t in args.targets.split(",")]
    rows = []
    started = time.time()
    for count in counts:
        for target in targets:
            row = run(target, count, args.seconds)
            rows.append(row)
            sip = ""
            if "options_under_media" in row:
                idle, busy = row["options_idle"], row["options_under_media"]
                sip = (
                    f", OPTIONS p50/p99 {idle.get('p50_ms')}/{idle.get('p99_ms')} ms idle, "
                    f"{busy.get('p50_ms')}/{busy.get('p99_ms')} ms under media "
                    f"({busy['answered']} of {busy['probes']})"
                )
            print(
                f"{row['target']:>9} {row['streams']:>5} streams: {row['echoed']:,} of "
                f"{row['sent']:,} echoed, loss {row['loss']:.3%}, target CPU "
                f"{row['target_cpu_share']:.0%}, {row['cpu_us_per_packet']} µs/packet, "
                f"client CPU {row['client_cpu_share']:.0%}{sip}",
                flush=True,
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "command": " ".join(["bench/media.py", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "cpus": os.cpu_count(),
        "runs": rows,
    }
    (RESULTS / "media.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
