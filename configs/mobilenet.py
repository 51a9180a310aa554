"""The paper's MobileNet baseline (Table 1: α = 0.25, 64×64, 226,309 parameters) with the reference's regression
head (Conv 1×1 20 → Flatten → Dropout 0.2 → Dense 32 → Dense 1), trained with SSR-Net's recipe and data.

  ssr-jax train --config configs/mobilenet.py --workdir runs/mobilenet
  ssr-jax train --config configs/mobilenet.py:alpha=0.5 --workdir runs/mobilenet_050    # 842,421 parameters
  ssr-jax info --config configs/mobilenet.py                                              # 220,837 + 5,472

Its depthwise and strided convolutions use XLA's own convolution, which trains slowly on XLA:CPU inside a scan
(see ssr_jax/models/conv.py); on a GPU it is fast.

Result to expect (synthetic data, seed 0, jax 0.10.2; measured 2026-12-02):
  demo (3,000 train / 1,000 test, 6 epochs, augmentation on): MAE 37.90, CA(3) 0.054, CA(5) 0.089 — worse than
        predicting the mean (24.99) while its training loss is ≈17: six epochs are too short for this baseline.
"""
from configs import base
from ssr_jax.config_lib import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, **base.SCHEDULES, alpha=0.25)
    config = base.get_config()
    config.model.backbone = "mobilenet"
    config.model.head = "regression"
    config.model.stages = (101,)  # one stage: a head's bins (another head on this backbone: 101 ages)
    config.model.mobilenet_alpha = float(arg.alpha)
    config.model.lambda_local = config.model.lambda_d = 0.0  # no SSR readout
    return base.schedule(config, arg)
