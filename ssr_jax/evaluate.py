"""Exact metrics over a whole split: MAE, CA(3), CA(5), from (sum, count) pairs over padded batches.

The split is padded to whole batches once, on the host; a mask keeps the padding out of every sum, so the numbers
are those of the full split whatever the batch size. CA(n) counts |error| ≤ n, as the reference's MegaAge script
(`SSRNET/CA.py`) does — the paper's text says "smaller than".
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ssr_jax.data import pad_rows

CA_THRESHOLDS = (3, 5)


def pad_to_batches(images: np.ndarray, ages: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """`images` `[N, H, W, 3]` uint8 and `ages` `[N]` → `image` `[B, batch, H, W, 3]`, `age`, `mask` `[B, batch]`."""
    num = len(ages)
    num_batches = -(-num // batch_size)
    pad = num_batches * batch_size - num
    padded_images = pad_rows(images, pad)
    padded_ages = pad_rows(ages.astype(np.float32), pad)
    mask = np.arange(num_batches * batch_size) < num
    return {
        "image": padded_images.reshape(num_batches, batch_size, *images.shape[1:]),
        "age": padded_ages.reshape(num_batches, batch_size),
        "mask": mask.reshape(num_batches, batch_size),
    }


def evaluate_batches(predict: Callable[[jax.Array], jax.Array], batches: dict) -> dict[str, jax.Array]:
    """Runs `predict` (`[batch, H, W, 3]` uint8 → `[batch]` ages) over padded batches; jit- and vmap-friendly.

    Returns scalars `mae`, `ca3`, `ca5` (fractions in [0, 1]) and `count`.
    """

    def batch_sums(carry, batch):
        error = jnp.abs(predict(batch["image"]) - batch["age"])
        mask = batch["mask"].astype(jnp.float32)
        sums = {"abs_error": jnp.sum(error * mask), "count": jnp.sum(mask)}
        for n in CA_THRESHOLDS:
            sums[f"ca{n}"] = jnp.sum((error <= n) * mask)
        return jax.tree.map(jnp.add, carry, sums), None

    zeros = {name: jnp.zeros((), jnp.float32) for name in ("abs_error", "count", *(f"ca{n}" for n in CA_THRESHOLDS))}
    sums, _ = jax.lax.scan(batch_sums, zeros, batches)
    metrics = {"mae": sums["abs_error"] / sums["count"], "count": sums["count"]}
    for n in CA_THRESHOLDS:
        metrics[f"ca{n}"] = sums[f"ca{n}"] / sums["count"]
    return metrics


def predict_the_mean_mae(train_ages: np.ndarray, test_ages: np.ndarray) -> float:
    """The MAE of always answering the training split's mean age: the floor any model must beat."""
    return float(np.mean(np.abs(test_ages.astype(np.float64) - np.mean(train_ages))))
