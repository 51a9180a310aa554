"""The shared part of the heads that output a softmax over the age bins (DEX, mean-variance, DLDL, DLDL-v2, SORD):
one Dense_s layer of logits ("p" on the SSR-Net backbone), p = softmax(logits), and the decision rules
expectation Σ_i p_i c_i, median and mode (`base.decode_posterior`). Each subclass adds its training loss.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssr_jax.models.heads.base import RULES, Head, decode_posterior, dense


@dataclasses.dataclass(frozen=True)
class Posterior(Head):
    rules = RULES

    def layer(self, features, *, stage, name):
        return {"logits": dense(features["features"], self.num_bins, name)}

    def probs(self, outputs) -> jax.Array:
        """p = softmax(logits), `[batch, s]`."""
        return nn.softmax(outputs["logits"][0])

    def log_probs(self, outputs) -> jax.Array:
        """log p, computed as log-softmax (finite where p underflows to 0)."""
        return jax.nn.log_softmax(outputs["logits"][0])

    def age(self, outputs, rule):
        return decode_posterior(self.probs(outputs), self.bin_ages(), rule)

    def cross_entropy(self, outputs, targets) -> jax.Array:
        """Mean over the batch of −Σ_i q_i log p_i for target distributions q `[batch, s]`."""
        return jnp.mean(-jnp.sum(targets * self.log_probs(outputs), axis=-1))

    def soft_targets(self, distance) -> jax.Array:
        """q_i ∝ exp(−distance(c_i)) over the bins, normalised (a softmax of −distance): `[batch, s]` for a distance
        `[batch, s]`."""
        return jax.nn.softmax(-distance, axis=-1)
