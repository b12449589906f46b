"""Loading rules: a rules document into a ``RuleSet``, or a one-line refusal.

What belongs here: reading a document — YAML, or JSON, which YAML reads too; Python data
comes as JSON text (``testing.responder.make_rules``) — with the line of every mapping,
checking every field against the schema, and refusing at load time what would break the
protocol (a header the server owns, ACK or CANCEL matched, a 2xx to INVITE without SDP),
each refusal one line naming the file, the rule (index and line), the field and the
problem (``RulesError``).  A rule's plans, steps and faults are read by ``plans_loader``;
its scenario and key by ``scenarios``.  Pure: the shell reads the file and passes its
text.  Imports ``digest``, ``message``, ``auth``, ``faults``, ``plans``, ``plans_loader``,
``rules`` and ``scenarios``.  Used by the shell (``aio``, ``admin``, ``testing``), never
per message.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from typing import Any

import yaml

from ..sip.digest import ALGORITHMS
from ..sip.message import header_key
from .auth import AuthSpec
from .config import TRANSPORTS
from .faults import nonsense, transport_warning
from .plans import Plan
from .plans_loader import (
    Where,
    check_keys,
    choose_list,
    faults_of,
    media_of,
    plan_of,
    responses_list,
)
from .rules import (
    Choice,
    HeaderMatch,
    IPNetwork,
    Match,
    Rule,
    RuleSet,
    Text,
)
from .scenarios import FROM_USER, KeySpec, ScenarioSpec

_METHOD_RE = re.compile(r"[A-Za-z]+")

_TOP_KEYS = ("rules", "default", "seed")
_RULE_KEYS = (
    "name",
    "match",
    "plan",
    "choose",
    "responses",
    "then",
    "scenario",
    "key",
    "auth",
    "faults",
    "fault_probability",
    "media",
)
_DEFAULT_KEYS = tuple(k for k in _RULE_KEYS if k != "match")
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
_AUTH_KEYS = ("realm", "users", "algorithm", "qop", "check_uri", "proxy", "nonce_lifetime")


class _Loader(yaml.SafeLoader):
    """A safe YAML loader that records the line of every mapping as ``__line__``."""


def _mapping_with_line(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def load_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Parse and validate a rules document (YAML, or JSON, which YAML reads too)."""
    where = Where(source, "", None)
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
    check_keys(doc, _TOP_KEYS, where, "")
    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, list):
        raise where.fail("rules", "must be a list")
    rules: list[Rule] = []
    for i, raw in enumerate(raw_rules, start=1):
        line = raw.get("__line__") if isinstance(raw, dict) else None
        rules.append(_rule(raw, i, Where(source, f"rule {i}", line, i)))
    default = None
    if "default" in doc:
        raw = doc["default"]
        line = raw.get("__line__") if isinstance(raw, dict) else None
        default = _rule(raw, 0, Where(source, "default rule", line, 0), default=True)
    if not rules and default is None:
        raise where.fail("rules", "no rules and no default rule")
    seed = doc.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise where.fail("seed", "must be a whole number")
    every = [*rules, *([] if default is None else [default])]
    scenarios = any(r.scenario is not None and r.scenario.when is not None for r in every)
    return RuleSet(tuple(rules), default, seed, source, scenarios, _warnings(every, source))


def _warnings(rules: list[Rule], source: str) -> tuple[str, ...]:
    """A line for each rule with a fault that acts over one transport only, when the
    rule matches the other too."""
    out = []
    for rule in rules:
        lists = [rule.faults] + [s.faults for c in rule.choices for s in c.plan.steps]
        for faults in lists:
            text = "" if faults is None else transport_warning(faults, rule.match.transports)
            if text:
                label = "default rule" if rule.index == 0 else f"rule {rule.index}"
                out.append(f"{source}: {label} (line {rule.line}): faults: {text}")
                break
    return tuple(out)


