"""What a transaction with faults sends: each response's bytes, copies, order and way.

What belongs here: ``FaultBuilder``, the transaction's ``build`` for a request whose rule
or dialled plan has faults — the inner builder's bytes, then what the faults that act on
that response do to them (``mangle``: a changed or missing To tag, headers or SDP left
out, padding, a broken message); ``FaultState``, which sends them as many times and in
the order the faults say (``shape``: copies, provisionals held back) and says how each
goes on the wire (``wire``: a ``Wire`` for the glue — another UDP port, TCP pieces, a
reset or a close after it, the plan's responses in one write), naming what was done for
the journal.  Every response touched is one we built: lines end in CRLF, header names
are in their full form.  Sans-IO.  Imports ``sip`` and ``faults``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from ..sip.message import header_key
from .faults import EXTRA_LENGTH, PADDING_HEADER, FaultPlan, Faults, FaultyStep
from .hangup import Dialog


class Wire(bytes):
    """A response that goes on the wire the way a fault says, which the glue does: from
    another port of ours (UDP), in slow pieces, then a reset or a close of the TCP
    connection.  Plain ``bytes`` for everything else."""

    other_port = False
    #: (bytes a piece, seconds between two), or None.
    pieces: tuple[int, float] | None = None
    #: "reset" (RST) or "close" (FIN) of the TCP connection once it is written, or "".
    after = ""


#: What ``FaultState`` keeps of each response built: its bytes, the code the plan
#: meant, what was done to it, its extra copies, and whether it goes from another port
#: and in what pieces.
Built = tuple[bytes, int, str, int, bool, "tuple[int, float] | None"]


class FaultState:
    """What one transaction with faults sends, and how: the responses its builder made
    (with what was done to each), the provisionals held back (``final_first``, and over
    TCP ``coalesce``), and the ACKs it paid no heed to."""

    __slots__ = (
        "acked_since",
        "built",
        "coalesce",
        "dialog",
        "ended",
        "final_first",
        "final_sends",
        "final_tag",
        "fork_acked",
        "forks",
        "held",
        "ignored_acks",
        "judged",
        "on_wire",
        "plan",
        "released",
        "reliable",
        "sent_any",
    )

    def __init__(self, plan: FaultPlan, reliable: bool = False) -> None:
        self.plan = plan
        self.reliable = reliable
        rule = plan.faults
        self.final_first = rule is not None and rule.final_first
        self.coalesce = reliable and rule is not None and rule.coalesce
        #: Some list acts on how responses go on the wire: ``wire`` has work to do.
        self.on_wire = self.coalesce or any(
            faults.wire for faults in (rule, *plan.steps.values()) if faults is not None
        )
        self.built: list[Built] = []
        self.held: list[bytes] = []
        self.released = False
        #: A reset or close was asked for: nothing more goes on that connection.
        self.ended = False
        #: What a BYE of ours needs (``bye_after``, or ``ignore_ack`` after a 2xx).
        self.dialog: Dialog | None = None
        #: ``fork``: each 2xx (its To tag, its bytes), the first the transaction's own,
        #: and the tags an ACK came for.
        self.forks: list[tuple[str, bytes]] = []
        self.fork_acked: set[str] = set()
        self.ignored_acks = 0
        #: The To tag the final response went out with, when a fault changed it ("":
        #: left out); None when it is the transaction's own.
        self.final_tag: str | None = None
        #: What the verdicts on the client's answer to the faults read and keep: whether
        #: anything went out yet, how often the final did, whether an ACK came since the
        #: last time, and the verdicts already given (one of each kind a transaction).
        self.sent_any = False
        self.final_sends = 0
        self.acked_since = False
        self.judged: set[str] = set()

    @property
    def ignore_ack(self) -> bool:
        rule = self.plan.faults
        return rule is not None and rule.ignore_ack

    @property
    def holding(self) -> bool:
        """Provisionals were built but held back: the client has heard none."""
        return self.final_first and not self.released

    def note(
        self,
        data: bytes,
        code: int,
        label: str,
        copies: int,
        other_port: bool = False,
        split: tuple[int, float] | None = None,
    ) -> None:
        self.built.append((data, code, label, copies, other_port, split))

    def _find(self, data: bytes) -> Built:
        for built in self.built:
            if built[0] is data:
                return built
        digits = data[8:11]  # not built here (it never is): read off a status line
        return (data, int(digits) if digits.isdigit() else 0, "", 0, False, None)

    def shape(self, outbox: list[bytes]) -> list[tuple[bytes, int, str]]:
        """What goes out for ``outbox``, in order: each response with the code the plan
        meant and what was done to it ("" for nothing) — extra copies, and provisionals
        held back until the final response."""
        out: list[tuple[bytes, int, str]] = []
        holds = self.final_first or self.coalesce
        for data in outbox:
            _, code, label, copies, _, _ = self._find(data)
            if holds and not self.released:
                if code < 200:
                    if not any(held is data for held in self.held):
                        self.held.append(data)
                    continue
                self.released = True
                if self.final_first:
                    out.append((data, code, label))
                late = "final_first: after the final" if self.final_first else "coalesce"
                for held in self.held:
                    _, held_code, held_label, _, _, _ = self._find(held)
                    out.append((held, held_code, f"{held_label}, {late}" if held_label else late))
                if self.coalesce:
                    out.append((data, code, f"{label}, coalesce" if label else "coalesce"))
                self.held = []
                continue
            if self.forks and data is self.forks[0][1]:
                # fork: every 2xx not ACKed yet, each a dialog of its own (§13.2.2.4).
                total = len(self.forks)
                for i, (tag, fork) in enumerate(self.forks, start=1):
                    if tag not in self.fork_acked:
                        note = f"fork {i} of {total}"
                        out.append((fork, code, f"{label}, {note}" if label else note))
                continue
            out.append((data, code, label))
            out.extend((data, code, "duplicate") for _ in range(copies))
        return out

    def wire(self, shaped: list[tuple[bytes, int, str]]) -> list[bytes]:
        """The bytes to send for ``shaped``: as they are, or as ``Wire`` where a fault acts
        on how they go (another port over UDP; over TCP slow pieces, a reset or a close
        after one, or the plan's responses in one write)."""
        if not self.on_wire:
            return [data for data, _, _ in shaped]
        rule = self.plan.faults
        if self.ended:
            return []  # the connection was reset or closed on purpose: nothing follows
        out: list[bytes] = []
        for data, code, _ in shaped:
            _, _, _, _, other_port, split = self._find(data)
            after = ""
            if self.reliable and rule is not None and not self.ended:
                final = code >= 200
                if rule.reset_after == ("final" if final else "provisional"):
                    after = "reset"
                elif rule.close_after and final:
                    after = "close"
            if (other_port and not self.reliable) or (self.reliable and (split or after)):
                wire = Wire(data)
                wire.other_port = other_port and not self.reliable
                wire.pieces = split if self.reliable else None
                wire.after = after
                data = wire
            out.append(data)
            if after:
                self.ended = True
                break
        if self.coalesce and len(out) > 1:
            joined = Wire(b"".join(out))
            last = out[-1]
            joined.after = last.after if isinstance(last, Wire) else ""
            out = [joined]
        return out


class FaultBuilder:
    """The transaction's ``build`` for a request with faults: the inner builder's bytes,
    then what the faults that act on that response do to them, noted in ``state``."""

    __slots__ = ("inner", "state", "to_tag")

    def __init__(self, inner: Callable[[Any], bytes], state: FaultState, to_tag: str) -> None:
        self.inner = inner
        self.state = state
        self.to_tag = to_tag

    def __call__(self, step: FaultyStep) -> bytes:
        data = self.inner(step)
        lists = self.state.plan.for_step(step)
        labels: list[str] = []
        copies = 0
        final = step.code >= 200
        for faults in lists:
            if faults.mangles:
                data = mangle(data, faults, self.to_tag, final=final, labels=labels)
                if final and "to_tag: changed" in labels:
                    self.state.final_tag = other_tag(self.to_tag)
                if final and "to_tag" in faults.omit:
                    self.state.final_tag = ""
            copies = max(copies, faults.duplicate)
        if copies:
            labels.append(f"duplicate: {copies}")
        rule = self.state.plan.faults
        if rule is not None and rule.fork and 200 <= step.code < 300 and not self.state.forks:
            first = self.state.final_tag or self.to_tag
            self.state.forks = [(first, data)] + [
                (fork_tag(first, i), _replace_tag(data, first, fork_tag(first, i)))
                for i in range(1, rule.fork)
            ]
        if self.state.reliable and rule is not None and "end" not in self.state.judged:
            if rule.reset_after == ("final" if final else "provisional"):
                labels.append(f"reset_after: {rule.reset_after}")
                self.state.judged.add("end")
            elif rule.close_after and final:
                labels.append("close_after: final")
                self.state.judged.add("end")
        other_port = any(f.wrong_source_port for f in lists)
        split = next((f.split_writes for f in lists if f.split_writes), None)
        reliable = self.state.reliable
        if other_port and not reliable:
            labels.append("wrong_source_port")
        if split and reliable:
            labels.append(f"split_writes: {split[0]} bytes every {split[1] * 1000:g} ms")
        self.state.note(data, step.code, ", ".join(labels), copies, other_port, split)
        return data


def fork_tag(tag: str, index: int) -> str:
    """The To tag of the ``index``-th extra 2xx of ``fork`` (1 for the second)."""
    return hashlib.blake2b(f"{tag}:fork:{index}".encode(), digest_size=8).hexdigest()


def other_tag(tag: str) -> str:
    """Another To tag, following from ours (so a retransmission carries the same one)."""
    return hashlib.blake2b(f"{tag}:changed".encode(), digest_size=8).hexdigest()


def mangle(data: bytes, faults: Faults, to_tag: str, *, final: bool, labels: list[str]) -> bytes:
    """``data`` (a response we built) as ``faults`` would have it, in this order: the To tag
    changed (a final response), parts left out, padding, then broken.  What was done is
    appended to ``labels``."""
    if faults.change_to_tag and final and to_tag:
        changed = _replace_tag(data, to_tag, other_tag(to_tag))
        if changed is not data:
            data = changed
            labels.append("to_tag: changed")
    if faults.omit:
        data = _omit(data, faults.omit, to_tag, labels)
    if faults.oversize and len(data) < faults.oversize:
        data = _pad(data, faults.oversize)
        labels.append(f"oversize: {len(data)} bytes")
    if faults.malformed:
        data = _break(data, faults.malformed)
        labels.append(f"malformed: {faults.malformed}")
    return data


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    """Status line and header lines (without CRLF), and the body."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data.split(b"\r\n"), b""
    return data[:end].split(b"\r\n"), data[end + 4 :]


def _join(lines: list[bytes], body: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _name(line: bytes) -> str:
    colon = line.find(b":")
    return header_key(line[:colon].strip().decode("latin-1")) if colon > 0 else ""


def _replace_tag(data: bytes, old: str, new: str) -> bytes:
    lines, body = _split(data)
    for i, line in enumerate(lines):
        if _name(line) == "to":
            mark = f";tag={old}".encode()
            if mark in line:
                lines[i] = line.replace(mark, f";tag={new}".encode())
                return _join(lines, body)
    return data


def _omit(data: bytes, parts: tuple[str, ...], to_tag: str, labels: list[str]) -> bytes:
    lines, body = _split(data)
    kept = [lines[0]]
    done: list[str] = []
    drop_sdp = "sdp" in parts and bool(body)
    for line in lines[1:]:
        name = _name(line)
        if name in parts:
            done.append(name)
            continue
        if drop_sdp and name == "content-type":
            continue
        if "to_tag" in parts and name == "to" and to_tag:
            mark = f";tag={to_tag}".encode()
            if mark in line:
                line = line.replace(mark, b"")
                done.append("to_tag")
        kept.append(line)
    if drop_sdp:
        body = b""
        done.append("sdp")
        kept = [b"Content-Length: 0" if _name(line) == "content-length" else line for line in kept]
    if done:
        labels.append("omit: " + ", ".join(part for part in parts if part in done))
    return _join(kept, body)


def _pad(data: bytes, size: int) -> bytes:
    lines, body = _split(data)
    line = f"{PADDING_HEADER}: ".encode()
    room = size - len(data) - len(line) - 2
    if room < 1:
        return data
    return _join([*lines, line + b"x" * room], body)


def _break(data: bytes, how: str) -> bytes:
    if how == "status_line":
        # "SIP/2.0 486 Busy Here" -> "SIP/2.0 4x6 Busy Here": no longer a status code.
        return data[:9] + b"x" + data[10:] if len(data) > 11 else data
    if how == "content_length":
        lines, body = _split(data)
        out = [
            f"Content-Length: {len(body) + EXTRA_LENGTH}".encode()
            if _name(line) == "content-length"
            else line
            for line in lines
        ]
        return _join(out, body)
    if how == "truncate":
        return data[: len(data) // 2]
    # garbage: as many bytes, none of them SIP (no CR, no LF, none ASCII)
    return bytes(0x80 + (i * 37) % 128 for i in range(len(data)))
