"""CPU seconds of one checkpoint save and one restore of a training state, in the packed layout `ssr_jax.checkpoint`
writes (one array per dtype) and in the earlier one (one Orbax array per leaf), and the bytes on disk of each.

  python benchmarks/checkpoints.py                  # a table: median of --repeats per state and layout
  python benchmarks/checkpoints.py --out benchmarks/records/checkpoints.json   # and every timing as JSON

The states are a trainer's own (`Trainer.init`, as a run checkpoints them): SSR-Net (3,3,3) alone and as a group of
eight members, and DEX. CPU time of this process, every thread (Orbax writes from worker threads), not wall.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile
import time

import jax
import orbax.checkpoint as ocp

from configs import dex, ssrnet
from ssr_jax import checkpoint, config_lib, environment
from ssr_jax.state import stack_members
from ssr_jax.train import make_train

STATES = {"ssrnet": (ssrnet, 1), "ssrnet_8_members": (ssrnet, 8), "dex": (dex, 1)}


def training_state(module, members: int):
    config = module.get_config("smoke")
    configs = [config_lib.apply_overrides(config, {"seed": seed}) for seed in range(members)]
    return make_train(config).init(*stack_members(configs))


def save_earlier_layout(directory: pathlib.Path, step: int, state) -> None:
    """What `checkpoint.save` wrote before the packed layout: Orbax's StandardSave of the state itself."""
    with ocp.CheckpointManager(directory, item_handlers=ocp.StandardCheckpointHandler()) as manager:
        manager.save(step, args=ocp.args.StandardSave(state), force=True)


def cpu_seconds(function) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def measure(state, save, repeats: int) -> dict:
    """Per repeat: save a new step, then restore it into the state's abstract shapes (through `checkpoint.restore`,
    which reads both layouts)."""
    target = jax.eval_shape(lambda: state)
    saves, restores = [], []
    with tempfile.TemporaryDirectory() as directory:
        directory = pathlib.Path(directory)
        save(directory, 0, state)  # Orbax's first save in a process imports and builds what later ones reuse
        checkpoint.restore(directory, target)
        for step in range(1, repeats + 1):
            saves.append(cpu_seconds(lambda: save(directory, step, state)))
            restores.append(cpu_seconds(lambda: checkpoint.restore(directory, target, step=step)))
        size = sum(path.stat().st_size for path in (directory / str(repeats)).rglob("*") if path.is_file())
    return {"save_cpu_s": saves, "restore_cpu_s": restores, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="", help="also write the figures (every save and restore) to this JSON file")
    args = parser.parse_args()
    layouts = {"packed": checkpoint.save, "one_array_per_leaf": save_earlier_layout}
    record = {"cpu": environment.cpu(), "threads": environment.threads(), "versions": environment.versions(),
              "states": {}}
    for name, (module, members) in STATES.items():
        state = training_state(module, members)
        record["states"][name] = {"leaves": len(jax.tree.leaves(state)),
                                  **{layout: measure(state, save, args.repeats) for layout, save in layouts.items()}}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"{record['cpu']['model']}, jax {record['versions']['jax']}; CPU s, median of {args.repeats}")
    print(f"{'state':17} {'leaves':>6} {'layout':>19} {'save':>7} {'restore':>8} {'KB on disk':>11}")
    for name, result in record["states"].items():
        for layout in layouts:
            figures = result[layout]
            print(f"{name:17} {result['leaves']:6} {layout:>19} {statistics.median(figures['save_cpu_s']):7.3f} "
                  f"{statistics.median(figures['restore_cpu_s']):8.3f} {figures['bytes'] / 1024:11.0f}")


if __name__ == "__main__":
    main()
