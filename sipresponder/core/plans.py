"""Plans: which responses go out, and when — and the dial-the-code grammar.

What belongs here: ``Plan`` and ``Step`` (frozen), ``parse_plan`` for the Request-URI user
part (``486``, ``180-486``, ``180-2s-486``, ``180-1500ms-486``, keypad ``180486``) and the
default plans.  A plan is a list of response codes, each with its time offset from the
request; it is validated here, once, so the transaction layer can trust it.  Imports
``codes``, and ``faults`` for the model of a step's faults.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..errors import ConfigError, FaultSpecError, PlanError
from ..sip.codes import is_valid_code
from .faults import Faults, dialled_faults
from .mediaplan import MediaMode, dialled_media

#: The longest total delay a plan may ask for, in seconds.
MAX_PLAN_DELAY = 3600.0

_DELAY_RE = re.compile(r"([0-9]{1,7}(?:\.[0-9]{1,3})?)(ms|s)")


@dataclass(frozen=True, slots=True)
class Step:
    """Send ``code`` at ``at`` seconds after the request arrived.

    The other fields come from a rules file (dial-the-code leaves them empty): ``reason``
    replaces the reason phrase; ``headers`` are added, or replace the builder's header of
    the same name; ``body`` (with ``content_type``) is sent as is; ``sdp`` is ``answer``,
    ``offer`` or ``none`` to override the default SDP of the response.  Header values and
    the body may hold placeholders (``{call_id}``...), filled per request by the endpoint.
    ``faults`` is what is done wrong to this response on purpose (``faults``); ``media``
    what the call's media session does when this response answers it (``mediaplan``).
    """

    code: int
    at: float = 0.0
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    content_type: str | None = None
    sdp: str | None = None
    faults: Faults | None = None
    media: MediaMode | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """An ordered list of steps: provisionals, then at most one final, last."""

    steps: tuple[Step, ...]
    text: str = ""
    #: Dialled faults (``486*4``): what is done wrong on purpose to the whole plan.
    faults: Faults | None = None
    #: The media of a call answered by this plan (dialled ``*0N``, or the rule's).
    media: MediaMode | None = None

    @property
    def final(self) -> int | None:
        code = self.steps[-1].code
        return code if code >= 200 else None

    @property
    def rings(self) -> bool:
        """The plan ends in a provisional: the request stays pending (§13.3.1.1)."""
        return self.steps[-1].code < 200

    @property
    def immediate(self) -> bool:
        """Every step is due at once (a plain loop: this is asked for every request)."""
        for step in self.steps:  # noqa: SIM110
            if step.at != 0.0:
                return False
        return True

    @property
    def starts_with_100(self) -> bool:
        return self.steps[0].code == 100

    def __str__(self) -> str:
        return self.text or "-".join(str(s.code) for s in self.steps)


def validate(steps: tuple[Step, ...]) -> None:
    """Raise ``PlanError`` unless the steps are a plan the protocol allows."""
    if not steps:
        raise PlanError("a plan needs at least one response code")
    previous_at = 0.0
    for index, step in enumerate(steps):
        if not is_valid_code(step.code):
            raise PlanError(f"{step.code} is not a response code (100-699)")
        if step.code == 100 and index > 0:
            raise PlanError("100 Trying can only be the first response")
        if step.code >= 200 and index != len(steps) - 1:
            raise PlanError(f"nothing can follow the final response {step.code}")
        if step.at < previous_at:
            raise PlanError("steps must be in time order")
        previous_at = step.at
    if previous_at > MAX_PLAN_DELAY:
        raise PlanError(f"the plan waits longer than {MAX_PLAN_DELAY:g} s")


def parse_plan(text: str) -> Plan:
    """Read a dial-the-code plan; raise ``PlanError`` when it is not one.

    Tokens are separated by ``-``: a code (``486``), a run of digits whose length is a
    multiple of three, read three by three (``180486``, for phone keypads), or a delay
    before the next code (``2s``, ``1.5s``, ``1500ms``).
    """
    steps: list[Step] = []
    at = 0.0
    pending_delay = False
    for token in text.split("-"):
        if not token:
            raise PlanError("empty step")
        if token.isdigit() and token.isascii():
            if len(token) % 3:
                raise PlanError(f"{token!r}: codes are three digits each")
            for i in range(0, len(token), 3):
                steps.append(Step(int(token[i : i + 3]), at))
            pending_delay = False
            continue
        m = _DELAY_RE.fullmatch(token)
        if m is None:
            raise PlanError(f"{token!r} is neither a code nor a delay like 2s or 500ms")
        value = float(m.group(1))
        at += value / 1000.0 if m.group(2) == "ms" else value
        pending_delay = True
    if pending_delay:
        raise PlanError("a plan cannot end with a delay")
    result = tuple(steps)
    validate(result)
    return Plan(result, text)


@functools.lru_cache(maxsize=4096)
def dial_plan(user: str | None) -> Plan | None:
    """The plan a Request-URI user part asks for, or ``None`` when it asks for none.

    Plans are immutable, so the answer is cached: a load test dials the same few.
    """
    if not user or not user[0].isdigit():
        return None
    try:
        if "*" not in user:
            return parse_plan(user)
        text, *parts = user.split("*")
        plan = parse_plan(text)
        media = [p for p in parts if p.startswith("0")]
        faults = [p for p in parts if not p.startswith("0")]
        if len(media) > 1:
            return None
        return Plan(
            plan.steps,
            user,
            dialled_faults(faults) if faults else None,
            dialled_media(media[0][1:]) if media else None,
        )
    except (PlanError, FaultSpecError, ConfigError):
        return None


#: INVITE with no plan: ring, then answer with SDP.
DEFAULT_INVITE = Plan((Step(180), Step(200)), "default")
#: Any other method with no plan.
DEFAULT_OTHER = Plan((Step(200),), "default")


def default_plan(method: str) -> Plan:
    return DEFAULT_INVITE if method == "INVITE" else DEFAULT_OTHER
