"""Number of stages K and bins s_k: MAE against parameters, the comparison the paper drew only as bars (Fig. 3).

Each stage layout is its own program (shapes differ), so this sweep has one group per layout.

  ssr-jax sweep experiments/stages.py --workdir runs/stages --seeds 3
  ssr-jax sweep experiments/stages.py:smoke --workdir /tmp/stages
  ssr-jax report runs/stages --plot             # MAE-vs-parameters scatter

The smoke variant compiles 8 programs; the full sweep trains 8 × seeds runs.
"""
from configs.ssrnet import get_config  # noqa: F401 — the experiment's base config (arg: smoke)
from ssr_jax.sweep import sweep

STAGES = ((3, 3, 3), (2, 2, 2), (4, 4, 4), (5, 5, 5), (9, 9), (27,), (101,), (3, 3, 3, 3))


def get_sweep(arg=None):
    return sweep("model.stages", STAGES)
