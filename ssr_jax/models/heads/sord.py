"""SORD (Díaz & Marathe, CVPR 2019): soft ordinal targets and cross-entropy,

  q_i ∝ exp(−φ(y, c_i)) (normalised over the bins),   L = −Σ_i q_i log p_i   (batch mean)

with φ(y, c) = |y − c| / τ, τ = `model.sord_scale` years (default 2). The absolute distance, not the squared one:
with φ = (y − c)² / 2σ² the targets would be DLDL's Gaussian, and a cross-entropy against fixed targets differs
from DLDL's KL only by the targets' entropy, a constant — the same gradients, so SORD would repeat DLDL. |y − c|
is the distance the task's metric (MAE) charges, and gives Laplace-shaped targets. Readout: the expectation;
median and mode also apply.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ssr_jax.models.heads.posterior import Posterior


@dataclasses.dataclass(frozen=True)
class SORD(Posterior):
    scale: float = 2.0
    options = {"scale": "sord_scale"}

    def loss(self, outputs, ages):
        return self.cross_entropy(outputs, self.soft_targets(jnp.abs(self.bin_ages() - ages[:, None]) / self.scale))
