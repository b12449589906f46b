"""The compiled core (mypyc, setup.py) is used only when it is current and not refused."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from required import missing_core

from sipresponder import native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
PROBE = (
    "import sipresponder.sip.parser as p; from sipresponder.native import build; "
    "print(p.__file__); print(build()); print(p._c_usual_headers is not None)"
)


def probe(**env: str) -> list[str]:
    """Which file the parser is imported from, build(), and whether the parser uses the C
    header scanner, in a fresh interpreter."""
    environ = {k: v for k, v in os.environ.items() if k != "SIPRESPONDER_PURE"} | env
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def checkout(tmp_path: Path, source_age: float, ext_age: float) -> Path:
    """A package dir with sip/parser.py and a (dummy) compiled parser of the given ages."""
    package = tmp_path / "sipresponder"
    (package / "sip").mkdir(parents=True)
    (tmp_path / "setup.py").write_text("")
    now = 1_700_000_000.0
    sip = package / "sip"
    for path, age in ((sip / "parser.py", source_age), (sip / f"parser{SUFFIX}", ext_age)):
        path.write_text("")
        os.utime(path, (now - age, now - age))
    return package


def test_a_compiled_module_older_than_its_source_is_stale(tmp_path: Path) -> None:
    package = checkout(tmp_path, source_age=10, ext_age=20)
    assert native.extensions(package) == {"sip.parser": package / "sip" / f"parser{SUFFIX}"}
    assert native.stale(package) == ["sip.parser"]


def test_a_current_compiled_module_is_not_stale(tmp_path: Path) -> None:
    assert native.stale(checkout(tmp_path, source_age=20, ext_age=10)) == []


def test_outside_a_checkout_nothing_is_stale(tmp_path: Path) -> None:
    # An installed wheel's files carry the times they were unpacked at, in any order.
    package = checkout(tmp_path, source_age=10, ext_age=20)
    (tmp_path / "setup.py").unlink()
    assert native.stale(package) == []


def test_a_c_module_older_than_its_source_is_stale(tmp_path: Path) -> None:
    package = checkout(tmp_path, source_age=20, ext_age=10)
    now = 1_700_000_000.0
    sip = package / "sip"
    (sip / "_c").mkdir()
    for path, age in ((sip / "_c" / "headers.c", 10), (sip / "_c" / f"headers{SUFFIX}", 20)):
        path.write_text("")
        os.utime(path, (now - age, now - age))
    assert set(native.extensions(package)) == {"sip.parser", "sip._c.headers"}
    assert native.stale(package) == ["sip._c.headers"]


def test_a_c_module_is_found_in_the_c_package_of_its_layer() -> None:
    for name in native.C_MODULES:
        package, folder, module = name.split(".")
        assert folder == "_c"
        source = native.path_of(name, ".c")
        assert source == native.PACKAGE_DIR / package / "_c" / f"{module}.c"
        assert source.is_file() and source.with_suffix(".pyi").is_file()


def test_the_pure_core_refuses_every_c_module() -> None:
    # Built or not, importing one fails while the sources run: twin() then returns None.
    code = (
        "import importlib, sipresponder.native as n\n"
        "for name in n.C_MODULES:\n"
        "    try:\n"
        "        importlib.import_module('sipresponder.' + name)\n"
        "    except ImportError as exc:\n"
        "        print('refused', name, 'pure-Python core runs' in str(exc))\n"
        "    else:\n"
        "        print('imported', name)\n"
    )
    environ = os.environ | {"SIPRESPONDER_PURE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"refused {name} True" for name in native.C_MODULES]


def test_pure_is_honoured() -> None:
    # The C header scanner too is left alone, built or not: its Python function runs.
    path, build, scan = probe(SIPRESPONDER_PURE="1")
    assert path.endswith("parser.py")
    assert build == "pure Python (SIPRESPONDER_PURE is set)"
    assert scan == "False"


def test_the_compiled_core_is_used_when_current() -> None:
    if not native.extensions():
        missing_core("the core is not compiled here")
    if native.stale():
        missing_core("the compiled core is stale: make rebuilds it")
    path, build, scan = probe()
    assert path.endswith(SUFFIX)
    assert build == "compiled with mypyc"
    assert scan == str("sip._c.headers" in native.extensions())


def test_pure_is_asked_for_by_any_value_but_empty_or_0() -> None:
    assert native.pure_requested({"SIPRESPONDER_PURE": "1"})
    assert native.pure_requested({"SIPRESPONDER_PURE": "yes"})
    assert not native.pure_requested({"SIPRESPONDER_PURE": "0"})
    assert not native.pure_requested({"SIPRESPONDER_PURE": ""})
    assert not native.pure_requested({})


def test_an_isolated_build_has_what_mypyc_needs() -> None:
    # pip builds a wheel in an environment of build-system.requires alone; mypyc there
    # type-checks what the core imports, and refuses (a pure-Python wheel) without the
    # stubs the dev venv's mypy uses.
    pyproject = tomllib.loads((Path(native.__file__).parents[1] / "pyproject.toml").read_text())
    build = pyproject["build-system"]["requires"]
    stubs = [
        d for d in pyproject["project"]["optional-dependencies"]["dev"] if d.startswith("types-")
    ]
    assert stubs and set(stubs) <= set(build)
    assert any(r.startswith("mypy") for r in build)
