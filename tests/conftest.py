"""Shared test set-up: CPU only, and a persistent compilation cache so repeated shapes compile once per suite."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Compile time dominates these tiny tests; the cache lives in the checkout (git-ignored) and survives across runs.
_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
