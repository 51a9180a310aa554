"""Waiting for a shared machine to quieten before a measurement (the benchmark scripts here; not part of ssr_jax)."""
from __future__ import annotations

import time

from ssr_jax.bench import host_busy_fraction


def wait_for_quiet(max_wait_s: float, *, threshold: float = 0.15, window_s: float = 2.0) -> float | None:
    """Waits (up to `max_wait_s`) until the CPUs have been less than `threshold` busy for `window_s`; returns the
    last busy fraction seen. For comparisons on a machine shared with other jobs."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = host_busy_fraction(window_s)
        if busy is None or busy < threshold or time.monotonic() >= deadline:
            return busy
        time.sleep(1.0)
