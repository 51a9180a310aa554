"""Datasets as host arrays: `load_splits(config.data)` → (train, test), each `{"image": uint8 [N, H, W, 3] BGR,
"age": int32 [N]}`. The embedded default is `synthetic`; real datasets arrive through TFDS builders."""
from __future__ import annotations

import numpy as np

from ssr_jax.data import synthetic


def load_splits(data_config) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    if data_config.name == "synthetic":
        return synthetic.train_test_split(
            data_config.num_train,
            data_config.num_test,
            seed=data_config.seed,
            image_size=data_config.image_size,
            age_distribution=data_config.age_distribution,
            age_min=data_config.age_min,
            age_max=data_config.age_max,
        )
    raise ValueError(f"data.name={data_config.name!r}: unknown dataset; the embedded default is 'synthetic'")
