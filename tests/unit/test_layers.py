"""Imports point one way, and nothing above the sans-IO line does I/O.

Every file of the package, ``.py`` and ``.c``, in every folder, has a place in ``ORDER``;
a module may import only what is placed before it.  The packages are the layers:
``sip`` (the protocol) imports nothing of the project but ``errors`` and ``version``;
``core`` (the sans-IO responder) imports ``sip``; ``aio`` (the asyncio glue) imports
``core`` and ``sip``; ``admin`` and ``testing`` what is below them; the top-level entry
points (the CLI, the package's ``__init__``, the former homes kept as shims) anything.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sipresponder"

#: Each module may import only modules listed before it.
ORDER = [
    # ─── the base: every layer may use these ───
    "version",
    "errors",
    # ─── sip: the protocol, pure and stateless ───
    "sip",
    "sip._c",  # the C modules (imported only by _speedups)
    "sip._c.headers",  # C: the header scanner and readers, for message and parser
    "sip._c.framer",  # C: the TCP framer's head scan, for framer
    "sip._c.tag",  # C: the To tag's keyed hash, for responses
    "sip._speedups",  # the one loader of the C modules (by name: importlib)
    "sip.codes",
    "sip.grammar",
    "sip.uri",
    "sip.message",
    "sip.parser",
    "sip.framer",
    "sip.serializer",
    "sip.sdp",
    "sip.responses",
    "sip.digest",
    # ─── core: the sans-IO responder ───
    "core",
    "core.codecs",
    "core.audio",
    "core.mediaplan",
    "core.rtp",
    "core.rtcp",
    "core.rtpstats",
    "core.auth",
    "core.hangup",
    "core.faults",
    "core.shaping",
    "core.scenarios",
    "core.plans",
    "core.rules",
    "core.plans_loader",
    "core.calls",
    "core.journal",
    "core.capture",
    "core.replay",
    "core.absorbers",
    "core.transaction",
    "core.wheel",
    "core.config",
    "core.rules_loader",
    "core.table",
    "core.guard",
    "core.flow",
    "core.planner",
    "core.recorder",
    "core.verdicts",
    "core.faulting",
    "core.media",
    "core.mediatable",
    "core.mediahand",
    "core.endpoint",
    # ─── sans-IO line: above it, no I/O ───
    # ─── aio: the asyncio glue ───
    "aio",
    "aio._c",  # the C modules (imported only by sip._speedups)
    "aio._c.udp",  # C: the UDP socket calls, for udp
    "aio._c.rtp",  # C: the media sockets' read, for rtp
    "aio.logs",
    "aio.journal_file",
    "aio.transport",
    "aio.wire",
    "aio.rtp",
    "aio.udp",
    "aio.tls",
    "aio.ws",
    "aio.server",
    "aio.workers",
    "aio.tuning",
    # ─── admin: the HTTP API ───
    "admin",
    "admin.metrics",
    "admin.openapi",
    "admin.web",
    "admin.app",
    # ─── testing: the Python API for tests and the pytest plugin ───
    "testing",
    "testing.assertions",
    "testing.responder",
    "testing.threaded",
    "testing.pytest_plugin",
    # ─── the entry points, and the former homes of the test API ───
    "native",
    "api",
    "pytest_plugin",
    "cli_transports",
    "cli",
    "__main__",
    "__init__",
]
LAYERS = ("sip", "core", "aio", "admin", "testing")
BASE = ("version", "errors")
SANS_IO = [m for m in ORDER if m in BASE or m.split(".")[0] in ("sip", "core")]
IO_MODULES = {"asyncio", "socket", "time", "random", "os", "selectors", "threading"}
#: What the glue takes from the protocol package: the framer cuts a TCP stream into
#: messages, ``hostport`` writes an address; the parsing is the core's (``Endpoint``).
GLUE_USES_OF_SIP = {
    "sip.framer": {"PING", "Ping", "StreamFramer"},
    "sip.uri": {"hostport"},
    "sip.responses": {"KNOWN_METHODS"},
    "sip._speedups": {"twin"},  # the C socket calls (udp_calls, read_ready)
}


def name_of(path: Path) -> str:
    """A file's place: its dotted path under the package (a package is its folder)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".c"))


