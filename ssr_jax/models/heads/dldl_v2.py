"""DLDL-v2 (Gao et al., IJCAI 2018): DLDL's label-distribution KL plus an L1 term on the expectation,

  L = KL(q ‖ p) + λ · |Σ_i p_i c_i − y|

(batch means), q the discretised N(y, σ²) of `dldl.py`, λ = `model.lambda_expectation` (paper: 1). Readout: the
expectation; median and mode also apply.
"""
from __future__ import annotations

import dataclasses

from ssr_jax.models.heads.base import l1
from ssr_jax.models.heads.dldl import DLDL


@dataclasses.dataclass(frozen=True)
class DLDLv2(DLDL):
    lambda_expectation: float = 1.0
    options = {**DLDL.options, "lambda_expectation": "lambda_expectation"}

    def loss(self, outputs, ages):
        return super().loss(outputs, ages) + self.lambda_expectation * l1(self.age(outputs, "expectation"), ages)
