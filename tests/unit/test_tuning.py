"""``aio.tuning``: the process-wide settings the command line makes once it serves.

Each case runs in a child interpreter: the allocator's settings are the whole process's,
and this one's stay as they were.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from sipresponder.aio import tuning

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None

# In the child: a 4 MiB block made, freed and made again, and where the second one lives.
# glibc's moving threshold rises to 4 MiB at the first free, so the second goes to the
# heap; with the threshold set, it is mapped on its own again (``hblkhd``: mapped bytes).
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from sipresponder.aio.tuning import tune_malloc

    class Info(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    tuned = tune_malloc() if sys.argv[1] == "tune" else False
    size = 4 << 20
    libc.free(libc.malloc(size))
    block = libc.malloc(size)
    mapped = libc.mallinfo2().hblkhd >= size
    libc.free(block)
    print(tuned, mapped)
    """
)


def _probe(mode: str, env: dict[str, str] | None = None) -> list[str]:
    child_env = {k: v for k, v in os.environ.items() if k != tuning.MMAP_THRESHOLD_ENV}
    child_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_large_blocks_stay_mapped_on_their_own() -> None:
    assert _probe("tune") == ["True", "True"]


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_without_it_glibc_moves_large_blocks_into_the_heap() -> None:
    # What the tuning is for: the default threshold follows the block freed.
    assert _probe("leave") == ["False", "False"]


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_the_users_own_threshold_wins() -> None:
    # MALLOC_MMAP_THRESHOLD_ set: glibc fixed it at start (here 64 KiB), and it stays.
    assert _probe("tune", {tuning.MMAP_THRESHOLD_ENV: "65536"}) == ["False", "True"]


def test_gc_tuning_freezes_and_raises_the_threshold() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gc; from sipresponder.aio.tuning import tune_gc; tune_gc(); "
            "print(gc.get_threshold()[0], gc.get_freeze_count() > 0)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == [str(tuning.GC_THRESHOLD), "True"]
