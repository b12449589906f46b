"""Builds sipresponder, with the protocol core compiled by mypyc when it can be.

Everything but the compiled extensions is declared in pyproject.toml.  The modules listed
in ``sipresponder/native.py`` (``COMPILED``: the sans-IO core on the per-message path) are
compiled by mypyc — mypy's compiler for type-annotated Python — into C extensions, one
shared library (``sipresponder/compiled__mypyc``) and a small module per source.  With
them, the modules written in C (``C_MODULES``, ``sipresponder/<package>/_c/<name>.c``) are
built.  The sources stay in the package: the same code runs as Python when

- ``SIPRESPONDER_PURE=1`` is set at build time (nothing is compiled) or at run time;
- mypyc is missing from the build environment (pyproject.toml asks for it);
- the C compiler or the Python headers are missing, or compiling fails: the build says so
  in one warning and installs the pure-Python package.

``make`` compiles in place (``setup.py build_ext --inplace``) and again whenever a source
is newer than its compiled module; the package itself refuses a stale compiled module
(``sipresponder/native.py``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def native() -> ModuleType:
    """``sipresponder/native.py``, loaded on its own (not through the package)."""
    spec = importlib.util.spec_from_file_location(
        "_sipresponder_native", HERE / "sipresponder" / "native.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def warn(message: str) -> None:
    print(f"sipresponder build: {message}; installing the pure-Python core", file=sys.stderr)


def compiled_extensions() -> list[Extension]:
    names = native()
    if names.pure_requested(os.environ):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        warn("mypyc is not installed")
        return []
    sources = [f"sipresponder/{name.replace('.', '/')}.py" for name in names.COMPILED]
    try:
        # The package's own files, relative to here (mypyc names modules by their paths).
        os.chdir(HERE)
        compiled = list(mypycify(sources, opt_level="3", group_name=f"sipresponder.{names.GROUP}"))
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error
        warn(f"mypyc failed ({exc})")
        return []
    # The modules written in C go with the compiled core, never without it.
    written = [
        Extension(
            f"sipresponder.{name}",
            [f"sipresponder/{name.replace('.', '/')}.c"],
            depends=headers_beside(name),
            extra_compile_args=["-O2"],
        )
        for name in names.C_MODULES
    ]
    return compiled + written


def headers_beside(name: str) -> list[str]:
    """The C headers in the folder of the C module ``name`` (``aio/_c/address.h``), which
    it may include: a change to one rebuilds it."""
    folder = HERE / "sipresponder" / name.rpartition(".")[0].replace(".", "/")
    return sorted(str(h.relative_to(HERE)) for h in folder.glob("*.h"))


class OptionalBuildExt(build_ext):
    """Compiling is an optimisation: when it fails (no C compiler, no Python headers), the
    pure-Python package is installed, with one warning instead of a failed install."""

    def run(self) -> None:
        super().run()
        if self.inplace or getattr(self, "editable_mode", False):
            # Copies keep the time of a build output that did not change; the package
            # judges a compiled module stale by its time, so mark them all as of now.
            for ext in self.extensions:
                path = HERE / self.get_ext_filename(self.get_ext_fullname(ext.name))
                if path.exists():
                    os.utime(path)

    def build_extensions(self) -> None:
        try:
            super().build_extensions()
        except Exception as exc:  # CompileError, LinkError, PlatformError...
            warn(f"compiling the core failed ({exc})")
            # No half-built core: a module without its shared library would not import.
            for ext in self.extensions:
                path = Path(self.get_ext_fullpath(ext.name))
                if path.exists():
                    path.unlink()
            self.extensions: list[Any] = []


setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": OptionalBuildExt})
