"""MORPH Album 2 (≈55,000 mugshots of ≈13,000 people, ages 16–77), the paper's headline benchmark.

Two protocols, as builder configs (each prepared on its own, so only the one in use costs disk):
  morph2/random   (default) the reference's image-level random 80/20 split (seed 2**10);
  morph2/subject  subject-exclusive 80/20: no person in both splits (subject id = the file name's first field).
"""
from __future__ import annotations

import pathlib
import re

import tensorflow_datasets as tfds

from ssr_jax.data.builders import common
from ssr_jax.data.builders.base import FaceBuilder, image_files
from ssr_jax.data.builders.reference_npz import ReferenceNpz, read_reference_npz

NPZ_NAME = "morph2_db_align.npz"
# 009055_1M54.JPG: subject 009055, picture 1, male, 54 years.
_NAME = re.compile(r"^(?P<subject>\d+)_(?P<picture>\d+)(?P<gender>[MF])(?P<age>\d+)\.jpe?g$", re.IGNORECASE)


class Morph2(FaceBuilder):
    """MORPH2 from the album's JPG files or from the reference's aligned npz."""

    name = "morph2"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: random and subject-exclusive 80/20 splits."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="random", description="The reference's image-level random 80/20 split."),
        tfds.core.BuilderConfig(name="subject", description="Subject-exclusive 80/20 split (needs the JPG files)."),
    ]
    DESCRIPTION = ("MORPH Album 2 face images, 64×64 BGR, age from 16 to 77 and gender (0 male, 1 female). From "
                   f"{NPZ_NAME}: the reference's dlib-aligned crops. From the JPG files: the whole photograph resized "
                   "(no face detection or alignment), so not comparable with numbers on the aligned crops.")
    HOMEPAGE = "https://uncw.edu/oic/tech/morph.html"
    NPZ_MALE = 0  # the reference's MORPH script writes M → 0, F → 1
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
MORPH2 is licensed and cannot be downloaded here. Put ONE of these in the manual directory:
  * {NPZ_NAME}: the reference's prepared file (keys image, gender, age, img_size; written by its
    data/TYY_MORPH_create_db.py), used as is for morph2/random. It has no subject ids, so morph2/subject cannot
    use it;
  * the album's JPG files, named SUBJECT_PICTURE{{M|F}}AGE.JPG (e.g. 009055_1M54.JPG), directly in the manual
    directory or in any subfolder of it. Needed for morph2/subject; used for morph2/random when there is no
    {NPZ_NAME}."""

    @staticmethod
    def identity(file: str) -> str | None:
        """The subject of an album file (`…/009055_1M54.JPG` → "009055"); None for a row of the npz, which names
        no subjects."""
        labels = _labels(pathlib.PurePosixPath(file).name)
        return labels[2] if labels else None

    def _sources(self, manual_dir: pathlib.Path) -> list[pathlib.Path] | ReferenceNpz:
        npz = manual_dir / NPZ_NAME
        if self.builder_config.name == "random" and npz.exists():
            return read_reference_npz(npz, with_gender=True)
        files = image_files(manual_dir, suffixes=(".jpg", ".jpeg"))
        if files:
            return files
        if npz.exists():
            raise self._missing(f"morph2/subject needs the album's JPG files (subject ids come from their names); "
                                f"found only {NPZ_NAME}, which has no subject ids")
        raise self._missing(f"found neither {NPZ_NAME} nor any .JPG file")

    def _examples_by_split(self) -> dict:
        sources = self.sources()
        if isinstance(sources, ReferenceNpz):
            return {split: self._generate_examples(sources, indices)
                    for split, indices in common.random_split(sources.num).items()}
        files, subjects = self._files_from_names(sources, _labels, "SUBJECT_PICTURE{M|F}AGE.JPG")
        split = common.subject_split(subjects) if self.builder_config.name == "subject" else \
            common.random_split(len(files))
        return {name: self._generate_examples(files, indices) for name, indices in split.items()}


def _labels(file_name: str) -> tuple[str, int, str] | None:
    """(age text, gender 0 male / 1 female, subject) from a MORPH2 file name, as the reference parses it."""
    match = _NAME.match(file_name)
    return (match["age"], 0 if match["gender"].upper() == "M" else 1, match["subject"]) if match else None
