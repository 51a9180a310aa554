"""`validate(config)`: every section of a run's config checked before anything is compiled.

Each layer checks the section it owns, with the allowed values defined where they are used: `config_lib` the train,
optim and parallel sections, `ssr_jax.data` the data section, `ssr_jax.models` the model section. This module only
runs them in order, so `config_lib` stays free of project imports.
"""
from __future__ import annotations

import ml_collections

from ssr_jax import config_lib, data, models


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises `config_lib.ConfigError` (one line naming the field and the fix) on the first bad value."""
    models.validate_config(config)
    data.validate_config(config)
    config_lib.validate_training(config)
