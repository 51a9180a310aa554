"""A plain regression head on the SSR-Net backbone: DEX's fusion block (width 101), one linear output, age = V · out.

Same backbone, data and recipe as `ssrnet.py` and `dex.py`, so the three differ only in the head and readout — the
third arm of `experiments/dex_vs_ssr.py`:
  ssr-jax train --config configs/regression.py --workdir runs/regression
  ssr-jax train --config configs/regression.py:demo --workdir runs/regression_demo

Parameters: 90,645 (90,261 trainable + 384 BatchNorm statistics).

Result to expect (synthetic data, seed 0, jax 0.10.2):
  demo (3,000 train / 1,000 test, 6 epochs, augmentation on; measured 2026-12-02): MAE 12.69,
        CA(3) 0.135, CA(5) 0.218 (predict-the-mean MAE 24.99).
"""
from configs import base
from ssr_jax.config_lib import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, **base.SCHEDULES)
    config = base.get_config()
    config.model.head = "regression"
    config.model.stages = (101,)
    config.model.lambda_local = 0.0
    config.model.lambda_d = 0.0
    config.model.with_delta = False
    config.model.with_eta = False
    return base.schedule(config, arg)
