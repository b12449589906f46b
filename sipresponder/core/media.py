"""One answered call's media: what comes in, what goes out, and what the client did.

What belongs here: ``MediaSession``, the sans-IO logic of one RTP stream and its RTCP —
echo, tone, silence, play, record — driven by ``rtp``, ``rtcp`` and ``tick`` with ``now``,
returning the datagrams to send and where; and its figures for the journal.  No sockets,
no clock, no randomness: the glue reads and writes the sockets, the table
(``mediatable``) passes the starting SSRC, sequence and timestamp.  Imports ``sdp`` (its
``Stream``), ``uri`` (``hostport``), ``rtp``, ``rtcp``, ``rtpstats``, ``codecs`` and
``mediaplan``.

The rules it keeps:

- RFC 3550 §5.1: our own SSRC, sequence and timestamp, from random starting values, and
  the marker bit on our first packet; the timestamp advances with the media clock.
- RFC 4961 (symmetric RTP): until the client's first packet we send where its SDP says;
  from then on to where its packets come from ("latching").  Before latching only the
  SDP's address and the signalling source are listened to; after, only the latched one.
- Echo sends one packet for each packet received, never more (it cannot amplify), with
  our header and the payload unchanged; DTMF events are echoed too.
- Generated audio (tone, silence, play) is paced by the clock, not by ticks: packet n is
  due at start + n·ptime, so late ticks do not make it drift; a tick that comes late by
  more than ``MAX_BURST`` packets skips ahead instead of bursting.
- Hold (RFC 3264 §8.4): the direction of our latest answer says whether we send at all.
- RTCP (§6): an SR (or RR while we have sent nothing) with SDES CNAME about every 5 s,
  randomised over 0.5–1.5 times as §6.3.1 asks, and a BYE when the session ends.
"""

from __future__ import annotations

from typing import Any, Final

from ..sip.sdp import Stream
from ..sip.uri import hostport
from .codecs import codec_for
from .mediaplan import MediaMode
from .rtcp import (
    SenderReport,
    build_bye,
    build_receiver_report,
    build_sdes,
    build_sender_report,
    ntp_timestamp,
    parse_rtcp,
)
from .rtp import build_rtp, parse_rtp, rewrite_header
from .rtpstats import DtmfReceiver, ReceiverStats

Address = tuple[str, int]
Datagram = tuple[bytes, Address]

#: RTCP's interval (RFC 3550 §6.2's minimum), before its randomisation.
RTCP_INTERVAL: Final = 5.0
#: At most this many generated packets are sent at once to catch up with a late tick.
MAX_BURST: Final = 5
#: A recording keeps at most this many seconds of audio (16-bit samples at the codec's
#: rate: 8 kHz is 57.6 MB an hour).
MAX_RECORD_SECONDS: Final = 3600.0


