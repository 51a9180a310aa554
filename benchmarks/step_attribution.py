"""A training step's op time by category, from one `jax.profiler` trace and the compiled program's HLO.

  python benchmarks/step_attribution.py [--config configs/ssrnet.py] [--set k=v] [--steps 20] [--out FILE.json]

Profiles `where_time_goes.py`'s `step_augment` (the package's training step with augmentation: `make_train`'s
epoch program, a `lax.scan` over a device-resident split) once, sums each XLA:CPU op's time in the trace, and gives
every op a category from its HLO instructions' `op_name`s (flax module paths, and the named scopes
`label_augmentation_and_optimizer` puts around augmentation and the optimizer): a oneDNN custom call by its target
(forward, backward-data, backward-weights); a fusion split over the categories of the instructions it contains, in
proportion to their count (a fused kernel's time cannot be split exactly; the proportion is an estimate). Categories: BatchNorm (the streams' bnN modules), activation and pooling
(in a stream's own scope, told apart by primitive: max/tanh/select/arithmetic vs reductions/reshapes/slices),
augmentation, optimizer, head/readout/loss (the SSR fusion stages, `predict_age`, the L1 loss), other. Prints a
table and writes JSON. The times are op times on XLA's and oneDNN's threads (2 cores: they can exceed the wall).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time

import jax
import optax

from _common import add_common_arguments, op_times
from where_time_goes import build
from ssr_jax import config_lib, host_memory, train, validation
from ssr_jax.data import augment

_ONEDNN = re.compile(r'custom_call_target="ssr_onednn_(\w+)"')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*$")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
# In a stream's own scope (not its bnN/convN submodules): ReLU, tanh and their gradients vs the block pooling.
_ACTIVATION_PRIMITIVES = {"max", "tanh", "gt", "select_n", "mul", "sub", "add", "integer_pow", "square"}


def label_augmentation_and_optimizer() -> None:
    """Puts the training step's augmentation and optimizer update under `jax.named_scope`s ("augmentation",
    "optimizer"), which name their ops' `op_name`s in the compiled program: metadata only, the computation stays the
    package's. Patches this process only (`ssr_jax.train` looks both up when it traces the step), and turns the
    persistent compilation cache off: its key leaves metadata out, so a cached executable of the same program
    compiled without the scopes would come back without their names."""
    jax.config.update("jax_enable_compilation_cache", False)
    augment_batch, make_optimizer = augment.augment_batch, train.make_optimizer

    def scoped_augment(*args, **kwargs):
        with jax.named_scope("augmentation"):
            return augment_batch(*args, **kwargs)

    def scoped_optimizer(*args, **kwargs):
        tx = make_optimizer(*args, **kwargs)

        def update(*update_args, **update_kwargs):
            with jax.named_scope("optimizer"):
                return tx.update(*update_args, **update_kwargs)

        return optax.GradientTransformation(tx.init, update)

    augment.augment_batch, train.make_optimizer = scoped_augment, scoped_optimizer


def category(op_name: str) -> str:
    """The category of one HLO instruction, from its `op_name` (JAX's name stack: flax module paths, named scopes,
    the primitive last)."""
    primitive = op_name.rsplit("/", 1)[-1]
    if "augmentation" in op_name:
        return "augmentation"
    if "optimizer" in op_name:
        return "optimizer"
    if re.search(r"_stream/bn\d", op_name):
        return "batchnorm"
    if re.search(r"_stream/conv\d", op_name):
        return "conv (XLA side)"
    if "_stream/" in op_name:
        return "activation" if primitive in _ACTIVATION_PRIMITIVES else "pooling"
    if "jvp(" in op_name or "transpose(" in op_name:
        return "head/readout/loss"
    return "other"


def attribute(hlo_text: str) -> dict[str, collections.Counter]:
    """Instruction name → Counter of categories (one count per instruction, a fusion's fused ones counted)."""
    computations: dict[str, list[str]] = {}
    current = None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) [(]", line)
        if header and line.rstrip().endswith("{"):
            current = header.group(1)
            computations[current] = []
        elif current is not None and _INSTRUCTION.match(line):
            computations[current].append(line)

    def categories(line: str) -> collections.Counter:
        onednn = _ONEDNN.search(line)
        if onednn:
            return collections.Counter({f"oneDNN {onednn.group(1)}": 1})
        calls = _CALLS.search(line)
        if " fusion(" in line and calls and calls.group(1) in computations:
            total = collections.Counter()
            for inner in computations[calls.group(1)]:
                if " parameter(" not in inner and " constant(" not in inner:
                    total += categories(inner)
            if total:
                return total
        op_name = _OP_NAME.search(line)
        return collections.Counter({category(op_name.group(1)) if op_name else "other": 1})

    return {_INSTRUCTION.match(line).group(1): categories(line)
            for lines in computations.values() for line in lines}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trace_dir", default="/tmp/ssr_step_attribution")
    parser.add_argument("--out", default="step_attribution.json")
    args = parser.parse_args(argv)
    overrides = {"data.num_train": 2000, "data.num_test": 100, **config_lib.parse_overrides(args.set)}
    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    validation.validate(config)
    label_augmentation_and_optimizer()
    call = build(config, args.steps)["step_augment"]()
    hlo = call.compiled().as_text()
    jax.block_until_ready(call())
    start = time.perf_counter()
    jax.block_until_ready(call())
    wall = time.perf_counter() - start
    with jax.profiler.trace(args.trace_dir, create_perfetto_trace=False):
        start = time.perf_counter()
        jax.block_until_ready(call())
        profiled_wall = time.perf_counter() - start
    times, categories = op_times(args.trace_dir), attribute(hlo)
    by_category, unmatched = collections.Counter(), collections.Counter()
    for name, ms in times.items():
        counts = categories.get(name)
        if counts is None:
            unmatched[name] += ms
            continue
        total = sum(counts.values())
        for category, count in counts.items():
            by_category[category] += ms * count / total
    op_total = sum(by_category.values())
    images = args.steps * config.train.batch_size
    print(f"step_augment, batch {config.train.batch_size}, {args.steps} steps: wall {wall:.3f} s "
          f"({images / wall:.0f} images/s), {profiled_wall:.3f} s profiled; op time {op_total / 1e3:.3f} s")
    for category, ms in by_category.most_common():
        print(f"  {category:<24} {ms / args.steps:8.2f} ms/step  {100 * ms / op_total:5.1f} %")
    print("  not HLO ops (top 8, ms over all steps):",
          ", ".join(f"{name} {ms:.0f}" for name, ms in unmatched.most_common(8)))
    record = {"steps": args.steps, "batch": config.train.batch_size, "wall_s": wall, "profiled_wall_s": profiled_wall,
              "images_per_s": images / wall, "op_ms_per_step": {k: v / args.steps for k, v in by_category.items()},
              "unmatched_ms": dict(unmatched.most_common(20)), "conv": config.model.conv,
              "host": os.uname().nodename, "jax": jax.__version__}
    with open(args.out, "w") as file:
        json.dump(record, file, indent=1)
    print(f"JSON in {args.out}")


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as `ssr-jax` does: XLA:CPU's temporaries reused between calls
    sys.exit(main())
