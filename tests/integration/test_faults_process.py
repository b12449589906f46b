"""Faults against the real process: a rules file's ``faults:`` on the wire, over UDP and TCP,
with raw sockets (which see every byte and every copy) and SIPp (a client that retransmits
on its own timers), and what the admin API's journal says was done on purpose."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import stop_and_check
from sipclient import RECV_TIMEOUT, Req, UdpClient, client, new_id
from sipprocs import Responder, StartResponder, run_sipp, start_responder

RULES = """\
rules:
  - match: {user: silent}
    faults: [no_trying]
    plan: [{code: 180, after: 1s}, 486]
  - match: {user: lossy}
    faults: [{drop_requests: 2}]
    plan: 180-486
  - match: {method: INVITE, user: lossycall}
    faults: [{drop_requests: 2}]
    plan: 200
  - match: {user: deaf}
    faults: [ignore_ack]
    plan: 486
  - match: {user: twice}
    faults: [duplicate]
    plan: [180, 486]
  - match: {user: backwards}
    faults: [final_first]
    plan: [180, {code: 486, after: 500ms}]
  - match: {user: retag}
    faults: [{to_tag: change}]
    plan: [180, 200]
  - match: {user: big}
    faults: [{oversize: 3000}]
    plan: 486
  - match: {user: bare}
    plan:
      - 180
      - code: 486
        faults: [{omit: [Contact, to_tag]}]
  - match: {user: broken}
    faults: [{malformed: garbage}]
    plan: 486
  - match: {user: otherport, transport: udp}
    faults: [wrong_source_port]
    plan: 486
  - match: {user: resetfinal, transport: tcp}
    faults: [{reset_after: final}]
    plan: [180, 486]
  - match: {user: closefinal, transport: tcp}
    faults: [{close_after: final}]
    plan: 486
  - match: {user: slow, transport: tcp}
    faults: [{split_writes: {size: 40, interval: 50ms}}]
    plan: 486
  - match: {method: INVITE, user: hangsup}
    faults: [{bye_after: 300ms}]
    plan: 200
  - match: {user: bad-status}
    faults: [{malformed: status_line}]
    plan: 486
  - match: {user: bad-length}
    faults: [{malformed: content_length}]
    plan: 486
  - match: {user: bad-cut}
    faults: [{malformed: truncate}]
    plan: 486
  - match: {user: resetearly, transport: tcp}
    faults: [{reset_after: provisional}]
    plan: [180, {code: 486, after: 1s}]
  - match: {user: together, transport: tcp}
    faults: [coalesce]
    plan: [180, {code: 486, after: 300ms}]
"""

SDP_OFFER = (
    b"v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_HEADERS = [("Content-Type", "application/sdp")]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Responder]:
    """One responder with ``RULES`` and the admin API, for the module."""
    workdir = tmp_path_factory.mktemp("faults")
    rules = workdir / "faults.yaml"
    rules.write_text(RULES, "utf-8")
    server = start_responder(workdir, "--rules", str(rules), "--admin", "127.0.0.1:0")
    try:
        yield server
    finally:
        stop_and_check(server)


def call_json(server: Responder, call_id: str) -> dict[str, Any]:
    """The admin API's view of one call, with its messages."""
    url = f"{server.admin_url}/api/calls/{urllib.parse.quote(call_id)}?messages=1"
    deadline = time.monotonic() + RECV_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=RECV_TIMEOUT) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def statuses(msgs: list[Any]) -> list[int]:
    return [m.status for m in msgs]


def drain(c: Any, timeout: float = 0.6) -> list[Any]:
    """Every message that comes until ``timeout`` passes with none."""
    out = []
    while (msg := c.recv(timeout)) is not None:
        out.append(msg)
    return out


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_no_trying(faulty: Responder, transport: str) -> None:
    with client(transport, faulty.addr) as c:
        req = Req("INVITE", "silent")
        c.send(req)
        started = time.monotonic()
        ringing = c.expect_any(3.0)
        assert ringing.status == 180 and time.monotonic() - started > 0.8  # no 100 first
        c.expect(486)
    call = call_json(faulty, req.call_id)
    assert [(f["kind"], f["message"]) for f in call["faults"]] == [
        ("no_trying", "no 100 Trying sent")
    ]
    # This client waited a second without retransmitting: over UDP, a verdict (Timer A).
    rules = [v["rule"] for v in call["violations"]]
    assert rules == (["RFC 3261 §17.1.1.2"] if transport == "udp" else [])


