"""The UDP socket calls do what the socket module does, on real loopback sockets, in C
(``sipresponder/aio/_c/udp.c``) and in Python (``aio/udp.py``'s ``_py_*`` twins) alike:
``recv_batch`` gives what ``recvfrom`` would (data and address tuple, in order, IPv4, IPv6
and dual stack), ``send_to`` delivers what ``sendto`` would, ``send_batch`` what as many
``sendto`` calls would.

Each test runs with both (the ``udp`` fixture); the ``compare_<name>`` functions give both
the same input and compare what they return, raise and deliver: tests/unit/test_speedups.py
runs each for its entry of ``sip/_speedups.py``'s ``TWINS``.  The C module is loaded from
its file, so that these tests run in the pure-Python test run too; where it was not built,
its runs are skipped.
"""

from __future__ import annotations

import itertools
import select
import socket
from collections.abc import Callable
from typing import Any

import pytest
from helpers import SocketCalls, bound, drain
from hypothesis import example, given, settings
from hypothesis import strategies as st


def batch(udp: SocketCalls, sock: socket.socket, count: int = 32) -> list[tuple[bytes, Any]]:
    result: list[tuple[bytes, Any]] = udp.recv_batch(sock.fileno(), count)
    return result


def settle(sock: socket.socket) -> None:
    """Wait until the socket has something to read (loopback delivers within the
    sender's call, so this returns at once; it bounds a test that would otherwise fail)."""
    select.select([sock], [], [], 2.0)


# ------------------------------------------------------------------ recv_batch


