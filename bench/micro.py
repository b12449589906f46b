#!/usr/bin/env python3
"""Micro-benchmark of the core: parse + respond, µs per message, no sockets.

Measures, with ``time.perf_counter`` loops (standard library only):

* ``parse INVITE``: ``parse_message`` of an INVITE with an SDP offer, as SIPp sends it;
* ``OPTIONS → 200``: ``Endpoint.receive`` of an OPTIONS, answered statelessly;
* ``busy call``: ``Endpoint.receive`` of an INVITE to ``180-486`` (100, 180, 486 out)
  and of its ACK, on a scripted clock that advances 0.2 ms a call (5,000 calls/s), with
  ``handle_timers`` run whenever a timer is due — so Timer I's transactions pile up and
  expire as under load;

the Endpoint ones without and with the journal (``Journal(1000)``, what the server keeps
by default).  Every message is distinct (Call-ID, branch, tags), built before the clock
starts.  Each case runs a warm-up round, then ``--rounds`` rounds of about
``--round-time`` seconds; the best and the median round are reported.

    .venv/bin/python bench/micro.py            # or: make bench-micro
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipresponder import __version__
from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.flow import Flow
from sipresponder.core.journal import Journal
from sipresponder.sip.parser import parse_message

LOCAL = ("127.0.0.1", 5060)
REMOTE = ("127.0.0.1", 5061)
FLOW = Flow("udp", REMOTE, LOCAL)
SECRET = b"micro-benchmark-secret"
#: Scripted time between two calls of the busy case: 5,000 calls/s.
CALL_INTERVAL = 0.0002

SDP = (
    "v=0\r\n"
    "o=sipp 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
)


def _request(
    method: str,
    user: str,
    i: int,
    *,
    branch: str,
    to_tag: str = "",
    body: str = "",
    cseq: int = 1,
) -> bytes:
    """A request the way SIPp's bench scenarios write it (bench/scenarios/uac_*.xml)."""
    host = "127.0.0.1:5060"
    to = f"<sip:{user}@{host}>" + (f";tag={to_tag}" if to_tag else "")
    cseq_method = "ACK" if method == "ACK" else method
    lines = [
        f"{method} sip:{user}@{host} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch};rport",
        f"From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag{i}",
        f"To: {to}",
        f"Call-ID: {i}-4242@127.0.0.1",
        f"CSeq: {cseq} {cseq_method}",
        "Contact: <sip:sipp@127.0.0.1:5061;transport=UDP>",
        "Max-Forwards: 70",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def invite_with_sdp(i: int) -> bytes:
    return _request("INVITE", "bench", i, branch=f"z9hG4bK-{i}-sdp", body=SDP)


def options(i: int) -> bytes:
    return _request("OPTIONS", "bench", i, branch=f"z9hG4bK-{i}-options")


def busy_invite(i: int) -> bytes:
    return _request("INVITE", "180-486", i, branch=f"z9hG4bK-4242-{i}-invite")


_TO_TAG = re.compile(rb"^(?:To|t):[^\r\n]*;tag=([^;\r\n ]+)", re.MULTILINE | re.IGNORECASE)


def busy_ack(i: int, to_tag: str) -> bytes:
    return _request("ACK", "180-486", i, branch=f"z9hG4bK-4242-{i}-invite", to_tag=to_tag)


def call_ack(i: int, to_tag: str) -> bytes:
    """The ACK of the 200 to ``invite_with_sdp(i)``: a transaction of its own."""
    return _request("ACK", "bench", i, branch=f"z9hG4bK-{i}-ack", to_tag=to_tag)


def call_bye(i: int, to_tag: str) -> bytes:
    return _request("BYE", "bench", i, branch=f"z9hG4bK-{i}-bye", to_tag=to_tag, cseq=2)


def endpoint(journal: bool) -> Endpoint:
    config = Config(secret=SECRET)
    return Endpoint(config, journal=Journal(1000) if journal else None)


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    journal: str  # "—", "no", "yes"
    messages: int  # messages received per operation
    #: Builds the inputs of one round of n operations (not timed), returns the timed loop.
    prepare: Callable[[int], Callable[[], None]]
    #: After the rounds: what went wrong, if anything (a stray ACK, a violation).
    check: Callable[[], str] = lambda: ""


def case_parse() -> Case:
    counter = [0]

    def prepare(n: int) -> Callable[[], None]:
        start = counter[0]
        counter[0] += n
        data = [invite_with_sdp(start + i) for i in range(n)]

        def run() -> None:
            parse = parse_message
            for d in data:
                parse(d)

        return run

    return Case("parse INVITE (with SDP)", "—", 1, prepare)


def case_options(journal: bool) -> Case:
    ep = endpoint(journal)
    counter = [0]

    def prepare(n: int) -> Callable[[], None]:
        start = counter[0]
        counter[0] += n
        data = [options(start + i) for i in range(n)]

        def run() -> None:
            receive = ep.receive
            now = float(start)
            for d in data:
                out = receive(d, FLOW, now)
                assert out, "OPTIONS got no answer"

        return run

    return Case("Endpoint.receive: OPTIONS → 200", "yes" if journal else "no", 1, prepare)


def case_busy(journal: bool) -> Case:
    ep = endpoint(journal)
    twin = endpoint(False)  # the same secret: the same To tags, learnt before timing
    twin_clock = [0.0]
    counter = [0]

    def prepare(n: int) -> Callable[[], None]:
        start = counter[0]
        counter[0] += n
        invites = [busy_invite(start + i) for i in range(n)]
        acks = []
        t = twin_clock[0]
        for i, inv in enumerate(invites):
            out = twin.receive(inv, FLOW, t)
            match = _TO_TAG.search(out[-1][0]) if out else None
            if match is None:
                raise SystemExit(f"micro: no To tag in the answer to {inv[:40]!r}")
            acks.append(busy_ack(start + i, match.group(1).decode()))
            twin.receive(acks[-1], FLOW, t)
        twin.handle_timers(t + 1000)  # forget them: the twin only learns tags
        twin_clock[0] = t + 2000

        def run() -> None:
            receive = ep.receive
            next_deadline = ep.next_deadline
            handle_timers = ep.handle_timers
            now = (start + 1) * CALL_INTERVAL
            for inv, ack in zip(invites, acks, strict=True):
                out = receive(inv, FLOW, now)
                assert len(out) == 3, "expected 100, 180, 486"
                receive(ack, FLOW, now)
                deadline = next_deadline()
                if deadline is not None and deadline <= now:
                    handle_timers(now)
                now += CALL_INTERVAL

        return run

    def check() -> str:
        stats = getattr(ep, "stats", {})
        bad = {k: stats[k] for k in ("stray_acks", "violations", "internal_errors") if stats.get(k)}
        return f"the ACKs did not all match: {bad}" if bad else ""

    return Case(
        "Endpoint.receive: busy call (INVITE → 100 180 486, ACK)",
        "yes" if journal else "no",
        2,
        prepare,
        check,
    )


CASES: dict[str, Callable[[], list[Case]]] = {
    "parse": lambda: [case_parse()],
    "options": lambda: [case_options(False), case_options(True)],
    "busy": lambda: [case_busy(False), case_busy(True)],
}


# ------------------------------------------------------------------------- timing


@dataclass
class Result:
    name: str
    journal: str
    messages: int
    n: int
    rounds_us: list[float]  # µs per operation, one per round

    @property
    def best(self) -> float:
        return min(self.rounds_us)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds_us)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "journal": self.journal,
            "messages_per_op": self.messages,
            "ops_per_round": self.n,
            "best_us_per_op": self.best,
            "median_us_per_op": self.median,
            "best_us_per_message": self.best / self.messages,
            "rounds_us_per_op": self.rounds_us,
        }


