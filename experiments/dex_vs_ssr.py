"""DEX (101-way softmax expectation) vs SSR-Net (3,3,3) vs a plain regression head: same backbone and recipe.

  ssr-jax sweep experiments/dex_vs_ssr.py --workdir runs/dex_vs_ssr --seeds 3
  ssr-jax sweep experiments/dex_vs_ssr.py:medium --workdir runs/dex_vs_ssr --seeds 3   # RESULTS.md's run
  ssr-jax sweep experiments/dex_vs_ssr.py:smoke --workdir /tmp/dex_vs_ssr
  ssr-jax report runs/dex_vs_ssr --baseline "SSR-Net (3,3,3)"

Three programs (the heads differ); on a CPU the runs train one after another, on an accelerator each head's seeds
as one vmapped group.

Result to expect at `:medium` (5,000 train / 2,500 test synthetic faces, 20 epochs; 3 seeds, about 27 minutes of runs
on a 2-core Intel Xeon; RESULTS.md has the table; every oneDNN call on both cores, which `OMP_NUM_THREADS=2`
reproduces (RESULTS.md, "Machines")): MAE DEX 5.50 ± 0.37, regression 6.43 ± 0.18, SSR-Net (3,3,3) 7.43 ± 0.63 — DEX
ahead of SSR-Net by 1.9 years on every seed (p = 0.07 at 3 seeds).

Smoke result to expect (`:smoke --seeds 1`: 64 train / 40 test synthetic faces, 2 epochs, BatchNorm momentum 0.8;
measured 2026-12-06 on a 2-core AMD EPYC; it shows that the sweep runs end to end, not a finding — the
predict-the-mean MAE on those 40 faces is 19.07):
  MAE DEX 18.63, regression 24.67, SSR-Net 33.78.
"""
from configs import dex, regression, ssrnet
from configs.ssrnet import get_config  # noqa: F401 — the experiment's base config (arg: smoke)
from ssr_jax import config_lib
from ssr_jax.sweep import named

DEFAULT_SEEDS = 3
# DEX as overrides of SSR-Net: head, stages (101,), no Δ/η, λ = 0 — read off configs/dex.py.
DEX = config_lib.differences(ssrnet.get_config(), dex.get_config())
REGRESSION = config_lib.differences(ssrnet.get_config(), regression.get_config())


def get_sweep(arg=None):
    return [named("SSR-Net (3,3,3)", {"model.head": "ssr"}), named("DEX", DEX), named("regression", REGRESSION)]
