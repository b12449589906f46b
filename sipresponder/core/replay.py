"""A call of the journal as a SIPp scenario that replays its client's side.

What belongs here: ``sipp_scenario(call)``, the XML of a SIPp UAC scenario (``sipp HOST:PORT
-sf call.xml -m 1``) that sends what the call's client sent and expects what the
responder answered, in the same order.  Sans-IO: a ``calls.Call`` in, text out.  Imports
``calls`` only.

What must change from one run to the next is written as SIPp's keywords, so that the
scenario can run again and again, against any responder:

- the Call-ID is ``[call_id]``; the client's From tag ``[pid]SIPpTag[call_number]``;
- each distinct Via branch of the client is ``z9hG4bK-[pid]-[call_number]-bN``: an ACK of
  a non-2xx final response and a CANCEL keep their INVITE's branch (RFC 3261 §17.1.1.3,
  §9.1), as they did in the call;
- each To tag the responder gave is read from the responses that carry it (``ereg``) into
  ``$tagN``, and the client's later requests carry ``[$tagN]``;
- the responder's address (host and port) is ``[remote_ip]:[remote_port]``, the client's
  ``[local_ip]:[local_port]``; the top Via is ``SIP/2.0/[transport] [local_ip]:[local_port]``,
  a Contact's ``transport`` parameter ``[transport]``; the Content-Length is ``[len]``;
- in an SDP body, the origin's and the connection's addresses are SIPp's, the first
  ``m=`` line's port ``[media_port]``.

What the responder sent becomes ``recv``: each response with its transaction (``response_txn``),
provisional ones optional (they may be lost or left out by a rule's faults) unless the
client waited for one before its next message (SIPp wants a required one there), final
ones required; a request it sent (a BYE of ``bye_after``) is received and answered with
200 OK made of SIPp's ``[last_*:]`` headers.  Retransmissions in either direction are
left out: SIPp makes its own (``retrans`` on UDP) and absorbs the responder's.  A gap of
more than ``PAUSE_FROM`` seconds before a client's message is kept as a ``pause``.

Limits, said in the scenario's comment when they apply: a digest answer
(``Authorization``) is replayed as it was, so a challenge with a new nonce refuses it; a
message the journal kept only the head of is replayed as that head.
"""

from __future__ import annotations

import re
from typing import Final

from .calls import Call, Entry

#: A client's pause longer than this (seconds) is kept in the scenario.
PAUSE_FROM: Final = 0.1

#: Header names, compact forms included (RFC 3261 §7.3.3), by the part they play here.
_VIA: Final = frozenset(("via", "v"))
_FROM: Final = frozenset(("from", "f"))
_TO: Final = frozenset(("to", "t"))
_CALL_ID: Final = frozenset(("call-id", "i"))
_CONTACT: Final = frozenset(("contact", "m"))
_LENGTH: Final = frozenset(("content-length", "l"))
_AUTH: Final = frozenset(("authorization", "proxy-authorization"))

_TAG: Final = re.compile(r";\s*tag\s*=\s*([^;>,\s]+)", re.IGNORECASE)
_BRANCH: Final = re.compile(r";\s*branch\s*=\s*([^;,\s]+)", re.IGNORECASE)
_TRANSPORT: Final = re.compile(r"(;\s*transport\s*=\s*)[A-Za-z]+", re.IGNORECASE)

#: SIPp's ``-t`` for one socket of each transport (TLS needs a SIPp built with it).
_SIPP_MODES = {"udp": "u1", "tcp": "t1", "tls": "l1"}


def sipp_scenario(call: Call) -> str:
    """The SIPp UAC scenario that replays ``call``'s client (see the module)."""
    return _Scenario(call).xml()


