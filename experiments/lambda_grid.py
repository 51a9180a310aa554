"""The reference's own sweep (its run_ssrnet.sh): SSR-Net (3,3,3) over λ_local × λ_d ∈ {0, 0.25, 0.5, 0.75, 1}².

25 configurations whose results were never published. All λ values ride one vmapped axis: one group, one compile.

  ssr-jax sweep experiments/lambda_grid.py --workdir runs/lambda_grid
  ssr-jax sweep experiments/lambda_grid.py:smoke --workdir /tmp/lambda_grid
  ssr-jax report runs/lambda_grid --plot        # pivot table λ_local × λ_d and a heatmap

Runtime on the 2-core CPU (benchmarks/README.md): one epoch of 2,000 images + evaluation for all 25 configs took
188.8 s one run after another and 192.2 s as this vmapped group; the full grid (10,000 images, 90 epochs) is
extrapolated to ≈19 h / ≈21 h — on a CPU, run it with `--shard i/n` on several machines or on a GPU. On CPU,
`--set train.eval_batch_size=100` evaluates faster.
"""
from configs import ssrnet
from ssr_jax.config_lib import parse_arg
from ssr_jax.sweep import product, sweep

LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    return ssrnet.get_config("smoke" if arg.smoke else None)


def get_sweep(arg=None):
    return product(sweep("model.lambda_local", LAMBDAS), sweep("model.lambda_d", LAMBDAS))
