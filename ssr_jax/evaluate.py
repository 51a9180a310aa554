"""Exact metrics over a whole split: MAE, CA(3), CA(5) and the MAE per decade of true age, from (sum, count) pairs
over padded batches.

The split is padded to whole batches once, on the host; a mask keeps the padding out of every sum, so the numbers
are those of the full split whatever the batch size. CA(n) counts |error| ≤ n, as the reference's MegaAge script
(`SSRNET/CA.py`) does — the paper's text says "smaller than". Age groups are decades of the true age, 0–9, 10–19, …,
80–89, and 90–100 (the last takes every age from 90 up).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ssr_jax.data import pad_rows

CA_THRESHOLDS = (3, 5)
AGE_GROUPS = tuple(f"{low}-{low + 9}" for low in range(0, 90, 10)) + ("90-100",)
# Outputs of `evaluate_batches` that are sums over the split (combined over chunks by adding); the others are
# fractions of `count`.
SUMS = ("count", "age_abs_error", "age_count")


def pad_to_batches(images: np.ndarray, ages: np.ndarray, batch_size: int,
                   num_batches: int | None = None) -> dict[str, np.ndarray]:
    """`images` `[N, H, W, 3]` uint8 and `ages` `[N]` → `image` `[B, batch, H, W, 3]`, `age`, `mask` `[B, batch]`,
    with B = ⌈N / batch⌉, or `num_batches` when given (at least that; two splits padded alike share one program)."""
    num = len(ages)
    num_batches = max(-(-num // batch_size), num_batches or 0)
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

    Returns scalars `mae`, `ca3`, `ca5` (fractions in [0, 1]) and `count`, and per age group (`AGE_GROUPS`, by
    true age a: group min(⌊a / 10⌋, 9)) `age_abs_error` `[10]` = Σ |error| and `age_count` `[10]` (see `by_age`).
    """

    def batch_sums(carry, batch):
        error = jnp.abs(predict(batch["image"]) - batch["age"])
        mask = batch["mask"].astype(jnp.float32)
        group = jnp.clip(jnp.floor(batch["age"] / 10), 0, len(AGE_GROUPS) - 1).astype(jnp.int32)
        in_group = jax.nn.one_hot(group, len(AGE_GROUPS), dtype=jnp.float32) * mask[:, None]  # [batch, 10]
        sums = {"abs_error": jnp.sum(error * mask), "count": jnp.sum(mask),
                # where(): an infinite error outside a group must not become inf · 0 = NaN inside it
                "age_abs_error": jnp.sum(jnp.where(in_group > 0, error[:, None], 0.0), axis=0),
                "age_count": jnp.sum(in_group, axis=0)}
        for n in CA_THRESHOLDS:
            sums[f"ca{n}"] = jnp.sum((error <= n) * mask)
        return jax.tree.map(jnp.add, carry, sums), None

    zeros = {name: jnp.zeros((), jnp.float32) for name in ("abs_error", "count", *(f"ca{n}" for n in CA_THRESHOLDS))}
    zeros.update({name: jnp.zeros(len(AGE_GROUPS), jnp.float32) for name in ("age_abs_error", "age_count")})
    sums, _ = jax.lax.scan(batch_sums, zeros, batches)
    metrics = {"mae": sums["abs_error"] / sums["count"], "count": sums["count"],
               "age_abs_error": sums["age_abs_error"], "age_count": sums["age_count"]}
    for n in CA_THRESHOLDS:
        metrics[f"ca{n}"] = sums[f"ca{n}"] / sums["count"]
    return metrics


def by_age(abs_error: np.ndarray, count: np.ndarray) -> dict[str, dict[str, float | int | None]]:
    """`evaluate_batches`' `age_abs_error` and `age_count` (`[10]`, host arrays) → {"mae_by_age": {group: MAE},
    "count_by_age": {group: examples}}, keyed by `AGE_GROUPS`; a group without examples has MAE None."""
    abs_error, count = np.asarray(abs_error, np.float64), np.asarray(count)
    return {"mae_by_age": {group: float(e / n) if n else None for group, e, n in zip(AGE_GROUPS, abs_error, count)},
            "count_by_age": {group: int(n) for group, n in zip(AGE_GROUPS, count)}}


def predict_the_mean_mae(train_ages: np.ndarray, test_ages: np.ndarray) -> float:
    """The MAE of always answering the training split's mean age: the floor any model must beat."""
    return float(np.mean(np.abs(test_ages.astype(np.float64) - np.mean(train_ages))))
