"""The journal's messages as a capture file: pcap, which tshark and Wireshark open.

What belongs here: ``write_pcap(entries)``, the bytes of a libpcap file (the classic
format, microsecond times) holding one packet per message of ``calls.Entry``, in the order
of their times; and ``PCAP_TYPE``, its media type.  Sans-IO: entries in, bytes out.
Imports ``calls`` (``Entry``) only.

How each message is written:

- The link type is ``LINKTYPE_RAW`` (101): each packet is an IPv4 or IPv6 packet with no
  link layer, between the addresses the journal has (``Entry.src``, ``Entry.dst``), with
  a TTL (hop limit) of 64 and checksums computed.
- UDP: one datagram a message.
- TCP: the messages between two addresses are one connection.  Its first message is
  preceded by a three-way handshake (SYN from that message's sender, SYN-ACK, ACK) at its
  time, so that a dissector follows the stream from its start; then each
  message is one segment (PSH, ACK) — several, of at most ``MAX_SEGMENT`` octets, when it
  is longer — whose sequence numbers run on in each direction and acknowledge what the
  other side sent.
- TLS, WS and WSS (none yet) would be written as what they carry, over TCP.
- A message of which the journal kept only the head (``Entry.cut``) is written as
  captured short: its packet's original length is the whole message's, its captured
  length what was kept (Wireshark says "packet size limited during capture"); its UDP or
  TCP checksum is 0, since the rest is not known (Wireshark does not check them unless
  asked).
- An entry whose addresses cannot be read as IP addresses and ports is left out.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from typing import Final

from .calls import Entry

#: The media type of a pcap file (IANA).
PCAP_TYPE: Final = "application/vnd.tcpdump.pcap"
#: The pcap file's link type: raw IPv4 or IPv6 packets.
LINKTYPE_RAW: Final = 101
#: The largest TCP payload written in one segment (an IP packet is at most 65,535 octets).
MAX_SEGMENT: Final = 65000
#: The snapshot length written in the file's header: longer than any packet here.
SNAPLEN: Final = 262144

_FILE_HEADER: Final = struct.Struct("<IHHiIII")
_RECORD_HEADER: Final = struct.Struct("<IIII")
_MAGIC: Final = 0xA1B2C3D4
_UDP: Final = 17
_TCP: Final = 6
_SYN: Final = 0x02
_ACK: Final = 0x10
_PSH: Final = 0x08

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Address = tuple[IP, int]


def write_pcap(entries: Iterable[Entry]) -> bytes:
    """A pcap file of ``entries`` (sorted by time, the order of equal times kept)."""
    writer = _Writer()
    for entry in sorted(entries, key=lambda e: e.time):
        writer.add(entry)
    return b"".join(writer.out)


def address_of(text: str) -> Address | None:
    """``ip:port`` or ``[ipv6]:port`` (as ``uri.hostport`` writes it), or None."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    return ip, int(port)


class _Connection:
    """A TCP connection's next sequence number in each direction (by sender)."""

    __slots__ = ("next_seq",)

    def __init__(self) -> None:
        self.next_seq: dict[Address, int] = {}


