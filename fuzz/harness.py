"""What the fuzz targets share: atheris when it is installed, else a bounded random loop.

A target imports the package inside ``instrumented()`` (so atheris sees its branches),
defines ``test_one_input(data: bytes)`` that raises on a bug, and calls ``main``.  The
command line is libFuzzer's (``-max_total_time=60 OUT_DIR SEED_DIR``, or crash files to
replay).  Without atheris (no wheel for this Python) ``main`` runs the same entry point on
random mutations of the seed corpus for ``-max_total_time`` seconds and writes a failing
input to ``<artifact_prefix>crash-<sha1>``, like libFuzzer, so either way a crash can be
replayed with ``python fuzz/fuzz_parser.py CRASH_FILE``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the machine
    atheris = None

#: Bytes the fallback loop inserts: line ends, NUL, high bytes, SIP punctuation.
_INSERTS = [b"\r\n", b"\r", b"\n", b"\x00", b"\xff", b"\xc2\xb2", b" ", b":", b";", b",", b"<"]

logging.disable(logging.CRITICAL)  # the endpoint logs what peers get wrong: not wanted here


def instrumented() -> contextlib.AbstractContextManager[object]:
    """Import the code under test inside this, so atheris can trace its branches."""
    return atheris.instrument_imports() if atheris is not None else contextlib.nullcontext()


def main(test_one_input: Callable[[bytes], None]) -> None:
    if atheris is not None:
        atheris.Setup(sys.argv, test_one_input)
        atheris.Fuzz()
    else:
        print("atheris is not installed: running a random mutation loop instead", flush=True)
        sys.exit(_fallback(test_one_input, sys.argv[1:]))


def _fallback(test_one_input: Callable[[bytes], None], args: list[str]) -> int:
    options = {a[1:].split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("-")}
    paths = [Path(a) for a in args if not a.startswith("-")]
    files = [p for p in paths if p.is_file()]
    if files:  # replay crash files, as libFuzzer does
        for path in files:
            test_one_input(path.read_bytes())
        return 0
    seeds = [f.read_bytes() for d in paths if d.is_dir() for f in sorted(d.iterdir())] or [b""]
    deadline = time.monotonic() + float(options.get("max_total_time", "60"))
    prefix = options.get("artifact_prefix", "./")
    rng = random.Random(int(options.get("seed", "0")) or None)
    runs = 0
    for data in _mutations(seeds, rng):
        if time.monotonic() >= deadline:
            break
        runs += 1
        try:
            test_one_input(data)
        except Exception:
            traceback.print_exc()
            crash = Path(f"{prefix}crash-{hashlib.sha1(data).hexdigest()}")
            crash.write_bytes(data)
            print(f"crash after {runs} runs; input written to {crash}", flush=True)
            return 1
    print(f"stat::number_of_executed_units: {runs}", flush=True)
    return 0


def _mutations(seeds: list[bytes], rng: random.Random) -> Iterator[bytes]:
    while True:
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randint(0, len(data))
            op = rng.randrange(5)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                del data[pos:]
            elif op == 2:
                data[pos:pos] = rng.choice(_INSERTS)
            elif op == 3:
                data[pos:pos] = rng.randbytes(rng.randint(1, 8))
            else:
                other = rng.choice(seeds)
                start = rng.randint(0, len(other))
                data[pos:pos] = other[start : start + rng.randint(1, 64)]
        yield bytes(data)