def test_drop_requests_answers_the_client_s_retransmission(faulty: Responder) -> None:
    with UdpClient(faulty.addr) as c:
        req = Req("INVITE", "lossy")
        for _ in range(2):
            c.send(req)
            c.expect_silence(0.4)
        c.send(req)
        assert statuses(c.expect_codes([100, 180, 486])) == [100, 180, 486]
    call = call_json(faulty, req.call_id)
    assert [f["kind"] for f in call["faults"]] == ["drop_requests", "drop_requests"]
    assert call["transactions"][0]["retransmissions"] >= 1


def test_drop_requests_with_sipp_s_own_timer_a(
    faulty: Responder, sipp_binary: str, tmp_path: Path
) -> None:
    del sipp_binary  # the fixture skips (or fails under CI) without sipp
    # SIPp retransmits the INVITE (retrans="500") at 0.5 s and 1.5 s, T1 doubling: the
    # third copy is answered, and the call passes.
    prefix = f"lossy-{new_id()}"
    result = run_sipp(
        faulty, "uac_call", "lossycall", "udp", tmp_path, ["-cid_str", f"{prefix}-%u"]
    )
    assert result.returncode == 0, result.report()
    call = call_json(faulty, f"{prefix}-1")
    assert [f["kind"] for f in call["faults"]] == ["drop_requests"] * 2
    assert call["transactions"][0]["retransmissions"] == 2  # the third copy was answered


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_duplicate(faulty: Responder, transport: str) -> None:
    with client(transport, faulty.addr) as c:
        req = Req("INVITE", "twice")
        c.send(req)
        msgs = c.expect_codes([100, 100, 180, 180, 486, 486])
        assert msgs[4].raw == msgs[5].raw
        c.send(req.ack(msgs[4].to_tag))
    call = call_json(faulty, req.call_id)
    sent = [(m["status"], m.get("fault", "")) for m in call["messages"] if m["direction"] == "out"]
    assert sent[-2:] == [(486, "duplicate: 1"), (486, "duplicate")]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_final_first(faulty: Responder, transport: str) -> None:
    with client(transport, faulty.addr) as c:
        req = Req("INVITE", "backwards")
        c.send(req)
        msgs = c.expect_codes([486, 100, 180], 3.0)
        c.send(req.ack(msgs[0].to_tag))


def test_ignore_ack_resends_the_final_on_timer_g(faulty: Responder) -> None:
    with UdpClient(faulty.addr) as c:
        req = Req("INVITE", "deaf")
        c.send(req)
        busy = c.expect_codes([100, 486])[1]
        c.send(req.ack(busy.to_tag))
        # T1 = 0.5 s, then 1 s, 2 s: three copies within 4 s, each ACKed in vain.
        for _ in range(3):
            again = c.expect(486, 3.0)
            assert again.raw == busy.raw
            c.send(req.ack(busy.to_tag))
    call = call_json(faulty, req.call_id)
    assert [f["kind"] for f in call["faults"]][:4] == ["ignore_ack"] * 4
    assert call["violations"] == []  # every copy was ACKed, as it should be


def test_to_tag_change(faulty: Responder) -> None:
    with UdpClient(faulty.addr) as c:
        req = Req("INVITE", "retag", headers=SDP_HEADERS, body=SDP_OFFER)
        c.send(req)
        _, ringing, ok = c.expect_codes([100, 180, 200])
        assert ringing.to_tag and ok.to_tag and ringing.to_tag != ok.to_tag
        c.send(req.ack_2xx(ok.to_tag))
        c.expect_silence(0.7)  # the ACK with the 2xx's tag stopped its retransmissions


def test_oversize_over_udp_is_larger_than_the_mtu(faulty: Responder) -> None:
    with UdpClient(faulty.addr) as c:
        req = Req("INVITE", "big")
        c.send(req)
        trying, busy = c.expect_codes([100, 486])
        assert len(trying.raw) == len(busy.raw) == 3000 > 1500
        assert set(busy["X-Padding"]) == {"x"}
        c.send(req.ack(busy.to_tag))


def test_a_step_s_omit_acts_on_its_response(faulty: Responder) -> None:
    with UdpClient(faulty.addr) as c:
        req = Req("INVITE", "bare")
        c.send(req)
        _, ringing, busy = c.expect_codes([100, 180, 486])
        assert ringing.get("Contact") and ringing.to_tag
        assert busy.get("Contact") is None and busy.to_tag is None


