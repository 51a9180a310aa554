"""The paper's Table 1 at 64×64: SSR-Net (3,3,3) against the compact baselines MobileNet (α = 0.25) and DenseNet
(depth 19) with the reference's regression heads, and DEX on the SSR-Net backbone — one recipe, one dataset.

  ssr-jax sweep experiments/table1.py --workdir runs/table1 --seeds 3          # synthetic data
  ssr-jax sweep experiments/table1.py:data=morph2 --workdir runs/table1_morph2  # a prepared MORPH2
  ssr-jax sweep experiments/table1.py:smoke --workdir /tmp/table1 --seeds 1
  ssr-jax sweep experiments/table1.py:medium --workdir runs/table1 --seeds 1    # RESULTS.md's run
  ssr-jax report runs/table1 --baseline "SSR-Net (3,3,3)"

Columns: parameters (226,309 MobileNet and 242,009 DenseNet, as the reference's .h5 files), size, MAE, CA(3),
CA(5), and the finished model's CPU inference time per image (batch 1), measured at the end of each run. Four
programs (the architectures differ), each training its seeds as one vmapped group. The paper's numbers (MORPH2,
after IMDB-WIKI pre-training): SSR-Net 3.16, MobileNet 6.50, DenseNet 5.05; 0.32 / 1.0 / 1.1 MB.

Result to expect at `:medium --seeds 1` (5,000 train / 2,500 test synthetic faces, 20 epochs; 40 minutes of runs on a
2-core Intel Xeon, 31 of them DenseNet's, which trains at ≈68 images/s: every seed adds half an hour on such a CPU;
every oneDNN call on both cores, which `OMP_NUM_THREADS=2` reproduces (RESULTS.md, "Machines")): MAE DEX 5.83,
DenseNet-19 5.85, SSR-Net 6.70, MobileNet-0.25 9.41; CPU ms/image at batch 1: 1.19, 6.95, 1.38, 0.89.

Smoke result to expect (`:smoke --seeds 1`: 64 train / 40 test synthetic faces, 2 epochs, BatchNorm momentum 0.8;
measured 2026-12-06 on a 2-core AMD EPYC; it shows that the sweep runs end to end, not a finding — the
predict-the-mean MAE on those 40 faces is 19.07):
  MAE DEX 18.63, SSR-Net 33.78, DenseNet 52.40, MobileNet 54.01 (two epochs leave the deep baselines untrained);
  sizes 159.8 / 433.4 / 945.3 / 884.0 KB.
"""
from configs import base, densenet, dex, mobilenet, ssrnet
from ssr_jax import config_lib
from ssr_jax.config_lib import parse_arg
from ssr_jax.sweep import named

DEFAULT_SEEDS = 3
BASE = ssrnet.get_config()
ROWS = [
    named("SSR-Net (3,3,3)", {"model.head": "ssr"}),
    named("MobileNet-0.25", config_lib.differences(BASE, mobilenet.get_config())),
    named("DenseNet-19", config_lib.differences(BASE, densenet.get_config())),
    named("DEX", config_lib.differences(BASE, dex.get_config())),
]


def get_config(arg=None):
    """SSR-Net's config with CPU inference timing on; `arg` names a prepared dataset instead of synthetic data."""
    arg = parse_arg(arg, **base.SCHEDULES, data="synthetic")
    config = ssrnet.get_config(",".join(name for name in base.SCHEDULES if arg[name]) or None)
    config.data.name = arg.data
    config.train.measure_inference = True
    return config


def get_sweep(arg=None):
    return ROWS
