"""Heads: what turns a backbone's features into an age, one small file each, chosen by `model.head`.

Each head (`base.Head`) is its output layer, its training loss `loss(outputs, ages)` and its readout
`age(outputs, rule)` under a decision rule (`model.decode`: expectation, median or mode; "" = the head's own,
the first of its `rules`). A new head is a file here and a line in `HEADS`.

  head           output                          loss                                         rules
  ssr            K stages of p, η, Δ             L1 on Eq. 7                                  expectation
  dex            softmax over s bins             L1 on the expectation, or cross-entropy      expectation, median, mode
  regression     one linear output               L1                                           expectation
  coral          s − 1 logits, shared weights    Σ_k binary cross-entropy (BCE)               median, expectation, mode
  corn           s − 1 conditional logits        BCE over the conditional subsets             median, expectation, mode
  or_cnn         s − 1 independent logits        importance-weighted Σ_k BCE                  median
  mean_variance  softmax over s bins             CE + λ1 (m − y)²/2 + λ2 variance             expectation, median, mode
  dldl           softmax over s bins             KL from N(y, σ²) discretised                 expectation, median, mode
  dldl_v2        softmax over s bins             KL + λ |expectation − y|                     expectation, median, mode
  sord           softmax over s bins             cross-entropy to q ∝ exp(−|y − c| / τ)       expectation, median, mode
"""
from __future__ import annotations

from ssr_jax.models.heads.base import RULES, Head
from ssr_jax.models.heads.coral import CORAL
from ssr_jax.models.heads.corn import CORN
from ssr_jax.models.heads.dex import DEX
from ssr_jax.models.heads.dldl import DLDL
from ssr_jax.models.heads.dldl_v2 import DLDLv2
from ssr_jax.models.heads.mean_variance import MeanVariance
from ssr_jax.models.heads.or_cnn import ORCNN
from ssr_jax.models.heads.ordinal import Ordinal
from ssr_jax.models.heads.regression import Regression
from ssr_jax.models.heads.sord import SORD
from ssr_jax.models.heads.ssr import SSR

HEADS: dict[str, type[Head]] = {
    "ssr": SSR, "dex": DEX, "regression": Regression, "coral": CORAL, "corn": CORN, "or_cnn": ORCNN,
    "mean_variance": MeanVariance, "dldl": DLDL, "dldl_v2": DLDLv2, "sord": SORD,
}

__all__ = ["HEADS", "RULES", "Head", "Ordinal", "create", "decode_rule"]


def create(model_config, **values) -> Head:
    """The head `model_config.head` with its options from `model_config`; `values` (e.g. traced λ_local, λ_d) replace
    the config's value fields."""
    return HEADS[model_config.head].from_config(model_config, **values)


def decode_rule(model_config) -> str:
    """The decision rule a run reads its ages with: `model.decode`, or the head's own when that is ""."""
    return model_config.decode or HEADS[model_config.head].rules[0]
