"""The pytest plugin's former home, kept for ``-p sipresponder.pytest_plugin`` and
``pytest_plugins = ["sipresponder.pytest_plugin"]`` where entry points are not loaded
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD``): it moved to ``sipresponder.testing.pytest_plugin``,
which the ``pytest11`` entry point names (CHANGELOG.md)."""

from __future__ import annotations

from .testing.pytest_plugin import (
    ResponderFactory,
    pytest_addoption,
    pytest_runtest_makereport,
    sip_responder,
    sip_responder_factory,
    sip_responder_session,
)
from .testing.pytest_plugin import __getattr__ as __getattr__  # assert_call, on first use

__all__ = [
    "ResponderFactory",
    "pytest_addoption",
    "pytest_runtest_makereport",
    "sip_responder",
    "sip_responder_factory",
    "sip_responder_session",
]
