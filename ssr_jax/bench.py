"""`ssr-jax bench`: how fast a config trains and evaluates here, for one run or a vmapped group of M members.

  run_benchmark(config, members=M)        compile time, steady-state training and evaluation images/s, memory
  sequential_vs_vmapped(config, M)        M runs one after another against one vmapped group of M (measured for a
                                          few epochs, extrapolated to `config.train.epochs`)
  format_table(result)                    the same dict as text for people

Every figure is measured on the data the config names (by default the embedded synthetic faces; shrink it with
`--config.data.num_train=2000` for a quick run) through the loop that `ssr-jax train` and `ssr-jax sweep` run
(`train.run_epochs`, the same programs): each epoch's training time ends when its loss reaches the host, and its
evaluation is timed after it; `warmup_epochs` epochs are left out of the medians. The per-epoch metrics are those
`ssr-jax train` writes for the same config (`history`). With `data.device_chunk` the splits stay on the host and go
to the device a chunk per call (`data.chunks.HostChunks`), and the times include that feeding. Results are
JSON-ready dicts; figures are printed and recorded (benchmarks/README.md), never asserted.

A group of M > 1 members is M copies of the config with seeds `seed, seed+1, …` and λ_local, λ_d spread over
[0, 1] (a √M × √M grid when M is a square, as the reference's 5 × 5 λ grid); those are values (`state.VALUE_FIELDS`),
so the group is one program whatever M is.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from ssr_jax import config_lib, validation
from ssr_jax.data import load_splits
from ssr_jax.state import stack_members
from ssr_jax.train import Epoch, Splits, Trainer, make_train, run_epochs

RESULT_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# Members, machine and config descriptions
# ----------------------------------------------------------------------------------------------------------------
def member_configs(config: ml_collections.ConfigDict, members: int) -> list[ml_collections.ConfigDict]:
    """`members` copies of `config` that differ only in value fields (one program): seeds `seed + i`, λ_local and
    λ_d over [0, 1] — a grid when `members` is a square > 1, else λ_local rising while λ_d falls. One member is the
    config unchanged."""
    if members < 1:
        raise config_lib.ConfigError(f"--members={members}: needs at least 1")
    if members == 1:
        return [config]
    side = math.isqrt(members)
    if side * side == members:
        grid = np.linspace(0.0, 1.0, side)
        lambdas = [(float(a), float(b)) for a in grid for b in grid]
    else:
        spread = np.linspace(0.0, 1.0, members)
        lambdas = [(float(a), float(1.0 - a)) for a in spread]
    return [
        config_lib.apply_overrides(config, {"seed": config.seed + index, "model.lambda_local": local,
                                            "model.lambda_d": d})
        for index, (local, d) in enumerate(lambdas)
    ]


def device_summary() -> dict[str, Any]:
    """The accelerator (or CPU) this process computes on."""
    devices = jax.devices()
    first = devices[0]
    return {
        "platform": first.platform,
        "device_kind": getattr(first, "device_kind", first.platform),
        "device_count": len(devices),
        "host_cpus": os.cpu_count(),
        "host": platform.node(),
        "processor": _processor_name(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _processor_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def config_summary(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The fields that decide the speed of a run."""
    return {
        "backbone": config.model.backbone,
        "head": config.model.head,
        "stages": list(config.model.stages),
        "image_size": config.data.image_size,
        "conv": config.model.conv,
        "compute_dtype": config.model.compute_dtype,
        "augment": config.data.augment.enabled,
        "data": config.data.name,
        "batch_size": config.train.batch_size,
        "eval_batch_size": config.train.eval_batch_size,
        "epochs": config.train.epochs,
    }


def label(config: ml_collections.ConfigDict, members: int) -> str:
    """One line naming the config's speed-deciding fields (`config_summary`) and the group size."""
    config_info = config_summary(config)
    stages = ",".join(str(s) for s in config_info["stages"])
    return (f"{config_info['backbone']}/{config_info['head']} ({stages}) {config_info['image_size']}px conv={config_info['conv']} "
            f"augment={'on' if config_info['augment'] else 'off'} batch {config_info['batch_size']}, "
            f"{members} member{'s' if members > 1 else ''}")


