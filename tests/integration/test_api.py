"""The Python API on real loopback sockets: ``Responder`` in an asyncio test,
``ThreadedResponder`` in plain ones, driven by the raw SIP client of ``sipclient``.

The client's sockets block, so async tests run it in a worker thread
(``asyncio.to_thread``) while the responder answers in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sipclient import Msg, Req, TlsClient, client, ipv6_loopback

from sipresponder import Config, Responder, ThreadedResponder, assert_call, assert_no_violations
from sipresponder.core.journal import Call
from sipresponder.core.rules_loader import load_rules
from sipresponder.errors import RulesError

TRANSPORTS = ["udp", "tcp"]

# ----------------------------------------------------------------- helpers


def invite(server: tuple[str, int], user: str, transport: str = "udp") -> list[int]:
    """INVITE sip:USER, read responses up to the final, ACK a non-2xx final; -> codes."""
    req = Req("INVITE", user=user)
    codes: list[int] = []
    with client(transport, server) as peer:
        peer.send(req)
        final: Msg | None = None
        for _ in range(10):
            msg = peer.expect_any()
            codes.append(msg.status)
            if msg.status >= 200:
                final = msg
                break
        assert final is not None, f"no final response to INVITE {user}: {codes}"
        if final.status >= 300:
            peer.send(req.ack(final.to_tag))
    return codes


def options(server: tuple[str, int], user: str, transport: str = "udp") -> int:
    """OPTIONS sip:USER; -> the final status."""
    with client(transport, server) as peer:
        peer.send(Req("OPTIONS", user=user))
        for _ in range(10):
            msg = peer.expect_any()
            if msg.status >= 200:
                return msg.status
    raise AssertionError(f"no final response to OPTIONS {user}")


def addr(sip: Responder | ThreadedResponder) -> tuple[str, int]:
    return (sip.host, sip.port)


def open_sockets() -> set[str]:
    """The sockets this process has open, as ``fd:socket:[inode]``."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listdir's own fd)
        if target.startswith("socket:"):
            out.add(f"{fd}:{target}")
    return out


