"""Faults: what the responder does wrong on purpose, so a client's handling of it shows.

What belongs here: the model of a rule's or a step's ``faults:`` list (``Faults``), read
from plain data (``parse_faults``) or from a dialled plan's keypad digits
(``dialled_faults``); what makes no sense for a rule (``nonsense``) or acts over one
transport only (``transport_warning``); the draw of which lists apply to one request
(``FaultPlan``, reproducible from the rules' seed and the arrival order); and the
requests whose first copies are dropped (``drop_first``, ``drop_again``).  What a
transaction with faults sends, and how, is ``shaping``'s.  Sans-IO, no clock, no
randomness of its own.  Imports ``sip`` only: ``plans`` imports it (a step carries its
faults).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..errors import FaultSpecError
from ..sip.message import header_key

#: Kinds that act on the request or the transaction: a rule's list only.
PLAN_KINDS: Final = (
    "no_trying",
    "drop_requests",
    "ignore_ack",
    "final_first",
    "reset_after",
    "close_after",
    "coalesce",
    "bye_after",
    "fork",
)
#: Kinds that act on a response: a rule's list (every response) or a step's (that one).
RESPONSE_KINDS: Final = (
    "duplicate",
    "to_tag",
    "omit",
    "malformed",
    "oversize",
    "wrong_source_port",
    "split_writes",
)
#: Kinds that act over TCP alone, and over UDP alone.
TCP_KINDS: Final = ("reset_after", "close_after", "split_writes", "coalesce")
UDP_KINDS: Final = ("wrong_source_port",)
#: ``split_writes``: the pieces one response is cut into, at most (a smaller size is
#: raised to fit), and the longest interval between two.
MAX_PIECES: Final = 300
MAX_INTERVAL: Final = 10.0
#: ``fork``: the most 2xx responses, each with its own To tag.
MAX_FORKS: Final = 10
#: ``bye_after``: the longest wait before the responder hangs up.
MAX_BYE_AFTER: Final = 3600.0
KINDS: Final = PLAN_KINDS + RESPONSE_KINDS
#: ``malformed:`` values.
MALFORMED: Final = ("status_line", "content_length", "truncate", "garbage")
#: ``omit:`` values besides header names.
OMIT_PARTS: Final = ("to_tag", "sdp")
#: Bounds of the numbers a kind takes.
MAX_DROPS: Final = 10
MAX_DUPLICATES: Final = 10
MIN_OVERSIZE: Final = 200
#: The largest UDP payload over IPv4 is 65,507 bytes; a response padded to more than this
#: could not go out over UDP at all.
MAX_OVERSIZE: Final = 65_000
#: The harmless header ``oversize`` pads with (an extension header: ignored, §8.1.3.2 and
#: §7.3 of RFC 3261, by a client that does not know it).
PADDING_HEADER: Final = "X-Padding"
#: What ``malformed: content_length`` adds to the true length.
EXTRA_LENGTH: Final = 100
#: Requests whose first copies ``drop_requests`` drops, held at most (the oldest goes):
#: over TCP no copy follows, so an entry may wait for nothing.
MAX_DROPPING: Final = 4096


@dataclass(frozen=True, slots=True)
class Faults:
    """One ``faults:`` list: which kinds, with their values, and the share of requests it
    applies to.  ``items`` keeps them as written, for summaries and the journal."""

    items: tuple[str, ...]
    probability: float = 1.0
    no_trying: bool = False
    drop_requests: int = 0
    ignore_ack: bool = False
    final_first: bool = False
    duplicate: int = 0
    change_to_tag: bool = False
    #: Header keys (lower case, compact forms expanded), ``to_tag`` and ``sdp``.
    omit: tuple[str, ...] = ()
    malformed: str = ""
    oversize: int = 0
    wrong_source_port: bool = False
    #: ``provisional`` or ``final``: the TCP connection is reset (RST) after that one.
    reset_after: str = ""
    #: ``final``: the TCP connection is closed (FIN) after the final response.
    close_after: str = ""
    #: (bytes a piece, seconds between two): one message sent over TCP in slow pieces.
    split_writes: tuple[int, float] | None = None
    #: The plan's responses go in one TCP write, once the final is there.
    coalesce: bool = False
    #: Seconds after the ACK of a 2xx when the responder hangs up (sends BYE); None: never.
    bye_after: float | None = None
    #: The 2xx goes out this many times, each with its own To tag (2 to ``MAX_FORKS``).
    fork: int = 0

    @property
    def wire(self) -> bool:
        """It acts on how a response goes on the wire (the glue does it)."""
        return bool(
            self.wrong_source_port or self.reset_after or self.close_after or self.split_writes
        )

    @property
    def mangles(self) -> bool:
        """It changes the bytes of a response (not only how often or when it goes)."""
        return bool(self.change_to_tag or self.omit or self.malformed or self.oversize)

    def describe(self) -> str:
        text = ", ".join(self.items)
        if self.probability < 1.0:
            text += f" ({self.probability:g} of requests)"
        return text


def parse_faults(raw: Any, probability: Any = None, *, on_step: bool = False) -> Faults:
    """A ``faults:`` list (and its ``fault_probability``) from plain data; raises
    ``FaultSpecError`` naming the item (``[i]`` or ``[i].kind``) and the problem."""
    if isinstance(raw, str | dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise FaultSpecError("", "must be a list of fault kinds (a name, or kind: value)")
    values: dict[str, Any] = {}
    items: list[str] = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            kind, value, given = item, None, False
        elif isinstance(item, dict):
            keys = [k for k in item if k != "__line__"]
            if len(keys) != 1:
                raise FaultSpecError(f"[{i}]", "a mapping must have one key: the kind")
            kind, value, given = keys[0], item[keys[0]], True
        else:
            raise FaultSpecError(f"[{i}]", "must be a kind's name, or kind: value")
        if kind not in KINDS:
            raise FaultSpecError(f"[{i}]", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if on_step and kind in PLAN_KINDS:
            raise FaultSpecError(
                f"[{i}].{kind}", "acts on the whole transaction: give it in the rule's faults"
            )
        if kind in values:
            raise FaultSpecError(f"[{i}].{kind}", "given twice")
        values[kind] = _value(kind, value, given, f"[{i}].{kind}")
        items.append(kind if not given or value is True else f"{kind}: {_shown(value)}")
    return Faults(
        tuple(items),
        _probability(probability),
        no_trying=bool(values.get("no_trying", False)),
        drop_requests=int(values.get("drop_requests", 0)),
        ignore_ack=bool(values.get("ignore_ack", False)),
        final_first=bool(values.get("final_first", False)),
        duplicate=int(values.get("duplicate", 0)),
        change_to_tag="to_tag" in values,
        omit=tuple(values.get("omit", ())),
        malformed=str(values.get("malformed", "")),
        oversize=int(values.get("oversize", 0)),
        wrong_source_port=bool(values.get("wrong_source_port", False)),
        reset_after=str(values.get("reset_after", "")),
        close_after=str(values.get("close_after", "")),
        split_writes=values.get("split_writes"),
        coalesce=bool(values.get("coalesce", False)),
        bye_after=values.get("bye_after"),
        fork=int(values.get("fork", 0)),
    )


#: Dial-the-code's faults: ``*`` and a digit for the kind, then digits for its value
#: (``486*4`` duplicates each response, ``200*42`` twice, ``180486*1*4`` both).
DIALLED: Final[dict[str, tuple[str, Any]]] = {
    "1": ("no_trying", None),
    "2": ("drop_requests", 1),
    "3": ("ignore_ack", None),
    "4": ("duplicate", 1),
    "5": ("final_first", None),
    "6": ("to_tag", "change"),
    "7": ("malformed", None),
    "8": ("oversize", 4000),
    "9": ("omit", ["to_tag"]),
}
#: ``*7``'s values: ``*71`` to ``*74``.
DIALLED_MALFORMED: Final = {str(i + 1): how for i, how in enumerate(MALFORMED)}


def dialled_faults(parts: list[str]) -> Faults:
    """The faults of a dialled plan's ``*`` parts (``["4", "1"]`` for ``486*4*1``);
    ``FaultSpecError`` when one is not a keypad fault."""
    items: list[Any] = []
    for part in parts:
        if not part or not part.isascii() or not part.isdigit() or part[0] not in DIALLED:
            raise FaultSpecError(f"*{part}", "not a fault: * then a digit from 1 to 9")
        kind, default = DIALLED[part[0]]
        rest = part[1:]
        if kind == "malformed":
            if rest not in DIALLED_MALFORMED:
                raise FaultSpecError(f"*{part}", "*7 takes 1 to 4: *71 to *74")
            items.append({kind: DIALLED_MALFORMED[rest]})
        elif rest and isinstance(default, int):
            items.append({kind: int(rest)})
        elif rest:
            raise FaultSpecError(f"*{part}", f"*{part[0]} takes no digits after it")
        else:
            items.append(kind if default is None else {kind: default})
    return parse_faults(items)


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _probability(raw: Any) -> float:
    if raw is None:
        return 1.0
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 1:
        raise FaultSpecError("probability", "must be a number above 0, up to 1")
    return float(raw)


def _count(value: Any, default: int, low: int, high: int, field: str, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FaultSpecError(field, f"must be a whole number of {what} from {low} to {high}")
    return value


def _value(kind: str, value: Any, given: bool, field: str) -> Any:
    """The checked value of one kind (``given``: it came as ``kind: value``)."""
    if kind == "reset_after":
        if value not in ("provisional", "final"):
            raise FaultSpecError(field, "must be provisional or final")
        return value
    if kind == "close_after":
        if value != "final":
            raise FaultSpecError(field, "the one value is 'final'")
        return value
    if kind == "split_writes":
        return _split_writes(value, field)
    if kind == "fork":
        return _count(value if given else None, 2, 2, MAX_FORKS, field, "2xx responses")
    if kind == "bye_after":
        seconds = _seconds(value) if given else None
        if seconds is None or not 0 <= seconds <= MAX_BYE_AFTER:
            raise FaultSpecError(field, f"give a delay like 5s or 500ms, up to {MAX_BYE_AFTER:g}s")
        return seconds
    if kind in ("no_trying", "ignore_ack", "final_first", "wrong_source_port", "coalesce"):
        if given and value is not True:
            raise FaultSpecError(field, "takes no value (write the kind's name alone)")
        return True
    if kind == "drop_requests":
        return _count(value, 1, 1, MAX_DROPS, field, "copies")
    if kind == "duplicate":
        return _count(value, 1, 1, MAX_DUPLICATES, field, "copies")
    if kind == "to_tag":
        if given and value != "change":
            raise FaultSpecError(field, "the one value is 'change'")
        return "change"
    if kind == "oversize":
        if not given:
            raise FaultSpecError(field, "give the size in bytes, e.g. oversize: 4000")
        return _count(value, 0, MIN_OVERSIZE, MAX_OVERSIZE, field, "bytes")
    if kind == "malformed":
        if value not in MALFORMED:
            raise FaultSpecError(field, f"must be one of: {', '.join(MALFORMED)}")
        return value
    # omit
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise FaultSpecError(field, "give a list: header names, to_tag, sdp")
    parts: list[str] = []
    for name in names:
        if not isinstance(name, str) or not name or not _is_token(name):
            raise FaultSpecError(field, f"{name!r} is not a header name, to_tag or sdp")
        parts.append(name if name in OMIT_PARTS else header_key(name))
    return tuple(dict.fromkeys(parts))


def _split_writes(value: Any, field: str) -> tuple[int, float]:
    """``{size: BYTES, interval: 200ms}`` -> (bytes, seconds)."""
    if not isinstance(value, dict):
        raise FaultSpecError(field, "give {size: BYTES, interval: 200ms}")
    for key in value:
        if key not in ("size", "interval", "__line__"):
            raise FaultSpecError(f"{field}.{key}", "unknown field (size, interval)")
    size = value.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 65_000:
        raise FaultSpecError(f"{field}.size", "must be a whole number of bytes, 1 to 65000")
    interval = _seconds(value.get("interval", "200ms"))
    if interval is None or not 0 < interval <= MAX_INTERVAL:
        raise FaultSpecError(
            f"{field}.interval", f"must be a delay like 200ms, up to {MAX_INTERVAL:g}s"
        )
    return size, interval


def _seconds(raw: Any) -> float | None:
    """``200ms``, ``1.5s`` or a number of seconds; None when it is none of them."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            if text.endswith("ms"):
                return float(text[:-2]) / 1000
            return float(text[:-1] if text.endswith("s") else text)
        except ValueError:
            return None
    return None


