"""The choice of a plan for a request: what the responder will answer, and when.

What belongs here: ``Planner``, which holds the rules in use and their weighted picks'
counts, and chooses for each new request an RFC 3261 §8.2 rejection, else the first
matching rule (after its Digest check, RFC 3261 §22), else what the user part dials
(``plans``).  Its Digest verdict stays in ``verdict`` for the endpoint to log and judge.
Also what a plan becomes on the way out: its final response alone (``final_only``, for
``--stateless``), and a rule step's overrides with the request's placeholders filled in
(``step_extras``), and ``Builder``, which renders a plan's steps for one request.
Which of a rule's faults a request draws is chosen here too (``draw_faults``), and left
in ``faults``; and each new request moves its rule's sequence and scenario (``scenarios``:
their positions and states, by key).  Sans-IO: the caller passes the time and the
wall-clock time.  Imports ``auth``, ``faults``, ``message``, ``plans``, ``responses``,
``rules``, ``scenarios``, ``sdp`` and ``uri``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from typing import Final, Protocol

from ..errors import SdpError
from ..sip.message import Request
from ..sip.responses import KNOWN_METHODS, NO_EXTRAS, SUPPORTED_OPTIONS, Answers, Extras, Local
from ..sip.sdp import check_offer
from ..sip.uri import plain_ip, uri_of, uri_scheme, uri_user
from .auth import AuthSpec, NonceSigner, Verdict, challenges, verify
from .faults import FaultPlan, chance
from .flow import Flow
from .mediaplan import MediaMode
from .plans import Plan, Step, default_plan, dial_plan
from .rules import Rule, RuleSet, fill, placeholder_values
from .scenarios import Scenarios

log = logging.getLogger(__name__)


class MediaHand(Protocol):
    """What a builder asks of the endpoint's media (``mediahand.MediaHand``)."""

    def answer(
        self,
        req: Request,
        code: int,
        mode: MediaMode | None,
        host: str,
        tag: str,
        signalling: str,
        now: float,
    ) -> bytes | None: ...

    def ended(self, call_id: str, now: float, why: str) -> None: ...


#: URI schemes we answer (§8.2.2.1); others get 416.
SCHEMES: Final = frozenset({"sip", "sips", "tel"})
#: Transports a SIPS Request-URI may arrive over (RFC 5630 §4: a request for a SIPS URI
#: had rather fail than arrive without TLS; RFC 7118 §9.2: over WebSocket, only WSS).
SECURE: Final = frozenset({"tls", "wss"})
#: RFC 5630 §5.1.2's refusal of SIPS: 480 with warn-code 380.
SIPS_REFUSED: Final = Extras(headers=(("Warning", '380 sipresponder "SIPS Not Allowed"'),))
#: What an address-of-record (the To of a REGISTER) may be (§10.2).
AORS: Final = frozenset({"sip", "sips"})
#: Accept values that let a response carry SDP.
_SDP_TYPES: Final = frozenset({"application/sdp", "application/*", "*/*"})


