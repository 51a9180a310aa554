"""Ages for image files from a model directory (a training run or a `convert-keras` output).

Images are read the way the reference prepares its data: decoded to RGB with Pillow, resized to the model's input
size only when needed, with bilinear interpolation as `cv2.resize` does by default (INTER_LINEAR: half-pixel centres,
no anti-aliasing), put in BGR order and fed as raw 0–255 floats.
"""
from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ssr_jax import saved_model
from ssr_jax.models import create_model, predict_age

COLOUR_ORDERS = ("BGR", "RGB")


def load_image(path: str | os.PathLike, image_size: int, colour_order: str = "BGR") -> np.ndarray:
    """uint8 `[image_size, image_size, 3]` in `colour_order` (every ssr_jax model and the reference expect BGR)."""
    if colour_order not in COLOUR_ORDERS:
        raise ValueError(f"colour_order={colour_order!r}: must be one of {COLOUR_ORDERS}")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), np.uint8)
    if pixels.shape[:2] != (image_size, image_size):
        pixels = resize_bilinear(pixels, image_size)
    return pixels[..., ::-1].copy() if colour_order == "BGR" else pixels


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
    rows = pixels.astype(np.float64)
    rows = rows[y0] * (1 - wy)[:, None, None] + rows[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def make_predictor(config, variables):
    """Jitted `images [batch, H, W, 3] uint8 → ages [batch]` at the config's λ, in evaluation mode."""
    model = create_model(config.model)
    lambdas = dict(lambda_local=config.model.lambda_local, lambda_d=config.model.lambda_d)

    @jax.jit
    def predict(images):
        heads = model.apply(variables, images.astype(jnp.float32), train=False)
        return predict_age(config.model, heads, **lambdas)

    return predict


def predict_files(model_dir: str | os.PathLike, paths: Sequence[str | os.PathLike], batch_size: int = 64) -> list[dict]:
    """[{"file", "age"}] in input order; a file that cannot be read gives {"file", "error"} and the rest go on."""
    config, variables = saved_model.load(model_dir)
    predict = make_predictor(config, variables)
    size = config.data.image_size
    results, readable = [], []
    for path in paths:
        try:
            image = load_image(path, size)
        except (OSError, ValueError) as error:  # missing or undecodable (PIL's UnidentifiedImageError ⊂ OSError)
            results.append({"file": str(path), "error": f"{type(error).__name__}: {error}"})
            continue
        results.append({"file": str(path)})
        readable.append((len(results) - 1, image))
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
