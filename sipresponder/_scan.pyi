"""The parser's loops in C (``_scan.c``)."""

from collections.abc import Callable
from typing import Any

def usual_headers(
    text: str,
    pos: int,
    end: int,
    keys: dict[str, str],
    hmap: dict[str, str],
    headers: Any,  # message.Headers (this module sits below message)
    errors: list[tuple[int, str]],
    again: Callable[[Any, str, str, list[tuple[int, str]]], None],
    /,
) -> int: ...
def decimal(text: str, digits: int, /) -> int | None: ...
def frame_head(buf: bytes | bytearray, pos: int, max_size: int, /) -> int: ...
def to_tag(secret: bytes, call_id: str, from_tag: str | None, cseq_num: int, /) -> str | None: ...
def via_params(raw: str, /) -> tuple[list[tuple[str, str | None]], str | None] | None: ...
def party(value: str, /) -> tuple[bool, str | None] | None: ...
