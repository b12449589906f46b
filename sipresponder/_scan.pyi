"""The header scanner of the parser's usual route, in C (``_scan.c``)."""

from collections.abc import Callable

from .message import Headers

def usual_headers(
    text: str,
    pos: int,
    end: int,
    keys: dict[str, str],
    hmap: dict[str, str],
    headers: Headers,
    errors: list[tuple[int, str]],
    again: Callable[[Headers, str, str, list[tuple[int, str]]], None],
    /,
) -> int: ...
