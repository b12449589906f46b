"""Loading plans: the ``plan``, ``choose`` and ``responses`` of a rule, step by step.

What belongs here: what ``rules_loader`` reads of a rule's answer — a code, a dial string
or a list of steps (``plan_of``), weighted plans (``choose_list``), a sequence of plans
(``responses_list``), each step's fields and shortcuts, placeholders and faults
(``faults_of``) — each refusal one line naming the file, the rule (index and line), the
field and the problem (``Where.fail``).  Pure, no YAML (the mappings come read, each with
its ``__line__``).  Imports ``errors``, ``codes``, ``message``, ``faults``, ``plans``,
``rules`` and ``scenarios``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FaultSpecError, PlanError, RulesError
from ..sip.codes import is_valid_code, reason_phrase
from ..sip.message import header_key
from .faults import Faults, parse_faults
from .mediaplan import MediaMode, parse_media
from .plans import MAX_PLAN_DELAY, Plan, Step, parse_plan, validate
from .rules import PLACEHOLDER_RE, PLACEHOLDERS, PROTECTED, Choice
from .scenarios import THEN, Sequence

_DELAY_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s)?\s*")

_STEP_KEYS = (
    "code",
    "reason",
    "after",
    "headers",
    "body",
    "content_type",
    "sdp",
    "retry_after",
    "contact",
    "reason_header",
    "warning",
    "faults",
    "fault_probability",
    "media",
)
_SDP_MODES = ("answer", "offer", "none")


class Where:
    """Where we are in the document, to name it in an error."""

    def __init__(self, source: str, rule: str, line: int | None, index: int | None = None) -> None:
        self.source = source
        self.rule = rule
        self.line = line
        self.index = index

    def fail(self, fieldname: str, problem: str, line: int | None = None) -> RulesError:
        line = line or self.line
        if self.rule:
            where = f" {self.rule} (line {line}):" if line else f" {self.rule}:"
        else:
            where = f" line {line}:" if line else ""
        return RulesError(
            f"{self.source}:{where} {fieldname}: {problem}",
            source=self.source,
            rule=self.index,
            line=line,
            field=fieldname,
            problem=problem,
        )


def check_keys(raw: dict[Any, Any], allowed: tuple[str, ...], where: Where, prefix: str) -> None:
    for key in raw:
        if key == "__line__":
            continue
        if key not in allowed:
            raise where.fail(
                f"{prefix}{key}",
                f"unknown field (expected one of: {', '.join(allowed)})",
                raw.get("__line__"),
            )


def choose_list(raw: Any, where: Where) -> tuple[Choice, ...]:
    if not isinstance(raw, list) or not raw:
        raise where.fail("choose", "must be a non-empty list of {weight, plan}")
    out: list[Choice] = []
    for i, item in enumerate(raw):
        fname = f"choose[{i}]"
        if not isinstance(item, dict):
            raise where.fail(fname, "must be a mapping with 'weight' and 'plan'")
        check_keys(item, ("weight", "plan"), where, f"{fname}.")
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise where.fail(f"{fname}.weight", "must be a number above 0")
        if weight > 1e9:
            raise where.fail(f"{fname}.weight", "is too large")
        if "plan" not in item:
            raise where.fail(f"{fname}.plan", "missing")
        out.append(Choice(float(weight), plan_of(item["plan"], f"{fname}.plan", where)))
    return tuple(out)


def responses_list(raw: Any, then: Any, where: Where) -> tuple[tuple[Choice, ...], Sequence]:
    """``responses: [PLAN, {plan: PLAN, repeat: K}, ...]`` and ``then: last | cycle``."""
    if not isinstance(raw, list) or not raw:
        raise where.fail("responses", "must be a non-empty list of plans")
    choices: list[Choice] = []
    slots: list[int] = []
    for i, item in enumerate(raw):
        fname = f"responses[{i}]"
        repeat = 1
        if isinstance(item, dict) and "plan" in item:
            check_keys(item, ("plan", "repeat"), where, f"{fname}.")
            repeat = item.get("repeat", 1)
            if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 10_000:
                raise where.fail(f"{fname}.repeat", "must be a whole number from 1 to 10000")
            item = item["plan"]
        choices.append(Choice(1.0, plan_of(item, fname, where)))
        slots.extend([i] * repeat)
    if then is not None and then not in THEN:
        raise where.fail("then", "must be last or cycle")
    return tuple(choices), Sequence(tuple(slots), cycle=then == "cycle")


def plan_of(raw: Any, fieldname: str, where: Where) -> Plan:
    if isinstance(raw, bool):
        raise where.fail(fieldname, "must be a code, a dial string like 180-2s-486, or steps")
    if isinstance(raw, int | str):
        try:
            return parse_plan(str(raw))
        except PlanError as exc:
            raise where.fail(fieldname, str(exc)) from None
    if not isinstance(raw, list) or not raw:
        raise where.fail(fieldname, "must be a code, a dial string like 180-2s-486, or steps")
    steps: list[Step] = []
    at = 0.0
    for i, item in enumerate(raw):
        step = _step(item, f"{fieldname}[{i}]", where, at)
        at = step.at
        steps.append(step)
    result = tuple(steps)
    try:
        validate(result)
    except PlanError as exc:
        raise where.fail(fieldname, str(exc)) from None
    return Plan(result, "")


def _step(raw: Any, fieldname: str, where: Where, previous_at: float) -> Step:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"code": raw}
    if not isinstance(raw, dict):
        raise where.fail(fieldname, "must be a mapping with 'code', or a code")
    line = raw.get("__line__")
    where = Where(where.source, where.rule, line or where.line, where.index)  # the step's line
    check_keys(raw, _STEP_KEYS, where, f"{fieldname}.")
    code = raw.get("code")
    if isinstance(code, bool) or not isinstance(code, int) or not is_valid_code(code):
        raise where.fail(f"{fieldname}.code", f"{code!r} is not a response code (100-699)", line)
    at = previous_at
    if "after" in raw:
        at += _delay(raw["after"], f"{fieldname}.after", where)
    reason = raw.get("reason")
    if reason is not None:
        if not isinstance(reason, str) or not reason.strip() or "\n" in reason or "\r" in reason:
            raise where.fail(f"{fieldname}.reason", "must be one line of text", line)
        reason = reason.strip()
    headers = _headers(raw.get("headers", {}), f"{fieldname}.headers", where)
    # Shortcuts for what people do daily.
    if "retry_after" in raw:
        value = raw["retry_after"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise where.fail(f"{fieldname}.retry_after", "must be whole seconds", line)
        headers.append(("Retry-After", str(value)))  # RFC 3261 §20.33
    if "contact" in raw:
        value = raw["contact"]
        if not isinstance(value, str) or ":" not in value:
            raise where.fail(f"{fieldname}.contact", "must be a URI like sip:bob@host", line)
        headers.append(("Contact", value if "<" in value else f"<{value.strip()}>"))
    if "reason_header" in raw:
        headers.append(("Reason", _reason_header(raw["reason_header"], code, fieldname, where)))
    if "warning" in raw:
        value = raw["warning"]
        if not isinstance(value, str) or not value:
            raise where.fail(f"{fieldname}.warning", "must be text", line)
        if not re.match(r"[0-9]{3} ", value):
            value = f'399 sipresponder "{_quote(value)}"'  # RFC 3261 §20.43
        headers.append(("Warning", value))
    body = raw.get("body")
    if body is not None and not isinstance(body, str):
        raise where.fail(f"{fieldname}.body", "must be text", line)
    content_type = raw.get("content_type")
    if content_type is not None:
        if not isinstance(content_type, str) or "/" not in content_type:
            raise where.fail(f"{fieldname}.content_type", "must be a MIME type like text/plain")
        if body is None:
            raise where.fail(f"{fieldname}.content_type", "given without a body", line)
    sdp = raw.get("sdp")
    if sdp is not None:
        if sdp not in _SDP_MODES:
            raise where.fail(f"{fieldname}.sdp", "must be answer, offer or none", line)
        if body is not None:
            raise where.fail(f"{fieldname}.sdp", "give either 'sdp' or 'body', not both", line)
    for name, value in headers:
        _check_placeholders(value, f"{fieldname}.headers.{name}", where)
    if body is not None:
        _check_placeholders(body, f"{fieldname}.body", where)
        if content_type is None:
            content_type = "text/plain"
    faults = faults_of(raw, f"{fieldname}.", where, on_step=True)
    media = media_of(raw, f"{fieldname}.", where)
    return Step(code, at, reason, tuple(headers), body, content_type, sdp, faults, media)


def media_of(raw: dict[Any, Any], prefix: str, where: Where) -> MediaMode | None:
    """A rule's or a step's ``media`` (``mediaplan``), or None; a ``play`` or ``record``
    path is taken from the rules file's folder."""
    if "media" not in raw:
        return None
    base = None if where.source.startswith("<") else Path(where.source).parent
    try:
        return parse_media(raw["media"], "media", base)
    except ConfigError as exc:
        field, _, problem = str(exc).partition(": ")
        raise where.fail(prefix + field, problem) from None


