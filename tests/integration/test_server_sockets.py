"""--socket-buffer: what the server asks the kernel for, and what it says it got."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from sipresponder.aio import server


def _may_force() -> bool:
    """Whether this process may set buffers past net.core.rmem_max (CAP_NET_ADMIN)."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is None:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, 1 << 16)
        except OSError:
            return False
    return True


def test_the_granted_size_is_what_the_kernel_reports_halved() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        assert server._buffer_size(sock, socket.SO_RCVBUF) == 1 << 16


def test_a_size_over_rmem_max_is_forced_when_allowed_else_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rmem_max = Path("/proc/sys/net/core/rmem_max")
    if not rmem_max.is_file():
        pytest.skip("not Linux")
    # Between rmem_max and twice it: the kernel's doubled report alone would pass it.
    size = int(rmem_max.read_text()) + (1 << 16)
    caplog.set_level(logging.INFO, logger="sipresponder.aio.server")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        server._size_buffers(sock, size)
        got = server._buffer_size(sock, socket.SO_RCVBUF)
    if _may_force():
        assert got >= size
    else:
        assert got < size
        assert f"the kernel granted {got} bytes (raise net.core.rmem_max)" in caplog.text
