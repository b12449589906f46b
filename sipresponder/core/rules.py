"""Rules: who gets which answer — the model of a rules document, matched per request.

What belongs here: the rule model (``Text``, ``HeaderMatch``, ``Match``, ``Choice``,
``Rule``, ``RuleSet``) with what the schema fixes (the headers the server owns, the
placeholders), and what the responder does with it at run time: matching a request, the
weighted choice of a plan, filling placeholders from the request, the one-line summaries.
Turning a document into the model, with its refusals, is ``rules_loader``'s.  Pure, and
no YAML: imports ``message``, ``uri``, ``plans``, ``faults``, ``scenarios`` and ``auth``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..sip.message import Request
from ..sip.uri import uri_host, uri_of, uri_user
from .auth import AuthSpec
from .faults import Faults
from .plans import Plan
from .scenarios import FROM_USER, KeySpec, ScenarioSpec, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Headers a rule may not set: the server owns them (RFC 3261 §8.2.6).
PROTECTED = frozenset({"via", "from", "to", "call-id", "cseq", "content-length", "content-type"})

#: The placeholders a header value or body may use, filled from the request.
PLACEHOLDERS = (
    "call_id",
    "method",
    "ruri",
    "ruri_user",
    "from_user",
    "from_host",
    "to_user",
    "to_host",
    "cseq",
    "source",
    "source_ip",
    "source_port",
    "transport",
    "local",
)
#: A placeholder, ``{name}``, in a header value or body.
PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")


# -------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Text:
    """Matches a string exactly, or by a regular expression (``re.search``)."""

    exact: str | None = None
    regex: re.Pattern[str] | None = None

    def __call__(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.regex is not None:
            return self.regex.search(value) is not None
        return value == self.exact

    def __str__(self) -> str:
        return f"/{self.regex.pattern}/" if self.regex is not None else repr(self.exact)


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    key: str  # lower case, compact form expanded
    name: str
    text: Text | None = None  # a value to match; None with present only
    present: bool = True

    def __call__(self, req: Request) -> bool:
        values = req.headers.get_all(self.key)
        if self.text is None:
            return bool(values) == self.present
        return any(self.text(v) for v in values)


@dataclass(frozen=True, slots=True)
class Match:
    """All the conditions of a rule; a request must meet every one that is set."""

    methods: frozenset[str] | None = None
    user: Text | None = None
    from_user: Text | None = None
    from_host: Text | None = None
    to_user: Text | None = None
    to_host: Text | None = None
    headers: tuple[HeaderMatch, ...] = ()
    transports: frozenset[str] | None = None
    sources: tuple[IPNetwork, ...] = ()
    body_contains: bytes | None = None

    def __call__(self, req: Request, transport: str, source_ip: str) -> bool:
        if self.methods is not None and req.method not in self.methods:
            return False
        if self.transports is not None and transport not in self.transports:
            return False
        if self.user is not None and not self.user(uri_user(req.uri)):
            return False
        if self.from_user is not None or self.from_host is not None:
            uri = uri_of(req.from_ or "")
            if self.from_user is not None and not self.from_user(uri_user(uri)):
                return False
            if self.from_host is not None and not self.from_host(uri_host(uri)):
                return False
        if self.to_user is not None or self.to_host is not None:
            uri = uri_of(req.to or "")
            if self.to_user is not None and not self.to_user(uri_user(uri)):
                return False
            if self.to_host is not None and not self.to_host(uri_host(uri)):
                return False
        for header in self.headers:
            if not header(req):
                return False
        if self.sources:
            try:
                ip = ipaddress.ip_address(source_ip)
            except ValueError:
                return False
            if not any(ip in net for net in self.sources):
                return False
        return self.body_contains is None or self.body_contains in req.body

    def describe(self) -> str:
        parts: list[str] = []
        if self.methods is not None:
            parts.append("|".join(sorted(self.methods)))
        for label, text in (
            ("user", self.user),
            ("from.user", self.from_user),
            ("from.host", self.from_host),
            ("to.user", self.to_user),
            ("to.host", self.to_host),
        ):
            if text is not None:
                parts.append(f"{label}={text}")
        for h in self.headers:
            if h.text is not None:
                parts.append(f"{h.name}={h.text}")
            else:
                parts.append(f"{h.name} {'present' if h.present else 'absent'}")
        if self.transports is not None:
            parts.append("/".join(sorted(self.transports)))
        if self.sources:
            parts.append("from " + ",".join(str(n) for n in self.sources))
        if self.body_contains is not None:
            parts.append(f"body~{self.body_contains.decode('utf-8', 'replace')!r}")
        return " ".join(parts) or "any request"


@dataclass(frozen=True, slots=True)
class Choice:
    weight: float
    plan: Plan


@dataclass(frozen=True, slots=True)
class Rule:
    index: int  # 1-based position in the file; 0 for the default rule
    match: Match
    choices: tuple[Choice, ...]
    name: str = ""
    auth: AuthSpec | None = None
    line: int | None = None
    #: What is done wrong on purpose to every request it answers (or a share of them).
    faults: Faults | None = None
    #: It or a step of one of its plans has faults: each request draws them.
    faulty: bool = False
    #: ``responses:``: the n-th request gets the n-th of ``choices``' plans.
    sequence: Sequence | None = None
    #: ``scenario:``: it answers only in a state of its scenario, and may move it.
    scenario: ScenarioSpec | None = None
    #: Whose sequence position and scenario state a request moves.
    key: KeySpec = FROM_USER

    @property
    def stateful(self) -> bool:
        """Its answer depends on what came before (weights, a sequence, a scenario): a
        retransmission must find its transaction, not draw again."""
        return len(self.choices) > 1 or self.sequence is not None or self.scenario is not None

    @property
    def weighted(self) -> bool:
        return len(self.choices) > 1 and self.sequence is None

    def pick(self, fraction: float) -> Plan:
        """The plan for a uniform ``fraction`` in [0, 1): weighted choice."""
        if len(self.choices) == 1:
            return self.choices[0].plan
        total = sum(c.weight for c in self.choices)
        point = fraction * total
        for choice in self.choices:
            if point < choice.weight:
                return choice.plan
            point -= choice.weight
        return self.choices[-1].plan

    def summary(self) -> str:
        label = "default" if self.index == 0 else f"rule {self.index}"
        if self.name:
            label += f" {self.name!r}"
        if self.line is not None:
            label += f" (line {self.line})"
        what = self.match.describe() if self.index else "anything no rule matched"
        if self.sequence is not None:
            counts: dict[int, int] = {}
            for index in self.sequence.slots:
                counts[index] = counts.get(index, 0) + 1
            plans = "in turn: " + ", ".join(
                describe_plan(c.plan) + (f" x{counts[i]}" if counts.get(i, 1) > 1 else "")
                for i, c in enumerate(self.choices)
            )
            plans += f", then {'from the first' if self.sequence.cycle else 'the last'}"
            plans += f" (per {self.key})"
        else:
            plans = " | ".join(
                (f"{c.weight:g}: " if self.weighted else "") + describe_plan(c.plan)
                for c in self.choices
            )
        if self.scenario is not None:
            plans += f"; {self.scenario.describe()} (per {self.key})"
        faults = "" if self.faults is None else f" with faults {self.faults.describe()}"
        auth = ""
        if self.auth is not None:
            users = ", ".join(_usernames(self.auth))
            auth = (
                f" after Digest {'/'.join(self.auth.algorithms)} "
                f"({'407' if self.auth.proxy else '401'}, realm {self.auth.realm!r}, "
                f"users {users})"
            )
        return f"{label}: {what}{auth} -> {plans}{faults}"


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    default: Rule | None = None
    seed: int | None = None
    source: str = "<rules>"
    #: A rule answers only in a state of its scenario: finding one reads the states.
    scenarios: bool = False
    #: What is allowed but will not do what it says everywhere (``--check`` prints it).
    warnings: tuple[str, ...] = ()

    def find(self, req: Request, transport: str, source_ip: str) -> Rule | None:
        """The first rule that matches, else the default rule, else ``None``."""
        for rule in self.rules:
            if rule.match(req, transport, source_ip):
                return rule
        return self.default

    def matching(self, req: Request, transport: str, source_ip: str) -> list[Rule]:
        """Every rule that matches, in order, then the default rule: for rules whose
        scenario state decides too (``find`` when none has a scenario)."""
        found = [rule for rule in self.rules if rule.match(req, transport, source_ip)]
        if self.default is not None:
            found.append(self.default)
        return found

    @property
    def scenario_names(self) -> list[str]:
        names = [r.scenario.name for r in self.rules if r.scenario is not None]
        if self.default is not None and self.default.scenario is not None:
            names.append(self.default.scenario.name)
        return list(dict.fromkeys(names))

    def summary(self) -> list[str]:
        lines = [rule.summary() for rule in self.rules]
        if self.default is not None:
            lines.append(self.default.summary())
        if self.seed is not None:
            lines.append(f"seed {self.seed}: weighted choices and fault draws are reproducible")
        return lines


def _usernames(spec: AuthSpec) -> list[str]:
    users = spec.users
    return list(users) if isinstance(users, Mapping) else [name for name, _ in users]


def describe_plan(plan: Plan) -> str:
    out: list[str] = []
    previous = 0.0
    for step in plan.steps:
        text = str(step.code)
        if step.at > previous:
            text = f"{step.at - previous:g}s-{text}"
        if step.faults is not None:
            text += f" [{step.faults.describe()}]"
        previous = step.at
        out.append(text)
    return "-".join(out)


# ------------------------------------------------------------- placeholders


def placeholder_values(
    req: Request, transport: str, source: tuple[str, int], local: str
) -> dict[str, str]:
    """What each placeholder stands for in this request."""
    from_uri = uri_of(req.from_ or "")
    to_uri = uri_of(req.to or "")
    return {
        "call_id": req.call_id or "",
        "method": req.method,
        "ruri": req.uri,
        "ruri_user": uri_user(req.uri) or "",
        "from_user": uri_user(from_uri) or "",
        "from_host": uri_host(from_uri) or "",
        "to_user": uri_user(to_uri) or "",
        "to_host": uri_host(to_uri) or "",
        "cseq": str(req.cseq_num),
        "source": f"{source[0]}:{source[1]}",
        "source_ip": source[0],
        "source_port": str(source[1]),
        "transport": transport,
        "local": local,
    }


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` placeholders in a header value or body.  CR and LF are dropped
    from the values filled in, so a request cannot add header lines; the template's own
    line breaks (a body's) stay."""
    if "{" not in template:
        return template
    return PLACEHOLDER_RE.sub(
        lambda m: values.get(m.group(1), m.group(0)).replace("\r", "").replace("\n", ""),
        template,
    )
