"""Image files as the reference reads them: decoded to RGB with Pillow (upright by EXIF), resized to the model's input
size only when needed, with bilinear interpolation as `cv2.resize` does by default (INTER_LINEAR: half-pixel centres,
no anti-aliasing), in BGR order. The dataset builders and `ssr_jax.predict` both read through here, so training data
and predictions see the same pixels.
"""
from __future__ import annotations

import os
import pathlib
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

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
    dataset builders read files with this too, so training data and predictions see the same pixels).

    16-bit greyscale is scaled to 8 bits (Pillow's own conversion would clip everything above 255 to white); 32-bit
    integer or float pixels, whose range is unknown, are a ValueError naming the file.
    """
    with Image.open(path) as image:
        ImageOps.exif_transpose(image, in_place=True)
        if image.mode.startswith("I;16"):
            grey = np.rint(np.asarray(image, np.float64) / 257.0).astype(np.uint8)  # 65535 → 255
            return np.repeat(grey[..., None], 3, axis=-1)
        if image.mode in ("I", "F"):
            raise ValueError(f"{path}: {image.mode} ({'32-bit integer' if image.mode == 'I' else 'float'}) pixels "
                             "have no known 0–255 scale; save the image with 8 (or 16) bits per channel")
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
        # Missing or undecodable (PIL's UnidentifiedImageError ⊂ OSError), or too many pixels to decode safely.
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            results.append({"file": str(path), "error": f"{type(error).__name__}: {error}"})
            continue
        results.append({"file": str(path)})
        readable.append((len(results) - 1, image))
    return results, readable


def fit_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 `[N, H, W, 3]` at the model's input size: as is when it already matches, else resized like `load_image`."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if images.shape[1:3] == (image_size, image_size):
        return images
    return np.stack([resize_bilinear(image, image_size) for image in images])
