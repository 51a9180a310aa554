"""Where a run ran (ssr_jax/environment.py): each part read exactly, git's state in a scratch repository, the data's
fingerprint, the report's machine line."""
import os
import shutil
import subprocess

import jax
import numpy as np
import pandas as pd
import pytest

from ssr_jax import environment, report

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl amx_bf16 amx_tile amx_int8 hypervisor

processor\t: 1
model name\t: another CPU
flags\t\t: fpu
"""


def test_cpu_model_and_vector_extensions_from_cpuinfo():
    """The first processor's name, and the extensions it has in `VECTOR_EXTENSIONS`' order (not cpuinfo's)."""
    assert environment.cpu(CPUINFO) == {
        "model": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
        "extensions": ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "amx_tile", "amx_bf16",
                       "amx_int8"],
        "cores": os.cpu_count()}
    arm = environment.cpu("processor\t: 0\nFeatures\t: fp asimd sve\nModel\t: Apple M2\n")
    assert arm["model"] == "Apple M2" and arm["extensions"] == ["asimd", "sve"]


def test_thread_settings_and_versions_as_in_effect():
    settings = environment.threads({"OMP_NUM_THREADS": "2", "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"})
    assert settings == {"omp_num_threads": "2", "xla_flags": "--xla_cpu_multi_thread_eigen=false",
                        "usable_cpus": len(os.sched_getaffinity(0))}
    assert environment.threads({})["omp_num_threads"] is None
    assert environment.versions() == {"jax": jax.__version__, "jaxlib": jax.lib.__version__,
                                      "flax": __import__("flax").__version__}
    assert environment.versions(["no-such-distribution"]) == {"no-such-distribution": None}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_and_dirty_flag_in_a_scratch_repository(tmp_path):
    assert environment.git(tmp_path) == {"commit": None, "dirty": None}  # not a checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "tracked.txt").write_text("one\n")
    subprocess.run([*git, "add", "tracked.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert environment.git(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "tracked.txt").write_text("two\n")
    assert environment.git(tmp_path) == {"commit": head, "dirty": True}


def test_runs_record_the_code_their_process_loaded_not_what_the_checkout_holds_later(tmp_path, monkeypatch):
    """A commit made while a sweep runs is not credited with the sweep's later runs: the record is the checkout as
    the process first read it (before its first run trained)."""
    answers = iter([{"commit": "a" * 40, "dirty": False}, {"commit": "b" * 40, "dirty": True}])
    monkeypatch.setattr(environment, "git", lambda repo=environment.REPO: next(answers))
    monkeypatch.setattr(environment, "_LOADED_CODE", {})
    first = environment.gather()["git"]
    assert first == environment.gather()["git"] == environment.loaded_code() == {"commit": "a" * 40, "dirty": False}
    assert environment.git() == {"commit": "b" * 40, "dirty": True}  # the checkout itself has moved on


def test_git_absent_gives_nulls(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert environment.git() == {"commit": None, "dirty": None}


def test_the_dataset_fingerprint_follows_every_byte_and_the_layout():
    rng = np.random.default_rng(0)
    train = {"image": rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), "age": np.arange(4)}
    test = {"image": rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8), "age": np.arange(2)}
    copy = [{name: array.copy() for name, array in split.items()} for split in (train, test)]
    fingerprint = environment.dataset_fingerprint([train, test])
    assert fingerprint.startswith("sha256:") and len(fingerprint) == len("sha256:") + 16
    assert environment.dataset_fingerprint(copy) == fingerprint
    copy[1]["image"][1, 7, 7, 2] ^= 1  # one bit of one pixel
    assert environment.dataset_fingerprint(copy) != fingerprint
    moved = [{"image": np.concatenate([train["image"], test["image"][:1]]), "age": np.arange(5)},
             {"image": test["image"][1:], "age": np.arange(1)}]  # the same bytes, split elsewhere
    assert environment.dataset_fingerprint(moved) != fingerprint


def test_gather_names_devices_conv_and_data_and_the_report_prints_one_machine_line():
    recorded = environment.gather(conv={"train": "onednn", "evaluate": "onednn"}, dataset="sha256:0123456789abcdef",
                                  devices=jax.devices()[:1])
    assert set(recorded) == {"cpu", "threads", "versions", "git", "devices", "conv", "dataset"}
    assert recorded["devices"] == {jax.devices()[0].device_kind: 1} and recorded["conv"]["train"] == "onednn"
    assert recorded["versions"]["jax"] == jax.__version__
    fixed = {"cpu": environment.cpu(CPUINFO), "threads": environment.threads({"OMP_NUM_THREADS": "2"}),
             "versions": {"jax": "0.10.2"}, "devices": {"cpu": 1}, "conv": {"train": "onednn", "evaluate": "xla"}}
    line = environment.machine_line(fixed)
    assert line == (f"Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (sse4_2, avx, avx2, fma, avx512f, avx512bw, "
                    f"avx512vl, amx_tile, amx_bf16, amx_int8), {fixed['threads']['usable_cpus']} CPUs usable, "
                    "OMP_NUM_THREADS=2, jax 0.10.2, conv onednn/xla")
    frame = pd.DataFrame({"environment": [fixed, fixed, float("nan")]})  # a row from before environments: skipped
    assert report.machine_note(frame) == f"Machine: {line}."
    other = {**fixed, "threads": environment.threads({})}
    assert report.machine_note(pd.DataFrame({"environment": [fixed, other]})).startswith("Machines: 2 different")
    assert report.machine_note(pd.DataFrame({"mae": [1.0]})) is None
