"""Runs `--count` members of the `--members` λ grid one after another in this process (one program compiled once and
reused, as `sequential_vs_vmapped`'s sequential half does) and prints the wall time from process start, as JSON.

  python benchmarks/sequential_runs.py --members 25 --first 0 --count 25           # the whole grid, one process
  # the grid split over two single-core processes, one thread each:
  OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/sequential_runs.py --first 0 --count 13 &
  OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/sequential_runs.py --first 13 --count 12; wait
"""
from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import jax  # noqa: E402

from ssr_jax import bench, config_lib, host_memory  # noqa: E402
from ssr_jax.data import load_splits  # noqa: E402
from ssr_jax.state import stack_members  # noqa: E402
from ssr_jax.train import run_epochs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ssrnet.py")
    parser.add_argument("--set", action="append", default=[], help="key=value config override")
    parser.add_argument("--members", type=int, default=25)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    overrides = {"data.num_train": 2000, "data.num_test": 1000, **config_lib.parse_overrides(args.set)}
    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    configs = bench.member_configs(config, args.members)[args.first:args.first + args.count]
    splits = load_splits(config.data)
    single = bench.measure(config, configs[:1], splits, epochs=0)  # the programs, compiled once
    compiled_at = time.perf_counter() - START
    for member_config in configs:
        keys, hparams = stack_members([member_config])
        state = jax.block_until_ready(single.trainer.init(keys, hparams))
        for _ in run_epochs(single.trainer, state, keys, hparams, first=1, last=args.epochs):
            pass
    print(json.dumps({"first": args.first, "count": len(configs), "epochs": args.epochs,
                      "compiled_after_s": compiled_at, "wall_s": time.perf_counter() - START,
                      "affinity": sorted(os.sched_getaffinity(0)), "omp": os.environ.get("OMP_NUM_THREADS")}))


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as `ssr-jax` does: XLA:CPU's temporaries reused between calls
    main()
