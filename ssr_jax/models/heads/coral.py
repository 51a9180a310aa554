"""CORAL (Cao, Mirjalili & Raschka, Pattern Recognition Letters 2020): s − 1 binary tasks "class > k" that share
one weight vector w and have their own biases b_k,

  g_k = w · x + b_k,   L = −Σ_k [y_k log σ(g_k) + (1 − y_k) log(1 − σ(g_k))],   y_k = 1[class > k]

(batch mean of the per-example sum). Label: Σ_k 1[σ(g_k) > 0.5] (rule "median": with the shared weights S_k =
σ(g_k) decreases in k once the biases are ordered, and the count is then the median class); expectation and mode
from S as in `base.decode_survival`. Parameters: the shared Dense_1 without bias ("<name>/shared") and the s − 1
biases ("<name>/bias").
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from ssr_jax.models.heads.base import binary_cross_entropy, dense, levels
from ssr_jax.models.heads.ordinal import Ordinal


class SharedWeights(nn.Module):
    """x `[batch, d]` → w · x + b `[batch, tasks]`: one weight vector, one bias per task."""

    tasks: int

    @nn.compact
    def __call__(self, x):
        return dense(x, 1, "shared", use_bias=False) + self.param("bias", nn.initializers.zeros, (self.tasks,))


@dataclasses.dataclass(frozen=True)
class CORAL(Ordinal):
    def layer(self, features, *, stage, name):
        return {"logits": SharedWeights(self.num_bins - 1, name=name)(features["features"])}

    def loss(self, outputs, ages):
        targets = levels(self.classes(ages), self.num_bins)
        return jnp.mean(jnp.sum(binary_cross_entropy(outputs["logits"][0], targets), axis=-1))
