"""Inference from a model directory (a training run or a `convert-keras` output): ages for image files, and the
metrics of a whole dataset split.

Images are read the way the reference prepares its data: decoded to RGB with Pillow, resized to the model's input
size only when needed, with bilinear interpolation as `cv2.resize` does by default (INTER_LINEAR: half-pixel centres,
no anti-aliasing), put in BGR order and fed as raw 0–255 floats.
"""
from __future__ import annotations

import os
import pathlib
import time
from typing import Sequence

import jax
import numpy as np
from PIL import Image, ImageOps

from ssr_jax import saved_model
from ssr_jax.evaluate import evaluate_batches, pad_to_batches
from ssr_jax.models import abstract_variables, count_parameters, create_model, model_input, predict_age

COLOUR_ORDERS = ("BGR", "RGB")


def load_image(path: str | os.PathLike, image_size: int, colour_order: str = "BGR") -> np.ndarray:
    """uint8 `[image_size, image_size, 3]` in `colour_order` (every ssr_jax model and the reference expect BGR)."""
    if colour_order not in COLOUR_ORDERS:
        raise ValueError(f"colour_order={colour_order!r}: must be one of {COLOUR_ORDERS}")
    pixels = read_rgb(path)
    if pixels.shape[:2] != (image_size, image_size):
        pixels = resize_bilinear(pixels, image_size)
    return pixels[..., ::-1].copy() if colour_order == "BGR" else pixels


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """uint8 `[H, W, 3]` RGB of an image file, turned upright by its EXIF orientation as `cv2.imread` does (the
    dataset builders read files with this too, so training data and predictions see the same pixels)."""
    with Image.open(path) as image:
        ImageOps.exif_transpose(image, in_place=True)
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), np.uint8)


def resize_bilinear(pixels: np.ndarray, size: int) -> np.ndarray:
    """uint8 `[H, W, C]` → `[size, size, C]` as `cv2.resize(…, INTER_LINEAR)` (the reference's dataset scripts).

    Output pixel x samples the input at (x + ½)·W/size − ½, edges replicated, rounded to nearest. Pillow's
    `resize(BILINEAR)` widens its filter when shrinking (anti-aliasing) and its affine `transform` truncates instead
    of rounding; cv2 does neither, so large face crops would shrink differently from the reference's training data.
    """
    def taps(n_in: int):
        centre = (np.arange(size) + 0.5) * (n_in / size) - 0.5
        low = np.floor(centre)
        weight = np.where(centre < 0, 0.0, centre - low)
        low = np.clip(low.astype(int), 0, n_in - 1)
        return low, np.minimum(low + 1, n_in - 1), weight

    (y0, y1, wy), (x0, x1, wx) = taps(pixels.shape[0]), taps(pixels.shape[1])
    # Gather the needed rows before converting to float: a large photo costs only `size` rows of work.
    rows = pixels[y0].astype(np.float64) * (1 - wy)[:, None, None] + pixels[y1].astype(np.float64) * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def make_predictor(config, variables):
    """Jitted `images [batch, H, W, 3] uint8 → ages [batch]` at the config's λ, in evaluation mode."""
    model = create_model(config.model)
    lambdas = dict(lambda_local=config.model.lambda_local, lambda_d=config.model.lambda_d)

    @jax.jit
    def predict(images):
        heads = model.apply(variables, model_input(images, config.data), train=False)
        return predict_age(config.model, heads, **lambdas)

    return predict


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def expand_image_paths(paths: Sequence[str | os.PathLike]) -> list[pathlib.Path]:
    """Files as given, folders replaced by their image files (sorted by name) — e.g. the golden-input folders."""
    expanded = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            expanded.extend(sorted(child for child in path.iterdir() if child.suffix.lower() in IMAGE_SUFFIXES))
        else:
            expanded.append(path)
    return expanded


def read_images(paths: Sequence[str | os.PathLike], image_size: int) -> tuple[list[dict], list[tuple[int, np.ndarray]]]:
    """(one `{"file"}` or `{"file", "error"}` per path, [(index into it, BGR image)] for the readable ones)."""
    results, readable = [], []
    for path in paths:
        try:
            image = load_image(path, image_size)
        except (OSError, ValueError) as error:  # missing or undecodable (PIL's UnidentifiedImageError ⊂ OSError)
            results.append({"file": str(path), "error": f"{type(error).__name__}: {error}"})
            continue
        results.append({"file": str(path)})
        readable.append((len(results) - 1, image))
    return results, readable


def predict_files(model_dir: str | os.PathLike, paths: Sequence[str | os.PathLike], batch_size: int = 64) -> list[dict]:
    """[{"file", "age"}] in input order; a file that cannot be read gives {"file", "error"} and the rest go on."""
    config, variables = saved_model.load(model_dir)
    predict = make_predictor(config, variables)
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


def fit_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 `[N, H, W, 3]` at the model's input size: as is when it already matches, else resized like `load_image`."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if images.shape[1:3] == (image_size, image_size):
        return images
    return np.stack([resize_bilinear(image, image_size) for image in images])


def evaluate_split(model_dir: str | os.PathLike, split: dict[str, np.ndarray], batch_size: int = 256) -> dict:
    """The metrics a training run's `summary.json` reports (MAE, CA(3), CA(5), parameters, size) for a model
    directory on one split `{"image": uint8 [N, H, W, 3] BGR, "age": [N]}`."""
    start = time.perf_counter()
    config, variables = saved_model.load(model_dir)
    images = fit_images(split["image"], config.data.image_size)
    ages = np.asarray(split["age"])
    if ages.shape != (len(images),) or not len(images):
        raise ValueError(f"split needs one age per image and at least one image; got {len(images)} images and ages "
                         f"of shape {ages.shape}")
    predict = make_predictor(config, variables)
    metrics = jax.jit(lambda batches: evaluate_batches(predict, batches))(
        pad_to_batches(images, ages, min(batch_size, len(images))))
    params = count_parameters(abstract_variables(config.model, config.data.image_size))
    return {
        "status": "ok",
        **{name: float(metrics[name]) for name in ("mae", "ca3", "ca5")},
        "params": params["total"],
        "trainable_params": params["trainable"],
        "model_bytes": params["bytes"],
        "num_test": int(len(ages)),
        "wall_s": time.perf_counter() - start,
    }
