"""The reference's own sweep (its run_ssrnet.sh): SSR-Net (3,3,3) over λ_local × λ_d ∈ {0, 0.25, 0.5, 0.75, 1}².

25 configurations whose results were never published. All λ values are values: one program, one compile; on an
accelerator the 25 runs train as one vmapped group, on a CPU one after another (faster there).

  ssr-jax sweep experiments/lambda_grid.py --workdir runs/lambda_grid
  ssr-jax sweep experiments/lambda_grid.py:medium --workdir runs/lambda_grid --seeds 1    # RESULTS.md's run
  ssr-jax sweep experiments/lambda_grid.py:smoke --workdir /tmp/lambda_grid
  ssr-jax report runs/lambda_grid --baseline "lambda_d=1.0, lambda_local=1.0" --plot   # pivot λ_local × λ_d, heatmap

On a 2-core CPU, run it as one single-threaded shard per core (README, "Sweeps"): the `:medium` grid took 69
minutes that way on an Intel Xeon, against ≈87 one run after another (benchmarks/README.md has the figures).

Result to expect at `:medium --seeds 1` (5,000 train / 2,500 test synthetic faces, 20 epochs; RESULTS.md has the
table, pivot and heatmap): λ_local carries the effect, λ_d none — mean MAE over λ_d 7.64 at λ_local = 0, then
7.31, 7.09, 6.87, 6.91 at 0.25 … 1; mean over λ_local 7.09–7.26 for every λ_d; the reference's cell (1, 1) 6.99,
the lowest (λ_d = 1, λ_local = 0.75) 6.64 — within one seed's spread (SD ≈0.6), so no single cell is best.

Smoke result to expect (`:smoke --seeds 1`: 64 train / 40 test synthetic faces, 2 epochs, BatchNorm momentum 0.8;
measured 2026-12-06 on a 2-core AMD EPYC; it shows that the sweep runs end to end, not a finding — the
predict-the-mean MAE on those 40 faces is 19.07):
  MAE 46.48 at λ_local = λ_d = 0 (the worst), 30.38 at λ_local = λ_d = 0.75 (the best), 33.78 at λ = 1 (the
  reference's); 25 runs ok.
"""
from configs.ssrnet import get_config  # noqa: F401 — the experiment's base config (arg: smoke)
from ssr_jax.sweep import product, sweep

LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def get_sweep(arg=None):
    return product(sweep("model.lambda_local", LAMBDAS), sweep("model.lambda_d", LAMBDAS))
