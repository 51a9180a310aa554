"""DLDL (Gao et al., TIP 2017): a softmax over the age bins trained towards a discretised Gaussian label
distribution,

  q_i ∝ exp(−(c_i − y)² / 2σ²)  (normalised over the bins),   L = KL(q ‖ p) = Σ_i q_i (log q_i − log p_i)

(batch mean), σ = `model.label_sigma` years (paper: 2). Readout: the expectation Σ_i p_i c_i; median and mode
also apply.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssr_jax.models.heads.posterior import Posterior


@dataclasses.dataclass(frozen=True)
class DLDL(Posterior):
    sigma: float = 2.0
    options = {"sigma": "label_sigma"}

    def label_distribution(self, ages) -> jax.Array:
        """q `[batch, s]`, the discretised N(y, σ²)."""
        return self.soft_targets(jnp.square(self.bin_ages() - ages[:, None]) / (2 * self.sigma**2))

    def loss(self, outputs, ages):
        targets = self.label_distribution(ages)
        # Σ q log q − Σ q log p; xlogy gives 0 · log 0 = 0 where q underflows.
        return jnp.mean(jnp.sum(jax.scipy.special.xlogy(targets, targets), axis=-1)) + self.cross_entropy(
            outputs, targets)
