"""The paper's DenseNet baseline (Table 1: depth 19, 64×64, 242,009 parameters; titu1994's DenseNet, growth 12, no
bottleneck, compression 1) with the reference's regression head (Dense 128 → Dropout 0.2 → Dense 32 → Dense 1) and
its L2 (1e-4) on the initial and transition convolutions, trained with SSR-Net's recipe and data.

  ssr-jax train --config configs/densenet.py --workdir runs/densenet
  ssr-jax train --config configs/densenet.py:depth=13 --workdir runs/densenet13     # 108,377 parameters
  ssr-jax info --config configs/densenet.py                                          # 237,905 + 4,104
"""
from configs import base
from ssr_jax.config_lib import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False, demo=False, depth=19)
    config = base.get_config()
    config.model.family = "densenet"
    config.model.densenet_depth = int(arg.depth)
    config.model.lambda_local = config.model.lambda_d = 0.0  # no SSR readout
    config = base.shrink(config, smoke=arg.smoke, demo=arg.demo)
    return base.smoke_model(config) if arg.smoke else config  # smoke also changes the model: see base.smoke_model
