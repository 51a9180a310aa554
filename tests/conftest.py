"""Shared test set-up: CPU only, and a persistent compilation cache so repeated shapes compile once per suite."""
import os
import pathlib
import subprocess
import sys

# Compile time dominates these tiny tests; the cache lives in the checkout (git-ignored) and survives across runs.
# Set in the environment so that the CLI subprocesses the tests start share it.
_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from configs import ssrnet  # noqa: E402
from ssr_jax import saved_model  # noqa: E402
from ssr_jax.models import abstract_variables, onednn  # noqa: E402



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
# The released Keras weights and their golden outputs (../shared/reference beside the checkout, as CI lays it out).
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def released_morph2(tmp_path_factory):
    """(model directory converted from the released morph2 .h5, its golden-outputs directory); skipped where the
    reference files are not there."""
    from ssr_jax import keras_import

    h5 = REFERENCE / "pretrained" / "morph2" / "ssrnet_3_3_3_64_1.0_1.0.h5"
    if not h5.is_file():
        pytest.skip(f"reference weights not available under {REFERENCE}")
    directory = keras_import.convert_keras(h5, tmp_path_factory.mktemp("released") / "morph2", ssrnet.get_config())
    return directory, REFERENCE / "golden" / "morph2"

# The modules in order of their measured duration, the longest first (`pytest --durations`; benchmarks/README.md, "The
# test suite"): the two xdist workers of `make test` (--dist loadscope --no-loadscope-reorder: one module per worker at a
# time, in this order) take the next module as they run low, so the longest start first and the short ones fill the
# end, and both workers finish within seconds of each other. (In xdist's own order, by number of tests, a long module
# can start last and keep one worker busy while the other idles.) Unlisted modules take seconds; they run last.
SLOWEST_FIRST = ("test_sweep.py", "test_train.py", "test_parallel.py", "test_models.py", "test_failures.py",
                 "test_heads.py", "test_baselines.py", "test_bench.py", "test_cli_models.py", "test_export.py",
                 "test_folds.py", "test_data_cli.py", "test_augment.py", "test_onednn.py")


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order


def run_cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    """`ssr-jax ARGS…` in a subprocess from the repository root; with `check`, a non-zero exit fails the test."""
    result = subprocess.run([sys.executable, "-m", "ssr_jax", *map(str, args)], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"ssr-jax {args} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


# The oneDNN extension exists only on x86-64 Linux with the pinned wheels and a C++ compiler (or a library built
# before): elsewhere the tests that need it are skipped with the reason; where it can exist, a failed build fails.
ONEDNN_MISSING = onednn.cannot_exist()
NEEDS_ONEDNN = pytest.mark.skipif(ONEDNN_MISSING is not None, reason=f"no oneDNN extension here: {ONEDNN_MISSING}")
