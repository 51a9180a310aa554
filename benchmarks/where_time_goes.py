"""Where a training step's time goes on this backend: the package's training step, and pieces of it timed alone.

  python benchmarks/where_time_goes.py [--config configs/ssrnet.py] [--set model.conv=xla] [--batch 50]
                                       [--steps 40] [--repeats 5] [--pieces forward_eval,step] [--profile DIR]
  XLA_FLAGS=--xla_force_host_platform_device_count=2 \
      python benchmarks/where_time_goes.py --pieces step,step_data_parallel

Every piece runs `--steps` batches of `--batch` images that already sit on the device; the figure is the median over
`--repeats` calls, in images/s. The `step*` pieces are `ssr_jax.train.make_train`'s own epoch program (one
`lax.scan` over a split of steps × batch images, as `ssr-jax train` runs it); the others are jitted scans of the
package's functions over the same batches. Pieces:
  augment             the reference augmentation alone (`data.augment.augment_batch`)
  forward_eval        inference: BatchNorm running statistics, no dropout, the head's readout
  forward_train       the training forward pass and the head's loss (batch statistics, dropout), no gradient
  forward_backward    loss and gradients (value_and_grad), no optimizer
  step                the training step with augmentation off (`data.augment.enabled=False`)
  step_augment        the training step with augmentation on
  step_data_parallel  `step` with the batch split over all devices (a 1 × N `parallel.make_mesh`; run with
                      --xla_force_host_platform_device_count=N on a CPU)
  step_unrolled       `step` compiled for one batch and called from Python per batch (no scan: dispatch per step)
`--profile DIR` also records a `jax.profiler` trace of `step_augment` and prints the ops that took the most time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp

from _common import Steps, add_common_arguments, op_times, step_splits, training_steps, use_flax_pooling, \
    wait_for_quiet
from ssr_jax import config_lib, host_memory, parallel, validation
from ssr_jax.data import augment
from ssr_jax.models import create_model, model_input, predict_age, regularisation, training_loss

PIECES = ("augment", "forward_eval", "forward_train", "forward_backward", "step", "step_augment",
          "step_data_parallel", "step_unrolled")


def build(config, steps: int) -> dict[str, Callable[[], Callable[[], object] | None]]:
    """Piece name → a function that sets the piece up and returns `call() -> result to block on` (None: the piece
    cannot run here). Set-up is deferred so that only the pieces asked for compile."""
    splits = step_splits(config, steps)
    without_augment = config_lib.apply_overrides(config, {"data.augment.enabled": False})
    with_augment = config_lib.apply_overrides(config, {"data.augment.enabled": True})

    def parts(name: str) -> Callable[[], object]:
        """A jitted scan of one piece of the step over the batches, with the initial state of `step`."""
        member = jax.tree.map(lambda leaf: leaf[0], training_steps(without_augment, splits).state)
        variables = {"params": member.params, "batch_stats": member.batch_stats}
        model = create_model(config.model)
        lambdas = {"lambda_local": jnp.float32(config.model.lambda_local), "lambda_d": jnp.float32(config.model.lambda_d)}
        augmentation = augment.from_config(with_augment.data.augment)
        key = jax.random.key(1)
        batch = config.train.batch_size
        batches = jax.device_put({"image": splits[0]["image"].reshape(steps, batch, *splits[0]["image"].shape[1:]),
                                  "age": splits[0]["age"].astype("float32").reshape(steps, batch)})

        def loss(params, b, index):
            heads, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                   model_input(b["image"], config.data), train=True,
                                   rngs={"dropout": jax.random.fold_in(key, index)}, mutable=["batch_stats"])
            return training_loss(config.model, heads, b["age"], **lambdas) + regularisation(config.model, params)

        bodies = {
            "augment": lambda b, index: jnp.mean(augment.augment_batch(
                jax.random.fold_in(key, index), b["image"], augmentation).astype(jnp.float32)),
            "forward_eval": lambda b, index: jnp.mean(predict_age(config.model, model.apply(
                variables, model_input(b["image"], config.data), train=False), **lambdas)),
            "forward_train": lambda b, index: loss(variables["params"], b, index),
            "forward_backward": lambda b, index: sum(jnp.sum(g) for g in jax.tree.leaves(
                jax.grad(loss)(variables["params"], b, index))),
        }

        def scan(batches):
            return jax.lax.scan(lambda total, xs: (total + bodies[name](*xs), None), jnp.float32(0),
                                (batches, jnp.arange(steps)))[0]

        program = jax.jit(scan)
        return lambda: program(batches)

    def unrolled() -> Callable[[], object]:
        one = training_steps(without_augment, ({n: a[:config.train.batch_size] for n, a in splits[0].items()},
                                               splits[1]))

        def call():
            for _ in range(steps):
                metrics = one()
            return metrics

        return call

    def data_parallel() -> Steps | None:
        devices = len(jax.devices())
        if devices == 1 or config.train.batch_size % devices:
            return None
        return training_steps(without_augment, splits, parallel.make_mesh(1, devices))

    return {
        **{name: (lambda name=name: parts(name)) for name in ("augment", "forward_eval", "forward_train",
                                                               "forward_backward")},
        "step": lambda: training_steps(without_augment, splits),
        "step_augment": lambda: training_steps(with_augment, splits),
        "step_data_parallel": data_parallel,
        "step_unrolled": unrolled,
    }


def time_piece(call: Callable[[], object], repeats: int, quiet_wait: float = 0.0):
    """Seconds of each of `repeats` calls after a first (compiling) one, that first call's seconds, and the busy
    fraction of the CPUs before each call (with `quiet_wait`)."""
    start = time.perf_counter()
    jax.block_until_ready(call())  # compile and warm up
    first = time.perf_counter() - start
    seconds, busy = [], []
    for _ in range(repeats):
        busy.append(wait_for_quiet(quiet_wait) if quiet_wait else None)
        start = time.perf_counter()
        jax.block_until_ready(call())
        seconds.append(time.perf_counter() - start)
    return seconds, first, busy


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batch", type=int, default=None, help="train.batch_size (default: the config's)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pieces", default=",".join(p for p in PIECES if p != "step_data_parallel"))
    parser.add_argument("--profile", default=None, help="directory for a jax.profiler trace of step_augment")
    args = parser.parse_args(argv)
    if args.pool == "flax":
        use_flax_pooling()
    overrides = {"data.num_train": 2000, "data.num_test": 100, **config_lib.parse_overrides(args.set)}
    if args.batch:
        overrides["train.batch_size"] = args.batch
    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    validation.validate(config)
    pieces = build(config, args.steps)
    images = args.steps * config.train.batch_size
    header = (f"{config.model.backbone}/{config.model.head} {tuple(config.model.stages)} conv={config.model.conv} pool={args.pool} batch "
              f"{config.train.batch_size}, {args.steps} steps, {len(jax.devices())} {jax.devices()[0].platform} "
              f"device(s), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    if not args.json:
        print(header)
    for name in args.pieces.split(","):
        call = pieces[name]()
        if call is None:
            print(f"{name:<20} skipped (one device, or the batch not divisible by the device count)")
            continue
        seconds, first, busy = time_piece(call, args.repeats, args.quiet_wait)
        rates = [images / s for s in seconds]
        row = {"piece": name, "images_per_s_median": statistics.median(rates), "images_per_s": rates,
               "first_call_s": first, "batch": config.train.batch_size, "conv": config.model.conv,
               "devices": len(jax.devices()), "xla_flags": os.environ.get("XLA_FLAGS", ""),
               "host_busy_before": busy, "pool": args.pool}
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{name:<20} {row['images_per_s_median']:8.1f} images/s  "
                  f"[{', '.join(f'{r:.0f}' for r in rates)}]  (compile+first {first:.1f} s)", flush=True)
    if args.profile:
        call = pieces["step_augment"]()
        jax.block_until_ready(call())
        with jax.profiler.trace(args.profile, create_perfetto_trace=False):
            jax.block_until_ready(call())
        print(f"\njax.profiler trace in {args.profile}; ops with the most time over {args.steps} steps (ms):")
        for op, ms in op_times(args.profile).most_common(20):
            print(f"  {ms:9.1f}  {op}")


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as `ssr-jax` does: XLA:CPU's temporaries reused between calls
    sys.exit(main())
