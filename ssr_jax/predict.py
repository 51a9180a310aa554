"""Inference from a model directory (a training run or a `convert-keras` output): ages for image files, and the
metrics of a whole dataset split. Images are read as the dataset builders read them (`ssr_jax.data.images`).
"""
from __future__ import annotations

import functools
import os
import time
from typing import Sequence

import jax
import numpy as np

from ssr_jax import models, saved_model
from ssr_jax.data.images import fit_images, read_images
from ssr_jax.evaluate import by_age, evaluate_batches, pad_to_batches
from ssr_jax.models import abstract_variables, count_parameters


def predict_files(model_dir: str | os.PathLike, paths: Sequence[str | os.PathLike], batch_size: int = 64) -> list[dict]:
    """[{"file", "age"}] in input order; a file that cannot be read gives {"file", "error"} and the rest go on."""
    config, variables = saved_model.load(model_dir)
    predict = functools.partial(saved_model.make_apply(config), variables)
    results, readable = read_images(paths, config.data.image_size)
    batch_size = max(1, min(batch_size, len(readable)))
    for start in range(0, len(readable), batch_size):
        chunk = readable[start:start + batch_size]
        images = np.stack([image for _, image in chunk])
        # Pad the last chunk to a full batch so every chunk reuses one compiled program.
        padded = np.zeros((batch_size, *images.shape[1:]), np.uint8)
        padded[:len(chunk)] = images
        ages = np.asarray(predict(padded))[:len(chunk)]
        for (index, _), age in zip(chunk, ages):
            results[index]["age"] = float(age)
    return results


def evaluate_split(model_dir: str | os.PathLike, split: dict[str, np.ndarray], batch_size: int = 256,
                   decode: str | None = None) -> dict:
    """The metrics a training run's `summary.json` reports (MAE, CA(3), CA(5), MAE by age, parameters, size, the
    `decode` rule) for a model directory on one split `{"image": uint8 [N, H, W, 3] BGR, "age": [N]}`, its ages
    read by the decision rule `decode` (default: the run's `model.decode`); a rule its head cannot give is a
    `ConfigError`, before anything compiles."""
    start = time.perf_counter()
    config = saved_model.read_config(model_dir)
    if decode is not None:
        config.model.decode = decode
        models.validate_head(config.model)
    _, variables = saved_model.load(model_dir)
    images = fit_images(split["image"], config.data.image_size)
    ages = np.asarray(split["age"])
    if ages.shape != (len(images),) or not len(images):
        raise ValueError(f"split needs one age per image and at least one image; got {len(images)} images and ages "
                         f"of shape {ages.shape}")
    apply = saved_model.make_apply(config)
    metrics = jax.jit(lambda variables, batches: evaluate_batches(functools.partial(apply, variables), batches))(
        variables, pad_to_batches(images, ages, min(batch_size, len(images))))
    params = count_parameters(abstract_variables(config.model, config.data.image_size))
    return {
        "status": "ok",
        **{name: float(metrics[name]) for name in ("mae", "ca3", "ca5")},
        **by_age(metrics["age_abs_error"], metrics["age_count"]),
        "params": params["total"],
        "trainable_params": params["trainable"],
        "model_bytes": params["bytes"],
        "num_test": int(len(ages)),
        **models.architecture(config.model),
        "wall_s": time.perf_counter() - start,
    }