def raw_invite(faulty: Responder, transport: str, user: str) -> tuple[socket.socket, Req]:
    """An INVITE to ``user`` from a plain socket (bound over UDP, connected over TCP),
    which reads whatever comes back, broken or not."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    sock = socket.socket(socket.AF_INET, kind)
    if transport == "udp":
        sock.bind(("127.0.0.1", 0))
    else:
        sock.connect(faulty.addr)
    req = Req("INVITE", user)
    data = req.encode(transport, sock.getsockname(), faulty.addr)
    if transport == "udp":
        sock.sendto(data, faulty.addr)
    else:
        sock.sendall(data)
    return sock, req


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_malformed_garbage(faulty: Responder, transport: str) -> None:
    sock, req = raw_invite(faulty, transport, "broken")
    with sock:
        got: list[bytes] = []
        sock.settimeout(RECV_TIMEOUT)
        got.append(sock.recv(65535))
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65535):
                got.append(chunk)
    wire = b"".join(got)
    # The 100 and the 486, each as long as it was, and not a byte of SIP left in them.
    assert wire and all(b >= 0x80 for b in wire)
    call = call_json(faulty, req.call_id)
    sent = [m for m in call["messages"] if m["direction"] == "out"]
    assert [m["status"] for m in sent][:2] == [100, 486]
    assert all(m["fault"] == "malformed: garbage" for m in sent)
    if transport == "udp":  # a datagram each (Timer G resends the 486: no ACK can come)
        assert [len(d) for d in got] == [m["size"] for m in sent][: len(got)]
    else:
        assert len(sent) == 2 and len(wire) == sent[0]["size"] + sent[1]["size"]


def test_a_rule_without_faults_is_untouched(
    start_responder_with: StartResponder, tmp_path: Path
) -> None:
    rules = tmp_path / "plain.yaml"
    rules.write_text("rules:\n  - match: {user: x}\n    plan: 486\n", "utf-8")
    server = start_responder_with("--rules", str(rules), "--admin", "127.0.0.1:0")
    with UdpClient(server.addr) as c:
        req = Req("INVITE", "x")
        c.send(req)
        busy = c.expect_codes([100, 486])[1]
        c.send(req.ack(busy.to_tag))
        c.expect_silence(0.7)
    call = call_json(server, req.call_id)
    assert call["faults"] == [] and all("fault" not in m for m in call["messages"])


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_dialled_fault(faulty: Responder, transport: str) -> None:
    with client(transport, faulty.addr) as c:
        req = Req("INVITE", "180486*1*4")  # no 100, each response twice
        c.send(req)
        msgs = c.expect_codes([180, 180, 486, 486])
        c.send(req.ack(msgs[2].to_tag))
    call = call_json(faulty, req.call_id)
    assert [f["kind"] for f in call["faults"]] == ["no_trying"]


# --------------------------------------------------------------- on the wire


def test_wrong_source_port(faulty: Responder) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(RECV_TIMEOUT)
        req = Req("INVITE", "otherport")
        sock.sendto(req.encode("udp", sock.getsockname(), faulty.addr), faulty.addr)
        sources = {sock.recvfrom(65535)[1] for _ in range(2)}  # the 100 and the 486
    # Both from one port of ours, and not the one the INVITE went to.
    assert len(sources) == 1 and next(iter(sources))[0] == "127.0.0.1"
    assert next(iter(sources))[1] != faulty.port
    call = call_json(faulty, req.call_id)
    assert {m.get("fault") for m in call["messages"] if m["direction"] == "out"} == {
        "wrong_source_port"
    }


def tcp_read(sock: socket.socket, seconds: float) -> tuple[list[tuple[float, bytes]], str]:
    """What comes within ``seconds``, chunk by chunk with its time; and how it ended:
    "eof", "reset" or "open"."""
    chunks: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return chunks, "open"
        except ConnectionResetError:
            return chunks, "reset"
        if not data:
            return chunks, "eof"
        chunks.append((time.monotonic(), data))
    return chunks, "open"


def tcp_invite(faulty: Responder, user: str) -> tuple[socket.socket, Req]:
    sock = socket.create_connection(faulty.addr, timeout=RECV_TIMEOUT)
    req = Req("INVITE", user)
    sock.sendall(req.encode("tcp", sock.getsockname(), faulty.addr))
    return sock, req


def test_reset_after_final(faulty: Responder) -> None:
    sock, _ = tcp_invite(faulty, "resetfinal")
    with sock:
        chunks, end = tcp_read(sock, 3.0)
    wire = b"".join(data for _, data in chunks)
    # The 486 went before the reset (on loopback it is read before the RST is seen).
    assert end == "reset" and wire.count(b"SIP/2.0 ") == 3 and b"SIP/2.0 486" in wire


def test_close_after_final(faulty: Responder) -> None:
    sock, _ = tcp_invite(faulty, "closefinal")
    with sock:
        chunks, end = tcp_read(sock, 3.0)
    wire = b"".join(data for _, data in chunks)
    assert end == "eof" and b"SIP/2.0 100" in wire and b"SIP/2.0 486" in wire


def test_split_writes(faulty: Responder) -> None:
    sock, req = tcp_invite(faulty, "slow")
    with sock:
        chunks, _ = tcp_read(sock, 1.0 + 0.05 * 40)
        sock.sendall(req.ack(None).encode("tcp", sock.getsockname(), faulty.addr))
    wire = b"".join(data for _, data in chunks)
    assert wire.count(b"SIP/2.0 ") == 2 and wire.endswith(b"\r\n\r\n")
    # 40 bytes every 50 ms: many reads, spread over (pieces - 1) x 50 ms at least.
    pieces = -(-len(wire) // 40)
    assert len(chunks) >= pieces // 2 and chunks[-1][0] - chunks[0][0] >= (pieces // 2 - 2) * 0.05


def test_coalesce(faulty: Responder) -> None:
    sock, _ = tcp_invite(faulty, "together")
    started = time.monotonic()
    with sock:
        chunks, _ = tcp_read(sock, 1.5)
    # Nothing before the 486 is due; then the 100, the 180 and the 486 in one segment.
    assert chunks and chunks[0][0] - started >= 0.25
    first = chunks[0][1]
    assert [line[:11] for line in first.split(b"\r\n") if line.startswith(b"SIP/2.0")] == [
        b"SIP/2.0 100",
        b"SIP/2.0 180",
        b"SIP/2.0 486",
    ]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_bye_after_comes_in_the_dialog_on_the_same_flow(faulty: Responder, transport: str) -> None:
    with client(transport, faulty.addr) as c:
        contact = [("Contact", f"<sip:test@127.0.0.1:{c.local[1]};transport={transport}>")]
        req = Req("INVITE", "hangsup", headers=contact + SDP_HEADERS, body=SDP_OFFER)
        c.send(req)
        ok = c.expect_codes([100, 200])[1]
        c.send(req.ack_2xx(ok.to_tag))
        bye = c.expect_any(3.0)
        assert bye.start.startswith(f"BYE sip:test@127.0.0.1:{c.local[1]}")
        assert bye["From"] == ok["To"] and f"tag={req.from_tag}" in bye["To"]
        reply = "\r\n".join(
            [
                "SIP/2.0 200 OK",
                *(f"{h}: {bye[h]}" for h in ("Via", "From", "To", "Call-ID", "CSeq")),
            ]
        )
        c.send((reply + "\r\nContent-Length: 0\r\n\r\n").encode())
        c.expect_silence(0.7)  # answered: no Timer E copy
    call = call_json(faulty, req.call_id)
    assert call["violations"] == []
    byes = [(m["direction"], m.get("status")) for m in call["messages"] if m["method"] == "BYE"]
    assert byes == [("out", None), ("in", 200)]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("user", "check"),
    [
        ("bad-status", lambda wire: wire.startswith(b"SIP/2.0 1x0 Trying\r\n")),
        ("bad-length", lambda wire: b"Content-Length: 100\r\n" in wire),
        ("bad-cut", lambda wire: b"\r\n\r\n" not in wire[:40] and wire.startswith(b"SIP/2.0 10")),
    ],
    ids=["status_line", "content_length", "truncate"],
)
def test_malformed_over_each_transport(
    faulty: Responder, transport: str, user: str, check: Any
) -> None:
    sock, req = raw_invite(faulty, transport, user)
    with sock:
        sock.settimeout(RECV_TIMEOUT)
        first = sock.recv(65535)
    assert check(first), first[:120]
    call = call_json(faulty, req.call_id)
    sent = [m for m in call["messages"] if m["direction"] == "out"]
    assert sent[0]["status"] == 100 and sent[0]["fault"].startswith("malformed: ")


def test_omit_oversize_and_to_tag_over_tcp(faulty: Responder) -> None:
    with client("tcp", faulty.addr) as c:
        req = Req("INVITE", "big")
        c.send(req)
        trying, busy = c.expect_codes([100, 486])
        assert len(trying.raw) == len(busy.raw) == 3000
        c.send(req.ack(busy.to_tag))
        req = Req("INVITE", "bare")
        c.send(req)
        _, ringing, busy = c.expect_codes([100, 180, 486])
        assert ringing.to_tag and busy.to_tag is None and busy.get("Contact") is None
        req = Req("INVITE", "retag", headers=SDP_HEADERS, body=SDP_OFFER)
        c.send(req)
        _, ringing, ok = c.expect_codes([100, 180, 200])
        assert ringing.to_tag != ok.to_tag
        c.send(req.ack_2xx(ok.to_tag))


def test_reset_after_provisional(faulty: Responder) -> None:
    sock, _ = tcp_invite(faulty, "resetearly")
    with sock:
        chunks, end = tcp_read(sock, 3.0)
    wire = b"".join(data for _, data in chunks)
    # The 100 (the first provisional) went, then the reset: no 180, no 486.
    assert end == "reset" and wire.startswith(b"SIP/2.0 100") and b"SIP/2.0 486" not in wire