class _Writer:
    def __init__(self) -> None:
        self.out: list[bytes] = [_FILE_HEADER.pack(_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW)]
        self.connections: dict[frozenset[Address], _Connection] = {}
        self.ident = 0

    def add(self, entry: Entry) -> None:
        src, dst = address_of(entry.src), address_of(entry.dst)
        if src is None or dst is None or src[0].version != dst[0].version:
            return
        whole = entry.size or len(entry.raw)
        if entry.transport == "udp":
            self._packet(entry.time, src, dst, _UDP, b"", entry.raw, whole)
            return
        connection = self.connections.get(frozenset((src, dst)))
        if connection is None:
            connection = self._open(entry.time, src, dst)
        payload = entry.raw
        for start in range(0, max(whole, 1), MAX_SEGMENT):
            size = min(MAX_SEGMENT, whole - start)
            self._segment(
                entry.time, connection, src, dst, _PSH | _ACK, payload[start : start + size], size
            )

    def _open(self, time: float, client: Address, server: Address) -> _Connection:
        """A new connection, its handshake written (initial sequence numbers 0)."""
        connection = _Connection()
        self.connections[frozenset((client, server))] = connection
        connection.next_seq[client] = 0
        connection.next_seq[server] = 0
        self._tcp(time, client, server, 0, 0, _SYN, b"", 0)
        self._tcp(time, server, client, 0, 1, _SYN | _ACK, b"", 0)
        connection.next_seq[client] = connection.next_seq[server] = 1
        self._tcp(time, client, server, 1, 1, _ACK, b"", 0)
        return connection

    def _segment(
        self,
        time: float,
        connection: _Connection,
        src: Address,
        dst: Address,
        flags: int,
        payload: bytes,
        size: int,
    ) -> None:
        seq = connection.next_seq[src]
        ack = connection.next_seq[dst]
        self._tcp(time, src, dst, seq, ack, flags, payload, size)
        connection.next_seq[src] = (seq + size) & 0xFFFFFFFF

    def _tcp(
        self,
        time: float,
        src: Address,
        dst: Address,
        seq: int,
        ack: int,
        flags: int,
        payload: bytes,
        size: int,
    ) -> None:
        header = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, flags, 65535, 0, 0)
        self._packet(time, src, dst, _TCP, header, payload, len(header) + size)

    def _packet(
        self,
        time: float,
        src: Address,
        dst: Address,
        protocol: int,
        header: bytes,
        payload: bytes,
        whole: int,
    ) -> None:
        """One IP packet of ``protocol``: a UDP header made here (``header`` empty) or the
        TCP ``header`` given, then ``payload``; ``whole`` is the transport's length on the
        wire (the UDP payload's, or the TCP header's and payload's)."""
        complete = len(header) + len(payload) == whole
        if protocol == _UDP:
            length = 8 + whole
            header = struct.pack("!HHHH", src[1], dst[1], length & 0xFFFF, 0)
            transport = header + payload
            total = length
        else:
            transport = header + payload
            total = whole
        if complete:
            checksum = _checksum(_pseudo_header(src[0], dst[0], protocol, total) + transport)
            if protocol == _UDP and checksum == 0:
                checksum = 0xFFFF  # RFC 768: a computed 0 is sent as all ones
            at = 6 if protocol == _UDP else 16
            transport = transport[:at] + struct.pack("!H", checksum) + transport[at + 2 :]
        ip = self._ip_header(src[0], dst[0], protocol, total)
        packet = ip + transport
        seconds = int(time)
        micros = min(999999, max(0, round((time - seconds) * 1e6)))
        self.out.append(_RECORD_HEADER.pack(seconds, micros, len(packet), len(ip) + total))
        self.out.append(packet)

    def _ip_header(self, src: IP, dst: IP, protocol: int, length: int) -> bytes:
        if src.version == 6:
            return struct.pack("!IHBB", 6 << 28, length, protocol, 64) + src.packed + dst.packed
        self.ident = (self.ident + 1) & 0xFFFF
        head = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            min(20 + length, 0xFFFF),
            self.ident,
            0x4000,  # don't fragment
            64,
            protocol,
            0,
            src.packed,
            dst.packed,
        )
        return head[:10] + struct.pack("!H", _checksum(head)) + head[12:]


def _pseudo_header(src: IP, dst: IP, protocol: int, length: int) -> bytes:
    """The pseudo-header a UDP or TCP checksum covers (RFC 768, RFC 793, RFC 8200 §8.1)."""
    if src.version == 6:
        return src.packed + dst.packed + struct.pack("!IxxxB", length, protocol)
    return src.packed + dst.packed + struct.pack("!xBH", protocol, length)


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum
    of the 16-bit words (an odd last octet padded with a zero)."""
    if len(data) % 2:
        data += b"\x00"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
