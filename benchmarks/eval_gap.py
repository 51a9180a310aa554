"""Where `ssr-jax bench`'s evaluation time goes beyond the forward pass: the real `Trainer.evaluate` (metrics, host
fetch included) timed back to back and after training epochs, against bare forward passes over the same padded test
batches, with the minor page faults of each call (`ru_minflt`).

  python benchmarks/eval_gap.py [--set train.eval_batch_size=250]

Same data as `run.sh` gives `ssr-jax bench` (2,000 train / 1,000 test synthetic images). A forward scan over 4× the
batches tells the fixed cost per call from the cost per batch.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import jax
import jax.numpy as jnp

from ssr_jax import config_lib, host_memory, parallel, xla_options
from ssr_jax.data import load_splits
from ssr_jax.models import create_model, model_input, predict_age
from ssr_jax.state import stack_members
from ssr_jax.train import make_train


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(call, repeats: int) -> tuple[float, int]:
    """Median seconds and median page faults of `repeats` calls."""
    seconds, counts = [], []
    for _ in range(repeats):
        before, start = faults(), time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
        counts.append(faults() - before)
    return statistics.median(seconds), statistics.median(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ssrnet.py")
    parser.add_argument("--set", action="append", default=[], help="key=value config override")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    overrides = {"data.num_train": 2000, "data.num_test": 1000, **config_lib.parse_overrides(args.set)}
    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    splits = load_splits(config.data)
    trainer = make_train(config, splits)
    keys, hparams = stack_members([config])
    state = jax.block_until_ready(trainer.init(keys, hparams))
    trainer.compile(state, keys, hparams)
    images = len(splits[1]["age"])

    def evaluate():
        parallel.fetch(trainer.evaluate(state, hparams))

    evaluate()  # oneDNN creates its primitives on first use
    seconds, count = timed(evaluate, args.repeats)
    print(f"Trainer.evaluate back to back   {images / seconds:7.0f} images/s  {count:7.0f} page faults per call")
    after = []
    for epoch in range(1, 4):
        state, metrics = trainer.train_epoch(state, keys, hparams, epoch)
        jax.block_until_ready(metrics)
        after.append(timed(evaluate, 1)[0])
    print(f"Trainer.evaluate after an epoch {images / statistics.median(after):7.0f} images/s")

    model = create_model(config.model)
    member = jax.tree.map(lambda leaf: leaf[0], state)
    variables = {"params": member.params, "batch_stats": member.batch_stats}
    lambdas = {name: hparams[name][0] for name in ("lambda_local", "lambda_d")}

    def forward(variables, batches):
        def body(total, batch):
            heads = model.apply(variables, model_input(batch, config.data), train=False)
            return total + jnp.sum(predict_age(config.model, heads, **lambdas)), None
        return jax.lax.scan(body, jnp.float32(0), batches)[0]

    test = trainer.data["test"]["image"]
    for copies in (1, 4):
        batches = jnp.concatenate([test] * copies)
        program = jax.jit(forward).lower(variables, batches).compile(xla_options.compiler_options())
        jax.block_until_ready(program(variables, batches))
        seconds, count = timed(lambda: jax.block_until_ready(program(variables, batches)), args.repeats)
        print(f"forward scan over {batches.shape[0]:2d} × {batches.shape[1]}   {batches.shape[0] * batches.shape[1] / seconds:7.0f} "
              f"images/s  {count:7.0f} page faults per call")


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as `ssr-jax` does: XLA:CPU's temporaries reused between calls
    main()
