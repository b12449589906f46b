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
    from .api import Responder, ThreadedResponder, assert_call, assert_no_violations
    from .config import Config
    from .endpoint import Endpoint, Flow
    from .errors import PlanError
    from .plans import Plan, Step, parse_plan
    from .server import Server

#: Public name -> the module that defines it.
_EXPORTS = {
    "Config": "config",
    "Endpoint": "endpoint",
    "Flow": "endpoint",
    "Plan": "plans",
    "PlanError": "errors",
    "Responder": "api",
    "Server": "server",
    "Step": "plans",
    "ThreadedResponder": "api",
    "assert_call": "api",
    "assert_no_violations": "api",
    "parse_plan": "plans",
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
