"""Where a short run should stop paying for XLA's optimisation: the compile seconds that backend optimisation level 0
saves against the slower training and evaluation code it gives, for one member and for a vmapped group
(`ssr_jax.train.SHORT_RUN_IMAGES` is set from these figures).

  python benchmarks/short_runs.py                     # the three shapes below, both levels; prints a table
  python benchmarks/short_runs.py --json --out benchmarks/records/short_runs.json

Each (shape, level) runs in a fresh process with an empty compilation cache, so every compile is a cold one:
  one       one member of `configs/ssrnet.py:smoke` (64 examples, batch 16: 4 steps an epoch)
  one_long  one member, 400 examples at batch 20 (20 steps), the SIGKILL tests' shape
  group8    eight members of `:smoke`, vmapped (the sweep of an accelerator; patches convolutions)
The crossing point is the training images (epochs × images per epoch × members) at which the level-0 run's extra
time has eaten its compile saving: saving / (extra seconds of an epoch and its evaluation, per training image).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

SHAPES = {"one": ({}, 1), "one_long": ({"data.num_train": 400, "train.batch_size": 20}, 1), "group8": ({}, 8)}
LEVELS = ("0", "default")

MEASURE = r"""
import json, os, sys, time
import jax
from configs import ssrnet
from ssr_jax import config_lib, host_memory, train, xla_options
from ssr_jax.state import stack_members

host_memory.reuse_freed_memory()  # as the ssr-jax program runs
overrides, members, level = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if level != "default":
    default = xla_options.compiler_options
    train.xla_options.compiler_options = lambda *a, **k: {**default(*a, **k),
                                                          "xla_backend_optimization_level": int(level)}
train.SHORT_RUN_IMAGES = -1  # the level asked for, whatever the run's length
config = config_lib.apply_overrides(ssrnet.get_config("smoke"), overrides)
keys, hparams = stack_members([config_lib.apply_overrides(config, {"seed": s}) for s in range(members)])
trainer = train.make_train(config)
state = trainer.init(keys, hparams)
compile_s = trainer.compile(state, keys, hparams)


def timed(function, least_s):
    function()  # warm: the first call allocates
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < least_s:
        function()
        calls += 1
    return (time.perf_counter() - start) / calls


holder = {"state": state}


def epoch():
    holder["state"], metrics = trainer.train_epoch(holder["state"], keys, hparams, 1)
    jax.block_until_ready(metrics)


epoch_s = timed(epoch, 6.0)
evaluate_s = timed(lambda: jax.block_until_ready(trainer.evaluate(holder["state"], hparams)), 3.0)
print(json.dumps({"compile_s": compile_s, "epoch_s": epoch_s, "evaluate_s": evaluate_s,
                  "train_images_per_epoch": trainer.images_per_epoch * members}))
"""


def measure(shape: str, level: str) -> dict:
    overrides, members = SHAPES[shape]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}
        result = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(overrides), str(members), level],
                                capture_output=True, text=True, check=True, env=env,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    results = {}
    for shape in args.shapes.split(","):
        by_level = {level: measure(shape, level) for level in LEVELS}
        fast, slow = by_level["default"], by_level["0"]
        saving_s = fast["compile_s"] - slow["compile_s"]
        extra_per_image_s = (slow["epoch_s"] + slow["evaluate_s"] - fast["epoch_s"] - fast["evaluate_s"]) / fast[
            "train_images_per_epoch"]
        results[shape] = {**{f"level_{level}": values for level, values in by_level.items()},
                          "compile_saving_s": saving_s, "extra_ms_per_train_image_with_evaluation": 1e3 * extra_per_image_s,
                          "crossing_train_images": saving_s / extra_per_image_s if extra_per_image_s > 0 else None}
    text = json.dumps(results, indent=2)
    if args.out:
        with open(args.out, "w") as file:
            file.write(text + "\n")
    if args.json:
        print(text)
        return
    print(f"{'shape':9} {'compile s (default → 0)':>24} {'epoch ms (default → 0)':>23} {'eval ms (default → 0)':>22}"
          f" {'crossing images':>16}")
    for shape, row in results.items():
        fast, slow = row["level_default"], row["level_0"]
        crossing = row["crossing_train_images"]
        crossing_text = f"{crossing:14.0f}" if crossing else f"{'0 always wins':>14}"  # level 0 no slower
        print(f"{shape:9} {fast['compile_s']:10.1f} → {slow['compile_s']:5.1f}      "
              f"{1e3 * fast['epoch_s']:8.0f} → {1e3 * slow['epoch_s']:6.0f}     "
              f"{1e3 * fast['evaluate_s']:8.0f} → {1e3 * slow['evaluate_s']:6.0f}   {crossing_text}")


if __name__ == "__main__":
    main()
