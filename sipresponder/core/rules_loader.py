"""Loading rules: a rules document into a ``RuleSet``, or a one-line refusal.

What belongs here: reading a document — YAML, or JSON, which YAML reads too; Python data
comes as JSON text (``testing.responder.make_rules``) — with the line of every mapping,
checking every field against the schema, and refusing at load time what would break the
protocol (a header the server owns, ACK or CANCEL matched, a 2xx to INVITE without SDP),
each refusal one line naming the file, the rule (index and line), the field and the
problem (``RulesError``).  Pure: the shell reads the file and passes its text.  Imports
``errors``, ``codes``, ``message``, ``digest``, ``faults``, ``plans``, ``auth`` and ``rules``,
whose model it builds.  Used by the shell (``aio``, ``admin``, ``testing``), never per message.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import yaml

from ..errors import FaultSpecError, PlanError, RulesError
from ..sip.codes import is_valid_code, reason_phrase
from ..sip.digest import ALGORITHMS
from ..sip.message import header_key
from .auth import AuthSpec
from .faults import Faults, nonsense, parse_faults
from .plans import MAX_PLAN_DELAY, Plan, Step, parse_plan, validate
from .rules import (
    PLACEHOLDER_RE,
    PLACEHOLDERS,
    PROTECTED,
    Choice,
    HeaderMatch,
    IPNetwork,
    Match,
    Rule,
    RuleSet,
    Text,
)

_DELAY_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s)?\s*")
_METHOD_RE = re.compile(r"[A-Za-z]+")

_TOP_KEYS = ("rules", "default", "seed")
_RULE_KEYS = ("name", "match", "plan", "choose", "auth", "faults", "fault_probability")
_DEFAULT_KEYS = ("name", "plan", "choose", "auth", "faults", "fault_probability")
_MATCH_KEYS = (
    "method",
    "user",
    "from",
    "to",
    "headers",
    "transport",
    "source",
    "body_contains",
)
_PARTY_KEYS = ("user", "host")
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
)
_AUTH_KEYS = ("realm", "users", "algorithm", "qop", "check_uri", "proxy", "nonce_lifetime")
_SDP_MODES = ("answer", "offer", "none")


class _Loader(yaml.SafeLoader):
    """A safe YAML loader that records the line of every mapping as ``__line__``."""


def _mapping_with_line(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


class _Where:
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


def load_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Parse and validate a rules document (YAML, or JSON, which YAML reads too)."""
    where = _Where(source, "", None)
    try:
        if source.endswith(".json"):
            doc: Any = json.loads(text)
        else:
            doc = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else getattr(exc, "lineno", None)
        problem = getattr(exc, "problem", None) or getattr(exc, "msg", None) or str(exc)
        raise where.fail("syntax", str(problem), line) from None
    if doc is None:
        raise where.fail("rules", "the file is empty")
    if isinstance(doc, list):
        doc = {"rules": doc}
    if not isinstance(doc, dict):
        raise where.fail("rules", "expected a list of rules or a mapping with 'rules'")
    _check_keys(doc, _TOP_KEYS, where, "")
    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, list):
        raise where.fail("rules", "must be a list")
    rules: list[Rule] = []
    for i, raw in enumerate(raw_rules, start=1):
        line = raw.get("__line__") if isinstance(raw, dict) else None
        rules.append(_rule(raw, i, _Where(source, f"rule {i}", line, i)))
    default = None
    if "default" in doc:
        raw = doc["default"]
        line = raw.get("__line__") if isinstance(raw, dict) else None
        default = _rule(raw, 0, _Where(source, "default rule", line, 0), default=True)
    if not rules and default is None:
        raise where.fail("rules", "no rules and no default rule")
    seed = doc.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise where.fail("seed", "must be a whole number")
    return RuleSet(tuple(rules), default, seed, source)


