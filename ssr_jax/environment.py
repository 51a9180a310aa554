"""Where a run ran: the machine, the threads, the software, the code, the convolutions and the data, as one
JSON object (`gather`) that summary.json and every results.jsonl row carry, so that a number can be traced to the
machine that made it (numbers differ by CPU and thread count: benchmarks/README.md).

Pure and cheap: it reads /proc/cpuinfo, the environment, package metadata and `git`; it imports nothing of the
project, changes no setting, and a part it cannot read (no /proc, no git) is null.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pathlib
import platform
import subprocess
from typing import Any, Iterable, Mapping

import numpy as np

# The vector extensions that decide which kernels oneDNN and XLA:CPU run (x86 `flags`, ARM `Features`).
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2")
VERSIONED = ("jax", "jaxlib", "flax")
REPO = pathlib.Path(__file__).resolve().parent.parent


def cpu(cpuinfo: str | None = None) -> dict[str, Any]:
    """{"model": the CPU's name, "extensions": the `VECTOR_EXTENSIONS` it has, in that order, "cores": logical CPUs
    of the machine} from /proc/cpuinfo's first processor (`cpuinfo`: its text; default: read it). Without
    /proc/cpuinfo the model is `platform.processor()` (or null) and the extensions null."""
    if cpuinfo is None:
        try:
            cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"model": fields.get("model name") or fields.get("Model") or platform.processor() or None,
            "extensions": [name for name in VECTOR_EXTENSIONS if name in flags] if cpuinfo else None,
            "cores": os.cpu_count()}


def threads(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The thread settings in effect: OMP_NUM_THREADS and XLA_FLAGS as set (null when unset), and how many CPUs
    this process may run on (its affinity, as `taskset` sets it)."""
    environ = os.environ if environ is None else environ
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"omp_num_threads": environ.get("OMP_NUM_THREADS"), "xla_flags": environ.get("XLA_FLAGS"),
            "usable_cpus": usable}


def versions(names: Iterable[str] = VERSIONED) -> dict[str, str | None]:
    """{distribution: installed version, or null}."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def git(repo: str | os.PathLike = REPO) -> dict[str, Any]:
    """{"commit": HEAD of the checkout at `repo`, "dirty": whether `git status` lists any change (untracked files
    included)}; both null without git or outside a checkout."""
    try:
        def run(*args):
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                                  timeout=10).stdout.strip()
        return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


_LOADED_CODE: dict[str, Any] = {}


def loaded_code() -> dict[str, Any]:
    """`git()` of this package's checkout as it was when the process first asked — before its first run trains, so
    the code its modules were loaded from — and the same answer for the rest of the process. What a run records:
    a sweep runs for hours, and reading the checkout when each run ends would credit a commit made meanwhile (or
    an untracked file) with runs that never executed it."""
    if not _LOADED_CODE:
        _LOADED_CODE.update(git())
    return dict(_LOADED_CODE)


def dataset_fingerprint(splits: Iterable[Mapping[str, np.ndarray]]) -> str:
    """"sha256:<16 hex digits>" of the splits' arrays — each array's name, dtype, shape and bytes, in order — so
    that two runs trained on the same prepared data (or the same synthetic generation) share it, and any change of
    an image or a label changes it. One pass over the data, no copy (a memory-mapped split is read once)."""
    digest = hashlib.sha256()
    for split in splits:
        for name in sorted(split):
            array = np.ascontiguousarray(split[name])
            digest.update(f"{name} {array.dtype.str} {array.shape};".encode())
            digest.update(memoryview(array).cast("B"))
    return f"sha256:{digest.hexdigest()[:16]}"


def gather(*, conv: Mapping[str, str] | None = None, dataset: str | None = None, devices: Iterable[Any] = (),
           onednn_training_threads: int | None = None) -> dict[str, Any]:
    """The run's environment: `cpu`, `threads` (with the OpenMP threads of each differentiated oneDNN call when
    it trained with oneDNN, 0 = the library's default), `versions`, `git`, the `devices` it used (their
    `device_kind`s, e.g. "cpu" or "NVIDIA H100 80GB HBM3", with counts), the convolution implementations it used
    (`conv`, e.g. {"train": "onednn", "evaluate": "onednn"}) and its data's `dataset_fingerprint`."""
    kinds: dict[str, int] = {}
    for device in devices:
        kind = getattr(device, "device_kind", str(device))
        kinds[kind] = kinds.get(kind, 0) + 1
    return {"cpu": cpu(), "threads": {**threads(), "onednn_training_threads": onednn_training_threads},
            "versions": versions(), "git": loaded_code(),
            "devices": kinds or None, "conv": dict(conv) if conv is not None else None, "dataset": dataset}


def machine_line(environment: Mapping[str, Any] | None) -> str | None:
    """One line naming where a run ran, for reports: "Intel Xeon … (avx2, avx512f, amx_tile), 2 CPUs usable,
    OMP_NUM_THREADS=2, jax 0.x, conv onednn/onednn"; None without a recorded environment."""
    if not environment:
        return None
    parts = []
    cpu_info = environment.get("cpu") or {}
    if cpu_info.get("model"):
        extensions = cpu_info.get("extensions")
        parts.append(cpu_info["model"] + (f" ({', '.join(extensions)})" if extensions else ""))
    thread_info = environment.get("threads") or {}
    if thread_info.get("usable_cpus"):
        parts.append(f"{thread_info['usable_cpus']} CPUs usable")
    parts += [f"{name.upper()}={thread_info[name]}" for name in ("omp_num_threads", "xla_flags")
              if thread_info.get(name)]
    if (devices := environment.get("devices")) and set(devices) != {"cpu"}:
        parts.append(", ".join(f"{count} × {kind}" for kind, count in devices.items()))
    if (jax_version := (environment.get("versions") or {}).get("jax")):
        parts.append(f"jax {jax_version}")
    if conv := environment.get("conv"):
        parts.append("conv " + "/".join(str(value) for value in conv.values()))
    return ", ".join(parts) or None
