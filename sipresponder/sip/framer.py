"""The TCP stream framer: a byte stream -> whole SIP messages (RFC 3261 §18.3).

What belongs here: ``StreamFramer`` (Content-Length framing of a byte stream, CRLF
keep-alives, a size limit), the ``PING`` it yields for a keep-alive (RFC 5626 §3.5.1), and
``frame_head``, the length of the message at the head of the buffer.  Each message it
cuts out goes to ``parser.parse_message`` whole.  Imports ``errors``, ``parser`` (its
default size limit) and ``_speedups`` (the C twin of ``frame_head``) only; no sockets,
clocks or randomness.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from ..errors import FramingError
from ._speedups import twin
from .parser import DEFAULT_MAX_SIZE

# C twins of the _py_* functions here, or None (loaded by sip/_speedups.py).
_c_frame_head: Final[Callable[[bytes | bytearray, int, int], int] | None] = twin(
    __name__, "frame_head"
)


class Ping:
    """A CRLF CRLF keep-alive ping read from a stream (RFC 5626 §3.5.1)."""

    __slots__ = ()


PING: Final = Ping()


#: A Content-Length line (or its compact form) of a header section: found after a line
#: end, which lets the regex engine skip ahead (four times faster than ``^`` with re.M).
_CL_RE = re.compile(rb"\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I)

#: What ``frame_head`` returns when no message length can be given yet, or ever.
FRAME_WAIT: Final = -1  # the header section has not all come yet
FRAME_TOO_LARGE: Final = -2  # 513: longer than the limit, or its header section already is
FRAME_BAD_LENGTH: Final = -3  # 400: Content-Length missing a number, or repeated with another


def frame_head(buf: bytes | bytearray, pos: int, max_size: int) -> int:
    """The length in bytes of the message starting at ``buf[pos]`` (a start line, not a
    CR or LF), from its header section's end and its Content-Length (RFC 3261 §18.3), or
    one of the ``FRAME_*`` codes.  With the compiled core, the same in C
    (``_c_frame_head``: a header scan without a regex, sets and method calls).
    """
    if _c_frame_head is not None:
        return _c_frame_head(buf, pos, max_size)
    return _py_frame_head(buf, pos, max_size)


def _py_frame_head(buf: bytes | bytearray, pos: int, max_size: int) -> int:
    """``frame_head`` in Python: the definition, which the pure-Python core runs."""
    end = buf.find(b"\r\n\r\n", pos)
    if end < 0:
        return FRAME_TOO_LARGE if len(buf) - pos > max_size else FRAME_WAIT
    head_len = end + 4 - pos
    if head_len > max_size:
        # Too large whatever its Content-Length says: the same answer as when the
        # header arrives in pieces and overflows before its end is seen.
        return FRAME_TOO_LARGE
    length = 0  # none: the parser answers 400 "Missing Content-Length"
    matches = _CL_RE.findall(buf, pos, end + 2)
    if matches:
        values = {m.strip() for m in matches}
        text = values.pop() if len(values) == 1 else b"x"
        if not text.isdigit() or len(text) > 9:
            return FRAME_BAD_LENGTH
        length = int(text)
    total = head_len + length
    return FRAME_TOO_LARGE if total > max_size else total


class StreamFramer:
    """Cuts a TCP byte stream into SIP messages by Content-Length (RFC 3261 §18.3).

    ``feed(data)`` returns the complete items now available: ``bytes`` (one whole
    message), ``PING`` (a double-CRLF keep-alive to answer with one CRLF) or a final
    ``FramingError`` after which the framer accepts nothing more (the connection is to be
    closed).  Memory is bounded: at most ``max_size`` bytes are buffered.
    """

    __slots__ = ("_buf", "_max", "_need", "broken")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size
        self._need = 0  # total bytes of the message being read, once its headers are in
        self.broken = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | Ping | FramingError]:
        if self.broken:
            return []
        buf = self._buf
        # With nothing held over, messages are cut straight out of ``data`` (one whose
        # read held it alone is ``data`` itself, uncopied); only a remainder is kept.
        src: bytes | bytearray = data
        if buf:
            buf += data
            src = buf
        out: list[bytes | Ping | FramingError] = []
        pos = 0  # what is consumed; cut from the buffer once, at the end
        size = len(src)
        while pos < size:
            need = self._need
            if need:
                if size - pos < need:
                    break
                out.append(bytes(src[pos : pos + need]))
                pos += need
                self._need = 0
                continue
            if src[pos] in (13, 10):  # CR or LF before a start line
                if src.startswith(b"\r\n\r\n", pos):
                    out.append(PING)
                    pos += 4
                    continue
                if size - pos < 4 and b"\r\n\r\n".startswith(bytes(src[pos:])):
                    break  # maybe the first half of a ping: wait for more
                # §7.5: a stray CRLF (or LF) between messages is ignored.
                pos += 2 if src.startswith(b"\r\n", pos) else 1
                continue
            total = frame_head(src, pos, self._max)
            if total < 0:
                if total == FRAME_WAIT:
                    break
                self._keep(src, pos)
                if total == FRAME_BAD_LENGTH:
                    out.append(self._fail(400, "Bad Content-Length"))
                else:
                    out.append(self._fail(513, "Message Too Large"))
                return out
            self._need = total
        if pos or src is data:
            self._keep(src, pos)
        return out

    def _keep(self, src: bytes | bytearray, pos: int) -> None:
        """Hold ``src[pos:]`` (the buffer itself, or a read not all consumed) over."""
        if src is self._buf:
            del self._buf[:pos]
        elif pos < len(src):
            self._buf += src[pos:]

    def _fail(self, status: int, reason: str) -> FramingError:
        self.broken = True
        err = FramingError(status, reason, bytes(self._buf[: self._max]))
        self._buf.clear()
        return err
