"""Number of stages K and bins s_k: MAE against parameters, the comparison the paper drew only as bars (Fig. 3).

Each stage layout is its own program (shapes differ), so this sweep has one group per layout.

  ssr-jax sweep experiments/stages.py --workdir runs/stages --seeds 3
  ssr-jax sweep experiments/stages.py:medium --workdir runs/stages --seeds 1    # RESULTS.md's run
  ssr-jax sweep experiments/stages.py:smoke --workdir /tmp/stages
  ssr-jax report runs/stages --plot             # MAE-vs-parameters scatter

The smoke variant compiles 8 programs; the full sweep trains 8 × seeds runs.

Result to expect at `:medium --seeds 1` (5,000 train / 2,500 test synthetic faces, 20 epochs; about 27 minutes of
runs on a 2-core Intel Xeon; RESULTS.md has the table and plot; every oneDNN call on both cores, which
`OMP_NUM_THREADS=2` reproduces (RESULTS.md, "Machines")): MAE (3,3,3) 6.70, (3,3,3,3) 7.08, (101) 7.11, (5,5,5) 7.22,
(4,4,4) 7.26, (9,9) 7.26, (27) 7.56, (2,2,2) 7.91 — differences within the seed-to-seed SD of (3,3,3) (0.63 over 3
seeds) except (2,2,2)'s (1.92 SDs) and (27)'s (1.36 SDs); one seed cannot rank the layouts.

Smoke result to expect (`:smoke --seeds 1`: 64 train / 40 test synthetic faces, 2 epochs, BatchNorm momentum 0.8;
measured 2026-12-06 on a 2-core AMD EPYC; it shows that the sweep runs end to end, not a finding — the
predict-the-mean MAE on those 40 faces is 19.07):
  MAE (3,3,3) 33.78, (101,) 36.36, (3,3,3,3) 37.96, (27,) 38.74, (9,9) 44.47, (5,5,5) 49.12, (4,4,4) 51.15,
  (2,2,2) 51.57.
"""
from configs.ssrnet import get_config  # noqa: F401 — the experiment's base config (arg: smoke)
from ssr_jax.sweep import sweep

STAGES = ((3, 3, 3), (2, 2, 2), (4, 4, 4), (5, 5, 5), (9, 9), (27,), (101,), (3, 3, 3, 3))


def get_sweep(arg=None):
    return sweep("model.stages", STAGES)
