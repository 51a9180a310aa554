"""CPU milliseconds per image (batch 1) of every head of `experiments/heads.py` on the SSR-Net backbone, timed apart
from the training runs on a quiet machine: the real-face runs train two at a time, one per core, and a timing there
would measure the neighbour too. The time depends on the architecture, not on the weights, so random weights of
each head's shapes stand in for the trained ones.

  python benchmarks/inference_by_head.py --out results/heads_utkface/inference_ms.json

Each head: `saved_model.inference_ms` (the median of `--repeats` calls of the compiled batch-1 prediction, the
CPU's own convolutions), `--rounds` times, in round-robin order so that a slow spell of the machine spreads over all
heads; the JSON keeps every round and the median, with the machine (`ssr_jax.environment`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import jax
import numpy as np

from _common import wait_for_quiet
from ssr_jax import environment, host_memory, saved_model, sweep
from ssr_jax.models import abstract_variables, count_parameters
from ssr_jax.models.conv import kernels as resolve_kernels

EXPERIMENT = "experiments/heads.py:data=utkface"


def random_variables(config) -> dict:
    """Weights of the model's shapes: N(0, 0.05²) leaves, BatchNorm variances 1 (finite activations)."""
    rng = np.random.default_rng(0)
    shapes = abstract_variables(config.model, config.data.image_size)

    def leaf(path, shape):
        if path[-1].key == "var":
            return np.ones(shape.shape, np.float32)
        return (0.05 * rng.standard_normal(shape.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--quiet_wait", type=float, default=120.0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    host_memory.reuse_freed_memory()  # as the ssr-jax program runs
    heads = {}
    for run in sweep.expand(EXPERIMENT, seeds=1):
        if run.name not in heads:  # one per head (the splits share the architecture)
            heads[run.name] = (run.config, random_variables(run.config),
                               resolve_kernels(run.config.model.conv, platform="cpu"))
    busy = wait_for_quiet(args.quiet_wait)
    rounds = {name: [] for name in heads}
    for _ in range(args.rounds):
        for name, (config, variables, kernels) in heads.items():
            rounds[name].append(saved_model.inference_ms(config, variables, kernels, repeats=args.repeats))
    result = {"experiment": EXPERIMENT, "batch": 1, "repeats": args.repeats, "busy_before": busy,
              "environment": environment.gather(conv={"inference": next(iter(heads.values()))[2].evaluate},
                                                devices=jax.devices("cpu")[:1]),
              "heads": {name: {"head": config.model.head, "params": count_parameters(variables)["total"],
                               "ms_per_image_rounds": rounds[name],
                               "ms_per_image": statistics.median(rounds[name])}
                        for name, (config, variables, _) in heads.items()}}
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as file:
            file.write(text + "\n")
    for name, row in result["heads"].items():
        print(f"{name:18} {row['params']:>9,} parameters  {row['ms_per_image']:6.3f} ms/image  "
              f"(rounds {', '.join(f'{value:.3f}' for value in row['ms_per_image_rounds'])})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
