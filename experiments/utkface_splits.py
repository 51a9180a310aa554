"""SSR-Net (3,3,3) on the real UTKFace faces under the benchmark protocol: one run per split k = 0 … 4 (train on six
folds, choose the epoch on two, test on two; the five test parts together are the whole dataset), 30 epochs of the
reference's recipe (configs/utkface.py).

  ssr-jax data prepare utkface --manual_dir ~/datasets/utkface/crop_part1     # once: the folds come with it
  ssr-jax sweep experiments/utkface_splits.py --workdir runs/utkface_splits
  ssr-jax sweep experiments/utkface_splits.py:epochs=12 --workdir runs/utkface_splits_12   # a shorter schedule
  ssr-jax sweep experiments/utkface_splits.py:smoke --workdir /tmp/utkface_splits          # pipeline check
  ssr-jax report runs/utkface_splits --by_age --plot   # one row: test MAE mean ± 95 % interval over the splits

The argument is configs/utkface.py's (epochs=N, smoke), without split=. Each split is its own group: the splits'
parts differ in size, so their index sets cannot ride one vmapped axis without padding the training part with
masked examples, which would change what an epoch is; seeds and λ values still vmap within a split. The report
takes the split, like the seed, as a replicate (`report.REPLICATE_KEYS`).

Result to expect (crop_part1, 2026-12-06, a 2-core AMD EPYC, ≈380 s a split on a quiet machine; RESULTS.md): test
MAE 7.42 ± 0.03 over the five splits (95 % interval [7.38, 7.45]), CA(3) 0.392, CA(5) 0.512, selected epochs
22–30; predicting the training mean scores 20.8.
"""
from configs import utkface
from ssr_jax.data.folds import NUM_SPLITS
from ssr_jax.sweep import sweep


def get_config(arg=None):
    return utkface.get_config(",".join(filter(None, ["split=0", arg])))


def get_sweep(arg=None):
    del arg
    return sweep("data.split_index", range(NUM_SPLITS))
