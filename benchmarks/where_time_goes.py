"""Where a training step's time goes on this backend: each piece of `make_train`'s step timed alone.

  python benchmarks/where_time_goes.py [--config configs/ssrnet.py] [--set model.conv=xla] [--batch 50]
                                       [--steps 40] [--repeats 5] [--pieces forward_eval,step] [--profile DIR]
  XLA_FLAGS=--xla_force_host_platform_device_count=2 \
      python benchmarks/where_time_goes.py --pieces step,step_data_parallel

Every piece runs as one jitted `lax.scan` over `--steps` batches that already sit on the device (the shape of an
epoch in `ssr_jax.train`); the figure is the median over `--repeats` scans, in images/s. Pieces:
  augment             the reference augmentation alone (one affine resample per image)
  forward_eval        inference: BatchNorm running statistics, no dropout
  forward_train       the training forward pass and loss (batch statistics, dropout), no gradient
  forward_backward    loss and gradients (value_and_grad), no optimizer
  step                forward, backward and the Adam update: the training step without augmentation
  step_augment        the whole training step as `make_train` runs it
  step_data_parallel  `step`, the batch sharded over all devices of a `jax.sharding.Mesh` (`data` axis), the
                      state replicated (run with --xla_force_host_platform_device_count=N on a CPU)
  step_unrolled       `step` as a jitted function called from Python per batch (no scan: dispatch per step)
`--profile DIR` also records a `jax.profiler` trace of `step_augment` and prints the ops that took the most time.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from quiet import wait_for_quiet
from ssr_jax import bench, config_lib, validation
from ssr_jax.data import augment, load_splits
from ssr_jax.models import create_model, predict_age
from ssr_jax.state import make_optimizer, train_state_from_variables

PIECES = ("augment", "forward_eval", "forward_train", "forward_backward", "step", "step_augment",
          "step_data_parallel", "step_unrolled")


def _model_input(images, data_config):
    try:  # newer trees convert colour order and scale here; older ones feed raw float32
        from ssr_jax.models import model_input
    except ImportError:
        return images.astype(jnp.float32)
    return model_input(images, data_config)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both benchmark scripts take."""
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


def build(config, steps: int):
    """Functions `piece(state, batches) -> (state, scalar)` for each piece, the initial state and the batches."""
    model = create_model(config.model)
    batch = config.train.batch_size
    train, _ = load_splits(config.data)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train["age"]))
    order = np.resize(order, steps * batch)
    batches = {"image": train["image"][order].reshape(steps, batch, *train["image"].shape[1:]),
               "age": train["age"][order].astype(np.float32).reshape(steps, batch)}
    hparams = {"learning_rate": jnp.float32(config.optim.learning_rate),
               "lambda_local": jnp.float32(config.model.lambda_local), "lambda_d": jnp.float32(config.model.lambda_d)}
    image_shape = train["image"].shape[1:]
    variables = jax.jit(lambda key: model.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False))(
        jax.random.key(0))
    state = train_state_from_variables(config, variables, hparams)
    tx = make_optimizer(config.optim, hparams["learning_rate"], epochs=config.train.epochs, steps_per_epoch=steps)
    augmentation = augment.from_config(config.data.get("augment")) or augment.from_config(
        {"enabled": True, "flip": True, "rotation_deg": 20.0, "shear": 0.2, "shift": 0.2, "zoom": (0.8, 1.2),
         "probability": 0.25})
    key = jax.random.key(1)

    def readout(heads):
        return predict_age(config.model, heads, lambda_local=hparams["lambda_local"], lambda_d=hparams["lambda_d"])

    def loss_fn(params, batch_stats, images, ages, step):
        heads, mutated = model.apply({"params": params, "batch_stats": batch_stats}, _model_input(images, config.data),
                                     train=True, rngs={"dropout": jax.random.fold_in(key, step)},
                                     mutable=["batch_stats"])
        return jnp.mean(jnp.abs(readout(heads) - ages)), mutated["batch_stats"]

    def one_step(state, images, ages, *, with_augment):
        # The named scopes label these ops in the compiled program (step_attribution.py reads them).
        if with_augment:
            with jax.named_scope("augmentation"):
                images = augment.augment_batch(jax.random.fold_in(key, state.step), images, augmentation)
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, images, ages, state.step)
        with jax.named_scope("optimizer"):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state), loss

    bodies = {
        "augment": lambda state, b: (state, jnp.mean(augment.augment_batch(
            jax.random.fold_in(key, state.step), b["image"], augmentation).astype(jnp.float32))),
        "forward_eval": lambda state, b: (state, jnp.mean(readout(model.apply(
            {"params": state.params, "batch_stats": state.batch_stats}, _model_input(b["image"], config.data),
            train=False)))),
        "forward_train": lambda state, b: (state, loss_fn(state.params, state.batch_stats, b["image"], b["age"],
                                                          state.step)[0]),
        "forward_backward": lambda state, b: (state, sum(jnp.sum(g) for g in jax.tree.leaves(jax.grad(
            lambda p: loss_fn(p, state.batch_stats, b["image"], b["age"], state.step)[0])(state.params)))),
        "step": lambda state, b: one_step(state, b["image"], b["age"], with_augment=False),
        "step_augment": lambda state, b: one_step(state, b["image"], b["age"], with_augment=True),
    }

    def scanned(body):
        return jax.jit(lambda state, batches: jax.lax.scan(body, state, batches))

    functions = {name: scanned(body) for name, body in bodies.items()}
    functions["step_data_parallel"] = _data_parallel(scanned(bodies["step"]), batch)
    step_once = jax.jit(lambda state, b: bodies["step"](state, b))

    def unrolled(state, batches):
        losses = []
        for index in range(steps):
            state, loss = step_once(state, jax.tree.map(lambda x, i=index: x[i], batches))
            losses.append(loss)
        return state, jnp.stack(losses)

    functions["step_unrolled"] = unrolled
    return functions, state, jax.device_put(batches)


