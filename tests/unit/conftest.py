"""Fixtures shared by the unit tests: loopback UDP sockets, and the UDP socket calls of
each kind (C and Python) for the tests that run against both."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import SocketCalls, bound, socket_calls
from required import missing_core


@pytest.fixture
def sockets() -> Iterator[Callable[..., socket.socket]]:
    """Makes bound UDP sockets (``helpers.bound``), closed after the test; a test that asks
    for IPv6 where there is no IPv6 loopback is skipped."""
    made: list[socket.socket] = []

    def make(
        family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1"
    ) -> socket.socket:
        try:
            s = bound(family, host)
        except OSError as exc:
            if family != socket.AF_INET6:
                raise
            pytest.skip(f"no IPv6 loopback here ({exc})")
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture(params=["c", "python"])
def udp(request: pytest.FixtureRequest) -> SocketCalls:
    """The UDP socket calls, in C and (a second run) in Python: the same tests for both."""
    calls = socket_calls(request.param)
    if calls is None:
        missing_core("the C UDP calls are not built here")
    return calls
