"""Inputs the fuzzers (``make fuzz``) and the review around them found to go wrong.

Each bug has its smallest input here; the fuzzers' own inputs sit in ``fuzz_crashes/``
(a crash file copied there becomes a test).  A bug still open is a strict xfail that
says what is wrong: once fixed, the xfail turns into a failure (XPASS) and the mark goes,
leaving an ordinary regression test.  All those found so far are fixed.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import SDP_OFFER, request

from sipresponder.core.config import Config
from sipresponder.core.endpoint import Endpoint
from sipresponder.core.flow import Flow
from sipresponder.errors import FramingError, ParseError
from sipresponder.sip.framer import StreamFramer
from sipresponder.sip.message import Response
from sipresponder.sip.parser import parse_message

UDP = Flow("udp", ("192.0.2.1", 5062), ("127.0.0.1", 5060))
TCP = Flow("tcp", ("192.0.2.1", 40000), ("127.0.0.1", 5060), conn="conn-1")

#: "²": str.isdigit() says yes, int() and float() say no.
SUPERSCRIPT_TWO = "\u00b2"
#: Past Python's 4300-digit limit for int(str): isdigit() says yes, int() raises.
HUGE = "9" * 5000

# ---------------------------------------------------------------------- framer

#: A header section longer than the 1024-octet limit, with a Content-Length that is no
#: number.  Found by fuzz/fuzz_framer.py (crash-10a87311..., minimised by hand).
OVERSIZED_HEADER = (
    b"OPTIONS sip:x@y SIP/2.0\r\nSubject: " + b"x" * 1100 + b"\r\nContent-Length: zz\r\n\r\n"
)


def test_an_oversized_header_gets_513_whatever_the_reads() -> None:
    # StreamFramer.feed checked Content-Length before the header size: read at once it
    # answered 400 Bad Content-Length, read in pieces 513 Message Too Large.
    in_pieces = framed([OVERSIZED_HEADER[:1030], OVERSIZED_HEADER[1030:]], 1024)
    assert in_pieces == [(513, "Message Too Large")]
    assert framed([OVERSIZED_HEADER], 1024) == in_pieces


# ---------------------------------------------------------------------- parser

#: A status line whose code is three Unicode digits (found by review of the fuzz target).
SUPERSCRIPT_STATUS = f"SIP/2.0 {SUPERSCRIPT_TWO * 3} OK\r\n\r\n".encode()


def test_a_status_code_of_unicode_digits_is_a_parse_error() -> None:
    # str.isdigit() is true for '²²²' and int() then raised ValueError: now ParseError.
    with pytest.raises(ParseError):
        parse_message(SUPERSCRIPT_STATUS)


def test_a_status_code_of_arabic_indic_digits_is_a_parse_error() -> None:
    # "٢٠٠" is decimal to int(), but a Status-Code is three ASCII DIGITs (RFC 3261 §25.1).
    with pytest.raises(ParseError):
        parse_message("SIP/2.0 \u0662\u0660\u0660 OK\r\n\r\n".encode())


# -------------------------------------------------------------------- endpoint


def offer_with_port(port: str) -> bytes:
    """An INVITE whose SDP offer has ``port`` as its audio port."""
    body = SDP_OFFER.replace(b"m=audio 49170 ", f"m=audio {port} ".encode())
    return request("INVITE", "bob", extra=[("Content-Type", "application/sdp")], body=body)


#: Where a peer's number is read -> the request carrying ``n`` there.  Each was checked
#: with str.isdigit() and then converted with int() or float(), which refuse "²" and
#: (int only) more than 4300 digits: the endpoint failed inside (counted as
#: internal_errors, dropped unanswered).  Found by review of what the fuzz targets reach;
#: message.decimal() now reads them all.
NUMERIC_FIELDS: dict[str, tuple[str, Callable[[str], bytes]]] = {
    "invite-expires": (
        "endpoint._expires: float() of Expires",
        lambda n: request("INVITE", "bob", extra=[("Expires", n)]),
    ),
    "register-expires": (
        "responses._register_bindings: int() of Expires",
        lambda n: request("REGISTER", extra=[("Expires", n), ("Contact", "<sip:a@b>")]),
    ),
    "register-contact-expires": (
        "responses._register_bindings: int() of a Contact expires parameter",
        lambda n: request("REGISTER", extra=[("Contact", f"<sip:a@b>;expires={n}")]),
    ),
    "423-expires": (
        "responses._at_least: int() of Expires, building Min-Expires of a 423",
        lambda n: request("OPTIONS", "423", extra=[("Expires", n)]),
    ),
    "422-session-expires": (
        "responses._at_least: int() of Session-Expires, building Min-SE of a 422",
        lambda n: request("OPTIONS", "422", extra=[("Session-Expires", n)]),
    ),
    "sdp-port": (
        "sdp._parse: int() of the m= port raises ValueError, which is no SdpError (so no 400)",
        offer_with_port,
    ),
}
BAD_NUMBERS = {"superscript": SUPERSCRIPT_TWO, "5000-digits": HUGE}

NUMERIC_CASES = [
    pytest.param(
        build(number),
        where,
        id=f"{field}-{kind}",
    )
    for field, (where, build) in NUMERIC_FIELDS.items()
    for kind, number in BAD_NUMBERS.items()
]


@pytest.mark.parametrize(("data", "where"), NUMERIC_CASES)
def test_numeric_fields_never_fail_the_endpoint(data: bytes, where: str) -> None:
    ep = Endpoint(Config(secret=b"k"))
    out = ep.receive(data, UDP, 0.0)
    assert ep.stats["internal_errors"] == 0, where
    assert out  # answered: with the plan, or 400 for a field it cannot read


def test_an_unreadable_sdp_offer_still_gets_400() -> None:
    # The SdpError path the two SDP cases above should take.
    data = offer_with_port("x")
    ep = Endpoint(Config(secret=b"k"))
    answers = [parse_message(d) for d, _, _ in ep.receive(data, UDP, 0.0)]
    assert [a.status for a in answers if isinstance(a, Response)] == [400]
    assert ep.stats["internal_errors"] == 0


# ------------------------------------------------------- crash files, replayed

#: Inputs as the fuzz targets found them (``make fuzz`` writes build/fuzz/crash-*): a
#: file copied into fuzz_crashes/parser/ or fuzz_crashes/framer/ becomes a test here.
CRASHES = Path(__file__).parent / "fuzz_crashes"
#: Crash files still failing -> what is wrong (the cases above say it smaller).
OPEN: dict[str, str] = {}


def crash_files(target: str) -> list[object]:
    return [
        pytest.param(
            path.read_bytes(),
            id=path.name,
            marks=[pytest.mark.xfail(strict=True, reason=OPEN[path.name])]
            if path.name in OPEN
            else [],
        )
        for path in sorted((CRASHES / target).iterdir())
    ]


@pytest.mark.parametrize("data", crash_files("parser"))
def test_parser_crash_files_only_raise_parse_error_and_never_fail_the_endpoint(
    data: bytes,
) -> None:
    # What fuzz/fuzz_parser.py checks, without its tolerance for the open bugs.
    for stream in (False, True):
        with contextlib.suppress(ParseError):
            parse_message(data, stream=stream)
    ep = Endpoint(Config(secret=b"k"))
    ep.receive(data, UDP, 0.0)
    ep.receive(data, TCP, 0.0)
    assert ep.stats["internal_errors"] == 0


def cut(stream: bytes, sizes: list[int]) -> list[bytes]:
    """``stream`` as reads of ``sizes`` (in a cycle); one read when there are none."""
    chunks: list[bytes] = []
    pos = 0
    for size in itertools.cycle(sizes or [len(stream) + 1]):
        if pos >= len(stream):
            return chunks
        chunks.append(stream[pos : pos + size])
        pos += size
    return chunks


def framed(chunks: list[bytes], limit: int) -> list[object]:
    """The framer's items, a framing error as (status, reason)."""
    framer = StreamFramer(limit)
    items = [item for chunk in chunks for item in framer.feed(chunk)]
    return [(i.status, i.reason) if isinstance(i, FramingError) else i for i in items]


@pytest.mark.parametrize("data", crash_files("framer"))
def test_framer_crash_files_frame_the_same_whatever_the_reads(data: bytes) -> None:
    # fuzz/fuzz_framer.py's input: byte 0 = limit (low 2 bits) and the number of read
    # sizes (high 6 bits), then the read sizes (each + 1), then the stream.
    limit = (1024, 2048, 4096, 65536)[data[0] & 3]
    count = data[0] >> 2
    sizes = [size + 1 for size in data[1 : 1 + count]]
    stream = data[1 + count :]
    assert framed(cut(stream, sizes), limit) == framed([stream], limit)
