"""The media sockets' read does what ``epoll.poll`` and ``recvfrom`` do, on real loopback
sockets, in C (``sipresponder/aio/_c/rtp.c``) and in Python (``aio/rtp.py``'s
``_py_read_ready``) alike: one datagram from each ready socket of the set whose descriptor
is a key of the conduits, with its conduit and its source; the same source tuple object
while a socket's peer stays the same; at most ``limit`` sockets a call, the rest left for
the next (the set is level-triggered).

Each test runs with both (the ``read_ready`` fixture); ``compare_read_ready`` gives both
the same input and compares what they return: tests/unit/test_speedups.py runs it for its
entry of ``sip/_speedups.py``'s ``TWINS``.  The C module is loaded from its file, so that
these tests run in the pure-Python test run too; where it was not built, its runs are
skipped.
"""

from __future__ import annotations

import itertools
import select
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import bound, load_c_module
from required import missing_core

from sipresponder.aio import rtp as glue

Fn = Callable[..., Any]


@pytest.fixture(params=["c", "python"])
def read_ready(request: pytest.FixtureRequest) -> Fn:
    """``read_ready`` in C and (a second run) in Python: the same tests for both."""
    if request.param == "python":
        return glue._py_read_ready
    module = load_c_module("aio._c.rtp")
    if module is None:
        missing_core("the C module aio._c.rtp is not built here")
    function: Fn = module.read_ready
    return function


class Watched:
    """An epoll set of bound UDP sockets, each with a conduit (here a label)."""

    def __init__(self, count: int, family: socket.AddressFamily = socket.AF_INET) -> None:
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.poller = select.epoll()
        self.socks = [bound(family, host) for _ in range(count)]
        self.conduits: dict[int, str] = {}
        for i, sock in enumerate(self.socks):
            self.poller.register(sock.fileno(), select.EPOLLIN)
            self.conduits[sock.fileno()] = f"conduit {i}"

    def address(self, i: int) -> tuple[str, int]:
        host, port = self.socks[i].getsockname()[:2]
        return host, port

    def settle(self) -> None:
        """Wait until something is ready (loopback delivers within the sender's call, so
        this returns at once; it bounds a test that would otherwise fail)."""
        select.select(self.socks, [], [], 2.0)

    def close(self) -> None:
        self.poller.close()
        for sock in self.socks:
            sock.close()


@pytest.fixture
def watched() -> Iterator[Callable[..., Watched]]:
    made: list[Watched] = []

    def make(count: int, family: socket.AddressFamily = socket.AF_INET) -> Watched:
        try:
            w = Watched(count, family)
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback here ({exc})")
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def read(f: Fn, w: Watched, limit: int = 64) -> list[tuple[str, bytes, Any]]:
    got: list[tuple[str, bytes, Any]] = f(w.poller, w.conduits, limit)
    return got


def test_nothing_ready_is_an_empty_list(read_ready: Fn, watched: Callable[..., Watched]) -> None:
    assert read(read_ready, watched(3)) == []


def test_one_datagram_from_each_ready_socket_with_its_conduit_and_source(
    read_ready: Fn, watched: Callable[..., Watched]
) -> None:
    w = watched(4)
    client = bound()
    try:
        for i in (0, 2, 2, 3):
            client.sendto(b"packet %d" % i, w.address(i))
        w.settle()
        first = sorted(read(read_ready, w))
        source = client.getsockname()
        assert first == [
            ("conduit 0", b"packet 0", source),
            ("conduit 2", b"packet 2", source),
            ("conduit 3", b"packet 3", source),
        ]
        # The second datagram on socket 2 waits for the next call: one read a socket.
        assert read(read_ready, w) == [("conduit 2", b"packet 2", source)]
        assert read(read_ready, w) == []
    finally:
        client.close()


def test_a_socket_without_a_conduit_is_not_read(
    read_ready: Fn, watched: Callable[..., Watched]
) -> None:
    w = watched(2)
    del w.conduits[w.socks[1].fileno()]
    client = bound()
    try:
        client.sendto(b"a", w.address(0))
        client.sendto(b"b", w.address(1))
        w.settle()
        assert [c for c, _, _ in read(read_ready, w)] == ["conduit 0"]
        assert w.socks[1].recv(10) == b"b"  # left where it was
    finally:
        client.close()


def test_the_same_peer_gets_the_same_tuple_object(
    read_ready: Fn, watched: Callable[..., Watched]
) -> None:
    w = watched(1)
    a, b = bound(), bound()
    try:
        sources = []
        for sender in (a, a, b, b, a):
            sender.sendto(b"x", w.address(0))
            w.settle()
            [(_, _, source)] = read(read_ready, w)
            sources.append(source)
        assert sources[0] == a.getsockname() and sources[2] == b.getsockname()
        assert sources[0] is sources[1] and sources[2] is sources[3]
        assert sources[1] is not sources[2] and sources[4] == sources[0]
    finally:
        a.close()
        b.close()


