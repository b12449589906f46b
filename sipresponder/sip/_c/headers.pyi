"""The parser's loops in C (``headers.c``), twins of ``parser`` and ``message`` functions."""

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
def via_params(raw: str, /) -> tuple[list[tuple[str, str | None]], str | None] | None: ...
def party(value: str, /) -> tuple[bool, str | None] | None: ...
def request_line(line: str, /) -> tuple[str, str, str] | None: ...
