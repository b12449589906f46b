"""The UDP socket calls of the per-datagram path in C (``udp.c``)."""

from typing import Any

MAX_BATCH: int
MAX_SEND: int

def recv_batch(fd: int, count: int, /) -> list[tuple[bytes, tuple[Any, ...]]]: ...
def send_to(fd: int, family: int, data: bytes, address: tuple[Any, ...], /) -> bool: ...
def send_batch(
    fd: int, family: int, items: list[tuple[bytes, tuple[Any, ...]]], start: int, /
) -> int: ...
