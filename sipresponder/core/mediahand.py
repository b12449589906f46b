"""The endpoint's hand for media: which calls get a session, on what port, and what the
journal is told about it.

What belongs here: ``MediaHand`` — the SDP of an answered INVITE (a 2xx, or a 183 with
SDP) naming a session's port (``answer``); the mode of a call (the step's, else the
rule's or the dialled one, else the default); the call's ends as the signalling sees them
(ACK, BYE, CANCEL, a final non-2xx after early media, no ACK); and, when a session is
freed, its figures into the journal's call and the verdicts on the client's media.  The
endpoint calls it only when media is on (``--media`` other than ``none`` or a rule that
asks for it): with media off nothing here runs.  Imports ``sip``, ``mediatable``,
``mediaplan``, ``recorder`` and ``verdicts``.
"""

from __future__ import annotations

import logging

from ..errors import SdpError
from ..sip.message import Request
from ..sip.responses import is_sdp, session_id
from ..sip.sdp import Stream, answer_stream, offer_stream
from .codecs import ENCODABLE
from .media import MediaSession
from .mediaplan import MediaMode
from .mediatable import MediaTable, Out
from .recorder import Recorder
from .verdicts import Verdicts

log = logging.getLogger(__name__)


class MediaHand:
    """Media for the endpoint: sessions opened with answers, ended with calls."""

    __slots__ = ("default", "outbox", "recorder", "table", "verdicts")

    def __init__(
        self, table: MediaTable, default: MediaMode, recorder: Recorder, verdicts: Verdicts
    ) -> None:
        self.table = table
        #: The mode of a call whose rule and dialled code name none (``--media``).
        self.default = default
        self.recorder = recorder
        self.verdicts = verdicts
        #: RTCP BYEs of sessions ended by signalling, for the glue to send.
        self.outbox: list[Out] = []

    def answer(
        self,
        req: Request,
        code: int,
        mode: MediaMode | None,
        host: str,
        tag: str,
        signalling: str,
        now: float,
    ) -> bytes | None:
        """The SDP of our ``code`` to an INVITE, naming the call's session's port, or None
        to leave the SDP to the response builder (no media for this call)."""
        if mode is None:
            mode = self.default
        call_id = req.call_id or ""
        if mode.kind == "none" or not call_id:
            return None
        table = self.table
        session = table.get(call_id)
        fresh = session is None
        offered = bool(req.body) and is_sdp(req)
        if req.method != "INVITE" and (fresh or not offered):
            return None  # an UPDATE's offer changes a session; only an INVITE opens one
        if session is not None:
            if session.closed_at is not None:
                return None
            port: int | None = session.port
        else:
            port = table.take_port()
        if port is None:
            log.debug("no media port free for %s: answered without media", call_id)
            return None
        sid = session_id(tag)  # the one the response builder would give
        body = req.body
        if offered:
            try:
                sdp, stream = answer_stream(
                    body, host, sid, port, ENCODABLE if mode.sends else None
                )
            except SdpError:
                stream = None
            if stream is None:
                if fresh:
                    table.give_back(port)
                return None
        else:
            # No offer: ours names the port; the client's answer comes in the ACK, and
            # its first packet tells where it is (latching).
            sdp = offer_stream(host, sid, port)
            stream = _offer_default(signalling)
        if session is None:
            session = table.open(call_id, port, stream, mode, signalling, now)
            self.recorder.media(call_id, session, now)
        else:
            session.stream = stream  # a re-INVITE's offer: hold, resume (RFC 3264 §8.4)
        return sdp

    def acked(self, call_id: str, now: float) -> None:
        self.table.acked(call_id, now)

    def ended(self, call_id: str, now: float, why: str) -> None:
        """The call ended as signalling sees it (``why``: bye, cancel, rejected, no ack):
        the session's RTCP BYE, and the verdicts on the client's media, at once."""
        table = self.table
        self.outbox.extend(table.end(call_id, now, why))
        session = table.get(call_id)
        if session is not None:
            self._judge(session, table.judge(session), now)

    def tick(self, now: float) -> list[Out]:
        """The table's work due at ``now``, and the sessions freed taken to the journal."""
        out = self.table.tick(now)
        if self.outbox:
            out.extend(self.outbox)
            self.outbox = []
        return out

    def finish(self, now: float) -> list[MediaSession]:
        """The sessions freed since last asked: their verdicts given; returned for the glue
        to close their sockets and write their recordings."""
        done = self.table.done()
        table = self.table
        for session in done:
            self._judge(session, table.judge(session) + table.judge_after(session), now)
            self.recorder.media_done(session.call_id, session)
        return done

    def _judge(self, session: MediaSession, verdicts: list[tuple[str, str]], now: float) -> None:
        for rule, message in verdicts:
            self.verdicts.violation(session.call_id, "RTP", 0, now, rule, message)


def _offer_default(signalling: str) -> Stream:
    # Our offer's first codec (PCMU) and telephone-event 101; the port is learnt from
    # the client's first packet.
    return Stream(signalling, 0, 0, 0, "pcmu", 8000, 101, 20, "sendrecv")
