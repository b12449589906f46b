#!/usr/bin/env python3
"""Instructions per operation of the core, counted by valgrind: a figure that does not move.

CPU time on a shared or virtual machine moves by a third from one run to the next; the
number of instructions the interpreter executes for the same work does not (to within a
fraction of a percent).  That makes it the figure to compare two versions of the hot path
by, one change at a time.  For each case it runs ``bench/micro.py``'s message builders
through the core in a child process under ``valgrind --tool=cachegrind`` twice — with
``--small`` and with ``--large`` operations after the same warm-up — and divides the
difference in executed instructions (``I refs``) by the difference in operations, so that
start-up, imports, building the messages (as many in both runs) and the warm-up cancel
out.

Cases (``--cases``): ``parse`` (``parse_message`` of an INVITE and its ACK), ``options``
(``Endpoint.receive`` of an OPTIONS, journal off), ``busy`` (INVITE to ``180-486``,
100 + 180 + 486 out, its ACK, timers run when due; journal on, as the server keeps one)
and ``call`` (the whole call of ``make bench``: INVITE with SDP, 100 + 180 + 200 with
SDP out, the 200's ACK, BYE, 200 out; journal on).  ``busy-inflight``, not run unless
asked for, is ``busy`` after a warm-up of 25,500 calls: 5 s of the scripted clock, so
that Timer I keeps 25,000 transactions in flight, as a server under load does (about
3 minutes).

    .venv/bin/python bench/instructions.py     # or: make bench-instructions (about 2 min)

Needs ``valgrind`` (Debian: ``apt-get install valgrind``); without it, says so and exits 2.
Standard library only; the child processes are waited for with a deadline.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CASES = ("parse", "options", "busy", "call")
#: Cases run only when named in ``--cases``.
EXTRA_CASES = ("busy-inflight",)
WARMUP = 300
#: Warm-up per case where it differs: busy-inflight fills Timer I's 5 s window (T4) at
#: micro.CALL_INTERVAL (0.2 ms a call) before it counts.
WARMUPS = {"busy-inflight": 25_500}
#: Seconds one valgrind run may take (a run of 2,500 busy calls takes about 15 s).
DEADLINE = 600

#: The child: builds the messages, warms up, then runs ``n`` operations of one case.
CHILD = """
import sys
sys.path.insert(0, {bench!r})
import micro
from sipresponder.sip.parser import parse_message
from sipresponder.sip.responses import make_to_tag

case, n, warmup, built = (sys.argv[1], *map(int, sys.argv[2:5]))
total = built  # as many messages built in every run: their making cancels out
if case == "parse":
    data = []
    for i in range(total):
        tag = make_to_tag(micro.SECRET, f"{{i}}-4242@127.0.0.1", f"4242SIPpTag{{i}}", 1)
        data.append((micro.busy_invite(i), micro.busy_ack(i, tag)))
    for invite, ack in data[: n + warmup]:
        parse_message(invite)
        parse_message(ack)
elif case == "options":
    ep = micro.endpoint(False)
    data = [micro.options(i) for i in range(total)]
    for i, d in enumerate(data[: n + warmup]):
        ep.receive(d, micro.FLOW, i * micro.CALL_INTERVAL)
elif case == "call":
    ep = micro.endpoint(True)
    calls = []
    for i in range(total):
        tag = make_to_tag(micro.SECRET, f"{{i}}-4242@127.0.0.1", f"4242SIPpTag{{i}}", 1)
        calls.append((micro.invite_with_sdp(i), micro.call_ack(i, tag), micro.call_bye(i, tag)))
    now = 0.0
    for invite, ack, bye in calls[: n + warmup]:
        now += micro.CALL_INTERVAL
        assert len(ep.receive(invite, micro.FLOW, now)) == 3
        ep.receive(ack, micro.FLOW, now)
        assert len(ep.receive(bye, micro.FLOW, now)) == 1
        deadline = ep.next_deadline()
        if deadline is not None and deadline <= now:
            ep.handle_timers(now)
    assert ep.stats["violations"] == 0 and ep.stats["stray_acks"] == 0, ep.stats
else:  # busy, and busy-inflight (the same after a longer warm-up)
    ep = micro.endpoint(True)
    calls = []
    for i in range(total):
        tag = make_to_tag(micro.SECRET, f"{{i}}-4242@127.0.0.1", f"4242SIPpTag{{i}}", 1)
        calls.append((micro.busy_invite(i), micro.busy_ack(i, tag)))
    now = 0.0
    for invite, ack in calls[: n + warmup]:
        now += micro.CALL_INTERVAL
        assert len(ep.receive(invite, micro.FLOW, now)) == 3
        ep.receive(ack, micro.FLOW, now)
        deadline = ep.next_deadline()
        if deadline is not None and deadline <= now:
            ep.handle_timers(now)
    assert ep.stats["violations"] == 0 and ep.stats["stray_acks"] == 0, ep.stats
"""

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def parse_refs(log: str) -> int:
    """The ``I refs`` count of a cachegrind summary (``==1== I refs: 1,234``)."""
    match = _REFS.search(log)
    if match is None:
        raise ValueError("no 'I refs' line in valgrind's output")
    return int(match.group(1).replace(",", ""))


def per_op(small: tuple[int, int], large: tuple[int, int]) -> float:
    """Instructions per operation from two (operations, instructions) runs."""
    (n1, i1), (n2, i2) = small, large
    if n2 <= n1:
        raise ValueError("the large run needs more operations than the small one")
    return (i2 - i1) / (n2 - n1)


def count(valgrind: str, script: Path, case: str, n: int, built: int) -> int:
    cmd = [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        str(script),
        case,
        str(n),
        str(WARMUPS.get(case, WARMUP)),
        str(built),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{case} with {n} operations failed:\n{done.stderr[-2000:]}")
    return parse_refs(done.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help="comma-separated: " + ",".join(CASES + EXTRA_CASES),
    )
    parser.add_argument("--small", type=int, default=500, help="operations of the first run")
    parser.add_argument("--large", type=int, default=2500, help="operations of the second run")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES + EXTRA_CASES]
    if unknown or args.large <= args.small or args.small < 1:
        parser.error(
            f"bad --cases {unknown} or --small/--large"
            if unknown
            else "need 1 <= --small < --large"
        )
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    print("| case | instructions per operation |\n|---|--:|")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "child.py")
        script.write_text(CHILD.format(bench=str(BENCH)))
        for case in cases:
            built = args.large + WARMUPS.get(case, WARMUP)
            small = (args.small, count(valgrind, script, case, args.small, built))
            large = (args.large, count(valgrind, script, case, args.large, built))
            print(f"| {case} | {per_op(small, large) / 1000:,.1f} k |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
