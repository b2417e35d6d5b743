"""How a terracube process asks glibc for memory: one allocator arena for all its threads.

Set first thing in `main` (before any thread exists: glibc fixes the number of arenas the
first time a second thread allocates, so a later `mallopt` changes nothing).

glibc gives every thread but the first arenas made of 64 MB heaps, which it maps and unmaps
whole as the compute threads' 8-32 MB blocks come and go (the trim and mmap thresholds do not
apply to them): the threads page-fault through every block again. W1 large (72 COGs, 2
threads, quiet machine) in one process, second and third requests: 0.9-1.7 system CPU-s and
230-440 k minor faults per request with an arena per thread, 0.5-0.6 s and 90-200 k with
one; user time the same (two threads take the arena's lock a few times per block). The
environment wins: `MALLOC_ARENA_MAX` set means glibc read it at start already.
"""

from __future__ import annotations

import os

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def limit_arenas() -> bool:
    """One malloc arena for the process unless MALLOC_ARENA_MAX says otherwise; False where
    the C library is not glibc (nothing to set) or the environment decides."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return False
    return bool(mallopt(_M_ARENA_MAX, 1))
