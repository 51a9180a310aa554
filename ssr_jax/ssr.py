"""The paper's readouts as pure functions: soft stagewise regression (any K) and the DEX expectation.

Soft stagewise regression (SSR-Net, Yang et al. 2018, Eq. 7, in the form the Keras reference computes it):

    ỹ = V · Σ_k Σ_i p_i^(k) · (i + λ_local · η_i^(k)) / Π_{j≤k} s_j · (1 + λ_d · Δ_j)

with stage k having s_k bins indexed i = 0 … s_k − 1, p^(k) the (not necessarily normalised) bin weights, η^(k) the
per-bin index shift in [−1, 1] and Δ_k the scalar scale change in [−1, 1]. λ_local and λ_d switch η and Δ on (1) and
off (0); they may be traced arrays, so a sweep can put them on a vmapped axis.

DEX (Rothe et al.) is the single-stage special case with softmax p and no dynamic range: ỹ = Σ_i p_i · i · V / s.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp

Array = jnp.ndarray


def ssr_age(
    p: Sequence[Array],
    eta: Sequence[Array],
    delta: Sequence[Array],
    *,
    stages: Sequence[int],
    v: float | Array = 101.0,
    lambda_local: float | Array = 1.0,
    lambda_d: float | Array = 1.0,
    per_stage: bool = False,
) -> Array:
    """Soft stagewise age (Eq. 7), or with `per_stage` its K additive stage terms.

    Args:
      p: K arrays `[batch, s_k]`, the stage-k bin weights p^(k).
      eta: K arrays `[batch, s_k]`, the index shifts η^(k).
      delta: K arrays `[batch]`, the scale changes Δ_k.
      stages: the bin counts (s_1, …, s_K), coarsest stage first.
      v: the age range V (the reference uses 101, so that K = 1, s = (101,) has bin centres 0 … 100).
      lambda_local: weight of η (0 switches the index shift off).
      lambda_d: weight of Δ (0 switches the dynamic scale off).
      per_stage: return the stage terms c_k = V · Σ_i p_i^(k) (i + λ_local η_i^(k)) / Π_{j≤k} s_j (1 + λ_d Δ_j)
        instead of their sum (`ssr_jax.inspect_model` reads them).

    Returns:
      `[batch]` ages, or `[K, batch]` stage terms with `per_stage`.
    """
    if not (len(p) == len(eta) == len(delta) == len(stages)) or not stages:
        raise ValueError(
            f"ssr_age needs one p, eta and delta per stage: got {len(p)}, {len(eta)}, {len(delta)} "
            f"for stages={tuple(stages)}"
        )
    terms = []
    denominator = 1.0
    for s_k, p_k, eta_k, delta_k in zip(stages, p, eta, delta):
        index = jnp.arange(s_k, dtype=p_k.dtype)
        stage_sum = jnp.sum(p_k * (index + lambda_local * eta_k), axis=-1)
        # Π_{j≤k}: each stage divides by its own scaled bin count on top of the coarser stages' ones.
        denominator = denominator * s_k * (1.0 + lambda_d * delta_k)
        terms.append(stage_sum / denominator)
    if per_stage:
        return v * jnp.stack(terms)
    age = 0.0
    for term in terms:
        age = age + term
    return v * age


def dex_age(probs: Array, *, v: float | Array = 101.0) -> Array:
    """DEX expectation ỹ = Σ_i p_i · i · V / s over `probs` `[batch, s]` (softmax outputs); returns `[batch]`."""
    num_bins = probs.shape[-1]
    bin_centres = jnp.arange(num_bins, dtype=probs.dtype) * (v / num_bins)
    return jnp.sum(probs * bin_centres, axis=-1)
