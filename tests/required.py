"""What a test needs that may be missing here: a binary, a client, the compiled core.

Where it is missing the test is skipped; under ``CI=true`` it fails instead, so that a
green CI means the tests ran.  ``make test`` installs everything these name.  The
compiled core is required only when ``SIPRESPONDER_PURE`` is not set: the pure-Python
run of the unit tests has none on purpose.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> NoReturn:
    """``what`` (a sentence: "sipp is not installed ...") is missing: skip, or fail in CI."""
    if in_ci():
        pytest.fail(f"{what} (required under CI=true)")
    pytest.skip(what)


def core_required() -> bool:
    """Whether a missing compiled core (or C module) is a failure here."""
    return in_ci() and not os.environ.get("SIPRESPONDER_PURE")


def missing_core(what: str) -> NoReturn:
    """The compiled core (or a C module) is missing or stale: a failure under CI=true
    unless the run asked for pure Python, else a skip."""
    if core_required():
        pytest.fail(f"{what} (required under CI=true without SIPRESPONDER_PURE)")
    pytest.skip(what)
