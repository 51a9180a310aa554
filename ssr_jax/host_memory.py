"""glibc's allocator set up so that XLA:CPU's large temporary buffers are reused between calls instead of being
mapped and faulted in afresh each time. The `ssr-jax` program applies it first thing (`ssr_jax.cli.main`); importing
the package does not, since the settings hold for the whole process: a library user opts in by calling
`reuse_freed_memory()` before running anything in JAX.

XLA:CPU takes each call's temporaries from malloc and frees them when the call ends (an evaluation of SSR-Net at
batch 500 holds hundreds of MB). glibc serves a block that large with a fresh `mmap` (always above 32 MiB; in a
worker thread's arena above its 64 MiB heap, whatever the settings) and unmaps it on free, so every call page-faults
all of it in again, a large part of an evaluation's time (benchmarks/README.md). With one arena, no `mmap` and a
high trim threshold, a freed block stays in the heap and the next call reuses it.

The cost: up to `TRIM_THRESHOLD` of freed memory stays with the process, and memory freed below the top of the heap
is reused but not returned to the system. Reuse is not guaranteed: a small allocation may take part of a freed block,
and the next large one then grows the heap (faulting in again). Only threads that have not allocated yet are moved
to the one arena, so it must run before XLA starts its threads. Malloc settings of the user's own (`MALLOC_*`
environment variables, `GLIBC_TUNABLES`) are left as they are.
"""
from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3) parameters
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
TRIM_THRESHOLD = 1 << 30  # freed memory at the top of the heap beyond this goes back to the system
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
USER_SETTINGS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                 "GLIBC_TUNABLES")


def reuse_freed_memory() -> bool:
    """Applies `SETTINGS` with glibc's `mallopt`; returns whether they were applied (not on other C libraries or
    systems, nor when the environment sets malloc options of its own)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: its C library's
    except (OSError, AttributeError):
        return False
    return all(mallopt(option, value) == 1 for option, value in SETTINGS)