# ----------------------------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------------------------
def peak_host_memory_bytes() -> int:
    """The process's peak resident set size (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def device_memory() -> dict[str, int | None]:
    """Peak and current bytes in use on the first device; None where the backend keeps no statistics (CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 — backends without the call raise various errors
        stats = None
    stats = stats or {}
    return {"peak_bytes_in_use": stats.get("peak_bytes_in_use"), "bytes_in_use": stats.get("bytes_in_use"),
            "bytes_limit": stats.get("bytes_limit")}


def _tree_bytes(tree) -> int:
    """Bytes of a tree of arrays or `jax.ShapeDtypeStruct`s."""
    return int(sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree)))


def _dataset_on_device(trainer: Trainer) -> tuple[Any, int]:
    """The training images (an array or its `jax.ShapeDtypeStruct`, `[N, H, W, 3]`) and the dataset's bytes on the
    device at once: the whole resident tree (train + padded test), or with `data.device_chunk` (the splits stay on
    the host as `HostChunks`, one chunk on the device per call) the larger of a training chunk and a test chunk."""
    if trainer.chunked:
        train, test = (trainer.data.abstract(name) for name in ("train", "test"))
        return train["train"]["image"], max(_tree_bytes(train), _tree_bytes(test))
    return trainer.data["train"]["image"], _tree_bytes(trainer.data)


# ----------------------------------------------------------------------------------------------------------------
# A shared machine
# ----------------------------------------------------------------------------------------------------------------
def host_busy_fraction(seconds: float = 0.5) -> float | None:
    """Fraction of all CPUs busy over `seconds` (from /proc/stat; None elsewhere): other work that will skew a
    measurement taken now. Called while this process is idle."""
    def sample():
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


