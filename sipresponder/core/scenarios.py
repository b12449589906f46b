"""Sequences and scenarios: answers that change from one request to the next.

What belongs here: the model of a rule's ``responses:`` list (``Sequence``: the n-th new
request the rule answers gets the n-th plan, an item may ``repeat``, ``then: cycle |
last`` says what comes after the end) and of its ``scenario:`` (``ScenarioSpec``: the rule
answers only while its scenario is in state ``when``, and moves it to ``set``), after
WireMock's scenarios and mountebank's response lists; whose state it is (``KeySpec``:
``global``, ``from_user``, ``source`` or ``header:NAME``), so that parallel tests against
one responder do not share it; and ``Scenarios``, the states and positions kept, bounded
(``MAX_ENTRIES``, the oldest key first out).  Only the planner moves them, once per new
transaction: retransmissions, ACK and CANCEL never reach it.  Pure; imports ``sip``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from ..sip.message import Request, header_key
from ..sip.uri import uri_of, uri_user

#: The state every scenario starts in (WireMock's ``Started``).
STARTED: Final = "started"
#: (scenario or sequence, key) pairs kept at most; the least recently moved goes first.
MAX_ENTRIES: Final = 10_000
#: What ``then:`` may say.
THEN: Final = ("last", "cycle")


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Whose state or position it is: ``global`` (everyone's), ``from_user`` (the From
    URI's user, the default), ``source`` (the address and port the request came from) or
    ``header:NAME`` (that header's first value)."""

    kind: str = "from_user"
    header: str = ""  # header:NAME's lookup key

    @staticmethod
    def parse(text: Any) -> KeySpec:
        """From ``global``, ``from_user``, ``source`` or ``header:NAME``; ValueError else."""
        if text in ("global", "from_user", "source"):
            return KeySpec(str(text))
        if isinstance(text, str) and text.startswith("header:") and text[7:].strip():
            return KeySpec("header", header_key(text[7:].strip()))
        raise ValueError("must be global, from_user, source or header:NAME")

    def of(self, req: Request, source: str) -> str:
        """The key of ``req``, which came from ``source`` (``host:port``)."""
        kind = self.kind
        if kind == "from_user":
            return uri_user(uri_of(req.from_ or "")) or ""
        if kind == "source":
            return source
        if kind == "header":
            return (req.headers.first(self.header) or "").strip()
        return ""

    def __str__(self) -> str:
        return f"header:{self.header}" if self.kind == "header" else self.kind


#: The default key: the From URI's user.
FROM_USER: Final = KeySpec()


@dataclass(frozen=True, slots=True)
class Sequence:
    """A rule's ``responses:``: ``slots`` holds the index of each plan as many times as
    it repeats; after the last, ``cycle`` starts again, else the last plan stays."""

    slots: tuple[int, ...]
    cycle: bool = False

    def index(self, position: int) -> int:
        """Which plan the request at ``position`` (0 for the first) gets."""
        slots = self.slots
        if position < len(slots):
            return slots[position]
        return slots[position % len(slots)] if self.cycle else slots[-1]


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A rule's ``scenario:``: it answers only while ``name`` is in state ``when`` (None:
    any), and moves it to ``set`` (None: it stays)."""

    name: str
    when: str | None = None
    set: str | None = None

    @staticmethod
    def parse(raw: Any) -> tuple[ScenarioSpec, KeySpec | None]:
        """From ``{name, when, set, key}``; ValueError("FIELD: problem") else."""
        if not isinstance(raw, dict):
            raise ValueError(": must be a mapping with name, and when, set or key")
        for field in raw:
            if field not in ("name", "when", "set", "key", "__line__"):
                raise ValueError(f".{field}: unknown field (expected one of: name, when, set, key)")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(".name: give the scenario's name")
        states: list[str | None] = []
        for field in ("when", "set"):
            value = raw.get(field)
            if value is not None and (not isinstance(value, str | int) or not str(value).strip()):
                raise ValueError(f".{field}: must be a state's name")
            states.append(None if value is None else str(value).strip())
        key = None
        if "key" in raw:
            try:
                key = KeySpec.parse(raw["key"])
            except ValueError as exc:
                raise ValueError(f".key: {exc}") from None
        return ScenarioSpec(name.strip(), states[0], states[1]), key

    def describe(self) -> str:
        parts = [f"scenario {self.name!r}"]
        if self.when is not None:
            parts.append(f"when {self.when!r}")
        if self.set is not None:
            parts.append(f"sets {self.set!r}")
        return " ".join(parts)


class Scenarios:
    """The state of each (scenario, key) and the position of each (rule's sequence, key),
    at most ``limit`` of them together, the least recently moved first out."""

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self.limit = limit
        #: (scenario name, key) -> its state, when not ``STARTED``.
        self._states: OrderedDict[tuple[str, str], str] = OrderedDict()
        #: (rule index, key) -> requests its sequence answered.
        self._positions: OrderedDict[tuple[int, str], int] = OrderedDict()
        #: Entries let go because the bound was reached.
        self.evicted = 0

    def state(self, name: str, key: str) -> str:
        return self._states.get((name, key), STARTED)

    def set_state(self, name: str, key: str, state: str) -> None:
        states = self._states
        states[(name, key)] = state
        states.move_to_end((name, key))
        self._bound()

    def advance(self, rule: int, key: str) -> int:
        """The position of the next request of rule ``rule``'s sequence for ``key``;
        counted."""
        positions = self._positions
        position = positions.get((rule, key), 0)
        positions[(rule, key)] = position + 1
        positions.move_to_end((rule, key))
        self._bound()
        return position

    def _bound(self) -> None:
        while len(self._states) + len(self._positions) > self.limit:
            self.evicted += 1
            if self._positions and (not self._states or len(self._positions) >= len(self._states)):
                self._positions.popitem(last=False)
            else:
                self._states.popitem(last=False)

    def clear(self) -> None:
        """Every scenario back to ``started``, every sequence to its first plan."""
        self._states.clear()
        self._positions.clear()

    def listing(self, names: list[str]) -> list[dict[str, Any]]:
        """Every scenario of ``names`` (those the rules name) with each key it has a state
        for — ``started`` for one no request has moved yet — and every sequence's
        position, for the admin and Python APIs."""
        out: list[dict[str, Any]] = []
        seen = set()
        for (name, key), state in self._states.items():
            out.append({"name": name, "key": key, "state": state})
            seen.add(name)
        for name in names:
            if name not in seen:
                out.append({"name": name, "key": None, "state": STARTED})
        for (rule, key), position in self._positions.items():
            out.append({"rule": rule, "key": key, "position": position})
        return out