class MediaSession:
    """The media of one call: one stream on one port pair of ours."""

    __slots__ = (
        "_decoder",
        "_echoes",
        "_frame_at",
        "_frames",
        "_next_rtcp",
        "_next_send",
        "_remote_ts0",
        "_sent_first",
        "_start",
        "acked_at",
        "after_close",
        "bytes_in",
        "bytes_out",
        "call_id",
        "closed_at",
        "dtmf",
        "ended",
        "first_at",
        "foreign_types",
        "ignored",
        "judged",
        "latched",
        "mode",
        "note",
        "packets_in",
        "packets_out",
        "port",
        "record",
        "record_limit",
        "recording_rate",
        "remote",
        "remote_rtcp",
        "seq",
        "signalling",
        "ssrc",
        "started",
        "stats",
        "stream",
        "timestamp",
        "wall_offset",
    )

    def __init__(
        self,
        call_id: str,
        port: int,
        stream: Stream,
        mode: MediaMode,
        signalling: str,
        now: float,
        *,
        ssrc: int,
        seq: int,
        timestamp: int,
        wall_offset: float = 0.0,
    ) -> None:
        self.call_id = call_id
        self.port = port
        self.stream = stream
        self.mode = mode
        # Read once: the mode is an object of the uncompiled ``mediaplan``.
        self._echoes = mode.kind == "echo"
        #: The address the call's signalling came from: its packets are listened to
        #: before latching (a client behind NAT).
        self.signalling = signalling
        self.started = now
        self.wall_offset = wall_offset
        self.ssrc = ssrc & 0xFFFFFFFF
        self.seq = seq & 0xFFFF
        self.timestamp = timestamp & 0xFFFFFFFF
        self.remote: Address | None = (stream.address, stream.port) if stream.port else None
        self.remote_rtcp: Address | None = (
            (stream.address, stream.rtcp_port) if stream.port else None
        )
        self.latched = False
        self.stats = ReceiverStats(stream.clock, stream.dtmf)
        self.dtmf = DtmfReceiver()
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        #: Packets from an address that is not the call's (before or after latching).
        self.ignored = 0
        #: Packets of a payload type the answer did not agree, by type.
        self.foreign_types: dict[int, int] = {}
        #: Packets that came after the session ended (the BYE), while it lingered.
        self.after_close = 0
        self.acked_at: float | None = None
        self.first_at: float | None = None
        self.closed_at: float | None = None
        self.ended = ""
        #: The verdicts on its media were given (at its end).
        self.judged = False
        #: Why the mode could not be served as asked ("" when it was).
        self.note = ""
        self._remote_ts0: int | None = None
        self._sent_first = False
        codec = codec_for(stream.encoding)
        #: What generated audio sends, packet after packet, looped (``MediaMode.frames``).
        self._frames = mode.frames(stream.encoding, stream.ptime) if mode.sends else []
        self._frame_at = 0
        self._decoder = codec.decoder() if codec is not None and mode.kind == "record" else None
        if mode.sends and not self._frames:
            self.note = f"cannot encode {stream.encoding}: {mode.kind} sends nothing"
        if mode.kind == "record" and self._decoder is None:
            self.note = f"cannot decode {stream.encoding}: nothing recorded"
        #: The PCM rate of the codec (16 kHz for G.722; its RTP clock is 8 kHz, RFC 3551
        #: §4.5.2): what a recording is written at.
        self.recording_rate = codec.rate if codec is not None else 8000
        self._start = now
        self._next_send = now if self._frames else None
        self.record: list[bytes] | None = [] if self._decoder is not None else None
        self.record_limit = int(MAX_RECORD_SECONDS * self.recording_rate * 2)
        self._next_rtcp = now + self._rtcp_interval()

    # ------------------------------------------------------------------ in

    def rtp(self, data: bytes, source: Address, now: float) -> list[Datagram]:
        """A datagram on our RTP port: counted, judged, and echoed when the mode says."""
        echo = self.receive(data, source, now)
        if echo is None:
            return []
        assert self.remote is not None
        return [(echo, self.remote)]

    def receive(self, data: bytes, source: Address, now: float) -> bytes | None:
        """``rtp`` for the glue's per-packet path: the echo to send to ``remote`` (which
        does not change once latched), or None."""
        if self.closed_at is not None:
            self.after_close += 1
            return None
        if not self._from_client(source[0], self.remote):
            self.ignored += 1
            return None
        packet = parse_rtp(data)
        if packet is None:
            self.ignored += 1
            return None
        if not self.latched:
            # RFC 4961: from now on, send where the client's packets come from.
            self.latched = True
            self.remote = source
            if self.remote_rtcp is None or self.remote_rtcp[0] != source[0]:
                self.remote_rtcp = (source[0], source[1] + 1)
        if self.first_at is None:
            self.first_at = now
        self.packets_in += 1
        self.bytes_in += len(data)
        stream = self.stream
        pt = packet.payload_type
        if pt == stream.dtmf:
            self.dtmf.receive(packet, now)
        elif pt != stream.payload_type:
            self.foreign_types[pt] = self.foreign_types.get(pt, 0) + 1
            return None
        self.stats.update(packet, now, len(data))
        record = self.record
        decoder = self._decoder
        if record is not None and decoder is not None and self.record_limit > 0:
            pcm = decoder.decode(packet.payload) if pt == stream.payload_type else b""
            self.record_limit -= len(pcm)
            record.append(pcm)
        if not self._echoes or not self._may_send():
            return None
        # Echo: our header, their payload; our timestamp keeps their spacing.
        if self._remote_ts0 is None:
            self._remote_ts0 = packet.timestamp
        ts = (self.timestamp + packet.timestamp - self._remote_ts0) & 0xFFFFFFFF
        out = rewrite_header(data, self.seq, ts, self.ssrc)
        if not self._sent_first:
            out = out[:1] + bytes((out[1] | 0x80,)) + out[2:]  # §5.1: marker on the first
            self._sent_first = True
        self.seq = (self.seq + 1) & 0xFFFF
        self.packets_out += 1
        self.bytes_out += len(out)
        return out

    def rtcp(self, data: bytes, source: Address, now: float) -> None:
        """A datagram on our RTCP port: an SR's time is noted for our reports."""
        if self.closed_at is not None or not self._from_client(source[0], self.remote_rtcp):
            return
        for item in parse_rtcp(data):
            if isinstance(item, SenderReport):
                self.stats.sender_report(item, now)
        if self.latched and self.remote is not None and source[0] == self.remote[0]:
            self.remote_rtcp = source

    def _from_client(self, host: str, latched: Address | None) -> bool:
        """Whether a packet from ``host`` is the client's: before latching, from its SDP's
        address or its signalling's; after, from ``latched`` (the RTP or RTCP one)."""
        if self.latched:
            return latched is not None and host == latched[0]
        return host == self.stream.address or host == self.signalling

    def _may_send(self) -> bool:
        return self.remote is not None and self.stream.direction in ("sendrecv", "sendonly")

    # ------------------------------------------------------------------ out

    def tick(self, now: float) -> tuple[list[Datagram], list[Datagram]]:
        """What is due at ``now``: generated RTP packets, and an RTCP report."""
        rtp: list[Datagram] = []
        rtcp: list[Datagram] = []
        if self.closed_at is not None:
            return rtp, rtcp
        due = self._next_send
        if due is not None and due <= now:
            rtp = self._generate(now)
        if self._next_rtcp <= now:
            self._next_rtcp = now + self._rtcp_interval()
            if self.remote_rtcp is not None:
                rtcp.append((self._report(now), self.remote_rtcp))
        return rtp, rtcp

    def next_deadline(self) -> float | None:
        if self.closed_at is not None:
            return None
        due = self._next_send
        return self._next_rtcp if due is None else min(due, self._next_rtcp)

    def _generate(self, now: float) -> list[Datagram]:
        """The packets of generated audio due at ``now``, paced from the start."""
        ptime = self.stream.ptime / 1000
        assert self._next_send is not None
        late = int((now - self._next_send) / ptime)
        step = self.stream.clock * self.stream.ptime // 1000
        if late >= MAX_BURST:
            # Skip ahead: the stream's time goes on as if those packets had been sent.
            skipped = late - MAX_BURST + 1
            self._next_send += skipped * ptime
            self.timestamp = (self.timestamp + skipped * step) & 0xFFFFFFFF
            self._advance_audio(skipped)
        out: list[Datagram] = []
        send = self._may_send()
        while self._next_send <= now:
            self._next_send += ptime
            payload = self._payload()
            if send:
                assert self.remote is not None
                packet = build_rtp(
                    self.stream.payload_type,
                    self.seq,
                    self.timestamp,
                    self.ssrc,
                    payload,
                    marker=not self._sent_first,
                )
                self._sent_first = True
                self.seq = (self.seq + 1) & 0xFFFF
                self.packets_out += 1
                self.bytes_out += len(packet)
                out.append((packet, self.remote))
            self.timestamp = (self.timestamp + step) & 0xFFFFFFFF
        return out

    def _payload(self) -> bytes:
        frames = self._frames
        at = self._frame_at
        self._frame_at = at + 1 if at + 1 < len(frames) else 0
        return frames[at]

    def _advance_audio(self, count: int) -> None:
        self._frame_at = (self._frame_at + count) % len(self._frames)

    def _rtcp_interval(self) -> float:
        # §6.3.1: randomised over [0.5, 1.5] of the interval; the SSRC is random already.
        return RTCP_INTERVAL * (0.5 + (self.ssrc % 1000) / 1000)

    def _report(self, now: float) -> bytes:
        """An SR if we sent since the session began, else an RR; SDES CNAME after it."""
        blocks = [self.stats.report(now)] if self.stats.received_any else []
        if self.packets_out:
            wall = now + self.wall_offset
            elapsed = int((now - self._start) * self.stream.clock)
            head = build_sender_report(
                self.ssrc,
                ntp_timestamp(wall),
                (self.timestamp if self._next_send is not None else self.timestamp + elapsed)
                & 0xFFFFFFFF,
                self.packets_out,
                self.bytes_out,
                blocks,
            )
        else:
            head = build_receiver_report(self.ssrc, blocks)
        return head + build_sdes(self.ssrc, f"sipresponder@{self.port}")

    # ------------------------------------------------------------------ end

    def close(self, now: float, why: str) -> list[Datagram]:
        """End the session (``why``: "bye", "cancel", "timeout"...): our RTCP BYE (§6.6),
        to be sent once; later packets are only counted."""
        if self.closed_at is not None:
            return []
        self.closed_at = now
        self.ended = why
        if self.remote_rtcp is None:
            return []
        packet = self._report(now) + build_bye([self.ssrc], why)
        return [(packet, self.remote_rtcp)]

    def take_recording(self) -> bytes:
        """The recorded audio (16-bit mono PCM), handed over once."""
        record = self.record
        self.record = None
        return b"".join(record) if record else b""

    def summary(self) -> dict[str, Any]:
        """The stream's figures for the journal (JSON-ready)."""
        stats = self.stats.to_dict()
        stream = self.stream
        first = self.first_at
        delay = None
        if first is not None and self.acked_at is not None:
            delay = round(max(0.0, first - self.acked_at), 3)
        out: dict[str, Any] = {
            "mode": self.mode.describe(),
            "port": self.port,
            "codec": f"{stream.encoding}/{stream.clock}",
            "payload_type": stream.payload_type,
            "telephone_event": stream.dtmf,
            "ptime": stream.ptime,
            "direction": stream.direction,
            "sdp_address": f"{stream.address}:{stream.port}",
            "client": None if not self.latched or self.remote is None else hostport(*self.remote),
            # Informational, no violation: its packets came from elsewhere than its SDP
            # said (a NAT, most often); symmetric RTP answered them there.
            "nat": self.latched
            and self.remote is not None
            and self.remote != (stream.address, stream.port),
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "first_packet_delay": delay,
            "loss": stats.get("loss", 0.0),
            "lost": stats.get("lost", 0),
            "jitter_ms": stats.get("jitter_ms", 0.0),
            "ssrc": stats.get("ssrc"),
            "ssrc_changes": stats.get("ssrc_changes", 0),
            "timestamp_errors": stats.get("timestamp_errors", 0),
            "first_marker": stats.get("first_marker"),
            "dtmf": self.dtmf.text,
            "dtmf_events": [
                {"digit": d, "time": round(t + self.wall_offset, 3), "duration": n}
                for d, t, n in self.dtmf.digits
            ],
            "foreign_payload_types": dict(self.foreign_types),
            "ignored": self.ignored,
            "after_bye": self.after_close,
            "ended": self.ended,
        }
        if self.note:
            out["note"] = self.note
        return out
