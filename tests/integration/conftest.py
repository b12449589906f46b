"""Fixtures of the integration tests: real responder processes on loopback.

``responder`` is one process per test module (started with the default flags);
``start_responder_with(*args)`` starts one for a single test, with extra flags such as
``--max-ring 1``.  At teardown each process gets SIGTERM at its own PID and must exit
with code 0 within a few seconds (it is killed otherwise, and the test errors).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from required import missing
from sipprocs import SIPP, Responder, StartResponder, start_responder


def stop_and_check(responder: Responder) -> None:
    if responder.stopped:
        return
    code = responder.stop()
    assert code == 0, (
        f"responder exited with {code} after SIGTERM; stderr:\n{responder.log()[-4000:]}"
    )
    log = responder.log()
    assert "Traceback" not in log, f"the responder logged an exception:\n{log[-4000:]}"


@pytest.fixture(scope="module")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Responder]:
    """A responder with the default flags, shared by the tests of one module."""
    workdir = tmp_path_factory.mktemp("responder")
    server = start_responder(workdir)
    try:
        yield server
    finally:
        stop_and_check(server)


@pytest.fixture
def start_responder_with(tmp_path: Path) -> Iterator[StartResponder]:
    """A factory: ``start_responder_with("--max-ring", "1")`` -> a running ``Responder``.

    Every responder it started is stopped (SIGTERM, exit code 0) at teardown.
    """
    started: list[Responder] = []

    def start(*args: str, host: str = "127.0.0.1") -> Responder:
        server = start_responder(tmp_path, *args, host=host, name=f"responder{len(started)}")
        started.append(server)
        return server

    try:
        yield start
    finally:
        errors = []
        for server in started:
            try:
                stop_and_check(server)
            except AssertionError as exc:
                errors.append(str(exc))
        assert not errors, "\n".join(errors)


@pytest.fixture(scope="session")
def sipp_binary() -> str:
    if shutil.which(SIPP) is None:
        missing(f"{SIPP} is not installed (Debian package sip-tester; make test installs it)")
    return SIPP
