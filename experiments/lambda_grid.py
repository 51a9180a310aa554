"""The reference's own sweep (its run_ssrnet.sh): SSR-Net (3,3,3) over λ_local × λ_d ∈ {0, 0.25, 0.5, 0.75, 1}².

25 configurations whose results were never published. All λ values are values: one program, one compile; on an
accelerator the 25 runs train as one vmapped group, on a CPU one after another (faster there).

  ssr-jax sweep experiments/lambda_grid.py --workdir runs/lambda_grid
  ssr-jax sweep experiments/lambda_grid.py:smoke --workdir /tmp/lambda_grid
  ssr-jax report runs/lambda_grid --plot        # pivot table λ_local × λ_d and a heatmap

How long it takes here (one run after another against this vmapped group, and the full grid extrapolated) is
measured in benchmarks/README.md: on a CPU, run it with `--shard i/n` on several machines or on a GPU. On CPU,
`--set train.eval_batch_size=100` evaluates faster.

Smoke result to expect (`:smoke --seeds 1`: 64 train / 40 test synthetic faces, 2 epochs, BatchNorm momentum 0.8;
measured 2026-12-02 at commit 7f8387c; it shows that the sweep runs end to end, not a finding — the
predict-the-mean MAE on those 40 faces is 19.07):
  MAE 46.48 at λ_local = λ_d = 0 (the worst), 30.31 at λ_local = λ_d = 0.75 (the best), 33.75 at λ = 1 (the
  reference's); 25 runs ok.
"""
from configs.ssrnet import get_config  # noqa: F401 — the experiment's base config (arg: smoke)
from ssr_jax.sweep import product, sweep

LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def get_sweep(arg=None):
    return product(sweep("model.lambda_local", LAMBDAS), sweep("model.lambda_d", LAMBDAS))
