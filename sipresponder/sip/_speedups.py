"""The C speedups, loaded in one place: which function written in C stands for which Python one.

What belongs here: ``TWINS``, the registry of every function of the C modules (``native``'s
``C_MODULES``) — its name, the module holding its Python definition and the C module that
defines it — and ``twin``, which loads one.  Nothing else imports a C module.

One naming rule for every pair: in its module, the Python definition is ``_py_<name>``
and the C function ``_c_<name>``, a module-level ``Final`` assigned from
``twin(__name__, "<name>")`` in the module's one block of them; callers call a dispatch
function (``<name>``, or the private name it had), which calls ``_c_<name>`` when it is
there and ``_py_<name>`` otherwise, or where the C function declines (returns None, for
input it leaves to Python).  The Python function stays the definition: the pure-Python core
runs it, and tests/unit/test_speedups.py compares the two on the same input, for every
entry here.

The C modules are built with the compiled core and used only with it: while the sources run,
``native`` makes their import fail and ``twin`` returns None.  ``twin`` runs when a module
is imported, never per message; the hot path calls ``_c_<name>`` itself.  Imports nothing of
the project (the C modules only by name, through importlib); no I/O.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

#: The package the dotted names below are under.
PACKAGE: Final = __name__.partition(".")[0]


@dataclass(frozen=True, slots=True)
class Twin:
    """A function written in C and the Python function it stands for."""

    #: The C function's name; the Python one is ``_py_<name>`` in ``module``.
    name: str
    #: The module (dotted, under the package) holding ``_py_<name>`` and ``_c_<name>``.
    module: str
    #: The C module (dotted, under the package; one of ``native.C_MODULES``) defining it.
    c_module: str


#: Every function of the C modules, by the module whose Python definition it stands for.
TWINS: Final = (
    Twin("decimal", "sip.message", "sip._c.headers"),
    Twin("via_params", "sip.message", "sip._c.headers"),
    Twin("usual_headers", "sip.parser", "sip._c.headers"),
    Twin("request_line", "sip.parser", "sip._c.headers"),
    Twin("party", "sip.parser", "sip._c.headers"),
    Twin("frame_head", "sip.framer", "sip._c.framer"),
    Twin("to_tag", "sip.responses", "sip._c.tag"),
    Twin("recv_batch", "aio.udp", "aio._c.udp"),
    Twin("send_to", "aio.udp", "aio._c.udp"),
    Twin("send_batch", "aio.udp", "aio._c.udp"),
    Twin("read_ready", "aio.rtp", "aio._c.rtp"),
)


def twin(module: str, name: str) -> Callable[..., Any] | None:
    """The C function ``name`` that stands for ``_py_<name>`` of ``module`` (the caller's
    ``__name__``), or None: its C module is not built, or the pure-Python core runs.
    A pair missing from ``TWINS`` is a ``LookupError``: every C function is registered."""
    here = module.removeprefix(f"{PACKAGE}.")
    for entry in TWINS:
        if entry.name == name and entry.module == here:
            try:
                c_module = importlib.import_module(f"{PACKAGE}.{entry.c_module}")
            except ImportError:
                return None
            function: Callable[..., Any] = getattr(c_module, name)
            return function
    raise LookupError(f"{module}: no C function {name!r} in TWINS (sip/_speedups.py)")
