"""Datasets as host arrays, `{"image": uint8 [N, H, W, 3] BGR, "age": int32 [N]}` (plus `gender` where known).

`load_splits(config.data)` gives (train, test) for training, and (train, test, val) under the benchmark protocol,
whose validation part selects the reported epoch; `load_split(name, split, …)` gives one named split for evaluation
and diagnostics. The embedded default is `synthetic` (generated from `config.data`, no files); every other name is a
dataset prepared once with `ssr-jax data prepare NAME --manual_dir DIR` (TFDS builders, `ssr_jax.data.builders`).
"""
from __future__ import annotations

import os

import numpy as np

from ssr_jax.config_lib import ConfigError, fail
from ssr_jax.data import augment, folds, synthetic
from ssr_jax.data.images import COLOUR_ORDERS

SYNTHETIC_SPLITS = ("train", "test")
# The TFDS builders' names (ssr_jax.data.builders.BUILDERS, a test keeps the two equal), listed here so that
# validating a config does not import TFDS.
PREPARED_DATASETS = ("morph2", "imdb", "wiki", "megaage_asian", "utkface", "synthetic_faces")
PREPARED_IMAGE_SIZE = 64
DATASETS = ("synthetic", *PREPARED_DATASETS)
# `data.protocol` of the benchmark's ten folds and five splits (ssr_jax.data.folds); `data.split_index` picks the split.
BENCHMARK = "benchmark"


def pad_rows(array: np.ndarray, count: int) -> np.ndarray:
    """`array` with `count` rows of zeros appended (the array itself when there are none)."""
    return np.concatenate([array, np.zeros((count, *array.shape[1:]), array.dtype)]) if count else array


def validate_config(config) -> None:
    """Checks `config.data` (and that a synthetic split holds a training batch); raises `ConfigError`."""
    data, train = config.data, config.train
    if data.name not in DATASETS:
        fail("data.name", data.name, f"must be one of {DATASETS} (prepare a real one first: ssr-jax data prepare "
             "NAME --manual_dir DIR)")
    if data.name != "synthetic" and data.image_size != PREPARED_IMAGE_SIZE:
        fail("data.image_size", data.image_size, f"prepared datasets are stored at {PREPARED_IMAGE_SIZE}×"
             f"{PREPARED_IMAGE_SIZE}, as the reference's; use {PREPARED_IMAGE_SIZE}")
    if data.colour_order not in COLOUR_ORDERS:
        fail("data.colour_order", data.colour_order, f"must be one of {COLOUR_ORDERS} (the reference feeds BGR)")
    if not (isinstance(data.cap, int) and data.cap >= 0):
        fail("data.cap", data.cap, "a number of examples per split (0: all)")
    chunk = data.device_chunk
    if not (isinstance(chunk, int) and (chunk == 0 or chunk >= train.batch_size)):
        fail("data.device_chunk", chunk, f"0 (whole split on the device) or at least train.batch_size "
             f"({train.batch_size}) examples")
    try:
        augment.from_config(data.augment)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"data.{error}; see configs/base.py for the reference's values") from None
    if data.age_distribution not in synthetic.AGE_DISTRIBUTIONS:
        fail("data.age_distribution", data.age_distribution, f"must be one of {synthetic.AGE_DISTRIBUTIONS}")
    if not 0 <= data.age_min <= data.age_max <= 100:
        fail("data.age_min/age_max", (data.age_min, data.age_max), "need 0 <= age_min <= age_max <= 100")
    for name in ("num_train", "num_test"):
        if not data[name] >= 1:
            fail(f"data.{name}", data[name], "needs at least one example")
    if data.name == "synthetic" and train.batch_size > data.num_train:
        fail("train.batch_size", train.batch_size,
             f"is larger than the training split ({data.num_train} examples); lower it or raise data.num_train")
    _validate_protocol(data)


