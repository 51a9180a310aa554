"""The field's heads on one compact backbone: SSR, DEX, regression, CORAL, CORN, OR-CNN, mean-variance, DLDL,
DLDL-v2 and SORD on the SSR-Net trunk (`ssr_jax/models/heads`), one recipe, one dataset — one row per head.

  ssr-jax sweep experiments/heads.py --workdir runs/heads --seeds 3                   # synthetic faces, 3 seeds
  ssr-jax sweep experiments/heads.py:smoke --workdir /tmp/heads_smoke --seeds 1        # pipeline check
  ssr-jax sweep experiments/heads.py:medium,mobilenet --workdir runs/heads_mobilenet   # + MobileNet-0.25 rows
  ssr-jax sweep experiments/heads.py:data=utkface,epochs=24 --workdir runs/heads_utkface --seeds 1   # 5 real splits
  ssr-jax report runs/heads --baseline "SSR-Net (3,3,3)"

Arguments: a schedule (smoke, demo, medium: `configs/base.py`), `mobilenet` (every one-stage head on the
MobileNet-0.25 baseline as well; the SSR head needs the SSR-Net trunk's stages), `data=NAME` (a prepared dataset)
and `epochs=N` (its schedule, default 30). On a prepared dataset the runs follow the benchmark protocol
(`data.protocol="benchmark"`) with configs/utkface.py's recipe and sweep its five splits (`data.split_index` 0–4,
each its own group; the report takes the split, like the seed, as a replicate: use --seeds 1); the synthetic faces
have no splits, so there the seeds replicate. The real-face runs train two at a time, one single-threaded shard
per core (README, "Sweeps"), untimed; the heads' CPU time is benchmarks/inference_by_head.py's. The heads other than
SSR have one stage of 101 bins (the ages 0–100) on the fusion block DEX uses; each is read by its own decision
rule (`model.decode` = "": the report's "decode" column names it) and trained with its paper's loss (DEX: L1 on the
expectation, as SSR-Net).
One group per head (the head is structural).

Columns: head and decision rule, MAE, CA(3), CA(5), parameters, size, CPU ms per image at batch 1.

Smoke result to expect (`:smoke --seeds 1`: 64 train / 40 test synthetic faces, 2 epochs, BatchNorm momentum 0.8; it
shows that every head trains and reports end to end, not a finding — predicting the mean scores 19.07 on those 40
faces; measured 2026-12-07 on a 2-core AMD EPYC): MAE SSR-Net 33.78, DEX 18.63, regression 24.67 (the three as
their own configs give them), DLDL 19.06, DLDL-v2 18.74; CORAL 38.05, CORN 53.38, OR-CNN 18.38, mean-variance
18.38, SORD 19.06; with `mobilenet`, MobileNet-0.25's rows: DEX 19.18, regression 54.01 (as configs/mobilenet.py),
CORAL 45.58, CORN 54.42, OR-CNN 18.98, mean-variance 19.20, DLDL, DLDL-v2 and SORD 19.17.
On real faces (`data=utkface,epochs=24`, the five splits): RESULTS.md, "Heads on real faces".
"""
from configs import dex, ssrnet, utkface
from ssr_jax import config_lib
from ssr_jax.config_lib import parse_arg
from ssr_jax.data.folds import NUM_SPLITS
from ssr_jax.sweep import named, product, sweep

DEFAULT_SEEDS = 3
# Display names, in the table's order; SSR-Net's row is SSR-Net's own config.
HEADS = {"dex": "DEX", "regression": "regression", "coral": "CORAL", "corn": "CORN", "or_cnn": "OR-CNN",
         "mean_variance": "mean-variance", "dldl": "DLDL", "dldl_v2": "DLDL-v2", "sord": "SORD"}
ARGS = dict(**utkface.EXPERIMENT_ARGS, mobilenet=False)


def get_config(arg=None):
    """DEX's config (one stage of 101 bins on the SSR-Net trunk). On synthetic faces with CPU inference timing on;
    on a prepared dataset the recipe of configs/utkface.py for `epochs` under the benchmark protocol's split 0 (the
    sweep sets the others), untimed: the runs there go two at a time, one per core, and a timing beside another
    run would measure the neighbour too (RESULTS.md times the heads on a quiet machine)."""
    arg = parse_arg(arg, **ARGS)
    config = dex.get_config(utkface.experiment_schedule(arg))
    config.train.measure_inference = arg.data == "synthetic"
    return utkface.experiment_config(config, arg)


def get_sweep(arg=None):
    arg = parse_arg(arg, **ARGS)
    schedule = utkface.experiment_schedule(arg)
    rows = [named("SSR-Net (3,3,3)", config_lib.differences(dex.get_config(schedule), ssrnet.get_config(schedule)))]
    rows += [named(name, {"model.head": head}) for head, name in HEADS.items()]
    if arg.mobilenet:
        rows += [named(f"MobileNet-0.25 {name}", {"model.backbone": "mobilenet", "model.head": head})
                 for head, name in HEADS.items()]
    if arg.data == "synthetic":
        return rows
    return product(rows, sweep("data.split_index", range(NUM_SPLITS)))
