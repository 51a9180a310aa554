"""SSR: the soft stagewise readout of SSR-Net (Yang et al., IJCAI 2018, Eq. 7), trained with L1 in years.

Per stage k, on the SSR-Net backbone's fused vector f and stream product s_pre ⊙ x_pre:
  p^(k) = ReLU(Dense_{s_k}(f)) (or softmax / linear: `model.p_activation`)   "p"
  η^(k) = tanh(Dense_{s_k}(f))                                                "eta"   (`model.with_eta`)
  Δ_k   = tanh(Dense_1(s_pre ⊙ x_pre))                                        "delta" (`model.with_delta`)
and the age is `ssr_jax.ssr.ssr_age` with λ_local and λ_d (which may be traced: a vmapped sweep axis). A
switched-off Δ or η has no parameters and reads as zeros.

Decision rule: only "expectation", Eq. 7 itself — a sum over stages of expectations over shifted, rescaled bins
with unnormalised weights, which defines no single distribution over ages to take a median or mode of.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from ssr_jax.models.heads.base import Head, dense, l1
from ssr_jax.ssr import ssr_age

P_ACTIVATIONS = {"relu": nn.relu, "softmax": nn.softmax, "linear": lambda z: z}


@dataclasses.dataclass(frozen=True)
class SSR(Head):
    stages: tuple[int, ...] = (3, 3, 3)
    p_activation: str = "relu"
    with_delta: bool = True
    with_eta: bool = True
    lambda_local: float = 1.0
    lambda_d: float = 1.0
    only_these_rules = ("Eq. 7 sums K stages' expectations over shifted bins: no distribution to take a median or mode "
                        "of")

    @classmethod
    def from_config(cls, model, **values):
        return cls(num_bins=model.stages[0], v=model.v, stages=tuple(model.stages), p_activation=model.p_activation,
                   with_delta=model.with_delta, with_eta=model.with_eta,
                   lambda_local=values.get("lambda_local", model.lambda_local),
                   lambda_d=values.get("lambda_d", model.lambda_d))

    def layer(self, features, *, stage, name):
        pair, fused = features["pair"], features["features"]
        if self.with_delta:
            delta = jnp.tanh(dense(pair, 1, "delta"))[:, 0]
        else:
            delta = jnp.zeros(pair.shape[:1], pair.dtype)
        p = P_ACTIVATIONS[self.p_activation](dense(fused, self.stages[stage], "p"))
        eta = jnp.tanh(dense(fused, self.stages[stage], "eta")) if self.with_eta else jnp.zeros_like(p)
        return {"p": p, "eta": eta, "delta": delta}

    def loss(self, outputs, ages):
        return l1(self.age(outputs, "expectation"), ages)

    def age(self, outputs, rule):
        return ssr_age(outputs["p"], outputs["eta"], outputs["delta"], stages=self.stages, v=self.v,
                       lambda_local=self.lambda_local, lambda_d=self.lambda_d)
