"""SDP offer/answer (RFC 4566, RFC 3264) — just enough to answer a call.

What belongs here: reading an offer's media lines and building an answer from it (the
first offered codec we support per stream, DTMF events kept, direction mirrored, other
streams rejected with port 0), or building an offer when the INVITE had none.  We carry
no media: the ports are placeholders on our address.  Pure text in, text out; imports
``message`` only (its ``decimal``).
"""

from __future__ import annotations

from ..errors import SdpError
from .message import decimal

#: Audio encodings we agree to (by encoding name, lower case).
SUPPORTED = frozenset(
    {"pcmu", "pcma", "g722", "g729", "gsm", "opus", "ilbc", "speex", "amr", "amr-wb"}
)

#: RFC 3551 static payload types -> "encoding/clock" (the ones we support).
STATIC = {
    "0": "PCMU/8000",
    "3": "GSM/8000",
    "8": "PCMA/8000",
    "9": "G722/8000",
    "18": "G729/8000",
}

_DIRECTIONS = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}

MEDIA_PORT_BASE = 40000


class _Media:
    """One m= section of an offer (a plain class: mypyc compiles its ``__init__``)."""

    __slots__ = (
        "connection",
        "direction",
        "fmtp",
        "fmts",
        "media",
        "port",
        "proto",
        "ptime",
        "rtcp",
        "rtpmap",
    )

    def __init__(self, media: str, port: int, proto: str, fmts: list[str]) -> None:
        self.media = media
        self.port = port
        self.proto = proto
        self.fmts = fmts
        self.rtpmap: dict[str, str] = {}
        self.fmtp: dict[str, str] = {}
        self.direction: str | None = None
        #: The stream's own c= address, if it has one.
        self.connection: str | None = None
        self.ptime: int | None = None
        #: a=rtcp (RFC 3605): the port of its RTCP, when not the next one.
        self.rtcp: int | None = None


class Stream:
    """What an answer agreed for the one audio stream the responder serves: where the
    client receives, the codec, the telephone-event type, the packet time, and the
    direction of the answer (RFC 3264 §6.1)."""

    __slots__ = (
        "address",
        "clock",
        "direction",
        "dtmf",
        "encoding",
        "payload_type",
        "port",
        "ptime",
        "rtcp_port",
    )

    def __init__(
        self,
        address: str,
        port: int,
        rtcp_port: int,
        payload_type: int,
        encoding: str,
        clock: int,
        dtmf: int | None,
        ptime: int,
        direction: str,
    ) -> None:
        self.address = address
        self.port = port
        self.rtcp_port = rtcp_port
        self.payload_type = payload_type
        self.encoding = encoding  # lower case: "pcmu"
        self.clock = clock
        self.dtmf = dtmf
        self.ptime = ptime  # ms
        self.direction = direction  # ours: "sendrecv" | "sendonly" | "recvonly" | "inactive"

    def __repr__(self) -> str:
        return (
            f"Stream({self.encoding}/{self.clock} pt {self.payload_type} to "
            f"{self.address}:{self.port}, {self.ptime} ms, {self.direction})"
        )


Parsed = tuple[str, str | None, list[_Media], str | None]

#: The answer to an offer, from its t= line on (what follows the origin lines), by the
#: offer's bytes.  A load test sends one offer in every call: it is read and answered
#: once.  The endpoint checks an INVITE's offer, then answers it: one read.  Bounded in
#: entries and in the size of an offer kept (``--max-message-size`` may allow far larger
#: ones); an offer that cannot be read is not kept (it raises each time).
_TAILS: dict[bytes, str] = {}
_TAILS_LIMIT = 256
_TAIL_OFFER_LIMIT = 4096


def _tail(offer: bytes) -> str:
    tail = _TAILS.get(offer)
    if tail is None:
        timing, session_dir, media, _ = _parse(offer.decode("utf-8", "replace"))
        tail = _answer_tail(timing, session_dir, media)
        if len(offer) <= _TAIL_OFFER_LIMIT:
            if len(_TAILS) >= _TAILS_LIMIT:
                _TAILS.clear()
            _TAILS[offer] = tail
    return tail