def _time_round(case: Case, n: int) -> float:
    run = case.prepare(n)
    gc.collect()
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def measure(case: Case, rounds: int, round_time: float) -> Result:
    # Warm-up, which also sizes the rounds: about round_time seconds each.
    n = 200
    for _ in range(20):
        elapsed = _time_round(case, n)
        if elapsed >= round_time / 4:
            break
        n *= 4
    n = max(100, min(200_000, round(n * round_time / max(elapsed, 1e-6))))
    per_op = [_time_round(case, n) / n * 1e6 for _ in range(rounds)]
    return Result(case.name, case.journal, case.messages, n, per_op)


def table(results: Sequence[Result]) -> str:
    rows = [
        "| case | journal | µs/op (best) | µs/op (median) | µs/message | ops/s |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for r in results:
        rows.append(
            f"| {r.name} | {r.journal} | {r.best:.1f} | {r.median:.1f} "
            f"| {r.best / r.messages:.1f} | {1e6 / r.best:,.0f} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/micro.py", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per case (5)")
    p.add_argument("--round-time", type=float, default=0.2, help="seconds per round, about (0.2)")
    p.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated, of {', '.join(CASES)} (all)",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r} (use {', '.join(CASES)})")
    if not 1 <= args.rounds <= 50 or not 0.01 <= args.round_time <= 5:
        p.error("--rounds 1-50, --round-time 0.01-5")
    began = time.perf_counter()
    results = []
    failed = False
    for name in names:
        for case in CASES[name]():
            results.append(measure(case, args.rounds, args.round_time))
            r = results[-1]
            print(f"  {r.name} [journal {r.journal}]: {r.best:.1f} µs/op", flush=True)
            problem = case.check()
            if problem:
                print(f"micro: {case.name}: {problem}", file=sys.stderr)
                failed = True
    print()
    print(table(results))
    print()
    print(
        f"Python {platform.python_version()}, sipresponder {__version__}; best and median "
        f"of {args.rounds} rounds of about {args.round_time:g} s; µs/message = µs/op ÷ "
        f"messages received per op; {time.perf_counter() - began:.1f} s in all"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "python": platform.python_version(),
                    "sipresponder": __version__,
                    "results": [r.to_dict() for r in results],
                },
                indent=2,
                ensure_ascii=False,
            )
            + "\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