# ----------------------------------------------------------------------------------------------------------------
# Timing through the training loop
# ----------------------------------------------------------------------------------------------------------------
def _flops(compiled) -> float | None:
    """FLOPs XLA counts for one call of a compiled program (None where the backend gives no cost analysis)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001
        return None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


@dataclasses.dataclass
class Measured:
    """A group trained through `train.run_epochs` (the loop `ssr-jax train` runs), with the times it took."""

    trainer: Trainer
    state: Any
    setup_s: float  # make_train: the model and the data on the device
    init_s: float  # the members' initial state (its compile included)
    compile_s: float  # train_epoch + evaluate
    epochs: list[Epoch]  # per epoch: metrics and the loop's own train / evaluation times


def measure(config: ml_collections.ConfigDict, configs: list[ml_collections.ConfigDict], splits: Splits, *,
            epochs: int, deadline: float | None = None) -> Measured:
    """Builds the group of `configs` (one program) and trains it for up to `epochs` epochs through
    `train.run_epochs`. `deadline` (a `time.perf_counter()` value): stop as soon as the epochs measured so far show
    the rest cannot end before it."""
    start = time.perf_counter()
    trainer = make_train(config, splits)
    jax.block_until_ready(trainer.data)
    setup_s = time.perf_counter() - start
    keys, hparams = stack_members(configs)
    start = time.perf_counter()
    state = jax.block_until_ready(trainer.init(keys, hparams))
    init_s = time.perf_counter() - start
    compile_s = trainer.compile(state, keys, hparams)
    done: list[Epoch] = []
    for result in run_epochs(trainer, state, keys, hparams, first=1, last=epochs):
        done.append(result)
        state = result.state
        per_epoch = statistics.median(e.train_s for e in done) + statistics.median(e.eval_s for e in done)
        if deadline is not None and time.perf_counter() + (epochs - len(done)) * per_epoch > deadline:
            break
    return Measured(trainer, state, setup_s, init_s, compile_s, done)


def history(run: Measured) -> list[dict]:
    """Per-epoch metrics as `metrics.jsonl` has them, one list entry per member: epoch, train_loss, mae, ca3, ca5."""
    return [{"epoch": e.epoch, "train_loss": [float(x) for x in e.train_loss],
             **{name: [float(x) for x in e.metrics[name]] for name in ("mae", "ca3", "ca5")}} for e in run.epochs]


# ----------------------------------------------------------------------------------------------------------------
# run_benchmark
# ----------------------------------------------------------------------------------------------------------------
def run_benchmark(config: ml_collections.ConfigDict, *, members: int = 1, timed_epochs: int = 3,
                  warmup_epochs: int = 1, splits: Splits | None = None) -> dict[str, Any]:
    """Compiles and trains `config` (a vmapped group of `members`) for `warmup_epochs + timed_epochs` epochs through
    the training loop and times it; returns a JSON-ready dict (see benchmarks/README.md for what each figure
    means). Training and evaluation times are the timed epochs' own, as the loop measured them.

    `splits` (train, test) replaces the dataset named by `config.data`.
    """
    validation.validate(config)
    if timed_epochs < 1 or warmup_epochs < 0:
        raise ValueError("needs timed_epochs >= 1, warmup_epochs >= 0")
    configs = member_configs(config, members)
    busy_before = host_busy_fraction(0.3)
    wall_start = time.perf_counter()
    data_start = time.perf_counter()
    splits = splits if splits is not None else load_splits(config.data)
    data_s = time.perf_counter() - data_start
    run = measure(config, configs, splits, epochs=warmup_epochs + timed_epochs)
    trainer, timed = run.trainer, run.epochs[warmup_epochs:]
    num_train, num_test = len(splits[0]["age"]), len(splits[1]["age"])
    epoch_times, eval_times = [e.train_s for e in timed], [e.eval_s for e in timed]
    epoch_s, eval_s = statistics.median(epoch_times), statistics.median(eval_times)
    images_per_epoch = trainer.images_per_epoch  # whole batches only: floor(N / batch) · batch
    train_ips = images_per_epoch * members / epoch_s
    eval_ips = num_test * members / eval_s
    image, dataset_device_bytes = _dataset_on_device(trainer)
    (step_program,), (eval_program,) = (trainer.programs[name].values() for name in ("train_epoch", "evaluate"))
    step_flops, eval_flops = _flops(step_program), _flops(eval_program)
    result = {
        "version": RESULT_VERSION,
        "label": label(config, members),
        "members": members,
        "batch": config.train.batch_size,
        "eval_batch": config.train.eval_batch_size,
        "device": device_summary(),
        "jax_version": jax.__version__,
        "jaxlib_version": _jaxlib_version(),
        "python_version": platform.python_version(),
        "config": config_summary(config),
        # model.conv as resolved for this group before tracing (conv.kernels): what the timed program ran.
        "conv_used": trainer.kernels_of(members)._asdict(),
        "num_train": num_train,
        "num_test": num_test,
        "images_per_epoch": images_per_epoch,
        "steps_per_epoch": trainer.steps_per_epoch,
        "data_s": data_s,
        "setup_s": run.setup_s,
        "init_s": run.init_s,
        "compile_s": run.compile_s,
        "warmup_epoch_s": [e.train_s for e in run.epochs[:warmup_epochs]],
        "epoch_s": epoch_times,
        "epoch_s_median": epoch_s,
        "epoch_s_spread": _spread(epoch_times),
        "train_images_per_s": train_ips,
        "train_images_per_s_per_member": train_ips / members,
        "step_ms": 1e3 * epoch_s / trainer.steps_per_epoch,
        "eval_s": eval_times,
        "eval_s_median": eval_s,
        "eval_images_per_s": eval_ips,
        "eval_images_per_s_per_member": eval_ips / members,
        # XLA's cost analysis counts a loop body once: the epoch's count is one step's, i.e. batch × members images.
        "train_gflop_per_image": step_flops / (config.train.batch_size * members) / 1e9 if step_flops else None,
        "train_gflop_per_s": step_flops * trainer.steps_per_epoch / epoch_s / 1e9 if step_flops else None,
        "eval_gflop_per_image": eval_flops / (config.train.eval_batch_size * members) / 1e9 if eval_flops else None,
        "bytes_per_image": int(np.prod(image.shape[1:]) * image.dtype.itemsize),
        "image_dtype": str(image.dtype),
        "dataset_device_bytes": dataset_device_bytes,
        "device_chunk": trainer.data.chunk if trainer.chunked else 0,  # 0: the splits live on the device
        "state_bytes": _tree_bytes(run.state),
        "peak_host_memory_bytes": peak_host_memory_bytes(),
        "device_memory": device_memory(),
        "history": history(run),
        "final_train_loss": [float(x) for x in run.epochs[-1].train_loss],
        "final_mae": [float(x) for x in run.epochs[-1].metrics["mae"]],
        "host_busy_before": busy_before,
        "wall_s": time.perf_counter() - wall_start,
    }
    return result


def _spread(values: list[float]) -> float:
    """(max − min) / median: how noisy the repeats were."""
    median = statistics.median(values)
    return (max(values) - min(values)) / median if median > 0 else 0.0


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


# ----------------------------------------------------------------------------------------------------------------
# Sequential against vmapped
# ----------------------------------------------------------------------------------------------------------------
def sequential_vs_vmapped(config: ml_collections.ConfigDict, members: int, *, epochs: int = 1,
                          sequential_runs: int | None = None, splits: Splits | None = None,
                          full_epochs: int | None = None) -> dict[str, Any]:
    """Wall time of `members` runs trained one after another against one vmapped group of `members`, each for
    `epochs` epochs with an evaluation after every epoch, through the training loop.

    Sequential: one single-member trainer whose programs every run reuses (as a warm compilation cache or one
    process would); each run initialises its own state. `sequential_runs` < members times only that many runs and
    scales their mean to `members` (labelled). Vmapped: the group's program, compiled once.
    Both are then extrapolated to `full_epochs` (default `config.train.epochs`) from the measured per-epoch train
    and evaluation times plus the compile times — an extrapolation, not a measurement.
    """
    validation.validate(config)
    configs = member_configs(config, members)
    runs = members if sequential_runs is None else max(1, min(sequential_runs, members))
    full_epochs = full_epochs or config.train.epochs
    splits = splits if splits is not None else load_splits(config.data)

    # Sequential: one compile, then `runs` runs of `epochs` epochs each ------------------------------------------
    single = measure(config, configs[:1], splits, epochs=0)  # the programs, compiled once
    seq_compile_s = single.init_s + single.compile_s  # init's compile and run, then train_epoch's and evaluate's
    seq_epochs, run_s = [], []
    for member_config in configs[:runs]:
        run_start = time.perf_counter()
        keys, hparams = stack_members([member_config])
        state = jax.block_until_ready(single.trainer.init(keys, hparams))
        seq_epochs.extend(run_epochs(single.trainer, state, keys, hparams, first=1, last=epochs))
        run_s.append(time.perf_counter() - run_start)
    seq_measured_s = seq_compile_s + sum(run_s)
    seq_wall_s = seq_compile_s + statistics.mean(run_s) * members
    seq_train_s, seq_eval_s = [e.train_s for e in seq_epochs], [e.eval_s for e in seq_epochs]

    # Vmapped: one group of `members` ---------------------------------------------------------------------------
    group = measure(config, configs, splits, epochs=epochs)
    vmap_compile_s = group.init_s + group.compile_s
    vmap_train_s, vmap_eval_s = [e.train_s for e in group.epochs], [e.eval_s for e in group.epochs]
    vmap_wall_s = vmap_compile_s + sum(vmap_train_s) + sum(vmap_eval_s)

    images = single.trainer.images_per_epoch * epochs * members  # training images in all M runs
    seq_epoch = statistics.median(seq_train_s) + statistics.median(seq_eval_s)
    vmap_epoch = statistics.median(vmap_train_s) + statistics.median(vmap_eval_s)
    seq_full = seq_compile_s + members * full_epochs * seq_epoch
    vmap_full = vmap_compile_s + full_epochs * vmap_epoch
    return {
        "version": RESULT_VERSION,
        "label": label(config, members),
        "members": members,
        "epochs": epochs,
        "batch": config.train.batch_size,
        "num_train": len(splits[0]["age"]),
        "num_test": len(splits[1]["age"]),
        "device": device_summary(),
        "jax_version": jax.__version__,
        "config": config_summary(config),
        "sequential": {
            "runs_timed": runs,
            "compile_s": seq_compile_s,
            "measured_wall_s": seq_measured_s,
            "wall_s": seq_wall_s,
            "wall_s_is_scaled": runs < members,
            "epoch_s_median": statistics.median(seq_train_s),
            "eval_s_median": statistics.median(seq_eval_s),
            "train_images_per_s": single.trainer.images_per_epoch / statistics.median(seq_train_s),
            "images_per_s_overall": images / seq_wall_s,
        },
        "vmapped": {
            "compile_s": vmap_compile_s,
            "wall_s": vmap_wall_s,
            "epoch_s_median": statistics.median(vmap_train_s),
            "eval_s_median": statistics.median(vmap_eval_s),
            "train_images_per_s": group.trainer.images_per_epoch * members / statistics.median(vmap_train_s),
            "images_per_s_overall": images / vmap_wall_s,
        },
        "speedup": seq_wall_s / vmap_wall_s,
        "extrapolated": {
            "note": (f"extrapolated to {full_epochs} epochs of {single.trainer.images_per_epoch} training images from "
                     "the measured median per-epoch train + evaluation times plus the measured compile times"),
            "epochs": full_epochs,
            "sequential_s": seq_full,
            "vmapped_s": vmap_full,
            "speedup": seq_full / vmap_full,
        },
        "peak_host_memory_bytes": peak_host_memory_bytes(),
        "device_memory": device_memory(),
    }


# ----------------------------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------------------------
def _bytes(value) -> str:
    if value is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024


def _device_line(device: dict) -> str:
    flags = f"  XLA_FLAGS={device['xla_flags']}" if device.get("xla_flags") else ""
    return (f"{device['device_kind']} ×{device['device_count']} ({device['platform']}; host: {device['processor']}, "
            f"{device['host_cpus']} CPUs){flags}")


def format_table(result: dict) -> str:
    """`run_benchmark`'s or `sequential_vs_vmapped`'s result as an aligned text table."""
    if "sequential" in result:
        return _format_comparison(result)
    gflops, chunk = result.get("train_gflop_per_s"), result.get("device_chunk")
    rows = [
        ("config", result["label"]),
        ("device", _device_line(result["device"])),
        ("jax", f"{result['jax_version']} (python {result.get('python_version', '?')})"),
        ("data", f"{result['num_train']:,} train ({result['images_per_epoch']:,} per epoch, "
                 f"{result['steps_per_epoch']} steps) / {result['num_test']:,} test"),
        ("compile", f"{result['compile_s']:.2f} s (train_epoch + evaluate; init {result['init_s']:.2f} s)"),
        ("train", f"{result['train_images_per_s']:,.0f} images/s"
                  + (f" ({result['train_images_per_s_per_member']:,.0f} images/s per member)"
                     if result["members"] > 1 else "")
                  + f"; epoch {result['epoch_s_median']:.2f} s median of {len(result['epoch_s'])}"
                  f" (spread {100 * result['epoch_s_spread']:.0f}%), {result['step_ms']:.1f} ms/step"),
        ("evaluate", f"{result['eval_images_per_s']:,.0f} images/s; {result['eval_s_median']:.3f} s per pass over "
                     f"the test split (batch {result['eval_batch']})"),
        ("arithmetic", f"{result['train_gflop_per_image']:.3f} GFLOP per training image, {gflops:.1f} GFLOP/s"
                       + (f"; forward {result['eval_gflop_per_image']:.3f} GFLOP per image"
                          if result.get("eval_gflop_per_image") else "")
         if gflops else "n/a (no cost analysis on this backend)"),
        ("dataset", f"{result['bytes_per_image']:,} bytes per image ({result['image_dtype']}), "
                    f"{_bytes(result['dataset_device_bytes'])} on the device"
                    + (f" at once (chunks of {chunk:,} images from the host)" if chunk else "")),
        ("host memory", f"{_bytes(result['peak_host_memory_bytes'])} peak RSS"),
        ("device memory", f"{_bytes(result['device_memory']['peak_bytes_in_use'])} peak"
         if result["device_memory"]["peak_bytes_in_use"] is not None else "n/a (the backend keeps no statistics)"),
    ]
    return _rows(rows)


def _format_comparison(result: dict) -> str:
    seq, vm, ext = result["sequential"], result["vmapped"], result["extrapolated"]
    members, epochs = result["members"], result["epochs"]
    scaled = (f" (timed {seq['runs_timed']} runs, scaled to {members})" if seq["wall_s_is_scaled"] else "")
    rows = [
        ("config", result["label"]),
        ("device", _device_line(result["device"])),
        ("data", f"{result['num_train']:,} train / {result['num_test']:,} test, {epochs} epoch"
                 f"{'s' if epochs > 1 else ''} per run, evaluation after each"),
        ("sequential", f"{seq['wall_s']:.1f} s for {members} runs{scaled}; compile {seq['compile_s']:.1f} s once; "
                       f"{seq['train_images_per_s']:,.0f} training images/s; {seq['images_per_s_overall']:,.0f} "
                       "images/s overall"),
        ("vmapped", f"{vm['wall_s']:.1f} s for one group of {members}; compile {vm['compile_s']:.1f} s; "
                    f"{vm['train_images_per_s']:,.0f} training images/s; {vm['images_per_s_overall']:,.0f} "
                    "images/s overall"),
        ("speedup", f"{result['speedup']:.2f}× (measured)"),
        (f"{ext['epochs']} epochs", f"sequential {_duration(ext['sequential_s'])}, vmapped "
                                    f"{_duration(ext['vmapped_s'])}, {ext['speedup']:.2f}× — EXTRAPOLATED"),
        ("", ext["note"]),
    ]
    return _rows(rows)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _rows(rows) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
