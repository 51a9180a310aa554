"""What every head shares: the `Head` contract, its output layer's initialiser, bins and the ordinal encoding.

A head is a frozen dataclass of plain values (built from `config.model` by `ssr_jax.models.heads.create`):
  layer(features, *, stage, name) -> {output: [batch, ...]}   inside a backbone's Flax scope, once per stage
  loss(outputs, ages) -> scalar                                 the batch mean of the head's training loss
  age(outputs, rule) -> [batch]                                 the decoded age in years
`outputs` maps each output name to a tuple with one array per stage (one stage for every head but SSR); `ages` are
float years `[batch]`. `rules` lists the decision rules a head can apply, its default first.

Bins: a head over `num_bins` = s classes (`model.stages = (s,)`) puts class i at the age c_i = i · V / s (V =
`model.v`), as DEX does; with the reference's s = V = 101 the classes are the ages 0 … 100. An age y belongs to
class round(y · s / V), clipped to 0 … s − 1.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Outputs = dict[str, tuple[Array, ...]]
RULES = ("expectation", "median", "mode")
# Keras's default kernel initialiser, which every reference layer uses (Flax's own is lecun_normal).
KERNEL_INIT = nn.initializers.glorot_uniform()


@dataclasses.dataclass(frozen=True)
class Head:
    """Base of every head: `num_bins` classes (the single stage's width) over the age range `v`."""

    num_bins: int = 101
    v: float = 101.0
    rules: ClassVar[tuple[str, ...]] = ("expectation",)
    # Why a head that gives no distribution over ages has only the rules it has (for the refusal of the others).
    only_these_rules: ClassVar[str] = ""
    # The head's options: dataclass field → the `config.model` field it is read from.
    options: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_config(cls, model, **values) -> "Head":
        """The head `config.model` describes; `values` replaces value fields by traced ones (SSR's λ)."""
        return cls(num_bins=model.stages[0], v=model.v, **{field: model[key] for field, key in cls.options.items()})

    def layer(self, features: dict[str, Array], *, stage: int, name: str) -> dict[str, Array]:
        raise NotImplementedError

    def loss(self, outputs: Outputs, ages: Array) -> Array:
        raise NotImplementedError

    def age(self, outputs: Outputs, rule: str) -> Array:
        raise NotImplementedError

    def bin_ages(self) -> Array:
        """c_i = i · V / s, `[s]`."""
        return jnp.arange(self.num_bins, dtype=jnp.float32) * (self.v / self.num_bins)

    def classes(self, ages: Array) -> Array:
        """The class of each age, round(y · s / V) clipped to 0 … s − 1, int32 `[batch]`."""
        return jnp.clip(jnp.round(ages * (self.num_bins / self.v)), 0, self.num_bins - 1).astype(jnp.int32)


def dense(features: Array, units: int, name: str, *, use_bias: bool = True) -> Array:
    """A Dense layer with Keras's initialisation, created in the calling module's scope as `name`."""
    return nn.Dense(units, use_bias=use_bias, kernel_init=KERNEL_INIT, name=name)(features)


def l1(ages: Array, targets: Array) -> Array:
    """The reference's training loss: mean |ŷ − y| over the batch, in years."""
    return jnp.mean(jnp.abs(ages - targets))


# ----------------------------------------------------------------------------------------------------------------
# Posteriors over the bins: the decision rules
# ----------------------------------------------------------------------------------------------------------------
def decode_posterior(probs: Array, bin_ages: Array, rule: str) -> Array:
    """An age from probabilities `[batch, s]` over the bin ages `[s]`:
      expectation  Σ_i p_i c_i
      median       c_m, m the first bin whose cumulative probability Σ_{j≤m} p_j reaches 0.5 (the lower median
                   when a bin boundary holds exactly half the mass)
      mode         c_m, m = argmax_i p_i (the first on ties)."""
    if rule == "expectation":
        return jnp.sum(probs * bin_ages, axis=-1)
    if rule == "median":
        index = jnp.sum(jnp.cumsum(probs, axis=-1) < 0.5, axis=-1)
    elif rule == "mode":
        index = jnp.argmax(probs, axis=-1)
    else:
        raise ValueError(f"unknown decision rule {rule!r}; choose one of {RULES}")
    return bin_ages[jnp.minimum(index, probs.shape[-1] - 1)]


# ----------------------------------------------------------------------------------------------------------------
# Ordinal encoding: s classes as s − 1 binary tasks "class > k", k = 0 … s − 2
# ----------------------------------------------------------------------------------------------------------------
def levels(classes: Array, num_bins: int) -> Array:
    """y_k = 1[class > k], float32 `[batch, s − 1]`."""
    return (classes[:, None] > jnp.arange(num_bins - 1)).astype(jnp.float32)


def binary_cross_entropy(logits: Array, targets: Array) -> Array:
    """−[y log σ(g) + (1 − y) log(1 − σ(g))] elementwise, through log σ(±g) (finite for any logit)."""
    return -(targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits))


def decode_survival(survival: Array, bin_ages: Array, rule: str) -> Array:
    """An age from S_k = P(class > k) `[batch, s − 1]`:
      median       c_r, r = Σ_k 1[S_k > 0.5] (the papers' label; the median class when S decreases in k)
      expectation  c_0 + Σ_k S_k (c_{k+1} − c_k), the expected bin age (Σ_k S_k · V / s)
      mode         c_m, m = argmax_r P(class = r) with P(r) = S_{r−1} − S_r, S_{−1} = 1, S_{s−1} = 0."""
    if rule == "median":
        return bin_ages[jnp.sum(survival > 0.5, axis=-1)]
    if rule == "expectation":  # E[c] = c_0 + Σ_k P(class > k) (c_{k+1} − c_k)
        return bin_ages[0] + jnp.sum(survival * jnp.diff(bin_ages), axis=-1)
    if rule == "mode":
        ones, zeros = jnp.ones_like(survival[:, :1]), jnp.zeros_like(survival[:, :1])
        padded = jnp.concatenate([ones, survival, zeros], axis=-1)
        return bin_ages[jnp.argmax(padded[:, :-1] - padded[:, 1:], axis=-1)]
    raise ValueError(f"unknown decision rule {rule!r}; choose one of {RULES}")
