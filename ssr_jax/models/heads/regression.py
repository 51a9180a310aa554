"""Regression: one linear output read as the age, trained with L1 in years.

  age = scale · Dense_1(features)
with scale = V on the SSR-Net backbone (its fusion outputs are O(1), as SSR's p; V sets the output's scale at
initialisation) and 1 on the baselines (the reference's MobileNet and DenseNet regress years directly, layer
"pred_a"). One readout, recorded as "expectation": the output is a single number, not a distribution over ages,
so there is no median or mode to take.
"""
from __future__ import annotations

import dataclasses

from ssr_jax.models.heads.base import Head, dense, l1


@dataclasses.dataclass(frozen=True)
class Regression(Head):
    scale: float = 101.0
    only_these_rules = "its output is one number, not a distribution over ages"

    @classmethod
    def from_config(cls, model, **values):
        return cls(num_bins=model.stages[0], v=model.v, scale=model.v if model.backbone == "ssrnet" else 1.0)

    def layer(self, features, *, stage, name):
        return {"p": dense(features["features"], 1, name)}

    def loss(self, outputs, ages):
        return l1(self.age(outputs, "expectation"), ages)

    def age(self, outputs, rule):
        return self.scale * outputs["p"][0][:, 0]