def test_at_most_limit_sockets_a_call_the_rest_on_the_next(
    read_ready: Fn, watched: Callable[..., Watched]
) -> None:
    w = watched(5)
    client = bound()
    try:
        for i in range(5):
            client.sendto(b"%d" % i, w.address(i))
        w.settle()
        first = read(read_ready, w, 2)
        second = read(read_ready, w, 2)
        third = read(read_ready, w, 2)
        assert [len(first), len(second), len(third)] == [2, 2, 1]
        assert sorted(d for _, d, _ in first + second + third) == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        client.close()


def test_a_long_datagram_is_cut_as_recvfrom_cuts_it(
    read_ready: Fn, watched: Callable[..., Watched]
) -> None:
    w = watched(1)
    client = bound()
    try:
        client.sendto(bytes(range(256)) * 12, w.address(0))
        w.settle()
        [(_, data, _)] = read(read_ready, w)
        assert data == (bytes(range(256)) * 12)[: glue.MAX_DATAGRAM]
    finally:
        client.close()


def test_a_failed_read_is_skipped(read_ready: Fn, watched: Callable[..., Watched]) -> None:
    """A connected socket whose last send met a closed port: the ICMP error makes it
    ready, its read fails, and it is skipped; the others are read."""
    w = watched(2)
    gone = bound()
    gone_address = gone.getsockname()
    gone.close()
    client = bound()
    try:
        w.socks[0].connect(gone_address)
        w.socks[0].send(b"to nobody")
        client.sendto(b"ok", w.address(1))
        select.select([], [], [], 0.05)
        assert [c for c, _, _ in read(read_ready, w)] == ["conduit 1"]
    finally:
        client.close()


def test_ipv6_sources_are_host_and_port(read_ready: Fn, watched: Callable[..., Watched]) -> None:
    w = watched(1, socket.AF_INET6)
    client = bound(socket.AF_INET6, "::1")
    try:
        client.sendto(b"six", w.address(0))
        w.settle()
        assert read(read_ready, w) == [("conduit 0", b"six", client.getsockname()[:2])]
    finally:
        client.close()


def test_bad_arguments_are_refused(read_ready: Fn, watched: Callable[..., Watched]) -> None:
    w = watched(1)
    for limit in (0, glue._MAX_READY + 1):
        with pytest.raises(ValueError):
            read_ready(w.poller, w.conduits, limit)
    with pytest.raises(TypeError):
        read_ready(w.poller, list(w.conduits), 1)
    with pytest.raises(TypeError):
        read_ready(w.poller, w.conduits, 1.0)


# ------------------------------------------------------------------ the comparison


def outcome(f: Fn, *args: Any) -> object:
    """What ``f(*args)`` returns, or the type of the exception it raises."""
    try:
        return f(*args)
    except Exception as exc:
        return type(exc)


def compare_read_ready(py: Fn, c: Fn) -> None:
    """The same datagrams sent to two sets of sockets, each set read by one: the same
    conduits, data and sources, call after call, the same tuple identities; and the same
    refusals of bad arguments."""
    sets = [Watched(6), Watched(6)]
    a, b = bound(), bound()
    try:
        plan = [(0, a), (1, a), (1, b), (3, b), (5, a), (5, a), (0, b), (2, a)] * 2
        for w in sets:
            for n, (i, sender) in enumerate(plan):
                sender.sendto(bytes([65 + n]) * (n * 150), w.address(i))
            w.settle()
        reads = [
            [sorted(f(w.poller, w.conduits, 4)) for _ in range(6)]
            for f, w in zip((py, c), sets, strict=True)
        ]
        assert reads[0] == reads[1]
        assert sum(len(r) for r in reads[0]) == len(plan) and reads[0][-1] == []
        same = [
            [x[2] is y[2] for x, y in itertools.pairwise(r)]
            for r in ([i for call in read for i in call] for read in reads)
        ]
        assert same[0] == same[1]
        w = sets[0]
        for args in [
            (w.poller, w.conduits, 0),
            (w.poller, w.conduits, glue._MAX_READY + 1),
            (w.poller, [], 1),
            (w.poller, w.conduits, "1"),
            (object(), w.conduits, 1),
        ]:
            assert outcome(py, *args) == outcome(c, *args), args
    finally:
        for w in sets:
            w.close()
        a.close()
        b.close()
