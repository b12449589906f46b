"""Imports point one way, and nothing above the sans-IO line does I/O."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sipresponder"

#: Each module may import only modules listed before it.
ORDER = [
    "version",
    "errors",
    "codes",
    "_scan",  # C (_scan.c): the parser's loops, used by message and parser
    "message",
    "parser",
    "serializer",
    "sdp",
    "responses",
    "auth",
    "plans",
    "rules",
    "journal",
    "absorbers",
    "transaction",
    "wheel",
    "config",
    "guard",
    "planner",
    "endpoint",
    # ─── sans-IO line ───
    "native",
    "logs",
    "journal_file",
    "_udp",  # C (_udp.c): the UDP socket calls, used by transport
    "transport",
    "server",
    "metrics",
    "openapi",
    "admin",
    "api",
    "pytest_plugin",
    "workers",
    "cli",
    "__main__",
    "__init__",
]
SANS_IO = ORDER[: ORDER.index("endpoint") + 1]
IO_MODULES = {"asyncio", "socket", "time", "random", "os", "selectors", "threading"}


def imports(module: str) -> tuple[set[str], set[str]]:
    source = PACKAGE / f"{module}.py"
    if not source.exists():  # a module written in C: its stub says what it uses
        source = PACKAGE / f"{module}.pyi"
    tree = ast.parse(source.read_text())
    local: set[str] = set()
    stdlib: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.module:
                local.add(node.module.split(".")[0])
            elif node.level:  # from . import name
                local.update(alias.name for alias in node.names)
            else:
                stdlib.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Import):
            stdlib.update(alias.name.split(".")[0] for alias in node.names)
    return local, stdlib


def test_every_module_is_placed() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} <= set(ORDER)
    assert {p.stem for p in PACKAGE.glob("*.c")} <= set(ORDER)


def imports_of_existing(module: str) -> set[str]:
    return imports(module)[0] if (PACKAGE / f"{module}.py").exists() else set()


def test_imports_point_down_the_layers() -> None:
    for index, module in enumerate(ORDER):
        local = imports_of_existing(module)
        allowed = set(ORDER[:index])
        assert local <= allowed, f"{module} imports {sorted(local - allowed)} from below it"


def test_core_does_no_io() -> None:
    for module in SANS_IO:
        _, stdlib = imports(module)
        assert not stdlib & IO_MODULES, f"{module} imports {sorted(stdlib & IO_MODULES)}"