class Planner:
    """The rules in use, and the plan each new request gets."""

    def __init__(self, secret: bytes, signer: NonceSigner) -> None:
        self.secret = secret
        self.signer = signer
        self.rules: RuleSet | None = None
        self._picks: dict[int, int] = {}
        self._seed = secret
        #: The Digest verdict of the request last chosen for, or None.
        self.verdict: Verdict | None = None
        #: The faults the request last chosen for drew, or None.
        self.faults: FaultPlan | None = None
        self._fault_draws: dict[int, int] = {}
        #: The rules' sequence positions and scenario states, by key.
        self.scenarios = Scenarios()

    def choose(
        self, req: Request, transport: str, source: str, wall: float, peer: str = ""
    ) -> tuple[Plan, Extras, bool, bool]:
        """The plan for a request: an RFC rejection, else the first matching rule (after its
        Digest check), else what the user part dials.  -> (plan, extras, send 100 first,
        keep state even when answered at once).  ``source`` is the peer's address as the
        socket gave it, ``wall`` the wall-clock time (for nonces).  ``verdict`` then holds the
        Digest verdict the request drew, if any."""
        self.verdict = None
        self.faults = None
        method = req.method
        reject = _rejection(req)
        if reject is not None:
            code, extras = reject
            return Plan((Step(code),), str(code)), extras, False, False
        if (
            not req.uri.startswith("sip:")
            and transport not in SECURE
            and uri_scheme(req.uri) == "sips"
        ):
            # RFC 5630 §4 and §3.1.3: refused rather than served without TLS.
            return Plan((Step(480),), "480"), SIPS_REFUSED, False, False
        stateful = False
        rule = None
        rules = self.rules
        if rules is not None:
            if rules.scenarios:
                rule = self._in_state(rules, req, transport, plain_ip(source), peer)
            else:
                rule = rules.find(req, transport, plain_ip(source))
        if rule is not None:
            if rule.auth is not None:
                denied = self._authenticate(rule.auth, req, wall)
                if denied is not None:
                    # Stateful: a retransmission must get this very challenge again
                    # (§17.2.2), and a fresh nonce would differ.
                    return Plan((denied,), "auth"), NO_EXTRAS, False, True
            if rule.sequence is None and rule.scenario is None:
                plan = self.pick(rule)
            else:
                plan = self._move(rule, req, peer)
            # A weighted pick, a sequence, a scenario: the answer is no function of the
            # request alone; keep the transaction, so a retransmission gets the same.
            stateful = rule.stateful
            if rule.faulty:
                self.faults = self.draw_faults(rule, plan)
                stateful = stateful or self.faults is not None
        elif req.to_tag is not None and method == "INVITE":
            plan = Plan((Step(200),), "re-INVITE")  # in-dialog: no ringing
        else:
            plan = _dialled(req.uri) or default_plan(method)
            if plan.faults is not None:  # dialled: 486*4
                self.faults = FaultPlan(plan.faults, {})
                stateful = True
        final = plan.final
        if final is not None and 200 <= final < 300 and method in ("INVITE", "UPDATE"):
            accept = req.headers.first("accept")
            if accept is not None and not _accepts_sdp(req.headers.get_list("accept")):
                # §8.2.3, §21.4.7: the 2xx must carry SDP, which the Accept rules out.
                plan = Plan((Step(406),), "406")
        send_trying = method == "INVITE" and not plan.starts_with_100
        return plan, NO_EXTRAS, send_trying, stateful

    def _authenticate(self, spec: AuthSpec, req: Request, wall: float) -> Step | None:
        """RFC 3261 §22.2-22.3: None when the credentials hold, else the step to answer.
        The reason phrase names the check that failed (``Forbidden (wrong password)``,
        ``Unauthorized (stale nonce)``), so the ladder and the journal show it.  What the
        endpoint logs or judges from the verdict (an RFC 2069 answer, another resource's
        uri) it reads from ``verdict``."""
        verdict = verify(
            spec,
            req.method,
            req.headers.get_all(spec.credentials_header),
            self.signer,
            wall,
            req.body,
            req.uri,
        )
        self.verdict = verdict
        if verdict.result == "ok":
            return None
        check = verdict.check
        if verdict.result == "bad":
            log.info("Digest: %s (Call-ID %s): refused", verdict.reason, req.call_id)
            if check == "uri is not the Request-URI":
                return Step(400, reason=f"Bad Request (Digest {check})")
            return Step(403, reason=f"Forbidden ({check})" if check else None)
        nonce = self.signer.make(spec.realm, wall)
        stale = verdict.result == "stale"  # RFC 7616 §3.3: right credentials, old nonce
        headers = tuple((spec.header_name, v) for v in challenges(spec, nonce, stale=stale))
        reason = None
        if check in ("stale nonce", "nonce not ours"):
            phrase = "Proxy Authentication Required" if spec.proxy else "Unauthorized"
            reason = f"{phrase} ({check})"
        return Step(spec.challenge_code, reason=reason, headers=headers)

    def pick(self, rule: Rule) -> Plan:
        """The weighted choice of a rule, reproducible from the seed and the arrival order."""
        if not rule.weighted:
            return rule.choices[0].plan
        count = self._picks.get(rule.index, 0)
        self._picks[rule.index] = count + 1
        data = f"{rule.index}:{count}".encode()
        digest = hashlib.blake2b(data, key=self._seed, digest_size=8).digest()
        return rule.pick(int.from_bytes(digest, "big") / 2**64)

    def _in_state(
        self, rules: RuleSet, req: Request, transport: str, source_ip: str, peer: str
    ) -> Rule | None:
        """The first matching rule whose scenario, if it has one, is in its ``when``."""
        for rule in rules.matching(req, transport, source_ip):
            spec = rule.scenario
            if spec is None or spec.when is None:
                return rule
            if self.scenarios.state(spec.name, rule.key.of(req, peer)) == spec.when:
                return rule
        return None

    def _move(self, rule: Rule, req: Request, peer: str) -> Plan:
        """The plan of a rule with a sequence or a scenario, which this new request
        moves: the sequence to its next plan, the scenario to the state it sets."""
        key = rule.key.of(req, peer)
        sequence = rule.sequence
        if sequence is None:
            plan = self.pick(rule)
        else:
            position = self.scenarios.advance(rule.index, key)
            plan = rule.choices[sequence.index(position)].plan
        spec = rule.scenario
        if spec is not None and spec.set is not None:
            self.scenarios.set_state(spec.name, key, spec.set)
        return plan

    def draw_faults(self, rule: Rule, plan: Plan) -> FaultPlan | None:
        """Which of the rule's and its plan's fault lists the request gets: each applies
        to its ``fault_probability`` share of requests, reproducibly from the seed and
        the order in which the rule's requests came."""
        count = self._fault_draws.get(rule.index, 0)
        self._fault_draws[rule.index] = count + 1
        seed = self._seed

        def draw(salt: str, probability: float) -> bool:
            return probability >= 1.0 or chance(seed, f"{rule.index}:{count}:{salt}") < probability

        return FaultPlan.draw(rule.faults, plan.steps, draw)

    def set_rules(self, rules: RuleSet | None) -> None:
        """Use these rules for new transactions; those in flight keep their plan."""
        self.rules = rules
        self._picks = {}
        self._fault_draws = {}
        self.scenarios.clear()
        seed = rules.seed if rules is not None else None
        self._seed = self.secret if seed is None else str(seed).encode()


