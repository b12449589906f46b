"""Every function written in C has a Python twin and is compared with it: the registry of
``sip/_speedups.py`` (``TWINS``) is walked, so that a new C function cannot go untested.

- every public function of every built C module is in ``TWINS``, and every entry is a
  function of its C module;
- every entry has its ``_py_<name>`` and ``_c_<name>`` in its module, and a comparison in
  ``COMPARISONS`` (below): a function given the Python function and the C one, which feeds
  both the same input (a hypothesis property, or real sockets) and compares the results;
- each comparison runs against the C function loaded from its built file, in the
  pure-Python test run too (where the package itself ignores it); skipped (a failure under
  CI=true without SIPRESPONDER_PURE) where it was not built.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from typing import Any

import pytest
import test_speedups_rtp as rtp_twins
import test_speedups_sip as sip_twins
import test_speedups_udp as udp_twins
from helpers import load_c_module
from required import missing_core

from sipresponder import native
from sipresponder.sip._speedups import TWINS, Twin, twin

#: The comparison of each C function with its Python twin, by name: called with the
#: Python function and the C one.
COMPARISONS: dict[str, Callable[[Callable[..., Any], Callable[..., Any]], None]] = {
    "decimal": sip_twins.compare_decimal,
    "via_params": sip_twins.compare_via_params,
    "usual_headers": sip_twins.compare_usual_headers,
    "request_line": sip_twins.compare_request_line,
    "party": sip_twins.compare_party,
    "frame_head": sip_twins.compare_frame_head,
    "to_tag": sip_twins.compare_to_tag,
    "recv_batch": udp_twins.compare_recv_batch,
    "send_to": udp_twins.compare_send_to,
    "send_batch": udp_twins.compare_send_batch,
    "read_ready": rtp_twins.compare_read_ready,
}


def module_of(entry: Twin) -> types.ModuleType:
    return importlib.import_module(f"sipresponder.{entry.module}")


def built(c_module: str) -> types.ModuleType:
    module = load_c_module(c_module)
    if module is None:
        missing_core(f"the C module {c_module} is not built here")
    return module


@pytest.mark.parametrize("c_module", native.C_MODULES)
def test_every_function_of_a_c_module_is_a_twin(c_module: str) -> None:
    module = built(c_module)
    public = {
        name
        for name, value in vars(module).items()
        if isinstance(value, types.BuiltinFunctionType) and not name.startswith("_")
    }
    assert public == {t.name for t in TWINS if t.c_module == c_module}


def test_the_twins_are_those_of_the_c_modules_built() -> None:
    assert {t.c_module for t in TWINS} == set(native.C_MODULES)
    assert len({(t.module, t.name) for t in TWINS}) == len(TWINS)


@pytest.mark.parametrize("entry", TWINS, ids=lambda t: t.name)
def test_every_twin_has_its_python_definition_and_a_comparison(entry: Twin) -> None:
    module = module_of(entry)
    assert callable(getattr(module, f"_py_{entry.name}", None)), f"no _py_{entry.name}"
    assert hasattr(module, f"_c_{entry.name}"), f"no _c_{entry.name} in {entry.module}"
    assert entry.name in COMPARISONS, f"no comparison registered for {entry.name}"


def test_every_comparison_is_of_a_twin() -> None:
    assert set(COMPARISONS) == {t.name for t in TWINS}


@pytest.mark.parametrize("entry", TWINS, ids=lambda t: t.name)
def test_the_c_function_does_what_its_python_twin_does(entry: Twin) -> None:
    c_function = getattr(built(entry.c_module), entry.name)
    COMPARISONS[entry.name](getattr(module_of(entry), f"_py_{entry.name}"), c_function)


@pytest.mark.parametrize("entry", TWINS, ids=lambda t: t.name)
def test_the_c_twin_is_used_only_with_the_compiled_core(entry: Twin) -> None:
    """``_c_<name>`` is the C function when the compiled core runs with its C module
    built, else None: the pure-Python core runs the Python function."""
    used = getattr(module_of(entry), f"_c_{entry.name}")
    expected = not native.reason and entry.c_module in native.extensions()
    assert (used is not None) == expected
    if used is not None:
        assert used.__name__ == entry.name


def test_a_pair_not_in_the_registry_is_refused() -> None:
    with pytest.raises(LookupError, match="TWINS"):
        twin("sipresponder.sip.message", "no_such_function")
    with pytest.raises(LookupError):
        twin("sipresponder.sip.parser", "decimal")  # registered for message, not parser
