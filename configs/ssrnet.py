"""SSR-Net (3,3,3) with the Keras reference's recipe; `arg` picks a schedule.

  ssr-jax train --config configs/ssrnet.py --workdir runs/ssrnet            # 90 epochs, 10,000 synthetic faces
  ssr-jax train --config configs/ssrnet.py:demo --workdir runs/ssr_demo      # `make demo`'s schedule
  ssr-jax train --config configs/ssrnet.py:smoke --workdir /tmp/smoke        # tests: a few seconds
  ssr-jax train --config configs/ssrnet.py --workdir runs/ssr555 --config.model.stages=5,5,5

Measured on the 2-core CPU (jax 0.10.2), synthetic data:
  demo: MAE 10.39, CA(3) 0.174, CA(5) 0.325, 68 s incl. ≈10 s compile (3,000 train / 1,000 test, 6 epochs,
        augmentation on; predict-the-mean MAE 24.99); steady training ≈390–425 images/s at batch 50.
  full (90 epochs, 10,000 train / 2,500 test): MAE 3.55, CA(3) 0.538, CA(5) 0.748 (predict-the-mean 24.90);
        50 min wall with other jobs sharing the 2 cores for part of it, median 430 training images/s.
"""
from configs import base
from ssr_jax.config_lib import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False, demo=False)
    config = base.get_config()
    return base.shrink(config, smoke=arg.smoke, demo=arg.demo)