def test_nothing_waiting_is_an_empty_batch(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    assert batch(udp, sockets()) == []


def test_a_batch_is_what_recvfrom_gives_in_order_with_each_peers_address(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    server_sock, reference = sockets(), sockets()
    a, b = sockets(), sockets()
    sent: list[tuple[bytes, socket.socket]] = []
    for i in range(12):
        peer = a if i % 3 else b
        data = bytes([65 + i]) * (i * 97)  # sizes 0, 97, 194... an empty datagram too
        for target in (server_sock, reference):
            peer.sendto(data, target.getsockname())
        sent.append((data, peer))
    expected = drain(reference, 12)
    settle(server_sock)
    got = batch(udp, server_sock)
    assert got == expected
    assert [addr for _, addr in got] == [p.getsockname() for _, p in sent]
    assert batch(udp, server_sock) == []


def test_the_same_peer_gets_the_same_tuple_object(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    # What lets the transport find the peer's flow by identity.
    server_sock, a, b = sockets(), sockets(), sockets()
    for peer in (a, a, b, a):
        peer.sendto(b"x", server_sock.getsockname())
    settle(server_sock)
    got = batch(udp, server_sock)
    assert [addr for _, addr in got] == [
        a.getsockname(),
        a.getsockname(),
        b.getsockname(),
        a.getsockname(),
    ]
    assert got[0][1] is got[1][1]
    assert got[2][1] is not got[1][1] and got[3][1] is not got[1][1]


def test_at_most_count_datagrams_a_call(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    server_sock, peer = sockets(), sockets()
    for i in range(udp.MAX_BATCH + 8):
        peer.sendto(str(i).encode(), server_sock.getsockname())
    settle(server_sock)
    first = batch(udp, server_sock, 5)
    rest = batch(udp, server_sock, udp.MAX_BATCH)
    last = batch(udp, server_sock, udp.MAX_BATCH)
    assert [d for d, _ in first + rest + last] == [
        str(i).encode() for i in range(udp.MAX_BATCH + 8)
    ]
    assert (len(first), len(rest), len(last)) == (5, udp.MAX_BATCH, 3)


def test_the_largest_datagram_is_read_whole(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    server_sock, peer = sockets(), sockets()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 18)
    server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
    data = bytes(range(256)) * 255 + b"0123456789ab"  # 65,292 bytes
    data = data + b"z" * (65507 - len(data))  # the IPv4 maximum
    peer.sendto(data, server_sock.getsockname())
    settle(server_sock)
    assert batch(udp, server_sock) == [(data, peer.getsockname())]


def test_ipv6_and_dual_stack_addresses_are_the_socket_modules(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    for host, peers in (("::1", ["::1"]), ("::", ["::1", "127.0.0.1"])):
        server_sock, reference = sockets(socket.AF_INET6, host), sockets(socket.AF_INET6, host)
        for peer_host in peers:
            family = socket.AF_INET if "." in peer_host else socket.AF_INET6
            peer = sockets(family, peer_host)
            for target in (server_sock, reference):
                port = target.getsockname()[1]
                peer.sendto(b"hello " + peer_host.encode(), (peer_host, port))
            expected = drain(reference, 1)
            settle(server_sock)
            assert batch(udp, server_sock) == expected
            assert len(expected[0][1]) == 4  # (host, port, flowinfo, scope_id)


def test_bad_arguments_are_refused(sockets: Callable[..., socket.socket], udp: SocketCalls) -> None:
    s = sockets()
    with pytest.raises(ValueError, match="count"):
        udp.recv_batch(s.fileno(), 0)
    with pytest.raises(ValueError, match="count"):
        udp.recv_batch(s.fileno(), udp.MAX_BATCH + 1)
    with pytest.raises(TypeError):
        udp.recv_batch(s.fileno())
    closed = bound()
    fd = closed.fileno()
    closed.close()
    with pytest.raises(OSError):
        udp.recv_batch(fd, 1)


# ------------------------------------------------------------------ send_to


def send(udp: SocketCalls, sock: socket.socket, data: bytes, address: tuple[Any, ...]) -> bool:
    result: bool = udp.send_to(sock.fileno(), int(sock.family), data, address)
    return result


def test_send_to_delivers_to_each_destination_in_turn(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    # The last destination is kept in C: switching must not send to the previous one.
    sender, a, b = sockets(), sockets(), sockets()
    plan = [a, a, b, a, b, b]
    for i, target in enumerate(plan):
        host, port = target.getsockname()
        assert send(udp, sender, f"m{i}".encode(), (host, port)) is True
    got_a, got_b = drain(a, 3), drain(b, 3)
    assert [d for d, _ in got_a] == [b"m0", b"m1", b"m3"]
    assert [d for d, _ in got_b] == [b"m2", b"m4", b"m5"]
    assert {addr for _, addr in got_a + got_b} == {sender.getsockname()}


def test_a_refused_destination_leaves_the_last_one_intact(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    sender, a = sockets(), sockets()
    assert send(udp, sender, b"one", a.getsockname())
    with pytest.raises(ValueError, match="numeric"):
        send(udp, sender, b"no", ("localhost", 5060))
    with pytest.raises(OverflowError):
        send(udp, sender, b"no", ("127.0.0.1", 70000))
    assert send(udp, sender, b"two", a.getsockname())
    assert [d for d, _ in drain(a, 2)] == [b"one", b"two"]


def test_send_to_refuses_what_sendto_would(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    s = sockets()
    with pytest.raises(TypeError):
        udp.send_to(s.fileno(), int(s.family), "text", ("127.0.0.1", 9))
    with pytest.raises(TypeError):
        udp.send_to(s.fileno(), int(s.family), b"x", ("127.0.0.1",))
    with pytest.raises(TypeError):
        udp.send_to(s.fileno(), int(s.family), b"x", "127.0.0.1:9")
    with pytest.raises(ValueError):
        udp.send_to(s.fileno(), int(socket.AF_UNIX), b"x", ("127.0.0.1", 9))
    closed = bound()
    fd = closed.fileno()
    closed.close()
    with pytest.raises(OSError):
        udp.send_to(fd, int(socket.AF_INET), b"x", ("127.0.0.1", 9))


def test_send_to_over_ipv6_and_to_ipv4_from_a_dual_stack_socket(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    dual = sockets(socket.AF_INET6, "::")
    v6, v4 = sockets(socket.AF_INET6, "::1"), sockets()
    assert send(udp, dual, b"six", v6.getsockname())
    assert send(udp, dual, b"four", v4.getsockname())  # "127.0.0.1": sent IPv4-mapped
    assert send(udp, dual, b"mapped", ("::ffff:" + v4.getsockname()[0], v4.getsockname()[1]))
    assert [d for d, _ in drain(v6, 1)] == [b"six"]
    assert [d for d, _ in drain(v4, 2)] == [b"four", b"mapped"]


def test_ipv6_flowinfo_and_scope_are_sent_as_the_socket_module_sends_them(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    """A 4-tuple's scope id and flowinfo go into the address; ``lo`` is scope 1 here or
    some other index, and ::1 takes any."""
    sender, a = sockets(socket.AF_INET6, "::1"), sockets(socket.AF_INET6, "::1")
    host, port = a.getsockname()[:2]
    lo = socket.if_nametoindex("lo")
    for address in [(host, port, 0, 0), (host, port, 0, lo), (host, port, 5, 0)]:
        sender.sendto(b"module", address)
        assert send(udp, sender, b"c", address)
        assert [d for d, _ in drain(a, 2)] == [b"module", b"c"]
    with pytest.raises(OverflowError):
        send(udp, sender, b"x", (host, port, 1 << 20, 0))  # as the socket module says


def test_a_scoped_ipv6_host_is_read_as_the_socket_module_reads_it(udp: SocketCalls) -> None:
    """A link-local peer's address comes as ``fe80::1%lo`` (with its scope): it must be
    a destination again.  Nothing is sent: on a closed socket the send fails only after
    the address was read (OSError, not ValueError)."""
    closed = bound(socket.AF_INET6, "::1")
    fd = closed.fileno()
    closed.close()
    for host in ("fe80::1%lo", f"fe80::1%{socket.if_nametoindex('lo')}"):
        with pytest.raises(OSError):
            udp.send_to(fd, int(socket.AF_INET6), b"x", (host, 9, 0, 0))
        socket.getaddrinfo(host, 9, socket.AF_INET6, 0, 0, socket.AI_NUMERICHOST)  # the same
    with pytest.raises(ValueError, match="not a numeric address"):
        udp.send_to(fd, int(socket.AF_INET6), b"x", ("fe80::1%no-such-if", 9, 0, 0))


def send_all(
    send_batch: Callable[..., int], sock: socket.socket, items: list[tuple[bytes, tuple[Any, ...]]]
) -> list[object]:
    """What ``send_batch`` does with ``items`` from the start, call after call: each
    call's count, or the exception an item raised (it is then skipped)."""
    results: list[object] = []
    start = 0
    for _ in range(len(items) + 1):
        if start >= len(items):
            break
        try:
            sent = send_batch(sock.fileno(), int(sock.family), items, start)
        except (OSError, ValueError, TypeError, OverflowError) as exc:
            results.append(type(exc))
            start += 1
            continue
        results.append(sent)
        start += sent
    return results


def test_send_batch_sends_in_order_to_each_destination(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    sender, a, b = sockets(), sockets(), sockets()
    plan = [a, b, b, a, b, a, a]
    items = [(f"m{i}".encode(), t.getsockname()) for i, t in enumerate(plan)]
    assert send_all(udp.send_batch, sender, items) == [len(items)]
    assert [d for d, _ in drain(a, 4)] == [b"m0", b"m3", b"m5", b"m6"]
    assert [d for d, _ in drain(b, 3)] == [b"m1", b"m2", b"m4"]


def test_send_batch_sends_at_most_max_send_a_call(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    sender, a = sockets(), sockets()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    items = [(str(i).encode(), a.getsockname()) for i in range(udp.MAX_SEND + 10)]
    assert send_all(udp.send_batch, sender, items) == [udp.MAX_SEND, 10]
    assert [d for d, _ in drain(a, len(items))] == [d for d, _ in items]


def test_a_bad_item_is_refused_alone(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    sender, a = sockets(), sockets()
    good = a.getsockname()
    items: list[Any] = [
        (b"one", good),
        (b"two", ("localhost", 5060)),  # not numeric
        (b"three", good),
        ("four", good),  # not bytes
        (b"five", ("127.0.0.1", 70000)),  # no such port
        (b"six", good),
    ]
    assert send_all(udp.send_batch, sender, items) == [
        1,
        ValueError,
        1,
        TypeError,
        OverflowError,
        1,
    ]
    assert [d for d, _ in drain(a, 3)] == [b"one", b"three", b"six"]


def test_a_list_changed_while_it_is_sent_is_read_safely(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    """Reading a port can run Python code (``__index__``) that empties the list: what was
    taken from it stays alive until sent, and nothing past its new end is read."""
    sender, a = sockets(), sockets()
    host, port = a.getsockname()
    items: list[Any] = []

    class Emptying:
        def __index__(self) -> int:
            items.clear()
            return int(port)

    items += [(b"first" * 100, (host, port)), (b"second", (host, Emptying()))]
    items += [(b"never", (host, port))] * 3
    sent = udp.send_batch(sender.fileno(), int(sender.family), items, 0)
    assert sent == 2 and items == []
    assert [d for d, _ in drain(a, 2)] == [b"first" * 100, b"second"]


def test_send_batch_refuses_bad_arguments(
    sockets: Callable[..., socket.socket], udp: SocketCalls
) -> None:
    s = sockets()
    item = (b"x", ("127.0.0.1", 9))
    with pytest.raises(TypeError):
        udp.send_batch(s.fileno(), int(s.family), (item,), 0)
    with pytest.raises(IndexError):
        udp.send_batch(s.fileno(), int(s.family), [item], 1)
    with pytest.raises(IndexError):
        udp.send_batch(s.fileno(), int(s.family), [], 0)
    closed = bound()
    fd = closed.fileno()
    closed.close()
    with pytest.raises(OSError):
        udp.send_batch(fd, int(socket.AF_INET), [item], 0)


# ------------------------------------------------------- C and Python, side by side

#: A Python function or its C twin.
Fn = Callable[..., Any]


def outcome(f: Fn, *args: Any) -> object:
    """What ``f(*args)`` returns, or the type of the exception it raises."""
    try:
        return f(*args)
    except Exception as exc:
        return type(exc)


def arrived(receivers: list[socket.socket], wait: bool) -> list[tuple[int, bytes, Any]]:
    """What each receiver has read since (by its index), waiting a little for the first
    datagram when one is expected."""
    if wait:
        select.select(receivers, [], [], 2.0)
    got = []
    for i, receiver in enumerate(receivers):
        try:
            while True:
                data, peer = receiver.recvfrom(65536)
                got.append((i, data, peer))
        except BlockingIOError:
            pass
    return got


def closed_fd(family: socket.AddressFamily = socket.AF_INET) -> int:
    s = bound(family, "::1" if family == socket.AF_INET6 else "127.0.0.1")
    fd = s.fileno()
    s.close()
    return fd


def compare_recv_batch(py: Fn, c: Fn) -> None:
    """The same datagrams waiting on two sockets, each read by one: the same batches, peer
    tuples and tuple identities; and the same refusals of bad arguments."""
    servers = [bound(), bound()]
    a, b = bound(), bound()
    try:
        for i, peer in enumerate([a, a, b, a, b, b, a, a] * 3):
            for server in servers:
                peer.sendto(bytes([65 + i]) * (i * 333), server.getsockname())
        for server in servers:
            settle(server)
        reads = [
            [f(s.fileno(), n) for n in (3, 1, 32, 32)]
            for f, s in zip((py, c), servers, strict=True)
        ]
        assert reads[0] == reads[1]
        assert sum(len(r) for r in reads[0]) == 24 and reads[0][-1] == []
        peers = [[peer for r in read for _, peer in r] for read in reads]
        same = [[x is y for x, y in itertools.pairwise(p)] for p in peers]
        assert same[0] == same[1]  # one tuple object while the peer stays the same
        fd = servers[0].fileno()
        for args in [(fd, 0), (fd, 33), (-1, 1), (2**70, 1), (closed_fd(), 1), ("x", 1), (fd, 1.0)]:
            assert outcome(py, *args) == outcome(c, *args), args
    finally:
        for s in (*servers, a, b):
            s.close()


#: Hosts to send to: numeric ones (IPv4, IPv6, mapped, scoped), and what is refused.
HOSTS = [
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "fe80::1%lo",
    "fe80::1%no-such-if",
    "localhost",
    "",
    "1.2.3",
    "127.0.0.1 ",
    "::1%",
    "\udc80",
]


def compare_send_to(py: Fn, c: Fn) -> None:
    """Each sends the same datagram to the same address from the same socket: the same
    result or exception, and the same datagrams arrive, for addresses of every kind."""
    v4, receiver = bound(), bound()
    try:
        dual: socket.socket | None = bound(socket.AF_INET6, "::")
    except OSError:
        dual = None  # no IPv6 here: the IPv4 socket alone
    port = receiver.getsockname()[1]
    senders = [v4] if dual is None else [v4, dual]

    @settings(max_examples=300, deadline=None)
    @given(
        st.sampled_from(senders),
        st.one_of(
            st.tuples(st.sampled_from(HOSTS), st.sampled_from([port, -1, 65536, 2**70, "9"])),
            st.tuples(
                st.sampled_from(HOSTS),
                st.just(port),
                st.sampled_from([0, 5, 1 << 20, -1, 2**64, 1.5]),
                st.sampled_from([0, 1, 2**32, -1, "1"]),
            ),
            st.sampled_from([("127.0.0.1",), ("127.0.0.1", port, 0), "127.0.0.1:9", (9, port)]),
        ),
        st.sampled_from([b"datagram", b"", "text", bytearray(b"x")]),
        st.sampled_from([None, socket.AF_UNIX, -1, 2**40]),
    )
    @example(v4, ("127.0.0.1", port), b"datagram", None)
    @example(senders[-1], ("::ffff:127.0.0.1", port, 0, 0), b"mapped", None)
    def same(sender: socket.socket, address: Any, data: Any, family: int | None) -> None:
        fam = int(sender.family) if family is None else family
        results = []
        for f in (py, c):
            result = outcome(f, sender.fileno(), fam, data, address)
            results.append((result, arrived([receiver], result is True)))
        assert results[0] == results[1], address

    try:
        same()
        for f in (py, c):  # a closed socket: the address is read first, then the send fails
            assert outcome(f, closed_fd(), 2, b"x", ("127.0.0.1", port)) is OSError
    finally:
        for s in (*senders, receiver):
            s.close()


def compare_send_batch(py: Fn, c: Fn) -> None:
    """The same items sent by each, call after call: the same counts and refusals, the
    same datagrams arriving; and the same refusals of bad arguments."""
    sender, a, b = bound(), bound(), bound()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        good, other = a.getsockname(), b.getsockname()
        items: list[Any] = [(b"one", good), (b"two", ("localhost", 5060)), (b"three", other)]
        items += [("four", good), (b"five", ("127.0.0.1", 70000)), (b"six", good), (b"", other)]
        items += [(b"m%d" % i, (good, other)[i % 3 == 0]) for i in range(70)]
        items += [(b"x",), (b"y", good, 1), [b"z", good], (b"last", good)]
        runs = []
        for f in (py, c):
            results = send_all(f, sender, list(items))
            runs.append((results, arrived([a, b], True)))
        assert runs[0] == runs[1]
        assert sum(n for n in runs[0][0] if isinstance(n, int)) == 75
        item = (b"x", good)
        fd, family = sender.fileno(), int(sender.family)
        for args in [
            (fd, family, (item,), 0),
            (fd, family, [item], 1),
            (fd, family, [item], -1),
            (fd, family, [], 0),
            (fd, family, [item], 2**70),
            (fd, int(socket.AF_UNIX), [item], 0),
            (fd, -1, [item], 0),
            (closed_fd(), family, [item], 0),
        ]:
            assert outcome(py, *args) == outcome(c, *args), args
        arrived([a, b], False)
    finally:
        for s in (sender, a, b):
            s.close()