class Builder:
    """Renders the steps of one request's plan into the bytes of its responses (called
    with a step, as the transaction's ``build``; a callable object, not a bound method,
    which compiled code would make through a generic attribute lookup): the code with
    what it must carry, a rule step's overrides with the request's placeholders, a
    real nonce in a dialled 401/407 (RFC 3261 §22.1).  Counts each response by code in
    ``by_code`` (the endpoint's counter for the request's method)."""

    __slots__ = (
        "answers",
        "by_code",
        "extras",
        "flow",
        "media",
        "media_mode",
        "now",
        "realm",
        "signer",
        "values",
        "wall",
    )

    def __init__(
        self,
        answers: Answers,
        extras: Extras,
        by_code: dict[int, int],
        flow: Flow,
        signer: NonceSigner,
        realm: str,
        wall: float,
    ) -> None:
        self.answers = answers
        self.extras = extras
        self.by_code = by_code
        #: Where the request came from (its transport and source, for placeholders).
        self.flow = flow
        self.signer = signer
        self.realm = realm
        self.wall = wall
        #: The request's placeholders, filled in when a step first needs them.
        self.values: dict[str, str] | None = None
        #: Set by the endpoint when media is on: the hand that opens the call's session
        #: with its answer, the plan's media mode, and the request's arrival.
        self.media: MediaHand | None = None
        self.media_mode: MediaMode | None = None
        self.now = 0.0

    def __call__(self, step: Step) -> bytes:
        extras = self.extras
        code = step.code
        if code in (401, 407) and not step.headers:
            # A dialled challenge: a real, verifiable nonce (RFC 3261 §22.1).
            realm = self.realm
            nonce = self.signer.make(realm, self.wall)
            extras = dataclasses.replace(extras, nonce=nonce, realm=realm)
        if step.reason or step.headers or step.body is not None or step.sdp:
            values = self.values
            if values is None:
                answers = self.answers
                local: Local = answers.local
                flow = self.flow
                values = self.values = placeholder_values(
                    answers.req, flow.transport, flow.remote, local.hostport
                )
            extras = step_extras(step, extras, values)
        media = self.media
        if media is not None:
            extras = self._media(media, step, extras)
        by_code = self.by_code
        by_code[code] = by_code.get(code, 0) + 1
        return self.answers.render(code, extras)

    def _media(self, media: MediaHand, step: Step, extras: Extras) -> Extras:
        """An INVITE's 2xx or 183 names its media session's port in its SDP, and so does
        the 2xx to an UPDATE with an offer (RFC 3311: hold, resume); a final non-2xx to an
        INVITE ends a session early media opened."""
        answers = self.answers
        req = answers.req
        code = step.code
        method = req.method
        if code < 180 or (method == "UPDATE" and not 200 <= code < 300):
            return extras
        if code >= 300:
            media.ended(req.call_id or "", self.now, "rejected")
            return extras
        if extras.body is not None or extras.sdp == "none" or (code < 200 and code != 183):
            return extras
        sdp = media.answer(
            req,
            code,
            step.media or self.media_mode,
            answers.local.host,
            answers.to_tag or "",
            self.flow.remote[0],
            self.now,
        )
        if sdp is None:
            return extras
        return dataclasses.replace(extras, body=sdp, content_type="application/sdp")


