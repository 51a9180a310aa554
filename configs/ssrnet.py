"""SSR-Net (3,3,3) with the Keras reference's recipe; `arg` picks a schedule.

  ssr-jax train --config configs/ssrnet.py --workdir runs/ssrnet            # 90 epochs, 10,000 synthetic faces
  ssr-jax train --config configs/ssrnet.py:demo --workdir runs/ssr_demo      # `make demo`'s schedule
  ssr-jax train --config configs/ssrnet.py:smoke --workdir /tmp/smoke        # tests: a few seconds
  ssr-jax train --config configs/ssrnet.py --workdir runs/ssr555 --config.model.stages=5,5,5

Results to expect (synthetic data, seed 0, jax 0.10.2; how long they took: benchmarks/README.md):
  demo (3,000 train / 1,000 test, 6 epochs, augmentation on; measured 2026-12-02 on a 2-core
        Intel Xeon): MAE 9.81, CA(3) 0.218, CA(5) 0.366 (predict-the-mean MAE 24.99); another CPU sums in another
        order and ends elsewhere (a 2-core AMD EPYC, earlier: MAE 9.72).
  medium (5,000 train / 2,500 test, 20 epochs, RESULTS.md): MAE 7.43 ± 0.63 over seeds 0–2 (Intel Xeon),
        7.60 ± 0.33 (AMD EPYC).
  full (90 epochs, 10,000 train / 2,500 test): MAE 3.55, CA(3) 0.538, CA(5) 0.748 (predict-the-mean 24.90) —
        measured before the per-purpose RNG streams changed every draw; not yet remeasured.
"""
from configs import base
from ssr_jax.config_lib import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, **base.SCHEDULES)
    config = base.get_config()
    return base.schedule(config, arg)