def _validate_protocol(data) -> None:
    """The benchmark protocol's fields: a split 0–4 with it, none without it; a fold file only with it."""
    benchmark = data.protocol == BENCHMARK
    if benchmark and data.name == "synthetic":
        fail("data.protocol", data.protocol, f"needs a prepared dataset (data.name one of {PREPARED_DATASETS}); "
             "the generated synthetic faces come as train/test only")
    if benchmark and data.split_index not in range(folds.NUM_SPLITS):
        fail("data.split_index", data.split_index, f"the benchmark protocol's split, 0–{folds.NUM_SPLITS - 1} "
             "(split k tests on folds 2k+8, 2k+9)")
    if not benchmark and data.split_index != -1:
        fail("data.split_index", data.split_index, f"only the benchmark protocol has splits: add "
             f"--config.data.protocol={BENCHMARK}, or leave split_index at -1")
    if data.fold_file and not benchmark:
        fail("data.fold_file", data.fold_file, f"folds are used by the benchmark protocol only: add "
             f"--config.data.protocol={BENCHMARK} and a data.split_index")
    if data.fold_file and not os.path.isfile(os.path.expanduser(data.fold_file)):
        fail("data.fold_file", data.fold_file, "no such file; write one with `ssr-jax data export-folds NAME --out "
             "FILE`, or give the path of a published one")


def has_validation(data_config) -> bool:
    """Whether the config's split has a validation part (the benchmark protocol), which selects the reported
    epoch. Configs recorded before the protocol existed have none."""
    return data_config.get("protocol") == BENCHMARK


def prepared_name(data_config) -> str:
    """`data.name` with its split protocol: "morph2" + protocol "subject" → "morph2/subject"; the benchmark protocol
    reads the dataset's default preparation (its folds cover every example of it)."""
    protocol = data_config.protocol
    return f"{data_config.name}/{protocol}" if protocol and protocol != BENCHMARK else data_config.name


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


def load_splits(data_config) -> tuple[dict[str, np.ndarray], ...]:
    """(train, test) for training, generated (synthetic) or read from the prepared dataset; under the benchmark
    protocol (train, test, val), the parts of split `data.split_index`. At most `data.cap` examples of each (0: all).
    """
    cap = data_config.cap or None
    if data_config.name == "synthetic":
        return tuple({key: value[:cap] for key, value in split.items()} for split in _synthetic_splits(data_config))
    from ssr_jax.data import prepared  # TFDS is imported only when a real dataset is asked for

    data_dir = data_config.data_dir or None
    if has_validation(data_config):
        parts = _benchmark_parts(data_config, data_dir=data_dir, cap=cap)
        return parts["train"], parts["test"], parts["val"]
    return tuple(prepared.load_split(prepared_name(data_config), split, data_dir=data_dir, cap=cap)
                 for split in ("train", "test"))


def _benchmark_parts(data_config, *, data_dir, cap) -> dict[str, dict[str, np.ndarray]]:
    from ssr_jax.data import prepared

    return prepared.load_benchmark(data_config.name, data_config.split_index, data_dir=data_dir, cap=cap,
                                   fold_file=os.path.expanduser(data_config.fold_file) or None)


def load_split(name: str, split: str, *, data_config=None, data_dir: str | None = None,
               cap: int | None = None) -> dict[str, np.ndarray]:
    """One split of a dataset: `synthetic` is regenerated from `data_config` (the model's own `config.data`, so a
    model is scored on the data it was trained against), every other name is read from its prepared TFDS copy —
    except that a model trained under the benchmark protocol on `name` reads the train, val or test part of its own
    split (its stored train/test splits would overlap its training folds)."""
    if name == "synthetic":
        if data_config is None:
            raise ValueError("the synthetic dataset is generated from a config.data section; pass data_config")
        if split not in SYNTHETIC_SPLITS:
            raise ValueError(f"split {split!r} of synthetic: choose one of {SYNTHETIC_SPLITS}")
        train, test = _synthetic_splits(data_config)
        arrays = train if split == "train" else test
        return {key: value[:cap] for key, value in arrays.items()}
    from ssr_jax.data import prepared  # TFDS is imported only when a real dataset is asked for

    if data_config is not None and has_validation(data_config) and name == data_config.name:
        parts = _benchmark_parts(data_config, data_dir=data_dir, cap=cap)
        if split not in parts:
            raise ValueError(f"split {split!r} of {name} under the benchmark protocol: choose one of "
                             f"{', '.join(parts)}")
        return parts[split]
    return prepared.load_split(name, split, data_dir=data_dir, cap=cap)
