"""What the command line sets for the whole process once it is ready to serve.

What belongs here: the cyclic garbage collector's settings (``tune_gc``) and glibc's
allocator's (``tune_malloc``), called by ``cli`` in each serving process (every worker
too).  Never by the test API: a process that embeds the responder keeps its own.  No SIP
here; imports only the standard library.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
from typing import Final

log = logging.getLogger(__name__)

#: Allocations between two collections of the youngest generation (CPython's default: 700).
GC_THRESHOLD: Final = 20_000
#: glibc's ``mallopt`` parameter for the size from which a block is mapped on its own
#: (``M_MMAP_THRESHOLD`` in malloc.h).
M_MMAP_THRESHOLD: Final = -3
#: Blocks of this size and more are mapped on their own, and unmapped when freed.
MMAP_THRESHOLD: Final = 1 << 20
#: The environment variable with which a user sets the threshold: theirs wins.
MMAP_THRESHOLD_ENV: Final = "MALLOC_MMAP_THRESHOLD_"


def tune_gc() -> None:
    """Ready to serve: what start-up made (modules, the admin app) leaves the cyclic
    collector's view, and its youngest generation is collected less often.

    Per message the responder makes objects that reference counting frees (no cycles):
    the collector's frequent passes over the young ones — and the periodic full passes
    over everything, start-up included — are pure cost on the hot path.  Cyclic garbage
    still goes, a little later.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def tune_malloc() -> bool:
    """Keep large blocks out of glibc's heap: every block of ``MMAP_THRESHOLD`` bytes or
    more is mapped on its own and given back when freed.  True when set.

    glibc's default threshold moves: each time a mapped block is freed, it rises to that
    block's size (up to 32 MiB).  The responder's large blocks are few and come and go
    for as long as it runs — the absorber tables' dict (about 10 MiB with 131,072 keys)
    is made anew every few seconds as keys come and go, their queues (1–2 MiB) grow and
    shrink — so after the first free they land in the heap, where the holes they leave
    keep the resident size at its high-water mark: under a steady load it rose by steps
    of 10 MiB, one at about 30 s (``docs/benchmarks.md``, "Sustained load").  Mapped on
    their own, they cost a map, an unmap and their page faults: a few times a second at
    most.  Linux with glibc only; a ``MALLOC_MMAP_THRESHOLD_`` in the environment (the
    user's own choice) is left alone.
    """
    if not sys.platform.startswith("linux") or MMAP_THRESHOLD_ENV in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc's, if glibc
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        log.info("mallopt refused the mmap threshold: the allocator's defaults stay")
        return False
    return True