class _Scenario:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.entries = [e for e in call.entries if not e.retransmission]
        first_in = next((e for e in self.entries if e.direction == "in"), None)
        self.client = first_in.src if first_in is not None else ""
        self.server = first_in.dst if first_in is not None else ""
        self.branches: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.txns: dict[tuple[int, str], str] = {}
        self.notes: set[str] = set()
        self.variables: list[str] = []

    # ------------------------------------------------------------------ the scenario

    def xml(self) -> str:
        # The elements first: (entry, whether a recv is optional), a pause as its entry's.
        items: list[tuple[Entry, bool]] = [
            (e, e.direction == "out" and e.status is not None and e.status < 200)
            for e in self.entries
        ]
        # SIPp refuses a run of recvs that are all optional before a send (or the end):
        # the last of them, the one the client waited for, is required.
        for i, (entry, optional) in enumerate(items):
            upcoming = items[i + 1][0] if i + 1 < len(items) else None
            if optional and (upcoming is None or upcoming.direction == "in"):
                run = i
                while run > 0 and items[run - 1][0].direction == "out":
                    run -= 1
                if all(opt for _, opt in items[run : i + 1]):
                    items[i] = (entry, False)
        body: list[str] = []
        last = None
        for entry, optional in items:
            if entry.direction == "in":
                if last is not None and entry.time - last.time > PAUSE_FROM:
                    pause = round((entry.time - last.time) * 1000)
                    body.append(f'  <pause milliseconds="{pause}"/>')
                body.append(self._send(entry))
            else:
                body.append(self._recv(entry, optional))
            last = entry
        head = [
            '<?xml version="1.0" encoding="UTF-8" ?>',
            '<!DOCTYPE scenario SYSTEM "sipp.dtd">',
            "",
            "<!--",
            f"  The client's side of call {_comment(self.call.call_id)} from the",
            f"  sipresponder journal ({_comment(self.call.method)} {_comment(self.call.uri)}),",
            f"  made over {_comment(self._transport())}: run it with",
            f"  sipp HOST:PORT -sf this.xml -m 1 -t {_SIPP_MODES.get(self._transport(), 'u1')}",
            *(f"  {note}" for note in sorted(self.notes)),
            "-->",
            '<scenario name="replay">',
        ]
        tail = []
        if self.variables:
            tail.append(f'  <Reference variables="{",".join(self.variables)}"/>')
        return "\n".join([*head, *body, *tail, "</scenario>", ""])

    def _transport(self) -> str:
        return next((e.transport for e in self.entries if e.direction == "in"), "udp")

    def _send(self, entry: Entry) -> str:
        text = entry.raw.decode("utf-8", "replace")
        if entry.cut:
            self.notes.add("A message was kept only in part by the journal: its head is sent.")
        attrs = ""
        if entry.status is None:
            key = (entry.cseq, entry.method)
            if entry.method == "ACK":
                txn = self.txns.get((entry.cseq, "INVITE"))
                attrs = f' ack_txn="{txn}"' if txn else ""
            else:
                txn = self.txns.setdefault(key, f"t{entry.cseq}{entry.method.lower()}")
                retrans = ' retrans="500"' if entry.transport == "udp" else ""
                attrs = f'{retrans} start_txn="{txn}"'
            message = self._request(text)
        else:
            message = self._response(text)
        return f"  <send{attrs}>\n    <![CDATA[\n\n{_cdata(message)}\n\n    ]]>\n  </send>"

    def _recv(self, entry: Entry, optional: bool) -> str:
        if entry.status is None:
            return f'  <recv request="{entry.method}"/>'
        attrs = f'response="{entry.status}"'
        txn = self.txns.get((entry.cseq, entry.method))
        if txn:
            attrs += f' response_txn="{txn}"'
        if optional:
            attrs += ' optional="true"'
        head = entry.raw.decode("utf-8", "replace").split("\r\n\r\n", 1)[0]
        tag = next(
            (m.group(1) for n, v in _headers(head) if n in _TO for m in [_TAG.search(v)] if m),
            None,
        )
        if tag is None:
            return f"  <recv {attrs}/>"
        name = self.tags.get(tag)
        if name is None:
            name = self.tags[tag] = f"tag{len(self.tags) + 1}"
            self.variables.append(f"dummy_{name}")
        return (
            f"  <recv {attrs}>\n    <action>\n"
            f'      <ereg regexp=";tag=([^;>, ]+)" search_in="hdr" header="To:"'
            f' check_it="true" assign_to="dummy_{name},{name}"/>\n'
            "    </action>\n  </recv>"
        )

    # ------------------------------------------------------------------ messages

    def _request(self, text: str) -> str:
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        out = [self._addresses(lines[0])]
        top_via = True
        for name, value in _headers("\r\n".join(lines[1:])):
            if name in _VIA and top_via:
                top_via = False
                found = _BRANCH.search(value)
                branch = self._branch(found.group(1) if found else "")
                out.append(
                    f"Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch};rport"
                )
            elif name in _FROM:
                out.append(
                    "From: " + _TAG.sub(";tag=[pid]SIPpTag[call_number]", self._addresses(value))
                )
            elif name in _TO:
                out.append("To: " + _TAG.sub(self._their_tag, self._addresses(value)))
            elif name in _CALL_ID:
                out.append("Call-ID: [call_id]")
            elif name in _CONTACT:
                out.append("Contact: " + _TRANSPORT.sub(r"\1[transport]", self._addresses(value)))
            elif name in _LENGTH:
                out.append("Content-Length: [len]")
            else:
                if name in _AUTH:
                    self.notes.add(
                        "Its digest answers are replayed as they were: a new nonce refuses them."
                    )
                out.append(f"{_original_name(head, name)}: {self._addresses(value)}")
        return "\n".join(out) + ("\n\n" + _sdp(body) if body else "")

    def _response(self, text: str) -> str:
        """The client's answer to a request of the responder's: its status line, the
        request's headers as SIPp last read them."""
        status = text.split("\r\n", 1)[0]
        return "\n".join(
            [
                status,
                "[last_Via:]",
                "[last_From:]",
                "[last_To:]",
                "[last_Call-ID:]",
                "[last_CSeq:]",
                "Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>",
                "Content-Length: 0",
            ]
        )

    def _branch(self, original: str) -> str:
        if original not in self.branches:
            self.branches[original] = f"z9hG4bK-[pid]-[call_number]-b{len(self.branches) + 1}"
        return self.branches[original]

    def _their_tag(self, found: re.Match[str]) -> str:
        name = self.tags.get(found.group(1))
        return f";tag=[${name}]" if name else found.group(0)

    def _addresses(self, text: str) -> str:
        if self.server:
            text = text.replace(self.server, "[remote_ip]:[remote_port]")
        if self.client:
            text = text.replace(self.client, "[local_ip]:[local_port]")
        return text


