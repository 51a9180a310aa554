"""Ten folds per prepared dataset and the benchmark's five splits over them (Paplham & Franc, "A Call to Reflect on
Evaluation Practices for Age Estimation", CVPR 2024).

Every example of a prepared dataset carries a fold 0–9, assigned once when the dataset is prepared (`assign`) and
stored beside it as a fold file, so a later change to this code never moves an example of a prepared dataset:

  * where the dataset names identities (MORPH2 subjects, IMDB/WIKI persons), all images of one identity share a
    fold; elsewhere every image is its own identity;
  * identities are taken in order of (median age, name) and dealt in rounds of ten: each round gives one identity
    to every fold, the largest identity of the round to the fold with the fewest images so far. Each round spans
    ten neighbouring ages, so every fold gets the same ages; with one image per identity (UTKFace) this is
    round-robin over the files sorted by (age, file name).

Split k of the benchmark protocol (`data.split_index`, 0–4) trains on folds 2k … 2k+5, validates on 2k+6 and 2k+7
and tests on 2k+8 and 2k+9 (mod 10): the five test parts together hold every example once.

A fold file is CSV with a header, `file,fold`, one row per example, `file` as the dataset stores it (the path under
the manual directory, or `name.npz[i]`). `write` and `read` are inverse; a file published with other folds is used
through `data.fold_file`.
"""
from __future__ import annotations

import csv
import io
import os
import pathlib
from typing import Sequence

import numpy as np

from ssr_jax.config_lib import ConfigError
from ssr_jax.workdir import atomic_file

NUM_FOLDS = 10
NUM_SPLITS = 5
PARTS = ("train", "val", "test")
HEADER = ("file", "fold")


def split_folds(split_index: int) -> dict[str, tuple[int, ...]]:
    """{"train": 6 folds, "val": 2, "test": 2} of benchmark split `split_index` (0–4)."""
    if not 0 <= split_index < NUM_SPLITS:
        raise ValueError(f"split_index must be 0–{NUM_SPLITS - 1}, got {split_index}")
    rotation = [(2 * split_index + offset) % NUM_FOLDS for offset in range(NUM_FOLDS)]
    return dict(zip(PARTS, (tuple(rotation[:6]), tuple(rotation[6:8]), tuple(rotation[8:]))))


def split_indices(folds: np.ndarray, split_index: int) -> dict[str, np.ndarray]:
    """Row indices (ascending) of each part of split `split_index`, from per-example folds `[N]`."""
    return {part: np.flatnonzero(np.isin(folds, members)) for part, members in split_folds(split_index).items()}


def assign(files: Sequence[str], ages: Sequence[int], identities: Sequence[str | None] | None = None) -> np.ndarray:
    """Folds `int8 [N]` for examples named `files` with `ages`; `identities[i]` None (or no `identities`) makes
    example i its own identity. Deterministic: depends on the names, ages and identities only, not on their order."""
    files, ages = [str(file) for file in files], np.asarray(ages)
    if len(files) != len(ages):
        raise ValueError(f"{len(files)} files but {len(ages)} ages")
    identities = identities if identities is not None else [None] * len(files)
    groups: dict[str, list[int]] = {}
    for index, (file, identity) in enumerate(zip(files, identities)):
        groups.setdefault(f"id:{identity}" if identity is not None else f"file:{file}", []).append(index)
    ordered = sorted(groups, key=lambda name: (float(np.median(ages[groups[name]])), name))
    folds, sizes = np.full(len(files), -1, np.int8), np.zeros(NUM_FOLDS, int)
    for start in range(0, len(ordered), NUM_FOLDS):
        rounds = sorted(ordered[start:start + NUM_FOLDS], key=lambda name: -len(groups[name]))  # stable: ties by age
        free = list(range(NUM_FOLDS))
        for name in rounds:
            fold = min(free, key=lambda f: (sizes[f], f))
            free.remove(fold)
            folds[groups[name]] = fold
            sizes[fold] += len(groups[name])
    return folds


def write(path: str | os.PathLike, files: Sequence[str], folds: Sequence[int]) -> pathlib.Path:
    """Writes the fold file (sorted by file name), atomically; returns its path."""
    path = pathlib.Path(path)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(sorted(zip(map(str, files), map(int, folds))))
    with atomic_file(path, "w") as file:
        file.write(text.getvalue())
    return path


def read(path: str | os.PathLike) -> dict[str, int]:
    """{file: fold} from a fold file; `ConfigError` (one line: the file, the row, what is wrong) when it is not
    one."""
    path = pathlib.Path(path)
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"fold file {path}: cannot read it ({error})") from None
    if not rows or tuple(rows[0]) != HEADER:
        raise ConfigError(f"fold file {path}: the first line must be the header {','.join(HEADER)}")
    mapping: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        fold = row[1].strip() if len(row) == 2 else ""
        if not (fold.isdigit() and int(fold) < NUM_FOLDS):
            raise ConfigError(f"fold file {path}, line {line}: expected FILE,FOLD with a fold 0–{NUM_FOLDS - 1}, got "
                              f"{','.join(row)!r}")
        if mapping.setdefault(row[0], int(fold)) != int(fold):
            raise ConfigError(f"fold file {path}, line {line}: {row[0]} is given two folds")
    return mapping


def lookup(mapping: dict[str, int], files: Sequence[str], *, source: str, dataset: str) -> np.ndarray:
    """Folds `int8 [N]` of `files` from a fold file's `mapping`; `ConfigError` when the file names an example the
    dataset lacks or leaves one without a fold (the first of each named, with the count)."""
    files = [str(file) for file in files]
    missing = [file for file in files if file not in mapping]
    if missing:
        raise ConfigError(f"fold file {source} gives no fold to {len(missing):,} of the {len(files):,} examples of "
                          f"{dataset} (e.g. {missing[0]}); it must list every example")
    extra = sorted(mapping.keys() - set(files))
    if extra:
        raise ConfigError(f"fold file {source} names {len(extra):,} file(s) {dataset} does not hold (e.g. {extra[0]}); "
                          "was it written for another preparation of the dataset?")
    return np.array([mapping[file] for file in files], np.int8)
