"""What every face-age builder shares: the stored example layout, age checks, image decoding as the reference does
it, the seeded splits, and the report of what was kept and what was skipped (and why)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from ssr_jax.data.images import read_rgb, resize_bilinear

IMAGE_SIZE = 64
AGE_MIN, AGE_MAX = 0, 100
# The reference seeds NumPy with 2**10 and keeps the last 20 % of one shuffle for testing (SSRNET_train.py).
SPLIT_SEED = 2**10
TEST_FRACTION = 0.2
REPORT_FILE = "prepare_report.json"

# Skip reasons, shared so reports from different builders add up and tests can name them.
NO_AGE = "no age"
AGE_NOT_INTEGER = "age not an integer"
AGE_OUT_OF_RANGE = f"age outside [{AGE_MIN}, {AGE_MAX}]"
NO_GENDER = "no gender"
BAD_FILE_NAME = "file name not in the expected pattern"
MISSING_FILE = "missing image file"
UNREADABLE = "unreadable image"


def features(*, with_gender: bool) -> tfds.features.FeaturesDict:
    """The stored example.

    image: uint8 [64, 64, 3] in **BGR** order (channel 0 = blue), raw bytes: lossless, the reference's layout, and the
      fastest to read back (no PNG decode); gender: 0 male, 1 female in every dataset (IMDB-WIKI's own 1 = male is
      converted); file: where the example came from (a path relative to the manual directory, or `name.npz[i]`).
    """
    spec = {
        "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8,
                                      encoding=tfds.features.Encoding.BYTES),
        "age": tfds.features.Scalar(dtype=np.int32),
        "file": tfds.features.Text(),
    }
    if with_gender:
        spec["gender"] = tfds.features.Scalar(dtype=np.int32)
    return tfds.features.FeaturesDict(spec)


def split_order(names) -> list[str]:
    """train, test, then any others alphabetically: the order reports and tables list splits in."""
    return sorted(names, key=lambda name: (("train", "test").index(name) if name in ("train", "test") else 2, name))


def check_age(value) -> tuple[int | None, str | None]:
    """(age, None) for an integer-valued age in [0, 100], else (None, skip reason). Accepts numbers and numeric text
    ("54", "54.0"), because ages arrive from file names, text lists, .mat doubles and .npz arrays."""
    try:
        age = float(value)
    except (TypeError, ValueError):
        return None, NO_AGE
    if not math.isfinite(age):
        return None, NO_AGE
    if age != math.floor(age):
        return None, AGE_NOT_INTEGER
    if not AGE_MIN <= age <= AGE_MAX:
        return None, AGE_OUT_OF_RANGE
    return int(age), None


class ImageError(ValueError):
    """An image file that cannot be decoded (or is too small to crop); the message says why."""


def load_face(path: str | os.PathLike, *, crop_rows: int = 0) -> np.ndarray:
    """An image file → uint8 [64, 64, 3] BGR, as the reference's `cv2.imread` + `cv2.resize` produce it.

    EXIF orientation is applied (cv2.imread does that by default), `crop_rows` rows are cut from the top and the
    bottom first (MegaAge-Asian's [20:-20]), and the resize is cv2's INTER_LINEAR (see `resize_bilinear`).
    """
    try:
        pixels = read_rgb(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageError(f"cannot decode: {error}") from None
    if crop_rows:
        if pixels.shape[0] <= 2 * crop_rows:
            raise ImageError(f"{pixels.shape[0]} rows, too few to cut {crop_rows} from each end")
        pixels = pixels[crop_rows:-crop_rows]
    if pixels.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        pixels = resize_bilinear(pixels, IMAGE_SIZE)
    return np.ascontiguousarray(pixels[..., ::-1])


def random_split(num: int) -> dict[str, np.ndarray]:
    """The reference's image-level split: shuffle 0..num-1 once with NumPy seeded 2**10, first 80 % train.

    The reference shuffled after building its Keras model, whose initialisers may also draw from NumPy's global
    generator, so its exact permutation is not reproducible; this is the same procedure with a fresh
    `RandomState(2**10)`, stable across NumPy versions.
    """
    order = np.arange(num)
    np.random.RandomState(SPLIT_SEED).shuffle(order)
    cut = int(num * (1 - TEST_FRACTION))
    return {"train": np.sort(order[:cut]), "test": np.sort(order[cut:])}


def subject_split(subjects: Sequence[str]) -> dict[str, np.ndarray]:
    """Subject-exclusive split: the sorted distinct subjects are shuffled (seed 2**10) and the first 80 % of them
    go to train, so no person appears in both splits; image counts come out near 80/20."""
    names = np.asarray(subjects)
    distinct = np.unique(names)
    np.random.RandomState(SPLIT_SEED).shuffle(distinct)
    train = np.isin(names, distinct[:int(len(distinct) * (1 - TEST_FRACTION))])
    return {"train": np.flatnonzero(train), "test": np.flatnonzero(~train)}


@dataclasses.dataclass
class PrepareReport:
    """What preparing a dataset kept per split and skipped per reason, with the first few skipped items of each
    reason so a user can look at them. Saved as JSON beside the prepared data."""

    dataset: str
    source: str = ""
    manual_dir: str = ""  # resolved; a later `prepare` from another manual directory is refused, not silently reused
    kept: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped_examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    path: str = ""  # the prepared dataset directory; set when read back, not stored
    reused: bool = False  # True when `prepare` found the dataset already prepared; not stored

    EXAMPLES_PER_REASON = 5

    def skip(self, reason: str, item: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        examples = self.skipped_examples.setdefault(reason, [])
        if len(examples) < self.EXAMPLES_PER_REASON:
            examples.append(item)

    def to_json(self) -> str:
        stored = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("path", "reused")}
        return json.dumps(stored, indent=2) + "\n"  # unsorted: splits stay in train, test order

    @classmethod
    def from_json(cls, text: str, *, path: str = "", reused: bool = False) -> PrepareReport:
        return cls(**json.loads(text), path=path, reused=reused)

    def summary(self) -> str:
        """A few lines for a terminal: where, from what, kept per split, skipped per reason."""
        state = "already prepared" if self.reused else "prepared"
        lines = [f"{self.dataset}: {state} in {self.path}" if self.path else self.dataset]
        if self.source:
            lines.append(f"  source: {self.source}")
        if self.kept:
            lines.append("  kept: " + ", ".join(f"{split} {n:,}" for split, n in self.kept.items()))
        if self.skipped:
            lines.append(f"  skipped: {sum(self.skipped.values()):,}")
            for reason, n in sorted(self.skipped.items(), key=lambda item: -item[1]):
                lines.append(f"    {n:>8,}  {reason}  (e.g. {self.skipped_examples[reason][0]})")
        return "\n".join(lines)
