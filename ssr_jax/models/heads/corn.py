"""CORN (Shi, Cao & Raschka, Pattern Analysis and Applications 2023): s − 1 conditional binary tasks. Task k
estimates P(class > k | class > k − 1) = σ(f_k) and is trained only on the examples with class > k − 1 (task 0
on all): the conditional subsets S_k. The loss is the binary cross-entropy summed over every task and example
used, divided by the number of (task, example) pairs used, Σ_k |S_k|:

  L = Σ_k Σ_{i ∈ S_k} BCE(f_k(x_i), 1[class_i > k]) / Σ_k |S_k|

Readout: P(class > k) = Π_{j≤k} σ(f_j), which decreases in k, so the label Σ_k 1[P(class > k) > 0.5] is the
median class (rule "median"); expectation and mode from the same S (`base.decode_survival`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssr_jax.models.heads.base import binary_cross_entropy, levels
from ssr_jax.models.heads.ordinal import Ordinal


def conditional_subsets(classes: jax.Array, num_bins: int) -> jax.Array:
    """1[example i is in S_k] = 1[class_i ≥ k], float32 `[batch, s − 1]` (S_0 is every example)."""
    return (classes[:, None] >= jnp.arange(num_bins - 1)).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class CORN(Ordinal):
    def loss(self, outputs, ages):
        classes = self.classes(ages)
        used = conditional_subsets(classes, self.num_bins)
        losses = binary_cross_entropy(outputs["logits"][0], levels(classes, self.num_bins))
        return jnp.sum(losses * used) / jnp.sum(used)

    def survival(self, outputs):
        return jnp.cumprod(jax.nn.sigmoid(outputs["logits"][0]), axis=-1)