def _check_keys(raw: dict[Any, Any], allowed: tuple[str, ...], where: _Where, prefix: str) -> None:
    for key in raw:
        if key == "__line__":
            continue
        if key not in allowed:
            raise where.fail(
                f"{prefix}{key}",
                f"unknown field (expected one of: {', '.join(allowed)})",
                raw.get("__line__"),
            )


def _rule(raw: Any, index: int, where: _Where, *, default: bool = False) -> Rule:
    if isinstance(raw, str | int) and default:
        raw = {"plan": raw}
    if not isinstance(raw, dict):
        raise where.fail("rule", "must be a mapping with 'match' and 'plan'")
    _check_keys(raw, _DEFAULT_KEYS if default else _RULE_KEYS, where, "")
    name = raw.get("name", "")
    if not isinstance(name, str | int):
        raise where.fail("name", "must be text")
    match = Match() if default else _match(raw.get("match"), where)
    if ("plan" in raw) == ("choose" in raw):
        raise where.fail("plan", "give exactly one of 'plan' and 'choose'")
    if "plan" in raw:
        choices: tuple[Choice, ...] = (Choice(1.0, _plan(raw["plan"], "plan", where)),)
    else:
        choices = _choose(raw["choose"], where)
    for choice in choices:
        _check_sdp_rules(choice.plan, match, where)
    auth = _auth(raw["auth"], where) if "auth" in raw else None
    faults = _faults(raw, "", where, on_step=False)
    if faults is not None:
        codes = [[step.code for step in choice.plan.steps] for choice in choices]
        problem = nonsense(faults, match.methods, codes)
        if problem:
            raise where.fail("faults", problem)
    faulty = faults is not None or any(
        step.faults is not None for choice in choices for step in choice.plan.steps
    )
    return Rule(index, match, choices, str(name), auth, where.line, faults, faulty)


def _match(raw: Any, where: _Where) -> Match:
    if raw is None:
        raise where.fail("match", "missing (use the top-level 'default' for a catch-all)")
    if not isinstance(raw, dict):
        raise where.fail("match", "must be a mapping")
    _check_keys(raw, _MATCH_KEYS, where, "match.")
    methods: frozenset[str] | None = None
    if "method" in raw:
        names = _list_of_text(raw["method"], "match.method", where)
        for m in names:
            if not _METHOD_RE.fullmatch(m):
                raise where.fail("match.method", f"{m!r} is not a method name")
        methods = frozenset(m.upper() for m in names)
        if "ACK" in methods:
            raise where.fail("match.method", "ACK is never answered (RFC 3261 §17.2.1)")
        if "CANCEL" in methods:
            raise where.fail(
                "match.method",
                "CANCEL is answered by the server itself: 200 and 487 to its INVITE, "
                "or 481 (RFC 3261 §9.2)",
            )
    parties: dict[str, Text | None] = {}
    for party in ("from", "to"):
        value = raw.get(party)
        for part in _PARTY_KEYS:
            parties[f"{party}_{part}"] = None
        if value is None:
            continue
        if not isinstance(value, dict):
            raise where.fail(f"match.{party}", "must be a mapping with 'user' and/or 'host'")
        _check_keys(value, _PARTY_KEYS, where, f"match.{party}.")
        for part in _PARTY_KEYS:
            if part in value:
                parties[f"{party}_{part}"] = _text(value[part], f"match.{party}.{part}", where)
    headers: list[HeaderMatch] = []
    raw_headers = raw.get("headers", {})
    if not isinstance(raw_headers, dict):
        raise where.fail("match.headers", "must be a mapping of header name to condition")
    for name, cond in raw_headers.items():
        if name == "__line__":
            continue
        fname = f"match.headers.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9.!%*_+`'~-]+", name):
            raise where.fail(fname, "not a header name")
        if isinstance(cond, dict) and "present" in cond:
            _check_keys(cond, ("present",), where, f"{fname}.")
            if not isinstance(cond["present"], bool):
                raise where.fail(f"{fname}.present", "must be true or false")
            headers.append(HeaderMatch(header_key(name), name, None, cond["present"]))
        else:
            headers.append(HeaderMatch(header_key(name), name, _text(cond, fname, where)))
    transports = None
    if "transport" in raw:
        names = [t.lower() for t in _list_of_text(raw["transport"], "match.transport", where)]
        for t in names:
            if t not in ("udp", "tcp"):
                raise where.fail("match.transport", f"{t!r} is not udp or tcp")
        transports = frozenset(names)
    sources: list[IPNetwork] = []
    if "source" in raw:
        for cidr in _list_of_text(raw["source"], "match.source", where):
            try:
                sources.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise where.fail("match.source", f"{cidr!r} is not an address or CIDR") from None
    body = None
    if "body_contains" in raw:
        value = raw["body_contains"]
        if not isinstance(value, str) or not value:
            raise where.fail("match.body_contains", "must be non-empty text")
        body = value.encode()
    user = _text(raw["user"], "match.user", where) if "user" in raw else None
    return Match(
        methods,
        user,
        parties["from_user"],
        parties["from_host"],
        parties["to_user"],
        parties["to_host"],
        tuple(headers),
        transports,
        tuple(sources),
        body,
    )