def _rule(raw: Any, index: int, where: Where, *, default: bool = False) -> Rule:
    if isinstance(raw, str | int) and default:
        raw = {"plan": raw}
    if not isinstance(raw, dict):
        raise where.fail("rule", "must be a mapping with 'match' and 'plan'")
    check_keys(raw, _DEFAULT_KEYS if default else _RULE_KEYS, where, "")
    name = raw.get("name", "")
    if not isinstance(name, str | int):
        raise where.fail("name", "must be text")
    match = Match() if default else _match(raw.get("match"), where)
    if sum(k in raw for k in ("plan", "choose", "responses")) != 1:
        raise where.fail("plan", "give exactly one of 'plan', 'choose' and 'responses'")
    sequence = None
    if "plan" in raw:
        choices: tuple[Choice, ...] = (Choice(1.0, plan_of(raw["plan"], "plan", where)),)
    elif "choose" in raw:
        choices = choose_list(raw["choose"], where)
    else:
        choices, sequence = responses_list(raw["responses"], raw.get("then"), where)
    if "then" in raw and sequence is None:
        raise where.fail("then", "given without 'responses'")
    scenario, key = None, None
    if "scenario" in raw:
        try:
            scenario, key = ScenarioSpec.parse(raw["scenario"])
        except ValueError as exc:
            raise where.fail(
                f"scenario{str(exc).split(':', 1)[0]}", str(exc).split(": ", 1)[1]
            ) from None
    if "key" in raw:
        if scenario is None and sequence is None:
            raise where.fail("key", "given without 'responses' or 'scenario'")
        try:
            key = KeySpec.parse(raw["key"]) if key is None else key
        except ValueError as exc:
            raise where.fail("key", str(exc)) from None
    for choice in choices:
        _check_sdp_rules(choice.plan, match, where)
    media = media_of(raw, "", where)
    if media is not None:
        # The rule's media is every plan's, unless a dialled code names another.
        choices = tuple(
            Choice(c.weight, dataclasses.replace(c.plan, media=c.plan.media or media))
            for c in choices
        )
    auth = _auth(raw["auth"], where) if "auth" in raw else None
    faults = faults_of(raw, "", where, on_step=False)
    if faults is not None:
        codes = [[step.code for step in choice.plan.steps] for choice in choices]
        problem = nonsense(faults, match.methods, codes)
        if problem:
            raise where.fail("faults", problem)
    faulty = faults is not None or any(
        step.faults is not None for choice in choices for step in choice.plan.steps
    )
    return Rule(
        index,
        match,
        choices,
        str(name),
        auth,
        where.line,
        faults,
        faulty,
        sequence,
        scenario,
        FROM_USER if key is None else key,
    )


def _match(raw: Any, where: Where) -> Match:
    if raw is None:
        raise where.fail("match", "missing (use the top-level 'default' for a catch-all)")
    if not isinstance(raw, dict):
        raise where.fail("match", "must be a mapping")
    check_keys(raw, _MATCH_KEYS, where, "match.")
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
        check_keys(value, _PARTY_KEYS, where, f"match.{party}.")
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
            check_keys(cond, ("present",), where, f"{fname}.")
            if not isinstance(cond["present"], bool):
                raise where.fail(f"{fname}.present", "must be true or false")
            headers.append(HeaderMatch(header_key(name), name, None, cond["present"]))
        else:
            headers.append(HeaderMatch(header_key(name), name, _text(cond, fname, where)))
    transports = None
    if "transport" in raw:
        names = [t.lower() for t in _list_of_text(raw["transport"], "match.transport", where)]
        for t in names:
            if t not in TRANSPORTS:
                raise where.fail("match.transport", f"{t!r} is not one of {', '.join(TRANSPORTS)}")
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


def _text(raw: Any, fieldname: str, where: Where) -> Text:
    if isinstance(raw, bool) or raw is None:
        raise where.fail(fieldname, "must be text or {regex: ...}")
    if isinstance(raw, str | int | float):
        return Text(exact=str(raw))
    if isinstance(raw, dict):
        check_keys(raw, ("regex", "exact"), where, f"{fieldname}.")
        if "regex" in raw:
            try:
                return Text(regex=re.compile(str(raw["regex"])))
            except re.error as exc:
                raise where.fail(f"{fieldname}.regex", f"bad regular expression: {exc}") from None
        if "exact" in raw:
            return Text(exact=str(raw["exact"]))
    raise where.fail(fieldname, "must be text, {exact: ...} or {regex: ...}")


def _list_of_text(raw: Any, fieldname: str, where: Where) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise where.fail(fieldname, "must be text or a list of text")
        out.extend(part.strip() for part in str(item).split(",") if part.strip())
    if not out:
        raise where.fail(fieldname, "is empty")
    return out


def _check_sdp_rules(plan: Plan, match: Match, where: Where) -> None:
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


def _auth(raw: Any, where: Where) -> AuthSpec:
    if not isinstance(raw, dict):
        raise where.fail("auth", "must be a mapping with realm and users")
    check_keys(raw, _AUTH_KEYS, where, "auth.")
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
