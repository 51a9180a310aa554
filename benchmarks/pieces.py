"""Where the time goes: one `run_benchmark` per variant, printed as a line each (and JSON lines with --json).

  python benchmarks/pieces.py --config configs/ssrnet.py --set data.num_train=2000 --variant base \
      --variant conv=xla:model.conv=xla --variant noaug:data.augment.enabled=False --repeats 3

A variant is NAME[:key=value[:key=value...]]; the figures of each are medians over --repeats benchmark runs (each
itself the median of its timed epochs), so one noisy epoch on a shared machine does not decide a comparison.
XLA flags cannot change inside one process: run this once per XLA_FLAGS setting.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

from _common import add_common_arguments, use_flax_pooling, wait_for_quiet  # this folder is sys.path[0]
from ssr_jax import bench, config_lib, host_memory


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--variant", action="append", default=[], help="NAME[:key=value...]")
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timed_epochs", type=int, default=3)
    parser.add_argument("--warmup_epochs", type=int, default=1)
    args = parser.parse_args(argv)
    if args.pool == "flax":
        use_flax_pooling()
    base = config_lib.apply_overrides(config_lib.load_config(args.config), config_lib.parse_overrides(args.set))
    for spec in args.variant or ["base"]:
        name, *items = spec.split(":")
        config = config_lib.apply_overrides(base, config_lib.parse_overrides(items))
        results = []
        for _ in range(args.repeats):
            if args.quiet_wait:
                wait_for_quiet(args.quiet_wait)
            results.append(bench.run_benchmark(config, members=args.members, timed_epochs=args.timed_epochs,
                                               warmup_epochs=args.warmup_epochs))
        train = [r["train_images_per_s"] for r in results]
        evaluate = [r["eval_images_per_s"] for r in results]
        line = {"variant": name, "overrides": dict(config_lib.parse_overrides(items)), "members": args.members, "pool": args.pool,
                "batch": config.train.batch_size, "train_images_per_s_median": statistics.median(train),
                "train_images_per_s": train, "eval_images_per_s_median": statistics.median(evaluate),
                "compile_s": [r["compile_s"] for r in results],
                "epoch_s": [r["epoch_s"] for r in results], "xla_flags": results[0]["device"]["xla_flags"],
                "device_count": results[0]["device"]["device_count"],
                "train_gflop_per_s": results[-1]["train_gflop_per_s"],
                "host_busy_before": [r["host_busy_before"] for r in results]}
        if args.json:
            print(json.dumps(line), flush=True)
        else:
            print(f"{name:<24} train {line['train_images_per_s_median']:7.1f} img/s "
                  f"[{', '.join(f'{x:.0f}' for x in train)}]  eval {line['eval_images_per_s_median']:7.0f} img/s  "
                  f"compile {statistics.median(line['compile_s']):5.1f} s  batch {line['batch']}", flush=True)


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as `ssr-jax` does: XLA:CPU's temporaries reused between calls
    sys.exit(main())
