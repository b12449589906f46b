"""sipresponder: a stateless SIP responder and test endpoint (RFC 3261, UDP and TCP).

The public API: ``Config``, the sans-IO ``Endpoint`` and ``Server``, which runs it on
asyncio sockets.  See README.md.
"""

from .config import Config
from .endpoint import Endpoint, Flow
from .plans import Plan, PlanError, Step, parse_plan
from .server import Server
from .version import __version__

__all__ = [
    "Config",
    "Endpoint",
    "Flow",
    "Plan",
    "PlanError",
    "Server",
    "Step",
    "__version__",
    "parse_plan",
]
