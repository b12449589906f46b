"""The web view with a full journal: how fast the calls page paints, what its feed costs,
and what a reader that never reads does to the server.

The responder runs with ``--journal-size N+100000`` (N is 100,000 by default: room for the
live phases' calls too), a journal byte bound large enough to hold them, and the admin
server on loopback; SIPp fills the journal with N OPTIONS calls.  Then:

1. ``GET /api/calls?limit=500`` (what the page reads first), five times: the median;
2. Debian's chromium, headless through chromium-driver: the calls page from navigation to
   its first rows drawn, three times: the median;
3. live: SIPp sends ``--rate`` OPTIONS calls a second for ``--seconds``, once with no
   page open and once with a reader of ``/api/events``: the responder's CPU in each, and
   the events and calls the reader got;
4. a reader that opens ``/api/events`` and never reads, under the same load: whether the
   responder dropped it (its log), and its RSS before and after.

JSON goes to ``bench/results/web.json``.  Only loopback; every loop bounded; every process
stopped by its own PID.  Run: ``python bench/web.py`` (``make bench-web``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness_procs import proc_cpu, stop

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCENARIO = ROOT / "scenarios" / "uac_options.xml"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_responder(calls: int, log: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    """The responder, its SIP port and its admin URL."""
    out = log.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "sipresponder", "--port", "0", "--admin", "127.0.0.1:0",
            "--journal-size", str(calls), "--journal-bytes", str(4 << 30),
            "--media", "none", "--log-level", "INFO", "--drain-timeout", "0",
        ],
        stdout=subprocess.PIPE,
        stderr=out,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    port, admin = 0, ""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (port and admin):
        line = proc.stdout.readline().decode()
        if found := re.match(r"listening udp 127\.0\.0\.1:(\d+)", line):
            port = int(found.group(1))
        if found := re.match(r"admin (http://\S+)", line):
            admin = found.group(1)
        if not line and proc.poll() is not None:
            break
    if not (port and admin):
        stop(proc)
        raise RuntimeError("the responder did not start")
    return proc, port, admin


def sipp(port: int, calls: int, rate: int, workdir: Path) -> float:
    """SIPp's OPTIONS calls; the seconds they took."""
    start = time.monotonic()
    subprocess.run(
        [
            shutil.which("sipp") or "sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIO),
            "-s", "web", "-m", str(calls), "-r", str(rate), "-l", "2000", "-t", "u1",
            "-i", "127.0.0.1", "-nostdin", "-timeout", "600s", "-timeout_error",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=900,
        check=False,
    )  # fmt: skip
    return time.monotonic() - start


def api_list(admin: str) -> dict[str, Any]:
    times = []
    size = 0
    for _ in range(5):
        start = time.monotonic()
        with urllib.request.urlopen(admin + "/api/calls?limit=500", timeout=30) as reply:
            size = len(reply.read())
        times.append(time.monotonic() - start)
    return {"median_ms": round(statistics.median(times) * 1000, 1), "bytes": size}


def first_paint(admin: str) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        times = []
        rows = 0
        for _ in range(3):
            start = time.monotonic()
            driver.get(admin + "/")
            WebDriverWait(driver, 30, poll_frequency=0.01).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "tr.call")
            )
            times.append(time.monotonic() - start)
            rows = len(driver.find_elements(By.CSS_SELECTOR, "tr.call"))
        return {"median_s": round(statistics.median(times), 3), "rows": rows}
    finally:
        driver.quit()


class Reader:
    """A reader of ``/api/events`` on a raw socket: reads (and counts) or never reads."""

    def __init__(self, admin: str, reads: bool) -> None:
        host, port = admin.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        if not reads:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.reads = reads
        self.data = bytearray()

    def pump(self, until: float) -> None:
        if not self.reads:
            time.sleep(max(0.0, until - time.monotonic()))
            return
        while (left := until - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                break
            if not chunk:
                break
            self.data += chunk

    def events(self) -> tuple[int, int]:
        text = self.data.decode("utf-8", "replace")
        payloads = re.findall(r"event: calls\ndata: (.*)\n", text)
        calls = sum(len(json.loads(p).get("calls", [])) for p in payloads)
        return len(payloads), calls

    def close(self) -> None:
        self.sock.close()


def live(port: int, admin: str, pid: int, rate: int, seconds: float, workdir: Path,
         reader: Reader | None) -> dict[str, Any]:  # fmt: skip
    cpu0, rss0 = proc_cpu(pid), rss_mib(pid)
    load = subprocess.Popen(
        [
            shutil.which("sipp") or "sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIO),
            "-s", "web", "-m", str(int(rate * seconds)), "-r", str(rate), "-t", "u1",
            "-i", "127.0.0.1", "-nostdin",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    start = time.monotonic()
    try:
        if reader is not None:
            reader.pump(start + seconds + 1)
        load.wait(seconds + 30)
    finally:
        stop(load)
    elapsed = time.monotonic() - start
    out: dict[str, Any] = {
        "cpu_share": round((proc_cpu(pid) - cpu0) / elapsed, 3),
        "rss_mib_before": round(rss0, 1),
        "rss_mib_after": round(rss_mib(pid), 1),
    }
    if reader is not None and reader.reads:
        out["events"], out["calls_told"] = reader.events()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS / "web-work"
    workdir.mkdir(exist_ok=True)
    proc, port, admin = start_responder(args.calls + 100_000, workdir / "responder.log")
    try:
        fill = sipp(port, args.calls, 5000, workdir)
        with urllib.request.urlopen(admin + "/api/journal", timeout=30) as reply:
            held = json.loads(reply.read())["calls"]
        result: dict[str, Any] = {
            "command": " ".join(["python", "bench/web.py", *sys.argv[1:]]),
            "journal_calls": held,
            "fill_seconds": round(fill, 1),
            "api_calls_limit_500": api_list(admin),
            "first_paint": first_paint(admin),
            "live_no_page": live(port, admin, proc.pid, args.rate, args.seconds, workdir, None),
        }
        reader = Reader(admin, reads=True)
        try:
            result["live_one_reader"] = live(
                port, admin, proc.pid, args.rate, args.seconds, workdir, reader
            )
        finally:
            reader.close()
        stalled = Reader(admin, reads=False)
        try:
            result["live_stalled_reader"] = live(
                port, admin, proc.pid, args.rate, args.seconds * 3, workdir, stalled
            )
        finally:
            stalled.close()
        time.sleep(0.5)
        result["stalled_reader_dropped"] = "did not keep up was dropped" in (
            workdir / "responder.log"
        ).read_text("utf-8", "replace")
    finally:
        stop(proc)
    (RESULTS / "web.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
