"""Fuzz target: a TCP byte stream, cut into reads of fuzzer-chosen sizes, into the framer.

The first byte picks the size limit (low two bits) and how many read sizes follow (high
six bits, at most 63); each of those bytes is one read size (1-256), used in a cycle; the
rest is the stream.  Fails when the framer raises, when its items depend on how the
stream was cut, when it buffers past its limit, when a framed message makes the parser
raise anything but ``ParseError``, or when the endpoint counts an internal error.

    python fuzz/fuzz_framer.py -max_total_time=60 build/fuzz/framer fuzz/corpus/framer
"""

from __future__ import annotations

import itertools

from harness import instrumented, main

with instrumented():
    from sipresponder.core.config import Config
    from sipresponder.core.endpoint import Endpoint
    from sipresponder.core.flow import Flow
    from sipresponder.errors import FramingError
    from sipresponder.sip.framer import StreamFramer

TCP = Flow("tcp", ("192.0.2.1", 40000), ("127.0.0.1", 5060), conn="conn-1")
LIMITS = (1024, 2048, 4096, 65536)


def frame(stream: bytes, sizes: list[int], limit: int) -> tuple[list[object], int]:
    framer = StreamFramer(limit)
    out: list[object] = []
    pos = 0
    for size in itertools.cycle(sizes or [len(stream) + 1]):
        if pos >= len(stream):
            break
        out += framer.feed(stream[pos : pos + size])
        assert framer.buffered <= limit, "the framer buffers past its limit"
        pos += size
    return out, framer.buffered


def normal(items: list[object]) -> list[object]:
    """Framing errors as (status, reason): the bytes they carry depend on the reads."""
    return [(i.status, i.reason) if isinstance(i, FramingError) else i for i in items]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    limit = LIMITS[data[0] & 3]
    count = data[0] >> 2
    sizes = [b + 1 for b in data[1 : 1 + count]]
    stream = data[1 + count :]
    items, left = frame(stream, sizes, limit)
    whole, whole_left = frame(stream, [], limit)
    assert normal(items) == normal(whole) and left == whole_left, data
    ep = Endpoint(Config(secret=b"fuzz", max_message_size=limit))
    for item in items:
        if isinstance(item, bytes):
            assert len(item) <= limit
            ep.receive(item, TCP, 0.0)
        elif isinstance(item, FramingError):
            ep.reject_framing(item, TCP)
    ep.handle_timers(1000.0)
    assert ep.stats["internal_errors"] == 0, data


if __name__ == "__main__":
    main(test_one_input)
