"""The media sockets' read in C (``rtp.c``)."""

from typing import Any

MAX_READY: int
MAX_DATAGRAM: int

def read_ready(
    poller: Any, conduits: dict[int, Any], limit: int, /
) -> list[tuple[Any, bytes, tuple[str, int]]]: ...
