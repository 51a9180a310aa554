"""Number of stages K and bins s_k: MAE against parameters, the comparison the paper drew only as bars (Fig. 3).

Each stage layout is its own program (shapes differ), so this sweep has one group per layout.

  ssr-jax sweep experiments/stages.py --workdir runs/stages --seeds 3
  ssr-jax sweep experiments/stages.py:smoke --workdir /tmp/stages
  ssr-jax report runs/stages --plot             # MAE-vs-parameters scatter

Runtime on the 2-core CPU: the smoke variant compiles 8 programs (≈2 min); the full sweep trains 8 × seeds runs.
"""
from configs import ssrnet
from ssr_jax.config_lib import parse_arg
from ssr_jax.sweep import sweep

STAGES = ((3, 3, 3), (2, 2, 2), (4, 4, 4), (5, 5, 5), (9, 9), (27,), (101,), (3, 3, 3, 3))


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    return ssrnet.get_config("smoke" if arg.smoke else None)


def get_sweep(arg=None):
    return sweep("model.stages", STAGES)