def _rejection(req: Request) -> tuple[int, Extras] | None:
    """The RFC 3261 §8.2 checks of a well-formed request, in the RFC's order."""
    method = req.method
    if method not in KNOWN_METHODS:
        return 501, NO_EXTRAS  # §8.2.1 (Allow is added by the builder)
    if not req.uri.startswith("sip:") and uri_scheme(req.uri) not in SCHEMES:
        return 416, NO_EXTRAS  # §8.2.2.1
    if method != "CANCEL" and req.headers.first("require") is not None:
        # §8.2.2.3 (Require is ignored in CANCEL and in ACK, which never gets here).
        required = req.headers.get_list("require")
        unknown = tuple(opt for opt in required if opt.lower() not in SUPPORTED_OPTIONS)
        if unknown:
            return 420, Extras(unsupported=unknown)
    if method == "REGISTER" and req.to is not None and uri_scheme(uri_of(req.to)) not in AORS:
        # §10.3 step 5: the To is the address-of-record; RFC 4475 §3.3.4 answers 400.
        return 400, Extras(reason="Address-of-Record Is Not a SIP or SIPS URI")
    if req.body and method in ("INVITE", "UPDATE"):
        ctype = (req.headers.first("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/sdp":
            return 415, NO_EXTRAS  # §8.2.3
        try:
            check_offer(req.body)
        except SdpError as exc:
            return 400, Extras(reason=f"Malformed SDP: {exc}")
    return None


def _accepts_sdp(accepted: list[str]) -> bool:
    """Whether Accept's media ranges admit application/sdp (an empty Accept admits no
    body at all, §20.1)."""
    for item in accepted:
        media = item.split(";", 1)[0].strip().lower()
        if media in _SDP_TYPES:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _dialled(uri: str) -> Plan | None:
    """The plan the Request-URI's user part dials (plans are immutable: a load test dials
    the same few URIs, so the answer is cached by URI)."""
    return dial_plan(uri_user(uri))


def final_only(plan: Plan) -> Plan:
    """``--stateless``: the plan's last response alone, at once (RFC 3261 §8.2.7).

    Remembered per plan object (a dialled plan is made once per Request-URI, a rule's once
    per rules file): making a dataclass anew per request costs more than the answer."""
    known = _FINAL_ONLY.get(id(plan))
    if known is not None and known[0] is plan:
        return known[1]
    final = Plan((dataclasses.replace(plan.steps[-1], at=0.0),), plan.text)
    if len(_FINAL_ONLY) >= 1024:
        _FINAL_ONLY.clear()
    _FINAL_ONLY[id(plan)] = (plan, final)
    return final


#: ``final_only``'s plans: id -> (the plan, its final step alone).  The plan is held, so
#: its id is not reused while remembered.
_FINAL_ONLY: Final[dict[int, tuple[Plan, Plan]]] = {}


def step_extras(step: Step, extras: Extras, values: dict[str, str]) -> Extras:
    """A rule step's overrides, with the request's placeholders filled in."""
    return dataclasses.replace(
        extras,
        reason=step.reason or extras.reason,
        headers=tuple((name, fill(value, values)) for name, value in step.headers),
        # Placeholders carry the request's bytes as the parser read them (surrogate
        # escapes for what is not UTF-8): they go out as they came.
        body=None
        if step.body is None
        else fill(step.body, values).encode("utf-8", "surrogateescape"),
        content_type=step.content_type,
        sdp=step.sdp,
    )
