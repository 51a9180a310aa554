"""IMDB and WIKI (Rothe et al.'s IMDB-WIKI face crops), the reference's pre-training data: two builders, one recipe.

From the official `imdb_crop/` or `wiki_crop/` folder, examples are selected as the reference's
data/TYY_IMDBWIKI_create_db.py does, in its order: face_score ≥ 1.0, no second face (second_face_score NaN or ≤ 0),
age = year the photo was taken − birth year (− 1 if born July–December) within [0, 100], gender known. The crop is
resized to 64×64 as is (no alignment). Split: the reference's random 80/20 (seed 2**10).
"""
from __future__ import annotations

import datetime
import math
import pathlib
from typing import ClassVar

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from ssr_jax.data.builders import common
from ssr_jax.data.builders.base import FaceBuilder, ImageFile
from ssr_jax.data.builders.reference_npz import ReferenceNpz, read_reference_npz

MIN_FACE_SCORE = 1.0  # the reference's --min_score default
LOW_FACE_SCORE = f"face_score < {MIN_FACE_SCORE}"
SECOND_FACE = "second face (second_face_score > 0)"
_FIELDS = ("full_path", "dob", "gender", "photo_taken", "face_score", "second_face_score")


class MetadataError(ValueError):
    """The .mat file is not IMDB-WIKI metadata; the message names the file and what is missing."""


def read_meta(mat_path: pathlib.Path, db: str) -> dict[str, np.ndarray]:
    """The columns the selection needs from `imdb.mat` / `wiki.mat` (a 1×1 struct named after the dataset whose
    fields are 1×N rows; full_path is a cell array of paths relative to the .mat's folder)."""
    try:
        meta = scipy.io.loadmat(mat_path)
    except Exception as error:  # noqa: BLE001 -- scipy's parser raises many kinds (MatReadError, IndexError, ...)
        raise MetadataError(f"{mat_path}: cannot read as a MATLAB .mat file ({error})") from None
    if db not in meta:
        raise MetadataError(f"{mat_path}: no struct named {db!r} (found {sorted(k for k in meta if k[0] != '_')})")
    struct = meta[db].reshape(-1)[0]
    names = struct.dtype.names or ()
    missing = [field for field in _FIELDS if field not in names]
    if missing:
        raise MetadataError(f"{mat_path}: struct {db!r} lacks field(s) {missing}; it needs {list(_FIELDS)}")
    columns = {field: np.asarray(struct[field]).reshape(-1) for field in _FIELDS}
    columns["full_path"] = np.array([str(np.asarray(p).reshape(-1)[0]) for p in columns["full_path"]])
    lengths = {field: len(values) for field, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise MetadataError(f"{mat_path}: fields have different lengths {lengths}")
    return columns


def age_at_photo(dob: float, photo_taken: float) -> float:
    """Age in the year the photo was taken, assuming mid-year: the reference's calc_age. `dob` is a MATLAB datenum
    (day 1 = 1 Jan of year 0; Python's ordinal is 366 days less); NaN when the date is unusable."""
    if not (math.isfinite(dob) and math.isfinite(photo_taken)):
        return math.nan
    try:
        birth = datetime.date.fromordinal(max(int(dob) - 366, 1))
    except (ValueError, OverflowError):
        return math.nan
    return int(photo_taken) - birth.year - (1 if birth.month >= 7 else 0)


def _instructions(db: str) -> str:
    return f"""\
Download {db}_crop.tar from https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/ and extract it, then put ONE of
these in the manual directory:
  * the extracted folder {db}_crop/ (its {db}.mat and the numbered image subfolders 00/ … 99/); the manual
    directory may also be {db}_crop/ itself;
  * {db}_db.npz: the reference's prepared file (keys image, gender, age, img_size; written by its
    data/TYY_IMDBWIKI_create_db.py --db {db}), used when present."""


class _ImdbWiki(FaceBuilder, skip_registration=True):
    DB: ClassVar[str]
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: the reference's selection and random 80/20 split."}
    HOMEPAGE = "https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/"
    CITATION = """@article{Rothe-IJCV-2018,
  author = {Rasmus Rothe and Radu Timofte and Luc Van Gool},
  title = {Deep expectation of real and apparent age from a single image without facial landmarks},
  journal = {International Journal of Computer Vision},
  volume = {126}, number = {2-4}, pages = {144--157}, year = {2018}}"""
    NPZ_MALE = 1  # IMDB-WIKI's metadata and the reference's npz: 1 male, 0 female

    @staticmethod
    def identity(file: str) -> str | None:
        """The person of a crop: the first field of its name, IMDB's `nm0000001` in `01/nm0000001_rm…_1968.jpg`,
        WIKI's page id `10000217` in `17/10000217_1981-05-05_2009.jpg`; None for a row of the reference npz."""
        if ".npz[" in file:
            return None
        return pathlib.PurePosixPath(file).name.split("_", 1)[0]

    def _sources(self, manual_dir: pathlib.Path) -> pathlib.Path | ReferenceNpz:
        npz = manual_dir / f"{self.DB}_db.npz"
        if npz.exists():
            return read_reference_npz(npz, with_gender=True)
        for mat in (manual_dir / f"{self.DB}_crop" / f"{self.DB}.mat", manual_dir / f"{self.DB}.mat"):
            if mat.exists():
                return mat
        raise self._missing(f"found none of {self.DB}_db.npz, {self.DB}_crop/{self.DB}.mat, {self.DB}.mat")

    def _examples_by_split(self) -> dict:
        sources = self.sources()
        files = sources if isinstance(sources, ReferenceNpz) else self._select(sources)
        num = files.num if isinstance(files, ReferenceNpz) else len(files)
        return {split: self._generate_examples(files, indices) for split, indices in common.random_split(num).items()}

    def _select(self, mat_path: pathlib.Path) -> list[ImageFile]:
        """The reference's filters, in its order; each rejection is counted under its reason."""
        meta = read_meta(mat_path, self.DB)
        files = []
        for i, full_path in enumerate(meta["full_path"]):
            age, age_problem = common.check_age(age_at_photo(meta["dob"][i], meta["photo_taken"][i]))
            second, gender = meta["second_face_score"][i], meta["gender"][i]
            if meta["face_score"][i] < MIN_FACE_SCORE:
                reason = LOW_FACE_SCORE
            elif not np.isnan(second) and second > 0:
                reason = SECOND_FACE
            elif age_problem:
                reason = age_problem
            elif gender not in (0, 1):  # NaN: unknown
                reason = common.NO_GENDER
            else:
                files.append(ImageFile(full_path, mat_path.parent / full_path, age, int(gender != self.NPZ_MALE)))
                continue
            self.report.skip(reason, full_path)
        return files


class Imdb(_ImdbWiki):
    """IMDB faces (≈460,000 crops of 20,000 actors before selection)."""

    name = "imdb"
    DB = "imdb"
    DESCRIPTION = ("IMDB face crops with the reference's selection, 64×64 BGR, age 0–100, gender (0 male, 1 female; "
                   "the metadata's 1 = male is converted).")
    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("imdb")


class Wiki(_ImdbWiki):
    """Wikipedia faces (≈62,000 crops before selection)."""

    name = "wiki"
    DB = "wiki"
    DESCRIPTION = ("Wikipedia face crops with the reference's selection, 64×64 BGR, age 0–100, gender (0 male, "
                   "1 female; the metadata's 1 = male is converted).")
    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("wiki")
