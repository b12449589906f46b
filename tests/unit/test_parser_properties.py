"""Property tests: whatever bytes arrive, the parser and framer only raise their own error."""

from __future__ import annotations

import contextlib

from helpers import request
from hypothesis import given, settings
from hypothesis import strategies as st

from sipresponder.config import Config
from sipresponder.endpoint import Endpoint, Flow
from sipresponder.errors import ParseError
from sipresponder.parser import StreamFramer, parse_message

VALID = request("INVITE", "180-486", extra=[("Contact", '"A, B" <sip:a@192.0.2.1>')])
UDP = Flow("udp", ("192.0.2.1", 5062), ("127.0.0.1", 5060))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_message(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.binary(min_size=1, max_size=8))
def test_mutated_requests_never_crash_the_endpoint(pos: int, junk: bytes) -> None:
    data = VALID[:pos] + junk + VALID[pos + len(junk) :]
    with contextlib.suppress(ParseError):
        parse_message(data)
    ep = Endpoint(Config(secret=b"k"))
    ep.receive(data, UDP, 0.0)
    assert ep.stats["internal_errors"] == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_framing_does_not_depend_on_read_sizes(cuts: list[int]) -> None:
    stream = VALID + b"\r\n\r\n" + VALID + request("MESSAGE", body=b"hello") + b"\r\n"
    framer = StreamFramer()
    out: list[object] = []
    pos = 0
    for size in cuts * 20:
        if pos >= len(stream):
            break
        out += framer.feed(stream[pos : pos + size])
        pos += size
    out += framer.feed(stream[pos:])
    assert [o for o in out if isinstance(o, bytes)] == [
        VALID,
        VALID,
        request("MESSAGE", body=b"hello"),
    ]
