"""The training state and what builds it: `TrainState`, the optimizer with its step-decay schedule, and the
hyper-parameters that ride a vmapped member axis. Below the trainer and the model directory, which both build states.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssr_jax import config_lib


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    batch_stats: Any
    opt_state: Any


# Config fields that are only values: they ride the vmapped member axis (the seed through the member's key, the
# rest through `hparams`). Every other field changes shapes or Python-side structure and defines the program.
VALUE_FIELDS = ("seed", "model.lambda_local", "model.lambda_d", "optim.learning_rate")


def hparams_from_config(config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """The values a sweep may put on a vmapped axis, as float32 scalars."""
    return {
        "learning_rate": jnp.float32(config.optim.learning_rate),
        "lambda_local": jnp.float32(config.model.lambda_local),
        "lambda_d": jnp.float32(config.model.lambda_d),
    }


def program_signature(config: ml_collections.ConfigDict) -> dict:
    """The config without its value fields: configs with equal signatures train as one vmapped program."""
    signature = config_lib.to_json(config)
    for dotted in VALUE_FIELDS:
        *parents, leaf = dotted.split(".")
        node = signature
        for name in parents:
            node = node[name]
        node.pop(leaf)
    return signature


def decay_boundaries(optim_config, *, epochs: int, steps_per_epoch: int) -> tuple[int, ...]:
    """Steps at which the learning rate is multiplied by `decay_factor`: the starts of epochs
    round(fraction × epochs) (the reference: ×0.1 at epochs 30 and 60 of 90)."""
    return tuple(round(fraction * epochs) * steps_per_epoch for fraction in optim_config.decay_fractions)


def learning_rate_schedule(optim_config, learning_rate, *, epochs: int, steps_per_epoch: int):
    """count → learning_rate × decay_factor^(boundaries passed), for optax (count and rate may be traced)."""
    boundaries = jnp.array(decay_boundaries(optim_config, epochs=epochs, steps_per_epoch=steps_per_epoch), jnp.int32)
    return lambda count: learning_rate * optim_config.decay_factor ** jnp.sum(count >= boundaries)


def learning_rate_at(config: ml_collections.ConfigDict, step: int, *, steps_per_epoch: int) -> float:
    """The schedule's rate at optimizer step `step`, computed on the host (the host knows the step: no device
    round trip). Float32, as the optimizer applies it."""
    boundaries = decay_boundaries(config.optim, epochs=config.train.epochs, steps_per_epoch=steps_per_epoch)
    passed = sum(step >= boundary for boundary in boundaries)
    return float(np.float32(config.optim.learning_rate) * np.float32(config.optim.decay_factor) ** passed)


def make_optimizer(optim_config, learning_rate: jax.Array, *, epochs: int, steps_per_epoch: int):
    """Adam with the step-decay schedule.

    Built inside the traced functions from a (possibly traced) `learning_rate`; the optimizer state's structure does
    not depend on it, so members with different rates share one program.
    """
    schedule = learning_rate_schedule(optim_config, learning_rate, epochs=epochs, steps_per_epoch=steps_per_epoch)
    return optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps)


def train_state_from_variables(config, variables: dict, hparams: dict) -> TrainState:
    """A step-0 state around `{"params", "batch_stats"}` (a fresh init or imported weights)."""
    # The Adam state's structure does not depend on the schedule, so any steps_per_epoch builds the same tree.
    tx = make_optimizer(config.optim, hparams["learning_rate"], epochs=config.train.epochs, steps_per_epoch=1)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(variables["params"]),
    )


def stack_members(configs: list[ml_collections.ConfigDict]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Member keys `[M]` and hparams `{name: [M]}` for configs that share one program."""
    keys = jnp.stack([jax.random.key(config.seed) for config in configs])
    hparams = jax.tree.map(lambda *values: jnp.stack(values), *[hparams_from_config(c) for c in configs])
    return keys, hparams