def _headers(head: str) -> list[tuple[str, str]]:
    """(lower-case name, value) of each header line of ``head`` (folded lines joined)."""
    out: list[tuple[str, str]] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if sep:
            out.append((name.strip().lower(), value.strip()))
    return out


def _original_name(head: str, lower: str) -> str:
    """The header's name as the message spelled it."""
    for line in head.split("\r\n"):
        name = line.partition(":")[0].strip()
        if name.lower() == lower:
            return name
    return lower


def _sdp(body: str) -> str:
    """An SDP body with SIPp's addresses and media port (the first ``m=`` line's)."""
    out = []
    media = False
    for line in body.split("\r\n"):
        if line.startswith("o="):
            fields = line.split(" ")
            if len(fields) >= 6:
                line = " ".join([*fields[:3], "IN", "IP[local_ip_type]", "[local_ip]"])
        elif line.startswith("c="):
            line = "c=IN IP[media_ip_type] [media_ip]"
        elif line.startswith("m=") and not media:
            media = True
            kind, _, rest = line.partition(" ")
            line = f"{kind} [media_port] {rest.partition(' ')[2]}"
        if line:
            out.append(line)
    return "\n".join(out)


def _cdata(text: str) -> str:
    """``text`` safe inside a CDATA section (which cannot hold ``]]>``)."""
    return text.replace("]]>", "]]]]><![CDATA[>")


def _comment(text: str) -> str:
    """``text`` safe inside an XML comment (which cannot hold ``--``)."""
    return text.replace("--", "- -")
