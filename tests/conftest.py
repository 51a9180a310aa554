"""Shared test set-up: CPU only, and a persistent compilation cache so repeated shapes compile once per suite."""
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from configs import ssrnet  # noqa: E402
from ssr_jax import saved_model  # noqa: E402
from ssr_jax.models import abstract_variables  # noqa: E402

# Compile time dominates these tiny tests; the cache lives in the checkout (git-ignored) and survives across runs.
_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory):
    """(directory, config, variables) of a random SSR-Net (2,2) saved as a model directory."""
    config = ssrnet.get_config("smoke")
    config.model.stages = (2, 2)
    config.model.conv = "xla"  # same parameters; compiles faster than "patches" for a few small batches
    rng = np.random.default_rng(3)
    # Drawn with NumPy from the abstract shapes (`init` would compile ~130 small programs on a cold cache):
    # kernels N(0, 1/fan_in), BN scale 1, other vectors small; bn1's moving variance brings raw 0–255 input to O(1).
    shapes = abstract_variables(config.model, 64)

    def param(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return rng.standard_normal(leaf.shape, np.float32) / np.sqrt(np.prod(leaf.shape[:-1]))
        return np.ones(leaf.shape, np.float32) if name == "scale" else 0.1 * rng.standard_normal(leaf.shape, np.float32)

    def statistic(path, leaf):
        variance = 1e4 if path[1].key == "bn1" else 1.0
        return np.full(leaf.shape, variance if path[-1].key == "var" else 0.0, np.float32)

    variables = {"params": jax.tree_util.tree_map_with_path(param, shapes["params"]),
                 "batch_stats": jax.tree_util.tree_map_with_path(statistic, shapes["batch_stats"])}
    directory = saved_model.save(tmp_path_factory.mktemp("random") / "model", config, variables)
    return directory, config, variables


REPO = pathlib.Path(__file__).resolve().parent.parent


def run_cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    """`ssr-jax ARGS…` in a subprocess from the repository root; with `check`, a non-zero exit fails the test."""
    result = subprocess.run([sys.executable, "-m", "ssr_jax", *map(str, args)], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"ssr-jax {args} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result
