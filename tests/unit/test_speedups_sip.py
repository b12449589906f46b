"""The C functions of ``sip`` (``sipresponder/sip/_c/``) do exactly what their Python twins
do: the header scanner as ``parser._py_usual_headers`` (the same count, map, later lines and
errors, for any text), ``decimal`` as ``message._py_decimal``, the TCP framer's
``frame_head`` as ``framer._py_frame_head``, ``via_params`` as ``message._py_via_params``,
``party`` as ``parser._py_party`` (``uri.check_name_addr`` with ``message.tag_of``),
``request_line`` as ``parser._py_request_line``, and ``to_tag`` as ``responses._py_to_tag``
(hashlib's BLAKE2s).

The ``compare_<name>`` functions are those comparisons, given the Python function and the C
one: tests/unit/test_speedups.py runs each for its entry of ``sip/_speedups.py``'s
``TWINS``.  The tests here are what only the C functions do: refuse bad arguments, keep
their cache, decline input.  The C modules are loaded from their files, so that these tests
run in the pure-Python test run too (where the package itself ignores them); they are
skipped where they were not built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import load_c_module
from hypothesis import example, given, settings
from hypothesis import strategies as st
from required import missing_core

from sipresponder.sip import message, parser, responses, uri
from sipresponder.sip.message import Headers

#: A Python function or its C twin.
Fn = Callable[..., Any]

SCAN = load_c_module("sip._c.headers")
FRAMER = load_c_module("sip._c.framer")
TAG = load_c_module("sip._c.tag")


@pytest.fixture(autouse=True)
def _c_scanner_built() -> None:
    if SCAN is None or FRAMER is None or TAG is None:
        missing_core("the C modules of sip are not built here")


START = "INVITE sip:bob@192.0.2.1 SIP/2.0\r\n"

#: Names the scanner finds in the parser's ``_KEYS``: as spelled on the wire, compact,
#: odd case, with blanks before the colon, and longer than the C cache keeps.
KNOWN = [
    "Via",
    "v",
    "VIA",
    "From",
    "f",
    "To",
    "t",
    "Call-ID",
    "i",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Content-Length",
    "l",
    "Content-Type",
    "Via ",
    "From\t",
    "X-A-Name-Longer-Than-Thirty-Two-Characters",
    *(f"X-Many-{n}" for n in range(300)),  # more names than the cache's 256 slots
]
for _name in KNOWN:
    _key = parser._header_key(_name.rstrip(" \t"))
    assert _key is not None
    parser._KEYS[_name] = _key
#: Names not in ``_KEYS``: the scanner declines their line (-1).
UNKNOWN = ["X-Unknown-4242", "Unheard-Of", " Via", "Vi a"]

name = st.sampled_from(KNOWN + UNKNOWN)
#: Values with every kind of ASCII blank, colons and commas in them.
value = st.text(st.sampled_from("ab1 \t\x0b\x0c\x1c\x1f:;,=<>@\r"), max_size=8)
separator = st.sampled_from([": ", ":", ":  ", ":\t", ": \t", " : "])
line = st.one_of(
    st.builds(lambda n, s, v: n + s + v, name, separator, value),
    st.sampled_from(["", " folded", "\tfolded", "no colon", ": no name", ":"]),
)
line_end = st.sampled_from(["\r\n"] * 8 + ["\n", "\r", "\r\r\n"])


@st.composite
def header_blocks(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.tuples(line, line_end), max_size=10))
    return "".join(text + end for text, end in lines)


def run(scan: Fn, python: bool, text: str, pos: int, end: int) -> tuple[object, ...]:
    """Everything one scanner returns and fills in (the C one takes the parser's ``_KEYS``,
    the map of the headers and ``_again`` besides)."""
    headers = Headers()
    errors: list[tuple[int, str]] = []
    if python:
        count = scan(text, pos, end, headers, errors)
    else:
        count = scan(text, pos, end, parser._KEYS, headers._map, headers, errors, parser._again)
    return count, list(headers._map.items()), headers._more, errors


def both(
    block: str,
    tail: str = "\r\n",
    py: Fn = parser._py_usual_headers,
    c: Fn | None = None,
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """The Python function's result and the C one's, for the header lines ``block``,
    read up to the blank line as ``_parse_usual`` does."""
    text = START + block + tail
    pos = len(START)
    end = text.find("\r\n\r\n", pos - 2)
    if end < pos:
        end = len(text)
    if c is None:
        assert SCAN is not None
        c = SCAN.usual_headers
    return run(py, True, text, pos, end), run(c, False, text, pos, end)


@settings(max_examples=1500, deadline=None)
@given(header_blocks(), st.sampled_from(["\r\n", "\r\nbody", "", "\n"]))
@example("Via: a\r\nv: b\r\nFrom: x\r\nf: y\r\n", "\r\n")  # later lines, and an error
@example("Via: \x1c a \x0b\r\n", "\r\n")  # str.strip's own blanks at both ends
@example("Via:\r\n", "\r\n")  # an empty value
def compare_usual_headers(py: Fn, c: Fn, block: str, tail: str) -> None:
    python, c_result = both(block, tail, py, c)
    assert c_result == python


def test_the_usual_request_is_read_whole() -> None:
    block = "".join(f"{n}: value of {n}\r\n" for n in ("Via", "From", "To", "Call-ID", "CSeq"))
    python, c = both(block + "Via: second\r\nContent-Length: 0\r\n")
    assert c == python
    assert python[0] == 7
    assert python[2] == {"via": ["second"]}


def test_a_repeated_single_header_is_an_error_in_both() -> None:
    python, c = both("From: a\r\nFrom: b\r\n")
    assert c == python
    assert python[3] == [(400, "Multiple From Headers")]


def test_names_beyond_the_cache_are_found_every_time() -> None:
    # Twice over: the second pass finds names in the cache, or after it overwrote them.
    block = "".join(f"X-Many-{n}: {n}\r\n" for n in range(300))
    for _ in range(2):
        python, c = both(block)
        assert c == python
        assert python[0] == 300


def test_the_name_cache_answers_only_for_the_keys_it_is_given() -> None:
    """A name cached from one dict is not found through another that lacks it, nor
    through the same dict once cleared (the parser clears ``_KEYS`` when it is full)."""
    assert SCAN is not None
    text = START + "X-Cached-Name: 1\r\n\r\n"
    end = text.find("\r\n\r\n")

    def scan(keys: dict[str, str]) -> int:
        headers = Headers()
        args = (text, len(START), end, keys, headers._map, headers, [], parser._again)
        return int(SCAN.usual_headers(*args))

    keys = {"X-Cached-Name": "x-cached-name", "Via": "via", "From": "from"}
    assert scan(keys) == 1  # now in the cache
    assert scan({"Via": "via"}) == -1  # another dict, without the name
    assert scan(keys) == 1
    keys.clear()
    keys["Via"] = "via"
    assert scan(keys) == -1  # the same dict, cleared: not found
    assert scan(parser._KEYS) >= -1  # and the parser's own dict is served again


def test_text_that_is_not_ascii_is_left_to_the_python_function() -> None:
    assert SCAN is not None
    for text in (START + "Via: caf\xe9\r\n\r\n", START + "Via: \udc80\r\n\r\n"):
        headers = Headers()
        errors: list[tuple[int, str]] = []
        end = text.find("\r\n\r\n")
        args = (text, len(START), end, parser._KEYS, headers._map, headers, errors, parser._again)
        assert SCAN.usual_headers(*args) == -2
        assert headers._map == {} and errors == []


def test_bad_arguments_are_refused_not_read() -> None:
    assert SCAN is not None
    scan = SCAN.usual_headers
    text = START + "Via: a\r\n\r\n"
    headers = Headers()
    tail = (parser._KEYS, headers._map, headers, [], parser._again)
    with pytest.raises(ValueError):
        scan(text, 0, 10, *tail)  # no start line before pos
    with pytest.raises(ValueError):
        scan(text, len(START), len(text) + 1, *tail)  # past the text
    with pytest.raises(TypeError):
        scan(text.encode(), len(START), 10, *tail)
    with pytest.raises(TypeError):
        scan(text, len(START), 10)
    assert headers._map == {}


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.text(st.sampled_from("0123456789"), max_size=25),
        # "/" and ":" border the digits; "²" and "٣" are digits to str.isdigit.
        st.text(st.sampled_from("0123456789/: +-_.x\t²٣\udc80"), max_size=12),
    ),
    st.integers(-1, 25),
)
@example("0", 1)
@example("007", 3)
@example("9" * 19, 25)  # beyond a long long's certain range: Python's own conversion
@example("99999999999", 10)  # one digit too many
def compare_decimal(py: Fn, c: Fn, text: str, digits: int) -> None:
    assert c(text, digits) == py(text, digits)


def test_the_c_decimal_refuses_bad_arguments() -> None:
    assert SCAN is not None
    with pytest.raises(TypeError):
        SCAN.decimal(b"12", 3)
    with pytest.raises(TypeError):
        SCAN.decimal("12")
    with pytest.raises(TypeError):
        SCAN.decimal("12", "3")


#: Lines of a header section for the framer: Content-Length as spelled on the wire, in
#: any case, compact, with blanks either side of its colon and value, and names that only
#: begin like it; values that are numbers, too long, empty or not numbers at all.
cl_name = st.sampled_from(
    [
        "Content-Length",
        "content-length",
        "CONTENT-LENGTH",
        "l",
        "L",
        "Content-Lengthy",
        "Content-Lengt",
        "x-l",
        "ll",
        " l",
        "Via",
    ]
)
cl_value = st.one_of(
    st.sampled_from(["0", "3", "12", "007", "123456789", "1234567890", "", "x", "-1", "3 4"]),
    st.text(st.sampled_from("0123456789 \t\x0b\x0c\x1ca\r"), max_size=11),
)
cl_line = st.builds(
    lambda n, a, v, z: f"{n}{a}:{v}{z}".encode("latin-1"),
    cl_name,
    st.sampled_from(["", " ", "\t", " \t "]),
    cl_value,
    st.sampled_from(["", " ", "\t", "\x0b"]),
)
frame_line = st.one_of(cl_line, st.sampled_from([b"Via: a", b"", b"folded l: 5", b"\xe9: 1"]))
frame_end = st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b"\r\r\n"])


@st.composite
def framed(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """A buffer, a position in it where a start line begins, and a size limit."""
    before = draw(st.sampled_from([b"", b"x", b"ACK sip:a SIP/2.0\r\n\r\n"]))
    lines = draw(st.lists(st.tuples(frame_line, frame_end), max_size=8))
    head = b"OPTIONS sip:a SIP/2.0\r\n" + b"".join(t + e for t, e in lines)
    after = draw(st.sampled_from([b"\r\n", b"\r\nbody", b"", b"\r\n\r\n", b"\r"]))
    size = draw(st.integers(0, 300))
    return before + head + after, len(before), size


@settings(max_examples=1500, deadline=None)
@given(framed())
@example((b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\nContent-Length:3\x0b\r\n\r\nabc", 0, 4096))
@example((b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\nContent-Length: 4\r\n\r\n", 0, 4096))
@example((b"OPTIONS sip:a SIP/2.0\r\nL\t:\t\r\n\r\n", 0, 4096))  # an empty value
@example((b"OPTIONS sip:a SIP/2.0\r\nl: 5\n\r\n\r\n", 0, 4096))  # a bare LF line end
@example((b"OPTIONS sip:a SIP/2.0\r\nl: x\r\n\r\n", 0, 30))  # too long before bad: 513
@example((b"OPTIONS sip:a SIP/2.0\r\nl: x\r\n\r\n", 0, 31))  # just fits, bad: 400
@example((b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\n\r\nx", 0, 32))  # a body that just fits
@example((b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\n\r\nx", 0, 31))  # ... and one that does not
def compare_frame_head(py: Fn, c: Fn, case: tuple[bytes, int, int]) -> None:
    data, pos, size = case
    python = py(data, pos, size)
    assert c(data, pos, size) == python
    assert c(bytearray(data), pos, size) == python


def test_the_c_framer_refuses_bad_arguments() -> None:
    assert FRAMER is not None
    with pytest.raises(ValueError):
        FRAMER.frame_head(b"abc", 4, 100)  # past the buffer
    with pytest.raises(ValueError):
        FRAMER.frame_head(b"abc", -1, 100)
    with pytest.raises(TypeError):
        FRAMER.frame_head("text", 0, 100)
    with pytest.raises(TypeError):
        FRAMER.frame_head(b"abc", 0)


ascii_text = st.text(st.characters(max_codepoint=127), max_size=140)


@settings(max_examples=1000, deadline=None)
@given(
    st.binary(max_size=40),
    st.one_of(ascii_text, st.text(max_size=8)),
    st.one_of(st.none(), ascii_text, st.text(max_size=8)),
    st.one_of(st.integers(0, 2**32), st.integers(-(2**70), 2**70)),
)
@example(b"k", "a" * 59, "f", 7)  # an input of 63 bytes: one block
@example(b"k", "a" * 60, "f", 7)  # 64 bytes: one full block
@example(b"k", "a" * 61, "f", 7)  # 65 bytes: two blocks
@example(b"", "a@b", None, 1)  # no key: BLAKE2s unkeyed
@example(b"s" * 32, "a@b", "t", -1)  # the longest key it takes
@example(b"s" * 33, "a@b", "t", 1)  # one byte too long: left to Python
def compare_to_tag(
    py: Fn, c: Fn, secret: bytes, call_id: str, from_tag: str | None, cseq_num: int
) -> None:
    tag = c(secret, call_id, from_tag, cseq_num)
    ascii_ = call_id.isascii() and (from_tag is None or from_tag.isascii())
    fits = len(secret) <= 32 and -(2**63) <= cseq_num < 2**63
    if ascii_ and fits:
        assert tag == py(secret, call_id, from_tag, cseq_num)
    else:
        assert tag is None  # the Python function decides


def test_the_c_to_tag_leaves_long_input_to_python() -> None:
    assert TAG is not None
    assert TAG.to_tag(b"k", "a" * 2000, "t", 1) is None
    assert len(responses.make_to_tag(b"k", "a" * 2000, "t", 1)) == 16


def test_the_c_to_tag_refuses_bad_arguments() -> None:
    assert TAG is not None
    with pytest.raises(TypeError):
        TAG.to_tag("k", "a", "t", 1)
    with pytest.raises(TypeError):
        TAG.to_tag(b"k", "a", "t")
    with pytest.raises(TypeError):
        TAG.to_tag(b"k", "a", 5, 1)


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.text(st.sampled_from(";=aB1 \t\x0b\x0c\x1c\x1f\r\n-.!%*_+`'~:[]"), max_size=20),
        st.builds(lambda t: ";" + t, st.text(st.sampled_from(";=bRanch z9hG4bK"), max_size=20)),
        st.text(max_size=6),  # not ASCII: left to Python
    )
)
@example("")
@example(";")
@example(";branch=z9hG4bK-4242-1-0;rport")
@example("; Branch = z9 ;RPORT;received=")
@example(";a;;b")  # an empty name in the middle
@example(";\x1c=1")  # str.strip's blank \x1c: a name that strips to nothing
def compare_via_params(py: Fn, c: Fn, raw: str) -> None:
    got = c(raw)
    if raw.isascii():
        assert got == py(raw)
    else:
        assert got is None


def test_the_c_via_params_refuses_bad_arguments() -> None:
    assert SCAN is not None
    with pytest.raises(TypeError):
        SCAN.via_params(b";branch=1")
    with pytest.raises(TypeError):
        SCAN.via_params()


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.text(st.sampled_from('<>:;= "sip@b1tagTAG.!%*_+`~-\t'), max_size=24),
        st.builds(
            lambda a, b: a + ";tag=" + b,
            st.sampled_from(["<sip:a@b>", "sip:a@b", '"A" <sip:a@b>', "<sip:a@b;tag=1>", ""]),
            st.text(st.sampled_from("aZ09.!%*_+`'~- ;,>\t"), max_size=8),
        ),
        st.text(max_size=6),  # not ASCII: left to Python
    )
)
@example("<sip:a@b>;tag=1")
@example("<sip:a@b>;TAG=1")  # "tag" in another case: the patterns decide
@example("<sip:a@b>;tag=")  # an empty tag: the patterns decide
@example("<sip:a@b>;tag=a b")  # a tag with a blank: the patterns decide
@example("<x>")  # no URI inside the brackets
@example("<sip:a@b")  # no closing bracket
def compare_party(py: Fn, c: Fn, value: str) -> None:
    got = c(value)
    python = py(value)
    assert python == (uri.check_name_addr(value), message.tag_of(value))
    if got is not None:
        assert got == python
    else:
        # Declined only for text that is not ASCII, or a tag the patterns must read.
        assert not value.isascii() or "tag" in value.lower()


def test_the_c_party_decides_the_usual_spellings() -> None:
    assert SCAN is not None
    for value, read in [
        ("<sip:a@b>;tag=4242SIPpTag001", (True, "4242SIPpTag001")),
        ('"Bob" <sip:bob@host:5060>', (True, None)),
        ("sip:a@b;tag=x.y-z", (True, "x.y-z")),
        ("<bob>", (False, None)),
    ]:
        assert SCAN.party(value) == read
    with pytest.raises(TypeError):
        SCAN.party(b"<sip:a@b>")


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.text(st.sampled_from("INVTEACK <>sip:@/2.0S\t;()"), max_size=24),
        st.builds(
            lambda m, u, v: f"{m} {u} {v}",
            st.sampled_from(["INVITE", "ACK", "FOO", "in vite", "", "BAD(", "X-Y.z!"]),
            st.sampled_from(
                [
                    "sip:a@b",
                    "<sip:a@b>",
                    "",
                    "sip:a b",
                    "tel:1",
                    "sip:a@b:5060",
                    "sip:a:pw@b:5060",  # three colons, none an IPv6 host's
                    "sip:2001:db8::10",  # RFC 5118 §4.2: no brackets
                    "sip:[2001:db8::10]:5060",
                ]
            ),
            st.sampled_from(["SIP/2.0", "SIP/3.0", "", "SIP/2.0 ", "x"]),
        ),
        st.text(max_size=6),  # not ASCII: left to Python
    )
)
@example("INVITE sip:bob@192.0.2.1 SIP/2.0")
@example("INVITE  sip:bob@192.0.2.1 SIP/2.0")  # two spaces: an empty part
@example("INVITE <sip:bob@192.0.2.1> SIP/2.0")  # RFC 4475 §3.1.2.7
@example("INV(TE sip:bob@192.0.2.1 SIP/2.0")  # not a token
@example(" sip:a SIP/2.0")  # no method
@example("REGISTER sip:2001:db8::10 SIP/2.0")  # RFC 5118 §4.2: left to Python, a 400
@example("OPTIONS sip:[2001:db8::10]:5060 SIP/2.0")  # left to Python, well-formed
def compare_request_line(py: Fn, c: Fn, line: str) -> None:
    errors: list[tuple[int, str]] = []
    python = py(line, errors)
    got = c(line)
    if got is not None:  # C never takes a line that the Python function finds wrong
        assert line.isascii() and not errors and got == python
    elif line.isascii() and not errors:
        # C leaves to Python only a URI with more than two colons (maybe IPv6).
        assert python[1].count(":") > 2


def test_the_c_request_line_refuses_bad_arguments() -> None:
    assert SCAN is not None
    with pytest.raises(TypeError):
        SCAN.request_line(b"INVITE sip:a SIP/2.0")