def _text(raw: Any, fieldname: str, where: _Where) -> Text:
    if isinstance(raw, bool) or raw is None:
        raise where.fail(fieldname, "must be text or {regex: ...}")
    if isinstance(raw, str | int | float):
        return Text(exact=str(raw))
    if isinstance(raw, dict):
        _check_keys(raw, ("regex", "exact"), where, f"{fieldname}.")
        if "regex" in raw:
            try:
                return Text(regex=re.compile(str(raw["regex"])))
            except re.error as exc:
                raise where.fail(f"{fieldname}.regex", f"bad regular expression: {exc}") from None
        if "exact" in raw:
            return Text(exact=str(raw["exact"]))
    raise where.fail(fieldname, "must be text, {exact: ...} or {regex: ...}")


def _list_of_text(raw: Any, fieldname: str, where: _Where) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise where.fail(fieldname, "must be text or a list of text")
        out.extend(part.strip() for part in str(item).split(",") if part.strip())
    if not out:
        raise where.fail(fieldname, "is empty")
    return out


def _choose(raw: Any, where: _Where) -> tuple[Choice, ...]:
    if not isinstance(raw, list) or not raw:
        raise where.fail("choose", "must be a non-empty list of {weight, plan}")
    out: list[Choice] = []
    for i, item in enumerate(raw):
        fname = f"choose[{i}]"
        if not isinstance(item, dict):
            raise where.fail(fname, "must be a mapping with 'weight' and 'plan'")
        _check_keys(item, ("weight", "plan"), where, f"{fname}.")
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise where.fail(f"{fname}.weight", "must be a number above 0")
        if weight > 1e9:
            raise where.fail(f"{fname}.weight", "is too large")
        if "plan" not in item:
            raise where.fail(f"{fname}.plan", "missing")
        out.append(Choice(float(weight), _plan(item["plan"], f"{fname}.plan", where)))
    return tuple(out)


def _plan(raw: Any, fieldname: str, where: _Where) -> Plan:
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


def _step(raw: Any, fieldname: str, where: _Where, previous_at: float) -> Step:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"code": raw}
    if not isinstance(raw, dict):
        raise where.fail(fieldname, "must be a mapping with 'code', or a code")
    line = raw.get("__line__")
    where = _Where(where.source, where.rule, line or where.line, where.index)  # the step's line
    _check_keys(raw, _STEP_KEYS, where, f"{fieldname}.")
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
    faults = _faults(raw, f"{fieldname}.", where, on_step=True)
    return Step(code, at, reason, tuple(headers), body, content_type, sdp, faults)


