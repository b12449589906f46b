"""Shared by every test: the session header says which core the tests run against."""

from __future__ import annotations


def pytest_report_header() -> str:
    import sipresponder.core.endpoint  # noqa: F401  (imports the core, compiled or not)
    from sipresponder.native import build

    return f"sipresponder core: {build()}"
