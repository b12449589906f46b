"""sipresponder: a stateless SIP responder and test endpoint (RFC 3261, UDP and TCP).

The public API: ``Config``, the sans-IO ``Endpoint`` and ``Server``, which runs it on
asyncio sockets; for tests, ``Responder`` (async), ``ThreadedResponder`` (sync) and
``assert_call``.  See README.md.

The names are imported on first use (PEP 562), so that importing the package — as pytest
does for the plugin in every run — costs nothing until something is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .native import choose as _choose_core
from .version import __version__

# The core may be compiled (mypyc, setup.py): use the sources instead when asked to
# (SIPRESPONDER_PURE=1) or when a compiled module is older than its source.
_choose_core()

if TYPE_CHECKING:
    from .aio.server import Server
    from .core.config import Config
    from .core.endpoint import Endpoint
    from .core.flow import Flow
    from .core.plans import Plan, Step, parse_plan
    from .errors import PlanError
    from .testing.assertions import assert_call, assert_no_violations
    from .testing.responder import Responder
    from .testing.threaded import ThreadedResponder

#: Public name -> the module that defines it.
_EXPORTS = {
    "Config": "core.config",
    "Endpoint": "core.endpoint",
    "Flow": "core.flow",
    "Plan": "core.plans",
    "PlanError": "errors",
    "Responder": "testing.responder",
    "Server": "aio.server",
    "Step": "core.plans",
    "ThreadedResponder": "testing.threaded",
    "assert_call": "testing.assertions",
    "assert_no_violations": "testing.assertions",
    "parse_plan": "core.plans",
}

__all__ = [
    "Config",
    "Endpoint",
    "Flow",
    "Plan",
    "PlanError",
    "Responder",
    "Server",
    "Step",
    "ThreadedResponder",
    "__version__",
    "assert_call",
    "assert_no_violations",
    "parse_plan",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
