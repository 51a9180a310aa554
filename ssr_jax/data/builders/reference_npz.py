"""The reference's prepared-data layout: one `np.savez` file with `image` (N×S×S×3, BGR, uint8 or float 0–255),
`age` (N), `gender` (N, absent for MegaAge-Asian) and `img_size` (S), as its TYY_*_create_db.py scripts write it.

Reading validates the layout from the headers alone and then streams the images in chunks: the reference's MORPH2
file holds float64 images (≈5 GB), which need not fit in memory. Writing is atomic (temporary file, then rename).
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
from typing import Iterator

import numpy as np

from ssr_jax.workdir import atomic_file

LAYOUT = ("expected the reference's layout: image (N×S×S×3, BGR, uint8 or float 0–255), age (N), gender (N) and "
          "img_size (S), as written by its TYY_*_create_db.py scripts or by `ssr-jax data export-npz`")


class NpzLayoutError(ValueError):
    """The file is not in the reference's .npz layout; the message names the problem and the expected layout."""


@dataclasses.dataclass(frozen=True)
class ReferenceNpz:
    """A validated reference .npz: labels in memory, images streamed by `iter_images`."""

    path: pathlib.Path
    age: np.ndarray
    gender: np.ndarray | None
    img_size: int
    num: int
    image_dtype: np.dtype

    def iter_images(self, wanted: np.ndarray, chunk: int = 512) -> Iterator[tuple[int, np.ndarray]]:
        """(index, uint8 [S, S, 3] BGR) for every index where the boolean mask `wanted` is true, in file order.

        Float images must hold 0–255 values; they are rounded to uint8 (the reference's are integer-valued already).
        """
        row = (self.img_size, self.img_size, 3)
        row_bytes = int(np.prod(row)) * self.image_dtype.itemsize
        with zipfile.ZipFile(self.path) as archive, archive.open("image.npy") as stream:
            _read_header(stream, self.path)
            for start in range(0, self.num, chunk):
                count = min(chunk, self.num - start)
                data = stream.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise NpzLayoutError(f"{self.path}: image.npy is truncated (ends inside image "
                                         f"{start + len(data) // row_bytes})")
                picked = np.flatnonzero(wanted[start:start + count])
                if not len(picked):
                    continue
                block = np.frombuffer(data, self.image_dtype).reshape(count, *row)[picked]
                for offset, image in zip(picked, _to_uint8(block, self.path, start)):
                    yield start + int(offset), image


def read_reference_npz(path: str | os.PathLike, *, with_gender: bool = True) -> ReferenceNpz:
    """Opens and validates a reference .npz; raises NpzLayoutError (one message: what is wrong, what is expected)."""
    path = pathlib.Path(path)
    if not zipfile.is_zipfile(path):
        raise NpzLayoutError(f"{path}: {'not an .npz (zip) file' if path.is_file() else 'no such file'}; {LAYOUT}")
    required = ["image", "age", "img_size"] + (["gender"] if with_gender else [])
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = npz.files
            labels = {key: np.asarray(npz[key]) for key in required if key in keys and key != "image"}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise NpzLayoutError(f"{path}: cannot read as .npz ({error}); {LAYOUT}") from None
    missing = [key for key in required if key not in keys]
    if missing:
        raise NpzLayoutError(f"{path}: missing key(s) {missing} (it has {sorted(keys)}); {LAYOUT}")
    with zipfile.ZipFile(path) as archive, archive.open("image.npy") as stream:
        shape, dtype = _read_header(stream, path)
    age = labels["age"].reshape(-1)
    gender = labels["gender"].reshape(-1) if with_gender else None
    img_size = labels["img_size"]

    if img_size.size != 1 or not np.issubdtype(img_size.dtype, np.number):
        raise NpzLayoutError(f"{path}: img_size must be one number, got {img_size!r}; {LAYOUT}")
    size = int(img_size.reshape(-1)[0])
    if size < 1:
        raise NpzLayoutError(f"{path}: img_size is {size}; an image has at least one pixel a side; {LAYOUT}")
    if len(shape) != 4 or shape[1:] != (size, size, 3):
        raise NpzLayoutError(f"{path}: image has shape {shape}, expected (N, {size}, {size}, 3) for img_size "
                             f"{size}; {LAYOUT}")
    if shape[0] == 0:
        raise NpzLayoutError(f"{path}: holds no images")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise NpzLayoutError(f"{path}: image dtype {dtype} is not numeric; {LAYOUT}")
    for key, values in (("age", age), ("gender", gender)):
        if values is not None and len(values) != shape[0]:
            raise NpzLayoutError(f"{path}: {len(values)} {key} values for {shape[0]} images; {LAYOUT}")
    return ReferenceNpz(path, age, gender, size, shape[0], dtype)


def write_reference_npz(path: str | os.PathLike, *, image: np.ndarray, age: np.ndarray,
                        gender: np.ndarray | None = None) -> pathlib.Path:
    """Writes the layout with `np.savez` (uncompressed, like the reference) through a temporary file and a rename,
    so a killed export never leaves a truncated file under the final name."""
    path = pathlib.Path(path)
    arrays = {"image": image, "age": age}
    if gender is not None:
        arrays["gender"] = gender
    arrays["img_size"] = np.asarray(image.shape[1])
    with atomic_file(path, "wb") as file:
        np.savez(file, **arrays)
    return path


def _read_header(stream, path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header; only C-ordered arrays can be streamed row by row."""
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version} is not supported; re-save it with np.savez")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read(stream)
    except ValueError as error:
        raise NpzLayoutError(f"{path}: image.npy has an unreadable header ({error}); {LAYOUT}") from None
    if fortran_order:
        raise NpzLayoutError(f"{path}: image is stored in Fortran order; re-save it with "
                             "np.savez(..., image=np.ascontiguousarray(image))")
    return shape, dtype


def _to_uint8(block: np.ndarray, path, start: int) -> np.ndarray:
    """uint8 as is; other integer or float images must lie in 0–255 (raw pixels, not normalised) and are rounded."""
    if block.dtype == np.uint8:
        return block
    if not np.isfinite(block).all() or block.min() < 0 or block.max() > 255:
        raise NpzLayoutError(f"{path}: images near index {start} have values outside 0–255 "
                             f"(min {block.min()}, max {block.max()}); {LAYOUT}")
    if block.max() <= 1 and np.any(block != np.rint(block)):  # raw pixels are whole numbers; these would be black
        raise NpzLayoutError(f"{path}: images near index {start} hold fractions within 0–1 (normalised images?), "
                             "where this layout stores raw 0–255 pixels: save image * 255 instead")
    return np.rint(block).astype(np.uint8)
