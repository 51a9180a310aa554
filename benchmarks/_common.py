"""What the scripts in this folder share (not part of ssr_jax): their common options, waiting for a quiet machine,
a whole run timed with a deadline, the package's training step timed as a scan of steps, and trace summaries.

The scripts run with this folder as `sys.path[0]`, so they import it as `_common`.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import statistics
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from ssr_jax import bench, parallel, validation
from ssr_jax.data import load_splits
from ssr_jax.state import stack_members
from ssr_jax.train import Splits, Trainer, make_train


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `where_time_goes.py`, `step_attribution.py` and `pieces.py` take."""
    parser.add_argument("--config", default="configs/ssrnet.py")
    parser.add_argument("--set", action="append", default=[], help="key=value config override")
    parser.add_argument("--quiet_wait", type=float, default=0.0,
                        help="before each timed run, wait up to this many seconds for the CPUs to be idle")
    parser.add_argument("--pool", default="model", choices=("model", "flax"),
                        help="flax: the model's pooling replaced by flax's reduce-window (the before-state)")
    parser.add_argument("--json", action="store_true")


def use_flax_pooling() -> None:
    """The before-state of the pooling experiment: the model's crop + reshape + mean/max pooling (conv="patches")
    replaced by flax's `avg_pool` / `max_pool` (XLA reduce-window; gradients reduce-window and select-and-scatter).
    Patches this process only."""
    from ssr_jax.models import conv

    conv.POOLINGS["patches"] = conv.POOLINGS["mixed"] = conv.POOLINGS["xla"]


def wait_for_quiet(max_wait_s: float, *, threshold: float = 0.15, window_s: float = 2.0) -> float | None:
    """Waits (up to `max_wait_s`) until the CPUs have been less than `threshold` busy for `window_s`; returns the
    last busy fraction seen. For comparisons on a machine shared with other jobs."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = bench.host_busy_fraction(window_s)
        if busy is None or busy < threshold or time.monotonic() >= deadline:
            return busy
        time.sleep(1.0)


# ----------------------------------------------------------------------------------------------------------------
# The package's training step, as a scan of steps
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Steps:
    """`steps` training steps of one member exactly as `ssr-jax train` runs them: `make_train`'s epoch program
    (`Trainer.train_epoch`: one `lax.scan` over shuffled batches of a device-resident split) over a training split of
    `steps × train.batch_size` images. Each call runs the program once and threads the state (the program donates
    it); the call's result is the epoch's metrics, to block on."""

    trainer: Trainer
    state: Any
    keys: jax.Array
    hparams: dict

    def __call__(self) -> dict:
        self.state, metrics = self.trainer.train_epoch(self.state, self.keys, self.hparams, 1)
        return metrics

    def compiled(self) -> jax.stages.Compiled:
        """The compiled epoch program (its HLO: `.as_text()`)."""
        return self.trainer.program("train_epoch", self.state, self.keys, self.hparams, self.trainer.data)


def step_splits(config: ml_collections.ConfigDict, steps: int) -> Splits:
    """(train, test) of the config's data: `steps × train.batch_size` training images (the split's own, repeated
    when it has fewer) and one evaluation batch of test images."""
    train, test = load_splits(config.data)[:2]
    rows = np.resize(np.random.default_rng(0).permutation(len(train["age"])), steps * config.train.batch_size)
    return ({name: array[rows] for name, array in train.items()},
            {name: array[:config.train.eval_batch_size] for name, array in test.items()})


def training_steps(config: ml_collections.ConfigDict, splits: Splits, mesh: jax.sharding.Mesh | None = None) -> Steps:
    """The package's training step over `splits` (`step_splits`), one member placed on `mesh` (batches split over its
    data axis) or on the default device."""
    validation.validate(config)
    trainer = make_train(config, splits, mesh)
    keys, hparams = parallel.shard_members(stack_members([config]), mesh)
    return Steps(trainer, parallel.shard_members(trainer.init(keys, hparams), mesh), keys, hparams)


# ----------------------------------------------------------------------------------------------------------------
# A whole run, timed
# ----------------------------------------------------------------------------------------------------------------
def timed_run(config: ml_collections.ConfigDict, *, members: int = 1, splits: Splits | None = None,
              epochs: int | None = None, deadline: float | None = None) -> dict[str, Any]:
    """Trains `config` (a vmapped group of `members`) for `epochs` (default `config.train.epochs`) epochs with an
    evaluation after each, through the training loop (`bench.measure`: without the checkpoint writes), and times it.

    `deadline` (a `time.perf_counter()` value): as soon as the measured epochs show the run cannot end before it,
    stop and report the whole run as extrapolated from the median epoch (`completed` False). `wall_s` counts the
    compile (init included) and every epoch, not the data generation (`data_s`).
    """
    validation.validate(config)
    epochs = epochs or config.train.epochs
    configs = bench.member_configs(config, members)
    start = time.perf_counter()
    splits = splits if splits is not None else load_splits(config.data)
    data_s = time.perf_counter() - start
    run = bench.measure(config, configs, splits, epochs=epochs, deadline=deadline)
    train_s, eval_s = [e.train_s for e in run.epochs], [e.eval_s for e in run.epochs]
    compile_s = run.init_s + run.compile_s
    per_epoch = statistics.median(train_s) + statistics.median(eval_s)
    measured_s = compile_s + sum(train_s) + sum(eval_s)
    completed = len(run.epochs) == epochs
    return {
        "label": bench.label(config, members),
        "members": members,
        "batch": config.train.batch_size,
        "num_train": len(splits[0]["age"]),
        "num_test": len(splits[1]["age"]),
        "epochs": epochs,
        "epochs_run": len(run.epochs),
        "completed": completed,
        "data_s": data_s,
        "compile_s": compile_s,
        "epoch_s_median": statistics.median(train_s),
        "eval_s_median": statistics.median(eval_s),
        "train_images_per_s": run.trainer.images_per_epoch * members / statistics.median(train_s),
        "measured_wall_s": measured_s,
        "wall_s": measured_s if completed else compile_s + epochs * per_epoch,
        "wall_s_is_extrapolated": not completed,
        "final_mae": [float(x) for x in run.epochs[-1].metrics["mae"]] if completed else None,
        "final_train_loss": [float(x) for x in run.epochs[-1].train_loss],
        "device_memory": bench.device_memory(),
        "peak_host_memory_bytes": bench.peak_host_memory_bytes(),
    }


# ----------------------------------------------------------------------------------------------------------------
# Profiler traces
# ----------------------------------------------------------------------------------------------------------------
def op_times(trace_dir: str) -> collections.Counter:
    """Event name → total time (ms) of its complete events in the newest trace under `trace_dir` (empty if none)."""
    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True), key=os.path.getmtime)
    if not paths:
        return collections.Counter()
    with gzip.open(paths[-1]) as file:
        trace = json.load(file)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event["name"].startswith("$"):
            totals[event["name"]] += event.get("dur", 0) / 1e3
    return totals
