"""--allow, --rate-limit and the anti-amplification cap, on a real responder process.

Loopback only: other sources are other loopback addresses (127.0.0.2), and the allow
list that leaves the client out names a documentation block (192.0.2.0/24).
"""

from __future__ import annotations

import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from sipclient import Req, TcpClient, UdpClient
from sipprocs import Responder, StartResponder

ADMIN = ("--admin", "127.0.0.1:0")


class UdpClientFrom(UdpClient):
    """A UDP client on another loopback address."""

    def __init__(self, server: tuple[str, int], local: str) -> None:
        super().__init__(server)
        self.sock.close()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local, 0))


def metrics(server: Responder) -> dict[str, float]:
    assert server.admin_url is not None
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=5.0) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def test_sources_outside_allow_are_ignored(start_responder_with: StartResponder) -> None:
    server = start_responder_with("--allow", "192.0.2.0/24", *ADMIN)
    with UdpClient(server.addr) as u:
        u.send(Req("OPTIONS"))
        u.send(Req("INVITE", "486"))
        u.expect_silence()
    with TcpClient(server.addr) as t:
        assert t.closed_by_peer(timeout=2.0)  # closed at once, before any request
    seen = metrics(server)
    assert seen["sipresponder_ignored_total{reason=not_allowed}"] == 3
    assert seen.get("sipresponder_requests_total{method=OPTIONS}", 0) == 0  # never parsed
    log = server.wait_for_log("not in --allow")
    assert log.count("ignoring 127.0.0.1: not in --allow") == 1  # once per source


def test_allowed_sources_are_answered(start_responder_with: StartResponder) -> None:
    server = start_responder_with("--allow", "127.0.0.1", "--allow", "10.0.0.0/8")
    with UdpClient(server.addr) as u:
        u.request(Req("OPTIONS"), 200)
    with TcpClient(server.addr) as t:
        t.request(Req("OPTIONS"), 200)
    with UdpClientFrom(server.addr, "127.0.0.2") as other:
        other.send(Req("OPTIONS"))
        other.expect_silence()


def test_rate_limit_ignores_a_flooding_source_only(start_responder_with: StartResponder) -> None:
    server = start_responder_with("--rate-limit", "5/s", *ADMIN)
    with UdpClient(server.addr) as flood, UdpClientFrom(server.addr, "127.0.0.2") as calm:
        start = time.monotonic()
        for _ in range(20):
            flood.send(Req("OPTIONS"))
        answered = 0
        while flood.recv(0.3) is not None and answered < 20:
            answered += 1
        took = time.monotonic() - start
        # A burst of one second's worth, and what refilled while we sent.
        assert 5 <= answered <= 5 + int(5 * took) + 1, (answered, took)
        time.sleep(0.5)
        flood.send(Req("OPTIONS"))  # tokens are back, but the source is blocked for 10 s
        flood.expect_silence()
        calm.request(Req("OPTIONS"), 200)  # another source is still answered
    seen = metrics(server)
    assert seen["sipresponder_blocked_sources_total"] == 1
    assert seen["sipresponder_ignored_total{reason=rate_limited}"] == 21 - answered
    log = server.wait_for_log("over --rate-limit")
    assert log.count("ignoring 127.0.0.1 for 10 s: over --rate-limit 5/s") == 1


def test_unverified_source_gets_at_most_its_budget(start_responder_with: StartResponder) -> None:
    """--amplification-limit 3 (on loopback it is off by default): an INVITE answered 200
    whose sender never ACKs gets no more 200 copies once 1500 bytes plus three times what
    it sent are spent; a source that ACKed one of our responses is sent all it is due."""
    server = start_responder_with("--amplification-limit", "3", *ADMIN)
    with UdpClient(server.addr) as spoofed:
        spoofed.send(Req("INVITE", "200"))
        spoofed.expect_codes([100, 200])
        copies = 0
        while spoofed.recv(1.2) is not None and copies < 10:
            copies += 1  # the 2xx again at 0.5 s, 1.5 s, 3.5 s... while the budget lasts
        assert copies == 1, copies
    with UdpClientFrom(server.addr, "127.0.0.2") as honest:
        invite = Req("INVITE", "486")
        honest.send(invite)
        busy = honest.expect_codes([100, 486])[-1]
        honest.send(invite.ack(busy.to_tag))  # our To tag: it receives what we send
        second = Req("INVITE", "200")
        honest.send(second)
        honest.expect_codes([100, 200, 200, 200], timeout=2.0)  # 0 s, 0.5 s, 1.5 s
    seen = metrics(server)
    assert seen["sipresponder_held_total"] >= 1
    assert seen["sipresponder_verified_sources_total"] == 1
    log = server.wait_for_log("holding back")
    assert log.count("holding back responses to 127.0.0.1") == 1
    assert "holding back responses to 127.0.0.2" not in log
