"""The journal's messages as a pcap file, read back here field by field: the file and
record headers, IPv4 and IPv6 headers with their checksums, UDP datagrams, TCP
connections with a handshake and running sequence numbers, messages kept only in part,
and entries left out.  (tests/integration/test_capture_process.py has tshark read an
exported call.)"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from sipresponder.core.calls import Entry
from sipresponder.core.capture import LINKTYPE_RAW, MAX_SEGMENT, address_of, write_pcap

INVITE = b"INVITE sip:486@127.0.0.1 SIP/2.0\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n"
BUSY = b"SIP/2.0 486 Busy Here\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n"


def entry(
    time: float,
    direction: str,
    src: str,
    dst: str,
    raw: bytes,
    transport: str = "udp",
    size: int = 0,
) -> Entry:
    e = Entry(time, direction, transport, src, dst, raw, "a", "INVITE", 1)
    e.size = size
    return e


@dataclass
class Packet:
    time: float
    captured: int
    original: int
    data: bytes


def records(pcap: bytes) -> list[Packet]:
    magic, major, minor, zone, _, snaplen, linktype = struct.unpack_from("<IHHiIII", pcap)
    assert (magic, major, minor, zone, linktype) == (0xA1B2C3D4, 2, 4, 0, LINKTYPE_RAW)
    out, at = [], 24
    while at < len(pcap):
        sec, usec, captured, original = struct.unpack_from("<IIII", pcap, at)
        at += 16
        out.append(Packet(sec + usec / 1e6, captured, original, pcap[at : at + captured]))
        assert captured <= original <= snaplen
        at += captured
    assert at == len(pcap)
    return out


def ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@dataclass
class Ip:
    version: int
    src: str
    dst: str
    protocol: int
    payload: bytes
    pseudo: bytes


def ip(packet: bytes) -> Ip:
    if packet[0] >> 4 == 4:
        assert packet[0] == 0x45 and ones_sum(packet[:20]) == 0xFFFF  # checksum holds
        total, proto = struct.unpack_from("!H", packet, 2)[0], packet[9]
        assert packet[8] == 64
        src, dst = ipaddress.ip_address(packet[12:16]), ipaddress.ip_address(packet[16:20])
        body = packet[20:]
        pseudo = packet[12:20] + struct.pack("!xBH", proto, total - 20)
        return Ip(4, str(src), str(dst), proto, body, pseudo)
    assert packet[0] >> 4 == 6
    length, proto, hops = struct.unpack_from("!HBB", packet, 4)
    assert hops == 64
    src, dst = ipaddress.ip_address(packet[8:24]), ipaddress.ip_address(packet[24:40])
    pseudo = packet[8:40] + struct.pack("!IxxxB", length, proto)
    return Ip(6, str(src), str(dst), proto, packet[40:], pseudo)


def test_udp_messages_are_datagrams_between_their_addresses_at_their_times() -> None:
    pcap = write_pcap(
        [
            entry(1000.25, "in", "127.0.0.1:5070", "127.0.0.1:5060", INVITE),
            entry(1000.2501, "out", "127.0.0.1:5060", "127.0.0.1:5070", BUSY),
        ]
    )
    first, second = records(pcap)
    assert abs(first.time - 1000.25) < 1e-6 and abs(second.time - 1000.2501) < 1e-6
    for packet, (sport, dport, raw) in zip(
        (first, second), ((5070, 5060, INVITE), (5060, 5070, BUSY)), strict=True
    ):
        assert packet.captured == packet.original == 28 + len(raw)
        p = ip(packet.data)
        assert (p.version, p.src, p.dst, p.protocol) == (4, "127.0.0.1", "127.0.0.1", 17)
        assert struct.unpack_from("!HHH", p.payload) == (sport, dport, 8 + len(raw))
        assert ones_sum(p.pseudo + p.payload) == 0xFFFF  # the UDP checksum holds
        assert p.payload[8:] == raw


def test_ipv6_messages() -> None:
    [packet] = records(write_pcap([entry(5.0, "in", "[::1]:5070", "[::1]:5060", INVITE)]))
    p = ip(packet.data)
    assert (p.version, p.src, p.dst, p.protocol) == (6, "::1", "::1", 17)
    assert ones_sum(p.pseudo + p.payload) == 0xFFFF
    assert p.payload[8:] == INVITE


def tcp(p: Ip) -> tuple[int, int, int, int, int, bytes]:
    sport, dport, seq, ack, offset, flags = struct.unpack_from("!HHIIBB", p.payload)
    assert offset >> 4 == 5
    return sport, dport, seq, ack, flags, p.payload[20:]


def test_a_tcp_connection_starts_with_a_handshake_and_its_sequence_runs_on() -> None:
    client, server = "127.0.0.1:40000", "127.0.0.1:5060"
    pcap = write_pcap(
        [
            entry(10.0, "in", client, server, INVITE, "tcp"),
            entry(10.001, "out", server, client, BUSY, "tcp"),
            entry(10.002, "in", client, server, b"ACK", "tcp"),
        ]
    )
    packets = [ip(r.data) for r in records(pcap)]
    assert all(p.protocol == 6 and ones_sum(p.pseudo + p.payload) == 0xFFFF for p in packets)
    segments = [tcp(p) for p in packets]
    assert [s[4] for s in segments] == [0x02, 0x12, 0x10, 0x18, 0x18, 0x18]  # SYN, SYN-ACK...
    assert segments[0][:4] == (40000, 5060, 0, 0)
    assert segments[1][:4] == (5060, 40000, 0, 1)
    assert segments[3][2:4] == (1, 1) and segments[3][5] == INVITE
    assert segments[4][2:4] == (1, 1 + len(INVITE)) and segments[4][5] == BUSY
    assert segments[5][2:4] == (1 + len(INVITE), 1 + len(BUSY)) and segments[5][5] == b"ACK"


def test_each_pair_of_addresses_is_a_connection_of_its_own() -> None:
    pcap = write_pcap(
        [
            entry(1.0, "in", "127.0.0.1:40000", "127.0.0.1:5060", INVITE, "tcp"),
            entry(2.0, "in", "127.0.0.1:40001", "127.0.0.1:5060", INVITE, "tcp"),
        ]
    )
    flags = [tcp(ip(r.data))[4] for r in records(pcap)]
    assert flags == [0x02, 0x12, 0x10, 0x18] * 2


def test_a_long_tcp_message_is_cut_into_segments() -> None:
    big = b"x" * (MAX_SEGMENT + 100)
    pcap = write_pcap([entry(1.0, "in", "127.0.0.1:40000", "127.0.0.1:5060", big, "tcp")])
    segments = [tcp(ip(r.data)) for r in records(pcap)][3:]
    assert [len(s[5]) for s in segments] == [MAX_SEGMENT, 100]
    assert segments[1][2] == 1 + MAX_SEGMENT


def test_a_message_kept_in_part_is_captured_short() -> None:
    head = INVITE[:20]
    [packet] = records(
        write_pcap([entry(1.0, "in", "127.0.0.1:5070", "127.0.0.1:5060", head, size=5000)])
    )
    assert packet.captured == 28 + 20 and packet.original == 28 + 5000
    p = ip(packet.data)
    assert struct.unpack_from("!HHHH", p.payload) == (5070, 5060, 5008, 0)


def test_entries_are_written_in_the_order_of_their_times() -> None:
    pcap = write_pcap(
        [
            entry(3.0, "in", "127.0.0.1:1", "127.0.0.1:2", b"c"),
            entry(1.0, "in", "127.0.0.1:1", "127.0.0.1:2", b"a"),
            entry(2.0, "in", "127.0.0.1:1", "127.0.0.1:2", b"b"),
        ]
    )
    assert [ip(r.data).payload[8:] for r in records(pcap)] == [b"a", b"b", b"c"]


def test_unreadable_addresses_are_left_out() -> None:
    pcap = write_pcap(
        [
            entry(1.0, "in", "host.example:5060", "127.0.0.1:5060", b"x"),
            entry(1.0, "in", "127.0.0.1", "127.0.0.1:5060", b"x"),
            entry(1.0, "in", "127.0.0.1:5060", "[::1]:5060", b"x"),
            entry(1.0, "in", "127.0.0.1:99999", "127.0.0.1:5060", b"x"),
        ]
    )
    assert records(pcap) == []


def test_an_empty_journal_is_a_file_with_its_header_alone() -> None:
    assert len(write_pcap([])) == 24


def test_address_of() -> None:
    assert address_of("127.0.0.1:5060") == (ipaddress.ip_address("127.0.0.1"), 5060)
    assert address_of("[::1]:5061") == (ipaddress.ip_address("::1"), 5061)
    assert address_of("[fe80::1%lo]:5060") == (ipaddress.ip_address("fe80::1"), 5060)
    for bad in ("", "5060", "::1", "[::1]", "a.b:5060", "1.2.3.4:x"):
        assert address_of(bad) is None


@given(st.lists(st.binary(max_size=300), max_size=8), st.booleans())
def test_every_checksum_holds_for_any_payload(payloads: list[bytes], six: bool) -> None:
    a, b = ("[::1]:5070", "[::1]:5060") if six else ("127.0.0.1:5070", "127.0.0.1:5060")
    for transport in ("udp", "tcp"):
        entries = [
            entry(
                float(i),
                "in" if i % 2 else "out",
                a if i % 2 else b,
                b if i % 2 else a,
                raw,
                transport,
            )
            for i, raw in enumerate(payloads)
        ]
        for r in records(write_pcap(entries)):
            p = ip(r.data)
            assert ones_sum(p.pseudo + p.payload) == 0xFFFF