def faults_of(raw: dict[Any, Any], prefix: str, where: Where, *, on_step: bool) -> Faults | None:
    """A rule's or a step's ``faults`` (with ``fault_probability``), or None."""
    if "faults" not in raw:
        if "fault_probability" in raw:
            raise where.fail(f"{prefix}fault_probability", "given without 'faults'")
        return None
    try:
        return parse_faults(raw["faults"], raw.get("fault_probability"), on_step=on_step)
    except FaultSpecError as exc:
        if exc.field == "probability":
            raise where.fail(f"{prefix}fault_probability", exc.problem) from None
        raise where.fail(f"{prefix}faults{exc.field}", exc.problem) from None


def _headers(raw: Any, fieldname: str, where: Where) -> list[tuple[str, str]]:
    items: list[tuple[Any, Any]] = []
    if isinstance(raw, dict):
        items = [(k, v) for k, v in raw.items() if k != "__line__"]
    elif isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, str) and ":" in entry:
                name, _, value = entry.partition(":")
                items.append((name.strip(), value.strip()))
            elif isinstance(entry, dict):
                items.extend((k, v) for k, v in entry.items() if k != "__line__")
            else:
                raise where.fail(fieldname, "entries must be 'Name: value' or {Name: value}")
    else:
        raise where.fail(fieldname, "must be a mapping of name to value")
    out: list[tuple[str, str]] = []
    for name, value in items:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9.!%*_+`'~-]+", name):
            raise where.fail(fieldname, f"{name!r} is not a header name")
        if header_key(name) in PROTECTED:
            raise where.fail(
                f"{fieldname}.{name}",
                "set by the server (Via, From, To, Call-ID, CSeq, Content-Length, "
                "Content-Type: use content_type with body)",
            )
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise where.fail(f"{fieldname}.{name}", "value must be text")
            text = str(v)
            if "\r" in text or "\n" in text:
                raise where.fail(f"{fieldname}.{name}", "value must be one line")
            out.append((name, text))
    return out


def _reason_header(raw: Any, code: int, fieldname: str, where: Where) -> str:
    """RFC 3326: ``Reason: SIP ;cause=480 ;text="..."``."""
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"cause": raw}
    if not isinstance(raw, dict):
        raise where.fail(f"{fieldname}.reason_header", "must be text or {protocol, cause, text}")
    check_keys(raw, ("protocol", "cause", "text"), where, f"{fieldname}.reason_header.")
    protocol = str(raw.get("protocol", "SIP"))
    cause = raw.get("cause", code)
    if isinstance(cause, bool) or not isinstance(cause, int):
        raise where.fail(f"{fieldname}.reason_header.cause", "must be a number")
    text = raw.get("text")
    if text is None and protocol.upper() == "SIP" and is_valid_code(cause):
        text = reason_phrase(cause)
    out = f"{protocol};cause={cause}"
    return out + (f';text="{_quote(str(text))}"' if text else "")


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _delay(raw: Any, fieldname: str, where: Where) -> float:
    if isinstance(raw, bool):
        raise where.fail(fieldname, "must be a delay like 3s or 250ms")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str) and (m := _DELAY_RE.fullmatch(raw)):
        value = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    else:
        raise where.fail(fieldname, f"{raw!r} is not a delay like 3s or 250ms")
    if not 0 <= value <= MAX_PLAN_DELAY:
        raise where.fail(fieldname, f"must be between 0 and {MAX_PLAN_DELAY:g} s")
    return value


def _check_placeholders(text: str, fieldname: str, where: Where) -> None:
    for name in PLACEHOLDER_RE.findall(text):
        if name not in PLACEHOLDERS:
            raise where.fail(
                fieldname, f"unknown placeholder {{{name}}} (known: {', '.join(PLACEHOLDERS)})"
            )
