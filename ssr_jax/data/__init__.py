"""Datasets as host arrays, `{"image": uint8 [N, H, W, 3] BGR, "age": int32 [N]}` (plus `gender` where known).

`load_splits(config.data)` gives (train, test) for training; `load_split(name, split, …)` gives one named split for
evaluation and diagnostics. The embedded default is `synthetic` (generated from `config.data`, no files); every other
name is a dataset prepared once with `ssr-jax data prepare NAME --manual_dir DIR` (TFDS builders, `ssr_jax.data.builders`).
"""
from __future__ import annotations

import numpy as np

from ssr_jax.data import synthetic

SYNTHETIC_SPLITS = ("train", "test")
# The TFDS builders' names (ssr_jax.data.builders.BUILDERS, a test keeps the two equal), listed here so that
# validating a config does not import TFDS.
PREPARED_DATASETS = ("morph2", "imdb", "wiki", "megaage_asian", "utkface", "synthetic_faces")
PREPARED_IMAGE_SIZE = 64


def prepared_name(data_config) -> str:
    """`data.name` with its split protocol: "morph2" + protocol "subject" → "morph2/subject"."""
    protocol = data_config.get("protocol", "")
    return f"{data_config.name}/{protocol}" if protocol else data_config.name


def _synthetic_splits(data_config) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return synthetic.train_test_split(
        data_config.num_train,
        data_config.num_test,
        seed=data_config.seed,
        image_size=data_config.image_size,
        age_distribution=data_config.age_distribution,
        age_min=data_config.age_min,
        age_max=data_config.age_max,
    )


def load_splits(data_config) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, test) for training: generated (synthetic) or read from the prepared dataset, `data.cap` examples of
    each split at most (0: all)."""
    if data_config.name == "synthetic":
        return _synthetic_splits(data_config)
    from ssr_jax.data import prepared  # TFDS is imported only when a real dataset is asked for

    cap = data_config.get("cap", 0) or None
    data_dir = data_config.get("data_dir", "") or None
    return tuple(prepared.load_split(prepared_name(data_config), split, data_dir=data_dir, cap=cap)
                 for split in ("train", "test"))


def load_split(name: str, split: str, *, data_config=None, data_dir: str | None = None,
               cap: int | None = None) -> dict[str, np.ndarray]:
    """One split of a dataset: `synthetic` is regenerated from `data_config` (the model's own `config.data`, so a
    model is scored on the data it was trained against), every other name is read from its prepared TFDS copy."""
    if name == "synthetic":
        if data_config is None:
            raise ValueError("the synthetic dataset is generated from a config.data section; pass data_config")
        if split not in SYNTHETIC_SPLITS:
            raise ValueError(f"split {split!r} of synthetic: choose one of {SYNTHETIC_SPLITS}")
        train, test = _synthetic_splits(data_config)
        arrays = train if split == "train" else test
        return {key: value[:cap] for key, value in arrays.items()}
    from ssr_jax.data import prepared  # TFDS is imported only when a real dataset is asked for

    return prepared.load_split(name, split, data_dir=data_dir, cap=cap)
