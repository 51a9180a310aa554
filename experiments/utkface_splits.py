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

Result to expect: not measured yet (RESULTS.md will hold it).
"""
from configs import utkface
from ssr_jax.data.folds import NUM_SPLITS
from ssr_jax.sweep import sweep


def get_config(arg=None):
    return utkface.get_config(",".join(filter(None, ["split=0", arg])))


def get_sweep(arg=None):
    del arg
    return sweep("data.split_index", range(NUM_SPLITS))
