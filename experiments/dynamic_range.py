"""Δ (dynamic scale) and η (index shift) switched on and off, 2 × 2 × seeds, on SSR-Net (3,3,3).

The paper's only numeric ablation: "without [soft dynamic range] the MAE is 9.29" on MORPH2 (vs 3.16 with it),
without saying whether Δ, η or both were removed. The switches are λ_d and λ_local (0 = off), which are values,
so all 4 × seeds runs share one program: it compiles once, and on an accelerator they train as one vmapped group
(on a CPU one after another, which is faster there: `ssr_jax.sweep.default_max_members`).

  ssr-jax sweep experiments/dynamic_range.py --workdir runs/dynamic_range          # 4 × 3 seeds, reference recipe
  ssr-jax sweep experiments/dynamic_range.py:medium --workdir runs/dynamic_range   # RESULTS.md's: ≈32 min on 2 cores
  ssr-jax sweep experiments/dynamic_range.py:smoke --workdir /tmp/dynamic_range    # tests: seconds
  ssr-jax sweep experiments/dynamic_range.py:data=utkface,epochs=24 --workdir runs/dynamic_range_utkface --seeds 1
  ssr-jax report runs/dynamic_range

With `data=NAME` (a prepared dataset) and `epochs=N` (default 30), the four cells run on the benchmark protocol's
five splits (one program per split) with configs/utkface.py's recipe; RESULTS.md gives that result and its command.
The smoke variant compiles one program; the full sweep trains 12 members × 90 epochs × 10,000 images.

Result to expect (`:medium`, 3 seeds: 5,000 train / 2,500 test synthetic faces, 20 epochs; measured 2026-12-02
on a 2-core AMD EPYC, every oneDNN call on both cores, which `OMP_NUM_THREADS=2` reproduces
(RESULTS.md, "Machines"); table and discussion in RESULTS.md): MAE 7.60 ± 0.33 with Δ and η on, 7.97 ± 0.41 with both
off (ΔMAE +0.36 [−0.28, +1.01], p 0.13: worse on every seed, not significant with 3), 7.61 without Δ, 7.76 without η.
The paper's MORPH2 gap (9.29 against 3.16) does not appear on synthetic faces.

Result to expect on real faces (`data=utkface,epochs=24 --seeds 1`: UTKFace crop_part1, the benchmark's five
splits; RESULTS.md, "Dynamic range on real faces", with its machine and command): MAE 7.72 with Δ and η on (the
heads sweep's SSR-Net runs, bit for bit), 8.04 with both off (+0.32 [+0.05, +0.59], 0.09 after Holm); as a
factorial η's main effect −0.23 [−0.38, −0.08] is the only one significant after Holm. Still no factor of three.

Smoke result to expect (`:smoke --seeds 1`: 64 train / 40 test synthetic faces, 2 epochs, BatchNorm momentum 0.8;
measured 2026-12-06 on a 2-core AMD EPYC; it shows that the sweep runs end to end, not a finding — the
predict-the-mean MAE on those 40 faces is 19.07):
  MAE 46.48 with both off, 35.37 η only (λ_local = 1), 34.32 Δ only (λ_d = 1), 33.78 both on.
"""
from configs import ssrnet, utkface
from ssr_jax.config_lib import parse_arg
from ssr_jax.data.folds import NUM_SPLITS
from ssr_jax.sweep import product, sweep

DEFAULT_SEEDS = 3


def get_config(arg=None):
    """SSR-Net (3,3,3) under the schedule `arg` names; with data=NAME, the recipe of configs/utkface.py for
    `epochs` on that prepared dataset, the benchmark protocol's split 0 (the sweep sets the others)."""
    arg = parse_arg(arg, **utkface.EXPERIMENT_ARGS)
    return utkface.experiment_config(ssrnet.get_config(utkface.experiment_schedule(arg)), arg)


def get_sweep(arg=None):
    arg = parse_arg(arg, **utkface.EXPERIMENT_ARGS)
    cells = product(sweep("model.lambda_local", [0.0, 1.0]), sweep("model.lambda_d", [0.0, 1.0]))
    if arg.data == "synthetic":
        return cells
    return product(cells, sweep("data.split_index", range(NUM_SPLITS)))