def _faults(raw: dict[Any, Any], prefix: str, where: _Where, *, on_step: bool) -> Faults | None:
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


def _headers(raw: Any, fieldname: str, where: _Where) -> list[tuple[str, str]]:
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


def _reason_header(raw: Any, code: int, fieldname: str, where: _Where) -> str:
    """RFC 3326: ``Reason: SIP ;cause=480 ;text="..."``."""
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"cause": raw}
    if not isinstance(raw, dict):
        raise where.fail(f"{fieldname}.reason_header", "must be text or {protocol, cause, text}")
    _check_keys(raw, ("protocol", "cause", "text"), where, f"{fieldname}.reason_header.")
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


def _delay(raw: Any, fieldname: str, where: _Where) -> float:
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


def _check_placeholders(text: str, fieldname: str, where: _Where) -> None:
    for name in PLACEHOLDER_RE.findall(text):
        if name not in PLACEHOLDERS:
            raise where.fail(
                fieldname, f"unknown placeholder {{{name}}} (known: {', '.join(PLACEHOLDERS)})"
            )


def _check_sdp_rules(plan: Plan, match: Match, where: _Where) -> None:
    """A 2xx to INVITE always carries SDP: an answer to the offer, or an offer (§13.2.1)."""
    if match.methods is not None and "INVITE" not in match.methods:
        return
    for step in plan.steps:
        if 200 <= step.code < 300:
            if step.sdp == "none":
                raise where.fail(
                    "plan", f"{step.code} to an INVITE must carry SDP (sdp: none refused)"
                )
            if step.body is not None and step.content_type != "application/sdp":
                raise where.fail(
                    "plan", f"{step.code} to an INVITE must carry SDP, not {step.content_type}"
                )


def _auth(raw: Any, where: _Where) -> AuthSpec:
    if not isinstance(raw, dict):
        raise where.fail("auth", "must be a mapping with realm and users")
    _check_keys(raw, _AUTH_KEYS, where, "auth.")
    users = raw.get("users")
    if not isinstance(users, dict) or not [k for k in users if k != "__line__"]:
        raise where.fail("auth.users", "must map at least one user name to a password")
    pairs: list[tuple[str, str]] = []
    for name, password in users.items():
        if name == "__line__":
            continue
        if isinstance(password, bool) or not isinstance(password, str | int):
            raise where.fail(f"auth.users.{name}", "password must be text")
        pairs.append((str(name), str(password)))
    algorithms = raw.get("algorithm", ["MD5"])
    names = tuple(_list_of_text(algorithms, "auth.algorithm", where))
    for alg in names:
        if alg.upper() not in {a.upper() for a in ALGORITHMS}:
            raise where.fail("auth.algorithm", f"{alg!r} is not one of {', '.join(ALGORITHMS)}")
    qop = raw.get("qop", "auth")
    if qop not in ("auth", "required", "none", None, False):
        raise where.fail(
            "auth.qop",
            f"{qop!r} is not auth (offered; answers without qop checked in the RFC 2069 "
            "form), required (offered and required) or none (not offered)",
        )
    proxy = raw.get("proxy", False)
    if not isinstance(proxy, bool):
        raise where.fail("auth.proxy", "must be true or false")
    check_uri = raw.get("check_uri", False)
    if not isinstance(check_uri, bool):
        raise where.fail("auth.check_uri", "must be true or false")
    lifetime = raw.get("nonce_lifetime", 300)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        raise where.fail("auth.nonce_lifetime", "must be seconds above 0")
    realm = raw.get("realm", "sipresponder")
    try:
        return AuthSpec(
            realm=str(realm),
            users=tuple(pairs),
            algorithms=names,
            qop=None if qop in (None, "none", False) else "auth",
            require_qop=qop == "required",
            check_uri=check_uri,
            proxy=proxy,
            nonce_lifetime=float(lifetime),
        )
    except ValueError as exc:
        raise where.fail("auth", str(exc)) from None