def assert_port_free(host: str, port: int) -> None:
    """Nothing listens on ``port``: UDP binds without SO_REUSEADDR, TCP as the server does."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        udp.bind((host, port))
    with socket.socket(family, socket.SOCK_STREAM) as tcp:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, port))
        tcp.listen(1)


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open sockets"
)


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------ Responder (async)


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_busy_call_is_journaled(transport: str) -> None:
    async with Responder() as sip:
        assert sip.host == "127.0.0.1"
        assert sip.address == f"127.0.0.1:{sip.port}"
        assert sip.uri("486") == f"sip:486@127.0.0.1:{sip.port}"
        assert sip.uri(transport="tcp") == f"sip:alice@127.0.0.1:{sip.port};transport=tcp"
        assert sorted(sip.listeners) == [
            ("tcp", "127.0.0.1", sip.port),
            ("udp", "127.0.0.1", sip.port),
        ]

        codes = await asyncio.to_thread(invite, addr(sip), "486", transport)
        assert codes == [100, 486]
        call = await sip.wait_for_call(method="INVITE", user="486", acked=True)
        assert_call(call, status=486, codes=[100, 486], acked=True, no_violations=True)
        assert sip.calls(status=486) == [call]
        assert sip.calls(method="OPTIONS") == []
        assert sip.call(call.call_id) is call
        assert sip.violations() == []
        assert sip.stats["requests"] == 2  # INVITE and ACK


@pytest.mark.asyncio
async def test_wait_for_call_waits_for_a_future_call() -> None:
    async with Responder() as sip:
        waiting = asyncio.create_task(sip.wait_for_call(user="180-486", timeout=5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await asyncio.to_thread(invite, addr(sip), "180-486")
        call = await waiting
        assert call.codes == [100, 180, 486]
        assert call.final_status == 486


@pytest.mark.asyncio
async def test_wait_for_call_timeout_shows_the_ladders() -> None:
    async with Responder() as sip:
        await asyncio.to_thread(invite, addr(sip), "486")
        with pytest.raises(TimeoutError) as caught:
            await sip.wait_for_call(method="INVITE", user="nobody", timeout=0.2)
        message = str(caught.value)
        assert "no call matching method=INVITE, user='nobody', with a final response" in message
        assert "within 0.2 s" in message
        assert "1 call seen" in message
        assert "-> responder  INVITE sip:486@" in message
        assert "<- responder  486 Busy Here" in message
        assert "-> responder  ACK" in message


@pytest.mark.asyncio
async def test_wait_for_call_before_the_final() -> None:
    async with Responder(config=Config(max_ring=30, port=5060)) as sip:
        assert sip.config.max_ring == 30 and sip.config.port == 0

        def ringing(call: Call) -> bool:
            return 180 in call.codes

        with client("udp", addr(sip)) as peer:
            req = Req("INVITE", user="180")
            await asyncio.to_thread(peer.send, req)
            call = await sip.wait_for_call(user="180", final=False, predicate=ringing)
            assert call.codes == [100, 180]
            assert call.final_status is None
            with pytest.raises(TimeoutError, match=r"user='180', with a final response"):
                await sip.wait_for_call(user="180", timeout=0.1)
            # hang up: CANCEL -> 200, 487, which ends the wait
            await asyncio.to_thread(peer.send, req.cancel())
            call = await sip.wait_for_call(user="180", status=487)
            assert call.final_status == 487
            got = await asyncio.to_thread(lambda: [peer.expect_any() for _ in range(4)])
            assert sorted(m.status for m in got) == [100, 180, 200, 487]
            final = next(m for m in got if m.status == 487)
            await asyncio.to_thread(peer.send, req.ack(final.to_tag))
            await sip.wait_for_call(user="180", acked=True)


@pytest.mark.asyncio
async def test_wait_for_call_raises_what_the_predicate_raises() -> None:
    async with Responder() as sip:

        def broken(call: Call) -> bool:
            raise ValueError("predicate failed")

        waiting = asyncio.create_task(sip.wait_for_call(predicate=broken))
        await asyncio.sleep(0)
        await asyncio.to_thread(options, addr(sip), "200")
        with pytest.raises(ValueError, match="predicate failed"):
            await waiting


@pytest.mark.asyncio
async def test_stop_wakes_the_waiters() -> None:
    sip = Responder()
    await sip.start()
    waiting = asyncio.create_task(sip.wait_for_call(timeout=5))
    await asyncio.sleep(0)
    await sip.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        await waiting


@pytest.mark.asyncio
async def test_set_rules_in_every_form() -> None:
    async with Responder() as sip:
        server = addr(sip)
        assert sip.rules is None
        assert await asyncio.to_thread(options, server, "1001") == 200  # dial-the-code

        sip.set_rules([{"match": {"method": "OPTIONS", "user": "1001"}, "plan": 486}])
        assert await asyncio.to_thread(options, server, "1001") == 486
        assert await asyncio.to_thread(options, server, "403") == 403  # no rule: dialled

        sip.set_rules({"rules": [], "default": {"plan": [{"code": 404, "reason": "Nobody"}]}})
        assert await asyncio.to_thread(options, server, "1001") == 404

        sip.set_rules("- match: {user: '1001'}\n  plan: 480\n")
        assert await asyncio.to_thread(options, server, "1001") == 480

        sip.set_rules(load_rules("default: {plan: 503}"))
        assert await asyncio.to_thread(options, server, "1001") == 503

        sip.set_rules(None)
        assert sip.rules is None
        assert await asyncio.to_thread(options, server, "1001") == 200


@pytest.mark.asyncio
async def test_set_rules_refuses_bad_rules_and_keeps_the_old() -> None:
    async with Responder([{"match": {"user": "1001"}, "plan": 486}]) as sip:
        before = sip.rules
        assert before is not None and before.source == "set_rules"
        with pytest.raises(RulesError) as caught:
            sip.set_rules([{"match": {"user": "x"}, "plan": "abc"}])
        assert str(caught.value) == (
            "set_rules: rule 1: plan: 'abc' is neither a code nor a delay like 2s or 500ms"
        )
        assert caught.value.rule == 1 and caught.value.field == "plan"
        with pytest.raises(RulesError, match=r"set_rules: rule 1 \(line 1\): match"):
            sip.set_rules("- match: {colour: red}\n  plan: 486\n")
        with pytest.raises(RulesError, match="ACK"):
            sip.set_rules([{"match": {"method": "ACK"}, "plan": 200}])
        with pytest.raises(RulesError, match="plain data"):
            sip.set_rules([{"match": {"user": object()}, "plan": 200}])
        with pytest.raises(RulesError, match="expected rules as"):
            sip.set_rules(42)  # type: ignore[arg-type]
        assert sip.rules is before
        assert await asyncio.to_thread(options, addr(sip), "1001") == 486


def test_bad_rules_fail_at_construction() -> None:
    with pytest.raises(RulesError, match="set_rules: rule 1: plan"):
        Responder([{"match": {}, "plan": 1000}])


@pytest.mark.asyncio
async def test_reset_forgets_calls_and_restores_the_rules() -> None:
    async with Responder([{"match": {"user": "x"}, "plan": 403}]) as sip:
        server = addr(sip)
        first = sip.rules
        sip.set_rules([{"match": {"user": "x"}, "plan": 486}])
        assert await asyncio.to_thread(options, server, "x") == 486
        assert len(sip.calls()) == 1
        sip.reset()
        assert sip.calls() == []
        assert sip.rules is first
        assert await asyncio.to_thread(options, server, "x") == 403


@pytest.mark.asyncio
async def test_violations_are_collected_across_calls() -> None:
    async with Responder() as sip:
        with client("udp", addr(sip)) as peer:
            for _ in range(2):
                peer.send(Req("OPTIONS", user="200", branch="1234"))  # no magic cookie
                await asyncio.to_thread(peer.expect, 200)
        rules = [v.rule for v in sip.violations()]
        assert rules == ["RFC 3261 §8.1.1.7", "RFC 3261 §8.1.1.7"]
        with pytest.raises(AssertionError) as caught:
            assert_no_violations(sip)
        message = str(caught.value)
        assert message.startswith("2 RFC violations in 2 calls:")
        assert "violation: RFC 3261 §8.1.1.7: Via branch 1234 lacks the magic cookie" in message
        with pytest.raises(AssertionError, match="1 RFC violation\nSIP ladder"):
            assert_call(sip.calls()[0], no_violations=True)


@pytest.mark.asyncio
async def test_assert_call_failure_shows_the_ladder() -> None:
    async with Responder() as sip:
        await asyncio.to_thread(invite, addr(sip), "180-486")
        call = await sip.wait_for_call(acked=True)
        with pytest.raises(AssertionError) as caught:
            assert_call(call, status=200, codes=[100, 200], acked=False, method="OPTIONS")
        message = str(caught.value)
        first, *ladder = message.splitlines()
        assert first == (
            f"call {call.call_id}: method is INVITE, expected OPTIONS; final status is 486, "
            "expected 200; codes are [100, 180, 486], expected [100, 200]; "
            "the final response was ACKed"
        )
        assert ladder[:2] == ["SIP ladder:", f"Call-ID {call.call_id}"]
        assert [line.split("responder  ")[1].split("  [")[0] for line in ladder[2:]] == [
            f"INVITE sip:180-486@{sip.address}",
            "100 Trying",
            "180 Ringing",
            "486 Busy Here",
            f"ACK sip:180-486@{sip.address}",
        ]
        with pytest.raises(AssertionError, match="expected a call, got None"):
            assert_call(sip.call("no-such-call"))


@pytest.mark.asyncio
@needs_proc
async def test_sockets_are_released_on_exit() -> None:
    sockets_before = open_sockets()  # the test's event loop holds sockets of its own
    async with Responder() as sip:
        port = sip.port
        assert len(open_sockets() - sockets_before) == 2  # the UDP socket, the TCP listener
        for transport in TRANSPORTS:
            await asyncio.to_thread(invite, addr(sip), "486", transport)
        # The client has closed its TCP connection; the responder's end closes when it
        # reads the EOF (the server does not close accepted connections itself: below).
        await wait_until(lambda: len(open_sockets() - sockets_before) == 2)
    assert open_sockets() == sockets_before
    assert_port_free("127.0.0.1", port)
    with pytest.raises(RuntimeError, match="stopped"):
        sip.calls()


@pytest.mark.asyncio
async def test_transports_and_state_errors() -> None:
    sip = Responder(transports="udp")
    with pytest.raises(RuntimeError, match="not started"):
        sip.calls()
    async with sip:
        assert sip.listeners == [("udp", "127.0.0.1", sip.port)]
        with pytest.raises(ValueError, match="does not listen on 'tcp'"):
            sip.uri(transport="tcp")
        with pytest.raises(RuntimeError, match="runs once"):
            await sip.start()


@pytest.mark.asyncio
@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_addresses() -> None:
    async with Responder(host="::1") as sip:
        assert sip.host == "::1"
        assert sip.address == f"[::1]:{sip.port}"
        assert sip.uri("486", "udp") == f"sip:486@[::1]:{sip.port};transport=udp"
        assert await asyncio.to_thread(options, addr(sip), "486") == 486


# ----------------------------------------------------- ThreadedResponder (sync)


@needs_proc
def test_threaded_responder() -> None:
    sockets_before = open_sockets()
    with ThreadedResponder() as sip:
        thread = next(t for t in threading.enumerate() if t.name == "sipresponder")
        assert thread.daemon
        port = sip.port
        assert invite(addr(sip), "180-486", "tcp") == [100, 180, 486]
        call = sip.wait_for_call(method="INVITE", status=486, acked=True)
        assert_call(call, codes=[100, 180, 486], no_violations=True)
        assert sip.calls() == [call]
        assert sip.call(call.call_id) is call
        assert sip.violations() == []
        assert sip.stats["requests"] == 2

        # A call that comes while the test waits for it.
        later = threading.Timer(0.1, invite, args=(addr(sip), "603"))
        later.start()
        try:
            assert sip.wait_for_call(user="603", timeout=5).final_status == 603
        finally:
            later.join(5)

        sip.set_rules([{"match": {"user": "1001"}, "plan": 486}])
        assert options(addr(sip), "1001") == 486
        with pytest.raises(RulesError):
            sip.set_rules([{"plan": "abc"}])
        sip.reset()
        assert sip.calls() == [] and sip.rules is None
    assert not thread.is_alive()
    assert not sip.running
    assert open_sockets() == sockets_before
    assert_port_free("127.0.0.1", port)


def test_threaded_wait_for_call_timeout() -> None:
    with ThreadedResponder(transports=["udp"]) as sip:
        assert options(addr(sip), "486") == 486
        with pytest.raises(TimeoutError) as caught:
            sip.wait_for_call(method="INVITE", timeout=0.2)
        message = str(caught.value)
        assert "no call matching method=INVITE, with a final response within 0.2 s" in message
        assert "<- responder  486 Busy Here" in message


def test_threaded_responder_state_errors() -> None:
    sip = ThreadedResponder()
    with pytest.raises(RuntimeError, match="not started"):
        sip.calls()
    with pytest.raises(RuntimeError, match="not started"):
        sip.wait_for_call()
    sip.start()
    sip.stop()
    sip.stop()  # twice is fine
    with pytest.raises(RuntimeError, match="stopped"):
        sip.wait_for_call()


def test_threaded_start_failure_ends_the_thread() -> None:
    with ThreadedResponder() as first:
        threads = threading.active_count()
        second = ThreadedResponder(port=first.port, transports="udp")
        with pytest.raises(OSError, match="cannot listen on udp"):
            second.start()
        assert threading.active_count() == threads
        assert not second.running


@pytest.mark.asyncio
@needs_proc
async def test_an_open_tcp_connection_is_closed_on_exit() -> None:
    sockets_before = open_sockets()
    sip = Responder(transports="tcp")
    await sip.start()
    try:
        with client("tcp", addr(sip)) as peer:
            assert await asyncio.to_thread(options, addr(sip), "200", "tcp") == 200
            peer.send(Req("OPTIONS", user="200"))
            await asyncio.to_thread(peer.expect, 200)
            await sip.stop()
            left = open_sockets() - sockets_before
            assert len(left) == 1, f"open besides the client's own socket: {left}"
    finally:
        await sip.stop()
        await wait_until(lambda: open_sockets() == sockets_before)


FLAKY_REGISTRAR = [
    {"match": {"method": "OPTIONS", "user": "reg"}, "responses": [{"plan": 503, "repeat": 2}, 200]},
    {
        "match": {"method": "OPTIONS", "user": "gate"},
        "scenario": {"name": "door", "when": "open"},
        "key": "global",
        "plan": 200,
    },
    {"match": {"method": "OPTIONS", "user": "gate"}, "plan": 403},
]


@pytest.mark.asyncio
async def test_sequences_and_scenarios_through_the_python_api() -> None:
    async with Responder(FLAKY_REGISTRAR) as sip:
        server = addr(sip)
        got = [await asyncio.to_thread(options, server, "reg") for _ in range(4)]
        assert got == [503, 503, 200, 200]
        assert {"rule": 1, "key": "test", "position": 4} in sip.scenarios()
        assert {"name": "door", "key": None, "state": "started"} in sip.scenarios()
        assert await asyncio.to_thread(options, server, "gate") == 403
        sip.set_scenario("door", "open")  # key "" : the global scenario's
        assert await asyncio.to_thread(options, server, "gate") == 200
        sip.reset_scenarios()
        assert await asyncio.to_thread(options, server, "gate") == 403
        assert await asyncio.to_thread(options, server, "reg") == 503  # from the first again
        sip.set_scenario("door", "open")
        sip.reset()  # resets scenarios and sequences too
        assert sip.scenarios() == [{"name": "door", "key": None, "state": "started"}]
        with pytest.raises(ValueError, match="state"):
            sip.set_scenario("door", "")


def test_scenarios_through_the_threaded_api() -> None:
    with ThreadedResponder(FLAKY_REGISTRAR) as sip:
        server = addr(sip)
        sip.set_scenario("door", "open")
        assert options(server, "gate") == 200
        assert {"name": "door", "key": "", "state": "open"} in sip.scenarios()
        sip.reset_scenarios()
        assert options(server, "gate") == 403


@pytest.mark.asyncio
async def test_faults_come_through_set_rules() -> None:
    async with Responder() as sip:
        sip.set_rules([{"match": {"user": "twice"}, "faults": [{"duplicate": 1}], "plan": 486}])
        assert await asyncio.to_thread(options, addr(sip), "twice") == 486
        (call,) = sip.calls()
        sent = [(e.status, e.fault) for e in call.entries if e.direction == "out"]
        assert sent == [(486, "duplicate: 1"), (486, "duplicate")]


def test_tls_through_the_api(tmp_path: Path) -> None:
    """``transports`` with tls: ``uri(transport="tls")`` is a SIPS URI on TLS's own port,
    and ``tls_certificate`` is what a verifying client trusts."""
    with ThreadedResponder(transports=("udp", "tls")) as sip:
        port = sip.port_of("tls")
        assert port != sip.port
        assert sip.uri("486", transport="tls") == f"sips:486@127.0.0.1:{port}"
        pem = sip.tls_certificate
        assert pem is not None and pem.startswith(b"-----BEGIN CERTIFICATE-----")
        (tmp_path / "ca.pem").write_bytes(pem)
        with TlsClient(("127.0.0.1", port), cafile=str(tmp_path / "ca.pem")) as c:
            c.send(Req("INVITE", uri=sip.uri("486", transport="tls")))
            assert [m.status for m in (c.expect_any(), c.expect_any())] == [100, 486]
        call = sip.wait_for_call("INVITE", status=486)
        assert call.transport == "tls"
        with pytest.raises(ValueError):
            sip.uri("486", transport="tcp")
    with ThreadedResponder(transports="ws,wss") as sip:
        ws, wss = sip.port_of("ws"), sip.port_of("wss")
        assert sip.uri("486", transport="ws") == f"sip:486@127.0.0.1:{ws};transport=ws"
        assert sip.uri("486", transport="wss") == f"sips:486@127.0.0.1:{wss};transport=ws"