def _parse(offer: str) -> Parsed:
    """-> (t= line value, session-level direction, media sections)."""
    lines = [ln.strip() for ln in offer.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or not lines[0].startswith("v=0"):
        raise SdpError("SDP must start with v=0")
    timing = "0 0"
    session_dir: str | None = None
    session_conn: str | None = None
    media: list[_Media] = []
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"malformed SDP line {line[:20]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            port = decimal(parts[1].split("/")[0], 5) if len(parts) >= 4 else None
            if port is None:
                raise SdpError(f"malformed m= line {value!r}")
            media.append(_Media(parts[0], port, parts[2], parts[3:]))
        elif kind == "t" and not media:
            timing = value
        elif kind == "c":
            parts = value.split()
            address = parts[2].split("/", 1)[0] if len(parts) >= 3 else None
            if media:
                media[-1].connection = address
            else:
                session_conn = address
        elif kind == "a":
            name, _, rest = value.partition(":")
            target = media[-1] if media else None
            if name in _DIRECTIONS and not rest:
                if target is None:
                    session_dir = name
                else:
                    target.direction = name
            elif target is not None and name == "rtpmap":
                pt, _, enc = rest.partition(" ")
                target.rtpmap[pt] = enc.strip()
            elif target is not None and name == "fmtp":
                pt, _, params = rest.partition(" ")
                target.fmtp[pt] = params.strip()
            elif target is not None and name == "ptime":
                target.ptime = decimal(rest.strip(), 4)
            elif target is not None and name == "rtcp":
                target.rtcp = decimal(rest.split()[0], 5) if rest.split() else None
    if not media:
        raise SdpError("SDP offer has no m= line")
    return timing, session_dir, media, session_conn


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _origin(address: str, session_id: int) -> str:
    """The session lines before t=, ours: version, origin, name and connection."""
    at = _addrtype(address)
    return (
        f"v=0\r\no=sipresponder {session_id} {session_id} IN {at} {address}\r\n"
        f"s=sipresponder\r\nc=IN {at} {address}\r\n"
    )


def build_answer(offer: bytes, address: str, session_id: int) -> bytes:
    """An RFC 3264 §6 answer to ``offer``: same streams in the same order.

    Each audio stream over RTP/AVP(F) gets the first offered codec we support, plus
    telephone-event when offered; anything else is rejected with port 0.  Raises
    ``SdpError`` when the offer cannot be read.
    """
    return (_origin(address, session_id) + _tail(offer)).encode()


def _answer_tail(
    timing: str,
    session_dir: str | None,
    media: list[_Media],
    port: int | None = None,
    encodable: frozenset[str] | None = None,
) -> str:
    """The lines of an answer after its origin: they follow from the offer alone, and,
    when a media session serves the call, from its ``port``: then the first stream we
    accept gets it, and any other is rejected (one session, one stream).  With
    ``encodable``, a codec of that set is preferred (we send audio of our own)."""
    out = [f"t={timing}"]  # §6: the t= line of the answer equals the offer's
    served = False
    for index, m in enumerate(media):
        chosen = [] if served and port is not None else _chosen(m, encodable)
        if not chosen:
            out.append(f"m={m.media} 0 {m.proto} {m.fmts[0]}")  # §6: rejected stream
            continue
        served = True
        ours = MEDIA_PORT_BASE + 2 * index if port is None else port
        out.append(f"m={m.media} {ours} {m.proto} {' '.join(chosen)}")
        for pt in chosen:
            rtpmap = m.rtpmap.get(pt) or STATIC.get(pt)
            if rtpmap:
                out.append(f"a=rtpmap:{pt} {rtpmap}")
            if pt in m.fmtp:
                out.append(f"a=fmtp:{pt} {m.fmtp[pt]}")
        direction = m.direction or session_dir or "sendrecv"
        out.append(f"a={_DIRECTIONS[direction]}")
    return "\r\n".join(out) + "\r\n"


def _chosen(m: _Media, encodable: frozenset[str] | None) -> list[str]:
    """The payload types of our answer to one stream: a codec, and telephone-event when
    offered; [] to reject it."""
    if m.media != "audio" or m.port == 0 or m.proto.upper() not in ("RTP/AVP", "RTP/AVPF"):
        return []
    codec = None
    if encodable is not None:
        codec = next((pt for pt in m.fmts if _encoding(m, pt) in encodable), None)
    if codec is None:
        codec = next((pt for pt in m.fmts if _encoding(m, pt) in SUPPORTED), None)
    if codec is None:
        return []
    dtmf = next((pt for pt in m.fmts if _encoding(m, pt) == "telephone-event"), None)
    return [codec] if dtmf is None else [codec, dtmf]


def answer_stream(
    offer: bytes, address: str, session_id: int, port: int, encodable: frozenset[str] | None
) -> tuple[bytes, Stream | None]:
    """An answer to ``offer`` whose first accepted audio stream is served on ``port``, and
    what was agreed for it (None when no stream was accepted: then the answer names no
    port of ours).  Raises ``SdpError`` when the offer cannot be read."""
    timing, session_dir, media, session_conn = _parse(offer.decode("utf-8", "replace"))
    for m in media:
        chosen = _chosen(m, encodable)
        if not chosen:
            continue
        where = m.connection or session_conn
        if where is None:
            break  # RFC 4566 §5.7: no c= at all: nowhere to send
        codec = chosen[0]
        rtpmap = m.rtpmap.get(codec) or STATIC.get(codec, "")
        parts = rtpmap.split("/")
        clock = decimal(parts[1], 6) if len(parts) > 1 else None
        stream = Stream(
            where,
            m.port,
            m.rtcp or m.port + 1,
            int(codec),
            parts[0].lower(),
            clock or 8000,
            int(chosen[1]) if len(chosen) > 1 else None,
            m.ptime if m.ptime and 10 <= m.ptime <= 200 else 20,
            _DIRECTIONS[m.direction or session_dir or "sendrecv"],
        )
        tail = _answer_tail(timing, session_dir, media, port, encodable)
        return (_origin(address, session_id) + tail).encode(), stream
    return build_answer(offer, address, session_id), None


def offer_stream(address: str, session_id: int, port: int) -> bytes:
    """Our offer (an INVITE without one) with ``port`` as its audio port."""
    return build_offer(address, session_id).replace(
        f"m=audio {MEDIA_PORT_BASE} ".encode(), f"m=audio {port} ".encode(), 1
    )


def build_offer(address: str, session_id: int) -> bytes:
    """An offer for an INVITE that came without one (RFC 3261 §13.2.1): G.711 and DTMF."""
    out = [
        "t=0 0",
        f"m=audio {MEDIA_PORT_BASE} RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return (_origin(address, session_id) + "\r\n".join(out) + "\r\n").encode()


def check_offer(offer: bytes) -> None:
    """Raise ``SdpError`` when ``offer`` is not a readable session description."""
    _tail(offer)


def _encoding(m: _Media, pt: str) -> str:
    rtpmap = m.rtpmap.get(pt) or STATIC.get(pt, "")
    return rtpmap.split("/", 1)[0].lower()
