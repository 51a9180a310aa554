"""The GPU check of issue 6, driven by `benchmarks/gpu_check.sh` (which installs what the machine lacks first).

Sections, in order, each written to `OUT/gpu_check.json` as soon as it ends (a run killed at its limit still leaves
what it measured):
  single       SSR-Net (3,3,3), 44,000 train / 11,000 test (MORPH2-sized synthetic set, MORPH2-like ages), batch
               50, 90 epochs, an evaluation after each: wall time (goal < 60 s), compile included, data generation
               reported apart; its epochs give the batch-50 training images/s
  throughput   steady-state training images/s at batch 512 and 4,096, and at batch 50 with the other convolution
               implementation (`bench.run_benchmark`)
  lambda_grid  the reference's 25-config λ_local × λ_d grid as one vmapped group, same data and schedule: wall time
               (goal < 5 min)
Each section keeps to a share of `--budget_s` (single: the first 25 %, throughput: until 50 %, the grid: the
rest); a whole run that cannot finish inside its share stops as soon as its measured epochs show it, and its wall
time is reported as extrapolated from them (`wall_s_is_extrapolated`), never silently cut.

  python benchmarks/gpu_check.py --out DIR [--smoke] [--budget_s 400] [--conv auto|patches|xla]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import traceback

import jax

from _common import timed_run
from configs import ssrnet
from ssr_jax import bench, config_lib, host_memory
from ssr_jax.data import load_splits
from ssr_jax.models.conv import kernels

GOALS = {"single_wall_s": 60.0, "lambda_grid_wall_s": 300.0}
FULL = {"num_train": 44_000, "num_test": 11_000, "epochs": 90, "grid": 25, "batches": (50, 512, 4096),
        "timed_epochs": 2}
SMOKE = {"num_train": 100, "num_test": 50, "epochs": 2, "grid": 4, "batches": (50, 100), "timed_epochs": 1}


def base_config(sizes: dict):
    config = ssrnet.get_config()
    return config_lib.apply_overrides(config, {
        "data.num_train": sizes["num_train"], "data.num_test": sizes["num_test"],
        "data.age_distribution": "morph", "train.epochs": sizes["epochs"], "train.batch_size": 50,
        "train.eval_batch_size": 500 if sizes is FULL else 50,
        # As configs/base.py's smoke schedule: a few steps leave momentum-0.99 BatchNorm statistics unusable.
        "model.bn_momentum": 0.99 if sizes is FULL else 0.8,
    })


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a CPU test of this script")
    parser.add_argument("--budget_s", type=float, default=400.0, help="seconds for everything after start-up")
    parser.add_argument("--conv", default="auto", choices=("auto", "mixed", "patches", "xla"),
                        help="model.conv of the whole runs (auto: lax.conv on a GPU, ssr_jax/models/conv.py); the other "
                             "kind (xla or patches) is timed at batch 50 in the throughput section")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    deadline = start + args.budget_s
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = SMOKE if args.smoke else FULL
    config = base_config(sizes)
    report = {"smoke": args.smoke, "goals": GOALS, "sizes": {k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in sizes.items()},
              "device": bench.device_summary(), "jax_version": jax.__version__, "sections": {}}

    def save():
        report["elapsed_s"] = time.perf_counter() - start
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2))

    def say(text):
        print(f"[{time.perf_counter() - start:6.1f} s] {text}", flush=True)

    say(f"devices: {jax.devices()}")
    data_start = time.perf_counter()
    splits = load_splits(config.data)
    report["data_s"] = time.perf_counter() - data_start
    say(f"synthetic data: {sizes['num_train']:,} + {sizes['num_test']:,} images in {report['data_s']:.1f} s")
    save()

    conv = args.conv
    # Resolved as the runs will resolve it (a single run, this machine's default device), before anything traces.
    trains_with = kernels(conv, platform=jax.devices()[0].platform).train
    report["conv_for_runs"] = f"{conv} (training: {trains_with})"
    run_config = config_lib.apply_overrides(config, {"model.conv": conv})

    def whole_run(name, members, section_deadline):
        say(f"{name}: {members} member(s), {sizes['epochs']} epochs, conv={conv}")
        try:
            result = timed_run(run_config, members=members, splits=splits, deadline=section_deadline)
        except Exception as error:  # noqa: BLE001 — record it and go on
            report["sections"][name] = {"error": repr(error)}
            traceback.print_exc()
        else:
            goal = GOALS[f"{name}_wall_s"]
            result.update(goal_wall_s=goal, goal_met=result["wall_s"] < goal)
            report["sections"][name] = result
            how = (f"EXTRAPOLATED from {result['epochs_run']} epochs" if result["wall_s_is_extrapolated"]
                   else "measured")
            say(f"{name}: {result['wall_s']:.1f} s ({how}; goal < {goal:.0f} s), compile {result['compile_s']:.1f} s,"
                f" {result['train_images_per_s']:,.0f} training images/s, final MAE {result['final_mae']}")
        save()

    # 1. The single 90-epoch run (its epochs are also the batch-50 throughput) ----------------------------------
    whole_run("single", 1, start + 0.25 * args.budget_s)

    # 2. Throughput at the other batch sizes, and the other convolution at batch 50 -----------------------------
    throughput = report["sections"]["throughput"] = []
    single = report["sections"].get("single", {})
    if "train_images_per_s" in single:
        throughput.append({"batch": 50, "conv": conv, "train_images_per_s": single["train_images_per_s"],
                           "from": "the single run's epochs"})
    other_conv = "patches" if trains_with == "xla" else "xla"
    variants = [(batch, conv) for batch in sizes["batches"][1:]]
    if not args.smoke:  # lax.conv inside the epoch's scan crawls on XLA:CPU (≈10 images/s): GPU only
        variants.append((50, other_conv))
    for batch, variant_conv in variants:
        if time.perf_counter() > start + 0.5 * args.budget_s:
            throughput.append({"batch": batch, "conv": variant_conv, "skipped": "over the section's budget"})
            continue
        variant = config_lib.apply_overrides(config, {"train.batch_size": batch, "model.conv": variant_conv})
        try:
            result = bench.run_benchmark(variant, timed_epochs=sizes["timed_epochs"], warmup_epochs=1,
                                         splits=splits)
        except Exception as error:  # noqa: BLE001
            throughput.append({"batch": batch, "conv": variant_conv, "error": repr(error)})
            traceback.print_exc()
        else:
            throughput.append({key: result[key] for key in (
                "batch", "members", "compile_s", "epoch_s", "train_images_per_s", "eval_images_per_s",
                "train_gflop_per_s", "bytes_per_image", "dataset_device_bytes", "device_memory")}
                | {"conv": variant_conv})
            say(f"batch {batch:5d} conv={variant_conv:<7}: train {result['train_images_per_s']:10,.0f} images/s, "
                f"eval {result['eval_images_per_s']:10,.0f} images/s, compile {result['compile_s']:.1f} s")
        save()

    # 3. The λ grid as one vmapped group -----------------------------------------------------------------------
    whole_run("lambda_grid", sizes["grid"], deadline)

    say(f"written: {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as `ssr-jax` does: XLA:CPU's temporaries reused between calls
    sys.exit(main())
