"""The UDP socket calls of the per-datagram path in C (``_udp.c``)."""

from typing import Any

MAX_BATCH: int

def recv_batch(fd: int, count: int, /) -> list[tuple[bytes, tuple[Any, ...]]]: ...
def send_to(fd: int, family: int, data: bytes, address: tuple[Any, ...], /) -> bool: ...
