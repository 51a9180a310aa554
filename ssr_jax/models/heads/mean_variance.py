"""Mean-variance loss (Pan et al., CVPR 2018): a softmax over the age bins trained with

  L = −log p_{class(y)} + λ1 · (m − y)² / 2 + λ2 · v,   m = Σ_i p_i c_i,   v = Σ_i p_i (c_i − m)²

(each term a batch mean; ages and c_i in years), λ1 = `model.lambda_mean` (paper: 0.2), λ2 =
`model.lambda_variance` (paper: 0.05). Readout: the mean m (rule "expectation"); median and mode also apply.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ssr_jax.models.heads.posterior import Posterior


@dataclasses.dataclass(frozen=True)
class MeanVariance(Posterior):
    lambda_mean: float = 0.2
    lambda_variance: float = 0.05
    options = {"lambda_mean": "lambda_mean", "lambda_variance": "lambda_variance"}

    def loss(self, outputs, ages):
        probs, bin_ages = self.probs(outputs), self.bin_ages()
        one_hot = (jnp.arange(self.num_bins) == self.classes(ages)[:, None]).astype(jnp.float32)
        mean = jnp.sum(probs * bin_ages, axis=-1)
        variance = jnp.sum(probs * jnp.square(bin_ages - mean[:, None]), axis=-1)
        return (self.cross_entropy(outputs, one_hot) + self.lambda_mean * jnp.mean(jnp.square(mean - ages)) / 2
                + self.lambda_variance * jnp.mean(variance))
