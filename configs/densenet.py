"""The paper's DenseNet baseline (Table 1: depth 19, 64×64, 242,009 parameters; titu1994's DenseNet, growth 12, no
bottleneck, compression 1) with the reference's regression head (Dense 128 → Dropout 0.2 → Dense 32 → Dense 1) and
its L2 (1e-4) on the initial and transition convolutions, trained with SSR-Net's recipe and data.

  ssr-jax train --config configs/densenet.py --workdir runs/densenet
  ssr-jax train --config configs/densenet.py:depth=13 --workdir runs/densenet13     # 108,377 parameters
  ssr-jax info --config configs/densenet.py                                          # 237,905 + 4,104

Result to expect (synthetic data, seed 0, jax 0.10.2; measured 2026-12-02):
  smoke (64 train / 40 test, 2 epochs, BatchNorm momentum 0.8): MAE 52.40, CA(3) 0.025, CA(5) 0.050 — a check that
        it trains end to end (predict-the-mean 19.07), not a result. Its demo schedule trains slowly on a CPU; no demo
        figure yet.
"""
from configs import base
from ssr_jax.config_lib import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, **base.SCHEDULES, depth=19)
    config = base.get_config()
    config.model.backbone = "densenet"
    config.model.head = "regression"
    config.model.stages = (101,)  # one stage: a head's bins (another head on this backbone: 101 ages)
    config.model.densenet_depth = int(arg.depth)
    config.model.lambda_local = config.model.lambda_d = 0.0  # no SSR readout
    return base.schedule(config, arg)
