"""The shared part of the ordinal heads (CORAL, CORN, OR-CNN): s classes as s − 1 binary tasks "class > k"
(k = 0 … s − 2, i.e. "age > c_k"), each a logit; a head turns its logits into S_k = P(class > k) and is decoded
by `base.decode_survival`.
"""
from __future__ import annotations

import dataclasses

import jax

from ssr_jax.models.heads.base import Head, decode_survival, dense


@dataclasses.dataclass(frozen=True)
class Ordinal(Head):
    rules = ("median", "expectation", "mode")

    def layer(self, features, *, stage, name):
        return {"logits": dense(features["features"], self.num_bins - 1, name)}

    def survival(self, outputs) -> jax.Array:
        """S_k = P(class > k), `[batch, s − 1]`."""
        return jax.nn.sigmoid(outputs["logits"][0])

    def age(self, outputs, rule):
        return decode_survival(self.survival(outputs), self.bin_ages(), rule)
