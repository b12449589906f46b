"""The TCP stream framer: RFC 3261 §18.3 framing by Content-Length, keep-alives, limits."""

from __future__ import annotations

from helpers import request

from sipresponder.errors import FramingError
from sipresponder.sip.framer import PING, StreamFramer


def _frame_all(chunks: list[bytes], max_size: int = 65536) -> list[object]:
    framer = StreamFramer(max_size)
    out: list[object] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def test_framer_several_messages_in_one_read() -> None:
    a = request("MESSAGE", body=b"hello")
    b = request("OPTIONS")
    assert _frame_all([a + b]) == [a, b]


def test_framer_one_byte_at_a_time() -> None:
    a = request("MESSAGE", body=b"hello")
    b = request("OPTIONS")
    stream = a + b"\r\n\r\n" + b
    out = _frame_all([stream[i : i + 1] for i in range(len(stream))])
    assert out == [a, PING, b]


def test_framer_message_split_across_reads() -> None:
    a = request("MESSAGE", body=b"0123456789")
    assert _frame_all([a[:30], a[30:-4], a[-4:]]) == [a]


def test_framer_pings_and_stray_crlf() -> None:
    a = request()
    assert _frame_all([b"\r\n\r\n\r\n\r\n", b"\r\n" + a]) == [PING, PING, a]


def test_framer_compact_content_length() -> None:
    a = request("MESSAGE", body=b"xyz").replace(b"Content-Length: 3", b"l: 3")
    assert _frame_all([a + a]) == [a, a]


def test_framer_rejects_bad_content_length_then_stops() -> None:
    bad = request().replace(b"Content-Length: 0", b"Content-Length: zz")
    framer = StreamFramer()
    out = framer.feed(bad + request())
    assert len(out) == 1 and isinstance(out[0], FramingError)
    assert out[0].status == 400
    assert framer.feed(request()) == []


def test_framer_bounds_memory() -> None:
    framer = StreamFramer(2048)
    out = framer.feed(b"OPTIONS sip:x@y SIP/2.0\r\nSubject: " + b"x" * 4000)
    assert len(out) == 1 and isinstance(out[0], FramingError) and out[0].status == 513
    assert framer.buffered == 0
    big = request("MESSAGE").replace(b"Content-Length: 0", b"Content-Length: 100000")
    out = StreamFramer(2048).feed(big)
    assert isinstance(out[0], FramingError) and out[0].status == 513
