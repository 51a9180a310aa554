"""CPU seconds XLA takes to compile a model's initialisation (`model.init`) at its default optimisation and with the
compile-speed options (`ssr_jax.xla_options.COMPILE_SPEED_OPTIONS`, what `models.init_variables` and the trainer's
`init` use), and whether both programs give the same variables bit for bit.

  python benchmarks/init_compile.py                  # a table: median of --repeats compiles per model and options
  python benchmarks/init_compile.py --out benchmarks/records/init_compile.json   # and every compile as JSON

Each compile starts from the same lowered program with JAX's compilation cache off, so every one is cold. CPU time
of this process (the compiler runs on its thread), not wall: on a busy machine wall time measures the neighbours.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import dex, ssrnet
from ssr_jax import environment
from ssr_jax.models import create_model
from ssr_jax.xla_options import COMPILE_SPEED_OPTIONS, compiler_options

MODELS = {
    "ssrnet": lambda: ssrnet.get_config().model,  # SSR-Net (3,3,3)
    "dex": lambda: dex.get_config().model,  # SSR-Net's trunk with DEX's 101-way head
    "mobilenet": lambda: _baseline("mobilenet"),
    "densenet": lambda: _baseline("densenet"),
}


def _baseline(backbone: str):
    config = dex.get_config().model
    config.update(backbone=backbone)
    return config


def compile_seconds(model, key, images, options: dict) -> tuple[float, object]:
    """CPU seconds of one cold compile (a fresh lowering: JAX keeps compiled programs per lowering in memory)."""
    lowered = jax.jit(lambda key, images: model.init(key, images, train=False)).lower(key, images)
    start = time.process_time()
    compiled = lowered.compile(options)
    return time.process_time() - start, compiled


def largest_difference(got: list, want: list) -> float:
    """The largest |got − want| over the leaves, relative to the leaf's largest |want| (0: the same bits)."""
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(float(np.max(np.abs(np.asarray(b)))), 1e-30))
               for a, b in zip(got, want))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS), help="which of: " + ",".join(MODELS))
    parser.add_argument("--out", default="", help="also write the figures (every compile) to this JSON file")
    args = parser.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)
    images, key = jnp.zeros((1, 64, 64, 3), jnp.float32), jax.random.key(0)
    option_sets = {"default": compiler_options(), "compile_speed": {**compiler_options(), **COMPILE_SPEED_OPTIONS}}
    record = {"cpu": environment.cpu(), "threads": environment.threads(), "versions": environment.versions(),
              "models": {}}
    for name in args.models.split(","):
        model = create_model(MODELS[name]())
        seconds, variables = {}, {}
        for option_set, options in option_sets.items():
            runs = [compile_seconds(model, key, images, options) for _ in range(args.repeats)]
            seconds[option_set] = [run[0] for run in runs]
            variables[option_set] = jax.tree.leaves(runs[-1][1](key, images))
        got, want = variables["compile_speed"], variables["default"]
        differing = sum(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, want))
        record["models"][name] = {"cpu_s": seconds, "same_variables": differing == 0, "leaves": len(want),
                                  "leaves_differing": differing,
                                  "largest_relative_difference": largest_difference(got, want)}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"{record['cpu']['model']}, jax {record['versions']['jax']}; compile CPU s, median of {args.repeats}")
    print(f"{'model':12} {'default':>8} {'compile-speed':>14} {'leaves differing':>17} {'largest rel. diff.':>19}")
    for name, result in record["models"].items():
        medians = {option_set: statistics.median(values) for option_set, values in result["cpu_s"].items()}
        print(f"{name:12} {medians['default']:8.2f} {medians['compile_speed']:14.2f} "
              f"{result['leaves_differing']:>7} of {result['leaves']:<7} {result['largest_relative_difference']:19.1e}")


if __name__ == "__main__":
    main()
