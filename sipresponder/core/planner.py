"""The choice of a plan for a request: what the responder will answer, and when.

What belongs here: ``Planner``, which holds the rules in use and their weighted picks'
counts, and chooses for each new request an RFC 3261 §8.2 rejection, else the first
matching rule (after its Digest check, RFC 3261 §22), else what the user part dials
(``plans``).  Its Digest verdict stays in ``verdict`` for the endpoint to log and judge.
Sans-IO: the caller passes the time and the wall-clock time.  Imports ``auth``,
``message``, ``plans``, ``responses``, ``rules``, ``sdp`` and ``uri``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Final

from ..errors import SdpError
from ..sip.message import Request
from ..sip.responses import KNOWN_METHODS, NO_EXTRAS, SUPPORTED_OPTIONS, Extras
from ..sip.sdp import check_offer
from ..sip.uri import plain_ip, uri_of, uri_scheme, uri_user
from .auth import AuthSpec, NonceSigner, Verdict, challenges, verify
from .plans import Plan, Step, default_plan, dial_plan
from .rules import Rule, RuleSet

log = logging.getLogger(__name__)

#: URI schemes we answer (§8.2.2.1); others get 416.
SCHEMES: Final = frozenset({"sip", "sips", "tel"})
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

    def choose(
        self, req: Request, transport: str, source: str, wall: float
    ) -> tuple[Plan, Extras, bool, bool]:
        """The plan for a request: an RFC rejection, else the first matching rule (after its
        Digest check), else what the user part dials.  -> (plan, extras, send 100 first,
        keep state even when answered at once).  ``source`` is the peer's address as the
        socket gave it, ``wall`` the wall-clock time (for nonces).  ``verdict`` then holds the
        Digest verdict the request drew, if any."""
        self.verdict = None
        method = req.method
        reject = _rejection(req)
        if reject is not None:
            code, extras = reject
            return Plan((Step(code),), str(code)), extras, False, False
        stateful = False
        rule = None
        if self.rules is not None:
            rule = self.rules.find(req, transport, plain_ip(source))
        if rule is not None:
            if rule.auth is not None:
                denied = self._authenticate(rule.auth, req, wall)
                if denied is not None:
                    # Stateful: a retransmission must get this very challenge again
                    # (§17.2.2), and a fresh nonce would differ.
                    return Plan((denied,), "auth"), NO_EXTRAS, False, True
            plan = self.pick(rule)
            # A weighted pick is not a function of the request: keep the transaction, so
            # a retransmission gets the same answer.
            stateful = rule.weighted
        elif req.to_tag is not None and method == "INVITE":
            plan = Plan((Step(200),), "re-INVITE")  # in-dialog: no ringing
        else:
            plan = _dialled(req.uri) or default_plan(method)
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

    def set_rules(self, rules: RuleSet | None) -> None:
        """Use these rules for new transactions; those in flight keep their plan."""
        self.rules = rules
        self._picks = {}
        seed = rules.seed if rules is not None else None
        self._seed = self.secret if seed is None else str(seed).encode()


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
