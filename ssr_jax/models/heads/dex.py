"""DEX (Rothe et al., IJCV 2018): a softmax over s age bins read by its expectation ỹ = Σ_i p_i c_i.

Training loss (`model.dex_loss`): "l1" (default, the framework's recipe for every head it compares with SSR-Net:
mean |ỹ − y| in years on the expectation) or "cross_entropy" (DEX's paper: −log p_{class(y)}, the age's bin as
the target class). Decision rules: expectation (DEX's), median, mode (`base.decode_posterior`).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ssr_jax.models.heads.base import l1
from ssr_jax.models.heads.posterior import Posterior

LOSSES = ("l1", "cross_entropy")


@dataclasses.dataclass(frozen=True)
class DEX(Posterior):
    loss_name: str = "l1"
    options = {"loss_name": "dex_loss"}

    def loss(self, outputs, ages):
        if self.loss_name == "cross_entropy":
            log_probs = self.log_probs(outputs)
            return jnp.mean(-jnp.take_along_axis(log_probs, self.classes(ages)[:, None], axis=-1)[:, 0])
        return l1(self.age(outputs, "expectation"), ages)