def _is_token(name: str) -> bool:
    return name.isascii() and all(c.isalnum() or c in "-_.!%*+`'~" for c in name)


def nonsense(faults: Faults, methods: frozenset[str] | None, codes: list[list[int]]) -> str:
    """Why ``faults`` (a rule's) make no sense for what it answers, or "".  ``methods``:
    the rule's (None: any); ``codes``: each of its plans' response codes."""
    invite_only = [
        kind
        for kind, on in (
            ("no_trying", faults.no_trying),
            ("ignore_ack", faults.ignore_ack),
            ("bye_after", faults.bye_after is not None),
            ("fork", faults.fork > 0),
        )
        if on
    ]
    if invite_only and methods is not None and "INVITE" not in methods:
        return f"{invite_only[0]} acts on an INVITE, and the rule matches no INVITE"
    ends = faults.reset_after == "final" or faults.close_after
    for plan in codes:
        if ends and plan[-1] < 200:
            kind = "reset_after" if faults.reset_after == "final" else "close_after"
            return f"{kind}: final acts after the final response, and a plan has none"
        if faults.final_first and (plan[-1] < 200 or len(plan) < 2):
            return "final_first needs a plan with provisionals and a final response"
        if faults.bye_after is not None and not 200 <= plan[-1] < 300:
            return "bye_after hangs up a call answered with a 2xx, and a plan has none"
        if faults.fork and not 200 <= plan[-1] < 300:
            return "fork sends the 2xx from several forks, and a plan has no 2xx"
        if faults.change_to_tag and plan[-1] < 200:
            return "to_tag: change acts on the final response, and a plan has none"
    return ""


