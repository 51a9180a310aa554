"""MegaAge-Asian (≈40,000 Asian faces, ages 0–70; Zhang et al. 2017) with its official train/test split.

Images are read as the official SSR-Net MegaAge script does (TYY_Megaage_asian_create_db.py): rows [20:-20] cut off,
then resized to 64×64. That script's outputs, megaage_train.npz and megaage_test.npz, are accepted instead of the
folders and used as they are. There is no gender.
"""
from __future__ import annotations

import pathlib

import tensorflow_datasets as tfds

from ssr_jax.data.builders import common
from ssr_jax.data.builders.base import FaceBuilder, ImageFile
from ssr_jax.data.builders.reference_npz import ReferenceNpz, read_reference_npz

CROP_ROWS = 20
SPLITS = ("train", "test")
_LISTS = tuple(f"list/{split}_{kind}.txt" for split in SPLITS for kind in ("name", "age"))
NPZ_NAMES = {split: f"megaage_{split}.npz" for split in SPLITS}  # the official script's outputs


class MegaageAsian(FaceBuilder):
    """MegaAge-Asian from the official archive's folders and lists."""

    name = "megaage_asian"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: official train/test split."}
    DESCRIPTION = "MegaAge-Asian faces, rows 20:-20 cut and resized to 64×64 BGR, age (0–70). No gender."
    HOMEPAGE = "http://mmlab.ie.cuhk.edu.hk/projects/MegaAge/"
    CITATION = """@article{zhang2017quantifying,
  author = {Yunxuan Zhang and Li Liu and Cheng Li and Chen Change Loy},
  title = {Quantifying Facial Age by Posterior of Age Comparisons},
  journal = {arXiv preprint arXiv:1708.09687}, year = {2017}}"""
    HAS_GENDER = False
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download megaage_asian.zip from the MegaAge project page and extract it. The manual directory is the extracted
megaage_asian/ folder (or its parent) and must hold:
  train/ and test/                       the images;
  list/train_name.txt, list/test_name.txt  one image file name per line;
  list/train_age.txt,  list/test_age.txt   one integer age per line, line-aligned with the name lists.
Or, instead: megaage_train.npz and megaage_test.npz as written by the official SSR-Net MegaAge script
(TYY_Megaage_asian_create_db.py; keys image, age, img_size), used as they are."""

    def _sources(self, manual_dir: pathlib.Path) -> pathlib.Path | dict[str, ReferenceNpz]:
        expected = _LISTS + SPLITS
        for root in (manual_dir, manual_dir / "megaage_asian"):
            if all((root / item).exists() for item in expected):
                return root
        npz_found = [name for name in NPZ_NAMES.values() if (manual_dir / name).exists()]
        if len(npz_found) == len(NPZ_NAMES):
            return {split: read_reference_npz(manual_dir / name, with_gender=False) for split, name in NPZ_NAMES.items()}
        if npz_found:
            missing = sorted(set(NPZ_NAMES.values()) - set(npz_found))
            raise self._missing(f"found {', '.join(npz_found)} but not {', '.join(missing)}: the .npz input needs "
                                "both splits")
        missing = [item for item in expected if not (manual_dir / item).exists()]
        raise self._missing(f"missing {', '.join(missing)} (also looked in megaage_asian/ inside it), and no "
                            f"{' + '.join(NPZ_NAMES.values())}")

    def _examples_by_split(self) -> dict:
        root = self.sources()
        if isinstance(root, dict):  # the official script's npz files: already cropped and resized
            return {split: self._generate_examples(npz, range(npz.num)) for split, npz in root.items()}
        generators = {}
        for split in SPLITS:
            files = self._read_list(root, split)
            generators[split] = self._file_examples(files, crop_rows=CROP_ROWS)
        return generators

    def _read_list(self, root: pathlib.Path, split: str) -> list[ImageFile]:
        """ImageFiles for one split from its line-aligned name and age lists; bad ages are reported and left out."""
        names, ages = (_lines(root / f"list/{split}_{column}.txt") for column in ("name", "age"))
        if len(names) != len(ages):
            raise self._missing(f"list/{split}_name.txt has {len(names)} names but list/{split}_age.txt has "
                                f"{len(ages)} ages; they must be line-aligned")
        files = []
        for name, value in zip(names, ages):
            age, reason = common.check_age(value)
            if reason:
                self.report.skip(reason, f"{split}/{name}")
                continue
            files.append(ImageFile(f"{split}/{name}", root / split / name, age))
        return files


def _lines(path: pathlib.Path) -> list[str]:
    """The non-empty lines of a list file, each stripped: a name may hold spaces, one name per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = error.object[:error.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: byte {error.object[error.start]:#04x} is not UTF-8 text; save the "
                         "list as UTF-8") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
