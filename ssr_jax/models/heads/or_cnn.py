"""OR-CNN (Niu et al., CVPR 2016): s − 1 independent binary tasks "class > k", each with its own weights,

  L = Σ_k λ_k BCE(f_k, 1[class > k])   (batch mean),   λ_k = 1 / (s − 1) (uniform importance; `importance`
                                                         gives others, normalised to sum to 1 as in the paper)

Label: Σ_k 1[σ(f_k) > 0.5] (rule "median", the only rule: the independent task probabilities need not decrease in
k, so they define no distribution to take an expectation or mode of).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ssr_jax.models.heads.base import binary_cross_entropy, levels
from ssr_jax.models.heads.ordinal import Ordinal


@dataclasses.dataclass(frozen=True)
class ORCNN(Ordinal):
    rules = ("median",)
    only_these_rules = "its independent task probabilities need not decrease, so they define no distribution"
    importance: tuple[float, ...] | None = None

    def loss(self, outputs, ages):
        weights = jnp.ones(self.num_bins - 1) if self.importance is None else jnp.asarray(self.importance)
        weights = weights / jnp.sum(weights)
        losses = binary_cross_entropy(outputs["logits"][0], levels(self.classes(ages), self.num_bins))
        return jnp.mean(jnp.sum(losses * weights, axis=-1))
