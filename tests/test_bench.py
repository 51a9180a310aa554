"""`ssr_jax.bench` on the smoke config: every field is there with a sane type, groups of members work, the tables
read as tables. Figures are never asserted: only that they are positive numbers."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from configs import ssrnet
from ssr_jax import bench, config_lib
from ssr_jax.data import load_splits
from ssr_jax.models import conv
from conftest import REPO, run_cli

# The benchmark scripts' helpers (benchmarks/, not part of the package), loaded from their file.
_spec = importlib.util.spec_from_file_location("benchmarks_common", REPO / "benchmarks" / "_common.py")
benchmarks_common = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmarks_common)


@pytest.fixture(scope="module")
def smoke():
    # The programs repeat across the tests below (one per member count), so the persistent compilation cache
    # (conftest) serves all but the first compile of each. ("xla" convolutions compile faster but train ≈20× slower
    # inside the epoch's scan on XLA:CPU, which costs more here.)
    config = ssrnet.get_config("smoke")
    return config, load_splits(config.data)


def _positive(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.mark.parametrize("members", [2])  # one member: test_bench_command_prints_and_writes_json
def test_run_benchmark_reports_every_field(smoke, members):
    config, splits = smoke
    result = bench.run_benchmark(config, members=members, timed_epochs=1, warmup_epochs=1, splits=splits)
    json.dumps(result)  # JSON-ready
    for key in ("train_images_per_s", "train_images_per_s_per_member", "eval_images_per_s", "compile_s",
                "epoch_s_median", "peak_host_memory_bytes", "bytes_per_image", "dataset_device_bytes", "step_ms"):
        assert _positive(result[key]), (key, result[key])
    assert result["members"] == members and result["batch"] == config.train.batch_size == 16
    assert result["num_train"] == 64 and result["images_per_epoch"] == 64
    assert result["bytes_per_image"] == 64 * 64 * 3 and result["image_dtype"] == "uint8"
    assert result["train_images_per_s"] == pytest.approx(members * result["train_images_per_s_per_member"])
    device = result["device"]
    assert device["platform"] == "cpu" and device["device_count"] >= 1 and isinstance(device["device_kind"], str)
    assert isinstance(result["jax_version"], str)
    assert result["config"] == {**result["config"], "backbone": "ssrnet", "head": "ssr", "stages": [3, 3, 3], "image_size": 64,
                                "conv": "auto", "augment": True}
    # What the timed program ran: "auto" resolved for a vmapped group on this backend, before tracing.
    assert result["conv_used"] == conv.kernels("auto", platform="cpu", vmapped=members > 1)._asdict()
    assert set(result["device_memory"]) >= {"peak_bytes_in_use"}  # None on CPU, bytes on a GPU
    assert len(result["final_train_loss"]) == members and all(map(math.isfinite, result["final_train_loss"]))
    table = bench.format_table(result)
    assert "images/s" in table and "compile" in table and "12,288 bytes per image" in table


def test_run_benchmark_with_device_chunks(smoke):
    """With `data.device_chunk` the trainer's data is `HostChunks` (the splits on the host): the benchmark trains
    through them and reports one chunk as what sits on the device."""
    config, splits = smoke
    chunked = config_lib.apply_overrides(config, {"data.device_chunk": 32})
    result = bench.run_benchmark(chunked, timed_epochs=1, warmup_epochs=0, splits=splits)
    json.dumps(result)
    for key in ("train_images_per_s", "eval_images_per_s", "compile_s", "epoch_s_median", "step_ms"):
        assert _positive(result[key]), (key, result[key])
    assert result["device_chunk"] == 32 and result["num_train"] == 64
    assert result["images_per_epoch"] == 64 and result["steps_per_epoch"] == 4  # two chunks of two steps
    assert result["bytes_per_image"] == 64 * 64 * 3 and result["image_dtype"] == "uint8"
    # The larger chunk: a test chunk, one padded batch of 32 (uint8 images, float32 ages, a bool mask), against a
    # training chunk of 32 images and their float32 ages.
    assert result["dataset_device_bytes"] == 32 * (64 * 64 * 3 + 4 + 1)
    assert all(map(math.isfinite, result["final_train_loss"] + result["final_mae"]))
    assert [row["epoch"] for row in result["history"]] == [1]
    assert "chunks of 32 images from the host" in bench.format_table(result)


def test_member_configs_share_one_program_and_spread_lambda(smoke):
    from ssr_jax.state import program_signature

    config, _ = smoke
    assert bench.member_configs(config, 1) == [config]
    grid = bench.member_configs(config, 25)
    assert len({repr(program_signature(c)) for c in grid}) == 1
    assert sorted({c.model.lambda_local for c in grid}) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len({(c.model.lambda_local, c.model.lambda_d) for c in grid}) == 25
    assert len({c.seed for c in grid}) == 25
    line = bench.member_configs(config, 3)
    assert [c.model.lambda_local for c in line] == [0.0, 0.5, 1.0]
    with pytest.raises(config_lib.ConfigError):
        bench.member_configs(config, 0)


def test_sequential_vs_vmapped_and_timed_run(smoke):
    config, splits = smoke
    result = bench.sequential_vs_vmapped(config, 2, epochs=1, sequential_runs=1, splits=splits)
    json.dumps(result)
    for side in ("sequential", "vmapped"):
        for key in ("wall_s", "compile_s", "train_images_per_s", "images_per_s_overall"):
            assert _positive(result[side][key]), (side, key)
    assert result["sequential"]["wall_s_is_scaled"] and result["sequential"]["runs_timed"] == 1
    assert _positive(result["speedup"]) and _positive(result["extrapolated"]["sequential_s"])
    assert result["extrapolated"]["epochs"] == config.train.epochs
    table = bench.format_table(result)
    assert "EXTRAPOLATED" in table and "images/s" in table

    run = benchmarks_common.timed_run(config, members=2, splits=splits)
    assert run["completed"] and run["epochs_run"] == config.train.epochs == 2
    assert _positive(run["wall_s"]) and len(run["final_mae"]) == 2


def test_bench_command_prints_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--config", "configs/ssrnet.py:smoke", "--json", "--out", out)
    printed = json.loads(result.stdout)
    assert json.loads(out.read_text()) == printed
    for key in ("train_images_per_s", "train_images_per_s_per_member", "eval_images_per_s", "compile_s",
                "epoch_s_median", "peak_host_memory_bytes", "bytes_per_image", "dataset_device_bytes", "step_ms"):
        assert _positive(printed[key]), key
    assert printed["bytes_per_image"] == 64 * 64 * 3 and printed["train_images_per_s_per_member"] == pytest.approx(
        printed["train_images_per_s"])
    assert printed["members"] == 1 and printed["batch"] == 16 and printed["device"]["platform"] == "cpu"
    refused = run_cli("bench", "--config", "configs/ssrnet.py:smoke", "--members", "0", check=False)
    assert refused.returncode == 2 and "--members must be at least 1" in refused.stderr



# In a new thread (as XLA's workers are), a block far above glibc's mmap limits is allocated, touched, freed,
# allocated and touched again; prints the page faults of the second touch and the block's size in pages. SETUP runs
# first, in the main thread.
_FAULTS = """
import ctypes, resource, threading
SETUP
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
size, faults = 256 << 20, []
def touch_twice():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    block = libc.malloc(size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ctypes.memset(block, 1, size)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    libc.free(block)
thread = threading.Thread(target=touch_twice)
thread.start(), thread.join()
print(faults[0], size // 4096)
"""
# Every module of the package imported, as a notebook might.
_IMPORT_ALL = "import importlib, pkgutil, ssr_jax\n" + (
    "[importlib.import_module(m.name) for m in pkgutil.walk_packages(ssr_jax.__path__, 'ssr_jax.')"
    " if m.name != 'ssr_jax.__main__']")
# The CLI's entry point, as `ssr-jax --help` runs it.
_CLI = "from ssr_jax import cli\ntry:\n    cli.main(['ssr-jax', '--help'])\nexcept SystemExit:\n    pass"


@pytest.mark.parametrize("setup, environment, reused", [
    (_IMPORT_ALL, {}, False),  # importing changes nothing: glibc's defaults unmap the freed block
    ("from ssr_jax import host_memory\nhost_memory.reuse_freed_memory()", {}, True),  # a library user opting in
    (_CLI, {}, True),  # the program applies it at its entry point
    (_CLI, {"MALLOC_ARENA_MAX": "16"}, False),  # a user's own malloc settings are left alone
])
def test_malloc_settings_are_the_programs_not_the_imports(setup, environment, reused):
    """ssr_jax.host_memory: with its settings, a large block a thread frees is reused by its next allocation
    instead of being unmapped and faulted in afresh (what XLA:CPU's temporaries go through on every call). The
    `ssr-jax` program applies them; importing the package does not."""
    result = subprocess.run([sys.executable, "-c", _FAULTS.replace("SETUP", setup)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, **environment}, check=True, cwd=REPO)
    faults, pages = map(int, result.stdout.split()[-2:])
    assert faults < pages // 100 if reused else faults > pages // 2, (faults, pages)


def test_importing_and_plotting_leave_matplotlibs_backend_alone(tmp_path):
    """A notebook's backend (here "pdf", chosen before the import) survives importing every module and drawing a
    report figure, which is written all the same."""
    script = "\n".join([
        "import matplotlib, pathlib, sys", "matplotlib.use('pdf')", _IMPORT_ALL,
        "import pandas as pd", "from ssr_jax import plots",
        "table = pd.DataFrame({'params': [10, 40], 'mae_mean': [5.0, 4.0], 'mae_std': [0.1, 0.2], 'n': [3, 3]},"
        " index=['a', 'b'])",
        "plots.mae_vs_params(table, pathlib.Path(sys.argv[1]))", "print(matplotlib.get_backend())"])
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "figure.png")], capture_output=True,
                            text=True, timeout=120, check=True, cwd=REPO)
    assert result.stdout.split()[-1] == "pdf"
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
