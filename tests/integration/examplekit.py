"""What the tests of the rule files in ``examples/`` share.

Where the examples are (``example``, ``start_example``), what the responder logged
(``transactions``, ``wait_for_count``), how a test reloads it (``write_atomically``,
``sighup``), sipp's message trace (``-trace_msg``) read back message by message
(``sipp_ok``, ``read_trace``, ``first``, ``received``, ``sent``), and a rule file with a
typo (``BROKEN``).  Used by test_examples.py, test_examples_check.py and test_reload.py.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sipclient import Msg, parse
from sipprocs import ROOT, Responder, SippResult, StartResponder, run_sipp

EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))

#: The responder's per-transaction log line: ``INVITE sip:1001@h:p from h:p/udp -> 100 486``.
_LOG_RE = re.compile(r" INFO ([A-Z]+) (\S+) from \S+/(udp|tcp) -> ([0-9 ]+)$", re.M)


def example(name: str) -> Path:
    path = EXAMPLES / f"{name}.yaml"
    assert path.is_file(), f"missing example {path}"
    return path


def start_example(start: StartResponder, name: str, *args: str) -> Responder:
    return start("--rules", str(example(name)), *args)


def transactions(responder: Responder, method: str, text: str = "") -> list[tuple[str, str]]:
    """``(Request-URI, codes)`` of the logged ``method`` transactions whose URI has ``text``."""
    return [
        (m.group(2), m.group(4).strip())
        for m in _LOG_RE.finditer(responder.log())
        if m.group(1) == method and text in m.group(2)
    ]


def wait_for_count(responder: Responder, text: str, count: int, timeout: float = 5.0) -> str:
    """The log once ``text`` occurs in it at least ``count`` times (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        log = responder.log()
        if log.count(text) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


def sighup(responder: Responder) -> None:
    """SIGHUP to the responder's own PID (``python -m sipresponder``, no shell between)."""
    assert responder.proc.poll() is None, "the responder is not running"
    os.kill(responder.proc.pid, signal.SIGHUP)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` at once, so a reload never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -------------------------------------------------------------- sipp's trace


@dataclass
class Traced:
    """One message of sipp's ``-trace_msg`` file, as sipp sent or received it."""

    at: float  # seconds since the epoch, from sipp's timestamp
    sent: bool
    msg: Msg

    @property
    def status(self) -> int | None:
        return self.msg.status if self.msg.start.startswith("SIP/2.0 ") else None


_TRACE_RE = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
    r"(?:UDP|TCP) message (sent|received) [^\n]*\n",
    re.M,
)


def read_trace(workdir: Path, scenario: str) -> list[Traced]:
    """Every message in ``workdir/SCENARIO_*_messages.log``, in order."""
    files = sorted(workdir.glob(f"{scenario}_*_messages.log"))
    assert len(files) == 1, f"expected one sipp message trace, found {files}"
    data = files[0].read_bytes()
    text = data.decode("latin-1")  # byte for byte, whatever the bodies hold
    out: list[Traced] = []
    marks = list(_TRACE_RE.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        raw = text[mark.end() : end].lstrip("\r\n").encode("latin-1")
        head_end = raw.find(b"\r\n\r\n")
        assert head_end >= 0, f"no end of headers in a traced message: {raw[:300]!r}"
        length = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", raw[:head_end])
        size = head_end + 4 + (int(length.group(1)) if length else 0)
        stamp = datetime.strptime(mark.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append(Traced(stamp, mark.group(2) == "sent", parse(raw[:size], stamp)))
    return out


def received(trace: list[Traced], code: int) -> list[Traced]:
    """The responses with ``code`` that sipp received (retransmissions included)."""
    return [t for t in trace if not t.sent and t.status == code]


def first(trace: list[Traced], code: int) -> Traced:
    found = received(trace, code)
    assert found, f"sipp received no {code}; got {[t.msg.start for t in trace if not t.sent]}"
    return found[0]


def sent(trace: list[Traced], method: str) -> list[Traced]:
    return [t for t in trace if t.sent and t.msg.start.startswith(f"{method} ")]


def sipp_ok(
    responder: Responder,
    scenario: str,
    user: str,
    transport: str,
    workdir: Path,
    *extra: str,
) -> tuple[SippResult, list[Traced]]:
    """Run ``scenario`` with ``-trace_msg`` in ``workdir``; it must pass."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_sipp(responder, scenario, user, transport, workdir, ("-trace_msg", *extra))
    assert result.returncode == 0, result.report() + f"\n--- responder ---\n{responder.log()}"
    return result, read_trace(workdir, scenario)


BROKEN = """\
# A typo in the second rule's second step.
rules:
  - name: fine
    match: {method: OPTIONS}
    plan: 200

  - name: busy
    match: {method: INVITE}
    plan:
      - code: 180
      - {code: 486, after: 2s, retry_afer: 60}
"""