def _data_parallel(function, batch):
    """`function` with the batch axis (axis 1 of [steps, batch, ...]) sharded over a 1-D `data` mesh."""
    devices = np.array(jax.devices())
    if batch % len(devices):
        return None
    mesh = jax.sharding.Mesh(devices, ("data",))
    spec = jax.sharding.PartitionSpec
    sharded = jax.sharding.NamedSharding(mesh, spec(None, "data"))
    replicated = jax.sharding.NamedSharding(mesh, spec())
    return function, lambda state, batches: (jax.device_put(state, replicated), jax.device_put(batches, sharded))


def time_piece(function, state, batches, repeats: int, quiet_wait: float = 0.0):
    if isinstance(function, tuple):
        function, place = function
        state, batches = place(state, batches)
    start = time.perf_counter()
    jax.block_until_ready(function(state, batches))  # compile and warm up
    first = time.perf_counter() - start
    seconds, busy = [], []
    for _ in range(repeats):
        busy.append(wait_for_quiet(quiet_wait) if quiet_wait else None)
        start = time.perf_counter()
        jax.block_until_ready(function(state, batches))
        seconds.append(time.perf_counter() - start)
    return seconds, first, busy


def top_ops(trace_dir: str, count: int = 20) -> list[tuple[str, float]]:
    """The `count` event names with the most total time (ms) in the newest trace under `trace_dir`."""
    return op_times(trace_dir).most_common(count)


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
    functions, state, batches = build(config, args.steps)
    images = args.steps * config.train.batch_size
    header = (f"{config.model.backbone}/{config.model.head} {tuple(config.model.stages)} conv={config.model.conv} pool={args.pool} batch "
              f"{config.train.batch_size}, {args.steps} steps, {len(jax.devices())} {jax.devices()[0].platform} "
              f"device(s), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    if not args.json:
        print(header)
    for name in args.pieces.split(","):
        if functions.get(name) is None:
            print(f"{name:<20} skipped (batch not divisible by the device count)")
            continue
        seconds, first, busy = time_piece(functions[name], state, batches, args.repeats, args.quiet_wait)
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
        function = functions["step_augment"]
        jax.block_until_ready(function(state, batches))
        with jax.profiler.trace(args.profile, create_perfetto_trace=False):
            jax.block_until_ready(function(state, batches))
        total = args.steps
        print(f"\njax.profiler trace in {args.profile}; ops with the most time over {total} steps (ms):")
        for op, ms in top_ops(args.profile):
            print(f"  {ms:9.1f}  {op}")


if __name__ == "__main__":
    sys.exit(main())
