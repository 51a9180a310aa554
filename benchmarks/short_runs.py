"""Where a short run should stop paying for XLA's optimisation: the compile seconds that the compile-speed options
(`ssr_jax.xla_options.COMPILE_SPEED_OPTIONS`: backend optimisation level 0, and on a CPU the loop emitters instead
of the fusion emitters) save against the slower training and evaluation code they give, for one member and for a
vmapped group (`ssr_jax.train.SHORT_RUN_IMAGES` is set from these figures). Each of the two alone is measured beside
them.

  python benchmarks/short_runs.py                     # the three shapes below, all four option sets; a table
  python benchmarks/short_runs.py --json --out benchmarks/records/short_runs.json

Each (shape, options) runs in a fresh process with an empty compilation cache, so every compile is a cold one:
  one       one member of `configs/ssrnet.py:smoke` (64 examples, batch 16: 4 steps an epoch)
  one_long  one member, 400 examples at batch 20 (20 steps), the SIGKILL tests' shape
  group8    eight members of `:smoke`, vmapped (the sweep of an accelerator; patches convolutions)
The crossing point is the training images (epochs × images per epoch × members) at which the compile-speed run's
extra time has eaten its compile saving: saving / (extra seconds of an epoch and its evaluation, per training image).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

SHAPES = {"one": ({}, 1), "one_long": ({"data.num_train": 400, "train.batch_size": 20}, 1), "group8": ({}, 8)}
# The names of the option sets MEASURE adds to `xla_options.compiler_options()`; their options are spelled out there,
# in the measuring process, which imports `ssr_jax.xla_options` for "compile_speed" (this parent process imports no
# JAX).
OPTION_SETS = ("default", "loop_emitters", "level_0", "compile_speed")

MEASURE = r"""
import json, os, sys, time
import jax
from configs import ssrnet
from ssr_jax import config_lib, host_memory, train, xla_options
from ssr_jax.state import stack_members

host_memory.reuse_freed_memory()  # as the ssr-jax program runs
overrides, members, option_set = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
extra = {"default": {}, "loop_emitters": {"xla_cpu_use_fusion_emitters": False},
         "level_0": {"xla_backend_optimization_level": 0},
         "compile_speed": xla_options.COMPILE_SPEED_OPTIONS}[option_set]
default = xla_options.compiler_options
train.xla_options.compiler_options = lambda *a, **k: {**default(*a, **k), **extra}
train.SHORT_RUN_IMAGES = -1  # the options asked for, whatever the run's length
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


def measure(shape: str, option_set: str) -> dict:
    overrides, members = SHAPES[shape]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}
        result = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(overrides), str(members), option_set],
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
        by_set = {option_set: measure(shape, option_set) for option_set in OPTION_SETS}
        fast, slow = by_set["default"], by_set["compile_speed"]
        saving_s = fast["compile_s"] - slow["compile_s"]
        extra_per_image_s = (slow["epoch_s"] + slow["evaluate_s"] - fast["epoch_s"] - fast["evaluate_s"]) / fast[
            "train_images_per_epoch"]
        results[shape] = {**by_set,
                          "compile_saving_s": saving_s, "extra_ms_per_train_image_with_evaluation": 1e3 * extra_per_image_s,
                          "crossing_train_images": saving_s / extra_per_image_s if extra_per_image_s > 0 else None}
    text = json.dumps(results, indent=2)
    if args.out:
        with open(args.out, "w") as file:
            file.write(text + "\n")
    if args.json:
        print(text)
        return
    print("default → loop emitters → level 0 → compile-speed options (both); crossing: compile-speed against default")
    print(f"{'shape':9} {'compile s':>28} {'epoch ms':>30} {'eval ms':>26} {'crossing images':>16}")
    for shape, row in results.items():
        sets = [row[option_set] for option_set in OPTION_SETS]
        crossing = row["crossing_train_images"]
        crossing_text = f"{crossing:14.0f}" if crossing else f"{'always wins':>14}"  # compile speed no slower
        print(f"{shape:9} " + "   ".join(" → ".join(f"{scale * values[name]:{width}.{digits}f}" for values in sets)
                                       for name, scale, width, digits in (("compile_s", 1, 5, 1), ("epoch_s", 1e3, 5, 0),
                                                                          ("evaluate_s", 1e3, 4, 0)))
              + f"   {crossing_text}")


if __name__ == "__main__":
    main()
