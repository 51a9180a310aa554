"""UTKFace (≈23,000 faces, ages 0–116) labelled by file name: AGE_GENDER_RACE_DATE.jpg, gender 0 male, 1 female.

Ages above 100 (a few dozen images) are outside the SSR-Net age range and are reported as filtered. Split: random
80/20 (seed 2**10), as for the reference's datasets.
"""
from __future__ import annotations

import pathlib
import re

import tensorflow_datasets as tfds

from ssr_jax.data.builders import common
from ssr_jax.data.builders.base import FaceBuilder, image_files

# 25_0_2_20170116174525125.jpg.chip.jpg: age 25, male (0), race 2; a few real files lack the race field.
_NAME = re.compile(r"^(?P<age>\d+)_(?P<gender>[01])_")


class Utkface(FaceBuilder):
    """UTKFace from a folder of its labelled image files."""

    name = "utkface"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: random 80/20 split."}
    DESCRIPTION = "UTKFace faces resized to 64×64 BGR, age 0–100 (older ones left out), gender (0 male, 1 female)."
    HOMEPAGE = "https://susanqq.github.io/UTKFace/"
    CITATION = """@inproceedings{zhifei2017cvpr,
  author = {Zhang, Zhifei and Song, Yang and Qi, Hairong},
  title = {Age Progression/Regression by Conditional Adversarial Autoencoder},
  booktitle = {CVPR}, year = {2017}}"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download UTKFace (the aligned and cropped faces, UTKFace.tar.gz, or the in-the-wild crop_part*.tar.gz) from the
project page and extract it. The manual directory holds the image files, directly or in subfolders, named
AGE_GENDER_RACE_DATE.jpg (e.g. 25_0_2_20170116174525125.jpg.chip.jpg): gender 0 male, 1 female."""

    def _sources(self, manual_dir: pathlib.Path) -> list[pathlib.Path]:
        files = image_files(manual_dir)
        if not files:
            raise self._missing("found no .jpg/.png files")
        return files

    def _examples_by_split(self) -> dict:
        files, _ = self._files_from_names(self.sources(), _labels, "AGE_GENDER_RACE_DATE.jpg, gender 0 or 1")
        return {split: self._generate_examples(files, indices)
                for split, indices in common.random_split(len(files)).items()}


def _labels(file_name: str) -> tuple[str, int, None] | None:
    """(age text, gender 0 male / 1 female, no group) from a UTKFace file name."""
    match = _NAME.match(file_name)
    return (match["age"], int(match["gender"]), None) if match else None
