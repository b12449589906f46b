"""Which build of the protocol core runs: compiled by mypyc, or the pure-Python sources.

``setup.py`` compiles the modules of the per-message path (``COMPILED``) with mypyc —
mypy's compiler for type-annotated Python — into C extensions beside their sources, when
mypyc and a C compiler are there (``make`` does it; about 40 % fewer instructions per call,
``make bench-instructions``).  It is the same source either way, so behaviour is the same.

Python imports an extension before a ``.py`` of the same name, which would let a compiled
module shadow a source edited since.  So the package checks at import
(``sipresponder/__init__.py``) and imports the sources instead of every extension when

- ``SIPRESPONDER_PURE=1`` is set: the pure-Python test run, profilers that should see
  Python frames (py-spy), debugging;
- in a source checkout, any compiled module is older than its source (``stale``): run
  ``make`` to rebuild.

Beside the compiled modules, ``setup.py`` builds the modules written in C
(``C_MODULES``, in the ``_c`` folder of their package): each function in them does one loop
of a compiled module in C, is loaded only by ``sip/_speedups.py`` and is used only with the
compiled core (the sources ignore it), so the Python function it stands for runs in the
pure-Python core and stays the definition.

``build()`` says which it is, for the CLI's start-up line and the test report.
Standard library only, and no I/O beyond a few ``stat`` calls at import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = __name__.rpartition(".")[0]

#: The modules mypyc compiles: the sans-IO core on the per-message path, the transport
#: adapters that call it, and ``logs``, whose ``TransactionLog`` counts every transaction
#: (0.28 µs compiled, 1.1 µs not).  Not ``auth`` (nor the ``digest`` it uses), ``rules``
#: or ``config``: off the hot path, and their validation of API arguments reads better as
#: Python's ValueError than as a compiled module's TypeError.
COMPILED = (
    "errors",
    "sip.codes",
    "sip.grammar",
    "sip.uri",
    "sip.message",
    "sip.parser",
    "sip.framer",
    "sip.serializer",
    "sip.sdp",
    "sip.responses",
    "core.rtp",
    "core.rtcp",
    "core.rtpstats",
    "core.hangup",
    "core.plans",
    "core.calls",
    "core.journal",
    "core.absorbers",
    "core.transaction",
    "core.wheel",
    "core.table",
    "core.guard",
    "core.flow",
    "core.planner",
    "core.recorder",
    "core.verdicts",
    "core.faulting",
    "core.media",
    "core.endpoint",
    "aio.logs",
    "aio.transport",
    "aio.udp",
    "aio.rtp",
)
#: The shared library mypyc puts the compiled modules' code in (``setup.py``'s group).
GROUP = "compiled"
#: Modules written in C (dotted: ``sip._c.headers`` is ``sipresponder/sip/_c/headers.c``),
#: built with the compiled core and used with it: each function does one loop of a compiled
#: module faster, whose Python function stays the definition (``sip/_speedups.py``'s
#: ``TWINS`` pairs them).  When the sources run, importing one fails (``_SourcesFirst``),
#: so the Python function runs too.
C_MODULES = ("sip._c.headers", "sip._c.framer", "sip._c.tag", "aio._c.udp", "aio._c.rtp")

#: Why the sources run instead of the extensions, when they do ("" when they don't).
reason = ""


def path_of(name: str, suffix: str, package_dir: Path = PACKAGE_DIR) -> Path:
    """The file of module ``name`` (dotted, under the package) with ``suffix``."""
    return package_dir.joinpath(*name.split(".")).with_name(name.rpartition(".")[2] + suffix)


def extensions(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """The compiled modules present beside their sources, by module name."""
    found: dict[str, Path] = {}
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for name in (*COMPILED, *C_MODULES):
            path = path_of(name, suffix, package_dir)
            if name not in found and path.is_file():
                found[name] = path
    return found


def stale(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Compiled modules older than their source (edited since the last build).

    Only in a source checkout (``setup.py`` beside the package), where ``make`` builds in
    place: an installed wheel's files carry the times they were unpacked at."""
    if not (package_dir.parent / "setup.py").is_file():
        return []
    out = []
    for name, ext in extensions(package_dir).items():
        source = path_of(name, ".c" if name in C_MODULES else ".py", package_dir)
        if source.is_file() and source.stat().st_mtime > ext.stat().st_mtime:
            out.append(name)
    return out


class _NotWithSources(importlib.abc.Loader):
    """The loader of a C module while the sources run: its import fails."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        raise ImportError(f"{spec.name}: the pure-Python core runs ({reason})", name=spec.name)

    def exec_module(self, module: ModuleType) -> None:  # never reached
        raise ImportError(module.__name__)


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds the package's modules as their ``.py`` files, ignoring extensions, and makes
    the import of a C module (``C_MODULES``) fail."""

    def __init__(self, package: str, package_dir: Path) -> None:
        self.prefix = package + "."
        self.package_dir = package_dir

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(self.prefix):
            return None
        name = fullname[len(self.prefix) :]
        if name in C_MODULES:
            return importlib.machinery.ModuleSpec(fullname, _NotWithSources())
        source = path_of(name, ".py", self.package_dir)
        if not source.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def pure_requested(environ: Mapping[str, str]) -> bool:
    """Whether ``SIPRESPONDER_PURE`` asks for the pure-Python core (set, and not "0");
    read here at run time and by ``setup.py`` at build time."""
    return environ.get("SIPRESPONDER_PURE", "") not in ("", "0")


def choose(environ: Mapping[str, str] | None = None) -> str:
    """Called once by the package's ``__init__``: import the sources instead of the
    extensions when asked to or when an extension is stale.  Returns the reason ("" when
    the extensions, if any, are used)."""
    global reason
    environ = os.environ if environ is None else environ
    if pure_requested(environ):
        reason = "SIPRESPONDER_PURE is set"
    elif names := stale():
        reason = f"compiled modules older than their sources ({', '.join(names)}): run make"
    if reason and not any(isinstance(f, _SourcesFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst(PACKAGE, PACKAGE_DIR))
    return reason


def build() -> str:
    """One line: which core this process runs (after the core has been imported)."""
    loaded = [
        name
        for name in COMPILED
        if (module := sys.modules.get(f"{PACKAGE}.{name}")) is not None
        and not str(getattr(module, "__file__", "")).endswith(".py")
    ]
    if loaded:
        return "compiled with mypyc"
    if reason:
        return f"pure Python ({reason})"
    if not extensions():
        return "pure Python (not compiled: make builds it with mypyc and a C compiler)"
    return "pure Python"