def transport_warning(faults: Faults, transports: frozenset[str] | None) -> str:
    """A warning when a fault acts over one transport and the rule matches the other too
    ("" when none): not a refusal, the fault just does nothing there."""
    on = [k for k in TCP_KINDS if getattr(faults, k)]
    if on and (transports is None or "udp" in transports):
        return f"{on[0]} acts over TCP only; requests over UDP get no such fault"
    on = [k for k in UDP_KINDS if getattr(faults, k)]
    if on and (transports is None or "tcp" in transports):
        return f"{on[0]} acts over UDP only; requests over TCP get no such fault"
    return ""


# ------------------------------------------------------------------ the draw


class FaultyStep(Protocol):
    """What this module reads of a plan's step (``plans.Step``)."""

    @property
    def code(self) -> int: ...

    @property
    def faults(self) -> Faults | None: ...


def chance(seed: bytes, salt: str) -> float:
    """A fraction in [0, 1) that follows from the seed and ``salt`` alone."""
    digest = hashlib.blake2b(salt.encode(), key=seed[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class FaultPlan:
    """The faults one request drew: the rule's list (or None) and those of its plan's
    steps that apply, by the identity of the step's list."""

    __slots__ = ("faults", "steps")

    def __init__(self, faults: Faults | None, steps: dict[int, Faults]) -> None:
        self.faults = faults
        self.steps = steps

    @staticmethod
    def draw(
        faults: Faults | None,
        steps: Sequence[FaultyStep],
        draw: Callable[[str, float], bool],
    ) -> FaultPlan | None:
        """Which of the rule's and the plan's steps' lists apply (``draw(salt,
        probability)`` says for each); None when none does."""
        chosen = faults if faults is not None and draw("rule", faults.probability) else None
        drawn: dict[int, Faults] = {}
        for i, step in enumerate(steps):
            own = step.faults
            if own is not None and draw(f"step {i}", own.probability):
                drawn[id(own)] = own
        if chosen is None and not drawn:
            return None
        return FaultPlan(chosen, drawn)

    def for_step(self, step: FaultyStep) -> tuple[Faults, ...]:
        """The lists that act on the response ``step`` builds."""
        listed = step.faults
        own = None if listed is None else self.steps.get(id(listed))
        if self.faults is None:
            return () if own is None else (own,)
        return (self.faults,) if own is None else (self.faults, own)

    def describe(self) -> list[str]:
        out = [] if self.faults is None else list(self.faults.items)
        for faults in self.steps.values():
            out.extend(faults.items)
        return out


def drop_first(dropping: dict[Hashable, list[Any]], key: Hashable, drops: int, choice: Any) -> None:
    """The first copy of a request was dropped on purpose: ``drops`` copies in all will
    be, then the request gets ``choice`` (what its first copy drew).  ``dropping`` (the
    endpoint's, a plain dict by transaction key) holds at most ``MAX_DROPPING``, the
    oldest first out."""
    if len(dropping) >= MAX_DROPPING:
        del dropping[next(iter(dropping))]
    dropping[key] = [1, drops, choice]


def drop_again(dropping: dict[Hashable, list[Any]], key: Hashable) -> tuple[int, Any]:
    """Another copy of a request in ``dropping``: (its number, None) when it is dropped
    too; else (its number, the choice kept), and the request leaves ``dropping``."""
    entry = dropping[key]
    copy = entry[0] + 1
    if copy <= entry[1]:
        entry[0] = copy
        return copy, None
    del dropping[key]
    return copy, entry[2]
