"""DEX on the SSR-Net backbone: one 101-way softmax stage and the expectation Σ_i p_i·i (V = 101), no Δ/η heads.

Same backbone, fusion block, data and recipe as `ssrnet.py`, so the two differ only in the readout:
  ssr-jax train --config configs/dex.py --workdir runs/dex
  ssr-jax train --config configs/dex.py:demo --workdir runs/dex_demo

Result to expect (synthetic data, seed 0, jax 0.10.2; how long it took: benchmarks/README.md):
  demo (3,000 train / 1,000 test, 6 epochs, augmentation on; measured 2026-12-02 on a 2-core
        Intel Xeon): MAE 8.28, CA(3) 0.264, CA(5) 0.410 (predict-the-mean MAE 24.99; a 2-core AMD EPYC, earlier:
        MAE 8.51).
  medium (5,000 train / 2,500 test, 20 epochs, RESULTS.md): MAE 5.50 ± 0.37 over seeds 0–2 (Intel Xeon).
"""
from configs import base
from ssr_jax.config_lib import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, **base.SCHEDULES)
    config = base.get_config()
    config.model.head = "dex"
    config.model.stages = (101,)
    config.model.lambda_local = 0.0
    config.model.lambda_d = 0.0
    config.model.with_delta = False
    config.model.with_eta = False
    return base.schedule(config, arg)