def placed(target: str) -> str:
    """The entry of ``ORDER`` a dotted import target falls in (the longest prefix)."""
    parts = target.split(".")
    while parts:
        if ".".join(parts) in ORDER:
            return ".".join(parts)
        parts.pop()
    raise AssertionError(f"import of {target!r}: no place in ORDER")


def imports(module: str) -> tuple[dict[str, set[str]], set[str]]:
    """What ``module`` imports: of the project, place -> names; and of the outside."""
    path = PACKAGE.joinpath(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not source.exists():  # a module written in C: its stub says what it uses
        source = path.with_suffix(".pyi")
    tree = ast.parse(source.read_text())
    here = module.split(".") if path.is_dir() else module.split(".")[:-1]
    local: dict[str, set[str]] = {}
    outside: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                names = [a.name for a in node.names]
                if node.module:
                    target = placed(".".join([*base, node.module]))
                    local.setdefault(target, set()).update(names)
                else:  # from . import name
                    for name in names:
                        local.setdefault(placed(".".join([*base, name])), set())
            elif (node.module or "").split(".")[0] == "sipresponder":
                raise AssertionError(f"{module}: absolute import of {node.module}")
            else:
                outside.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Import):
            outside.update(alias.name.split(".")[0] for alias in node.names)
    return local, outside


def c_imports(path: Path) -> set[str]:
    """What a C file imports of the outside: its ``PyImport_ImportModule`` calls."""
    text = path.read_text()
    return set(re.findall(r'PyImport_ImportModule\("([^"]+)"\)', text))


def test_every_file_is_placed() -> None:
    unplaced = [str(p.relative_to(PACKAGE)) for p in files() if name_of(p) not in ORDER]
    assert not unplaced, f"files with no place in ORDER: {unplaced}"


def test_every_place_is_a_file() -> None:
    names = {name_of(p) for p in files()}
    assert set(ORDER) <= names, f"ORDER names missing files: {sorted(set(ORDER) - names)}"


def test_imports_point_down_the_layers() -> None:
    for index, module in enumerate(ORDER):
        if PACKAGE.joinpath(*module.split(".")).with_suffix(".c").exists():
            continue
        local = set(imports(module)[0]) - {module}
        allowed = set(ORDER[:index])
        assert local <= allowed, f"{module} imports {sorted(local - allowed)} from above it"


def test_the_protocol_imports_only_the_base() -> None:
    for module in ORDER:
        if module.split(".")[0] == "sip":
            local = set(imports(module)[0])
            other = {m for m in local if m not in BASE and m.split(".")[0] != "sip"}
            assert not other, f"{module} imports {sorted(other)}"


def test_core_does_no_io() -> None:
    for module in SANS_IO:
        if PACKAGE.joinpath(*module.split(".")).with_suffix(".c").exists():
            continue
        _, outside = imports(module)
        assert not outside & IO_MODULES, f"{module} imports {sorted(outside & IO_MODULES)}"


def test_c_files_import_nothing_of_the_project() -> None:
    for path in files():
        if path.suffix == ".c":
            assert not {m for m in c_imports(path) if m.startswith("sipresponder")}, path


def test_only_the_loader_loads_c_modules() -> None:
    """The C modules are loaded by ``sip._speedups`` alone, by name (``twin``): no module
    imports one, nor the ``_c`` package that holds it."""
    for module in ORDER:
        if PACKAGE.joinpath(*module.split(".")).with_suffix(".c").exists():
            continue
        c_imports = [m for m in imports(module)[0] if "_c" in m.split(".")]
        assert not c_imports, f"{module} imports {c_imports}: load it with sip._speedups.twin"


def test_the_glue_asks_the_core_and_does_not_parse() -> None:
    for module in ORDER:
        if module.split(".")[0] != "aio":
            continue
        for target, names in imports(module)[0].items():
            if target.split(".")[0] == "sip":
                extra = names - GLUE_USES_OF_SIP.get(target, set())
                assert not extra, f"{module} takes {sorted(extra)} from {target}"


def test_the_walk_resolves_relative_imports() -> None:
    """The walk resolves relative imports the way Python does: a ``from ..aio`` in the
    core is placed in ``aio``, above it."""
    local, _ = imports("core.endpoint")
    assert "sip.parser" in local and "core.transaction" in local
    assert placed("aio.transport.x") == "aio.transport"
