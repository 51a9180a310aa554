"""Prepared datasets on disk: build once, load fast, summarise, export to the reference's .npz.

Where things live (`data_dir`: the argument, else $SSR_JAX_DATA_DIR, else ~/ssr_jax_data):

  <data_dir>/<name>/<config>/<version>/   TFDS files (array_record shards, dataset_info.json, features.json)
      prepare_report.json                 kept per split, skipped per reason (written with the data, atomically)
      folds.csv                           every example's fold 0–9 (`ssr_jax.data.folds`), written by `prepare`
      ssr_jax_cache/<split>/*.npy          image / age / gender as host arrays, written by the first load; file (the
                                          examples' names) by the first use of the folds

The cache lives inside the version directory, so re-preparing a dataset (a new directory) can never serve stale
arrays. A version directory this user cannot write (a data_dir prepared once and shared read-only, as on a cluster)
gets its cache in $XDG_CACHE_HOME/ssr_jax (default ~/.cache/ssr_jax) instead, under a name made from the directory's
path. Images are uint8 [N, 64, 64, 3] in BGR order, ages int32, genders int32 (0 male, 1 female) where known.
"""
from __future__ import annotations

import errno
import hashlib
import itertools
import os
import pathlib
import shutil
import socket
import tempfile

import numpy as np
import tabulate

from ssr_jax.config_lib import ConfigError
from ssr_jax.data import folds as folds_lib
from ssr_jax.data.builders import FaceBuilder, get_builder
from ssr_jax.data.builders.common import IMAGE_SIZE, PrepareReport, split_order
from ssr_jax.data.builders.reference_npz import read_reference_npz, write_reference_npz

__all__ = ["NotPreparedError", "PrepareReport", "dataset_dir", "default_data_dir", "export_folds", "export_npz", "info",
           "load_benchmark", "load_split", "prepare", "read_reference_npz"]

DATA_DIR_ENV = "SSR_JAX_DATA_DIR"
CACHE_DIR = "ssr_jax_cache"
FOLD_FILE = "folds.csv"
AGE_BINS = np.array([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 101])  # decades; the last holds 90–100


class DamagedDatasetError(OSError):
    """A prepared dataset's file cannot be read; the message names it and the command that prepares it again."""


class NotPreparedError(FileNotFoundError):
    """The dataset has not been prepared in this data_dir; the message gives the command that prepares it."""


def default_data_dir() -> pathlib.Path:
    """$SSR_JAX_DATA_DIR if set, else ~/ssr_jax_data."""
    return pathlib.Path(os.environ.get(DATA_DIR_ENV) or "~/ssr_jax_data").expanduser()


def prepare(name: str, *, manual_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
            strict: bool = False, progress: bool = True) -> PrepareReport:
    """Prepares `name` (e.g. "morph2", "morph2/subject") from the files in `manual_dir`, once: a prepared dataset is
    reused as it is. Returns the report (kept per split, skipped per reason; `reused` says whether it was already
    there) and prints its summary when `progress` (which also shows TFDS's progress bars).

    strict: raise on a damaged input (unreadable or missing image, misnamed file) instead of skipping it. Protocol
    filters (IMDB-WIKI's face_score, ages outside [0, 100], ...) only ever skip.
    """
    builder = get_builder(name, _data_dir(data_dir), manual_dir=manual_dir, strict=strict)
    report = builder.prepare(progress=progress)
    written = _write_folds(builder)
    if progress:
        print(report.summary())
        if written:
            print(f"  folds: {written}")
    return report


def load_split(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
               cap: int | None = None) -> dict[str, np.ndarray]:
    """{"image": uint8 [N, 64, 64, 3] BGR, "age": int32 [N], "gender": int32 [N] (0 male, 1 female; only for
    datasets that have it)} for one split of a prepared dataset.

    cap: at most this many examples, the first ones in stored order (TFDS shuffled them deterministically when
    preparing, so a cap is a fixed pseudo-random subset). The first load reads the TFDS files and writes a .npy
    cache beside them; later loads read (memory-map) the cache.
    """
    _check_cap(cap)
    return _load(_prepared(name, data_dir), split, slice(cap))


def load_benchmark(name: str, split_index: int, *, data_dir: str | os.PathLike | None = None, cap: int | None = None,
                   fold_file: str | os.PathLike | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{"train", "val", "test"}: split `split_index` (0–4) of the benchmark protocol over every example of a
    prepared dataset (`folds.split_folds`), each part as `load_split` gives a split, rows in stored order.

    The folds are the dataset's own, or those of `fold_file` (`folds.read`). `ConfigError` (one line) when the dataset
    was prepared before folds existed, or when the fold file does not give exactly this dataset's examples a fold.
    cap: at most this many examples per part, the first in stored order.
    """
    _check_cap(cap)
    builder = _prepared(name, data_dir)
    splits = split_order(builder.info.splits.keys())
    files = {split: _file_names(builder, split) for split in splits}
    every_file = np.concatenate(list(files.values()))
    if fold_file:
        every_fold = folds_lib.lookup(folds_lib.read(fold_file), every_file, source=str(fold_file),
                                      dataset=builder.info.full_name)
    else:
        every_fold = folds_lib.lookup(_stored_folds(builder), every_file, source=str(_fold_path(builder)),
                                      dataset=builder.info.full_name)
    starts = np.cumsum([0] + [len(names) for names in files.values()])
    parts = {}
    for part, rows in folds_lib.split_indices(every_fold, split_index).items():
        rows = rows[:cap]
        pieces = [_load(builder, split, rows[(rows >= start) & (rows < end)] - start)
                  for split, start, end in zip(splits, starts, starts[1:])]
        parts[part] = {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}
    return parts


def info(name: str, *, data_dir: str | os.PathLike | None = None,
         png_path: str | os.PathLike | None = None) -> dict:
    """Counts and ages of a prepared dataset: {"dataset", "path", "splits": {split: {count, age_min, age_max,
    age_mean[, male, female]}}, "age_bins": labels, "age_histogram": {split: counts per decade}, "table": text}.
    With `png_path`, also draws the per-year age histogram of every split there (matplotlib, no display)."""
    builder = _prepared(name, data_dir)
    splits, histogram, ages_by_split = {}, {}, {}
    for split in split_order(builder.info.splits.keys()):
        cache = _split_cache(builder, split)
        ages = np.load(cache / "age.npy")
        ages_by_split[split] = ages
        summary = {"count": len(ages), "age_min": int(ages.min()), "age_max": int(ages.max()),
                   "age_mean": round(float(ages.mean()), 2)}
        if (cache / "gender.npy").exists():
            gender = np.load(cache / "gender.npy")
            summary.update(male=int((gender == 0).sum()), female=int((gender == 1).sum()))
        splits[split] = summary
        histogram[split] = np.histogram(ages, AGE_BINS)[0].tolist()
    labels = [f"{low}–{high - 1}" for low, high in itertools.pairwise(AGE_BINS)]
    fold_rows = _fold_summary(builder, ages_by_split)
    table = (f"{builder.info.full_name} in {builder.data_dir}\n\n"
             + tabulate.tabulate([[split, *values.values()] for split, values in splits.items()],
                                 headers=["split", *next(iter(splits.values())).keys()], intfmt=",") + "\n\n"
             + tabulate.tabulate([[label, *(histogram[s][i] for s in splits)] for i, label in enumerate(labels)],
                                 headers=["age", *splits], intfmt=",") + "\n\n"
             + (tabulate.tabulate([row.values() for row in fold_rows], headers=list(fold_rows[0]), intfmt=",")
                if fold_rows else f"no folds: prepared before folds existed; `{_prepare_command(builder)}` adds them"))
    if png_path is not None:
        _plot_ages(ages_by_split, builder.info.full_name, pathlib.Path(png_path))
    return {"dataset": builder.info.full_name, "path": str(builder.data_dir), "splits": splits,
            "age_bins": labels, "age_histogram": histogram, "folds": fold_rows, "table": table}


def export_folds(name: str, out_path: str | os.PathLike, *, data_dir: str | os.PathLike | None = None
                 ) -> pathlib.Path:
    """Writes the prepared dataset's fold assignment as a fold file (`folds.write`: file,fold per example) at
    `out_path`, for `data.fold_file` elsewhere; returns the path."""
    builder = _prepared(name, data_dir)
    mapping = _stored_folds(builder)
    out_path = pathlib.Path(out_path).expanduser()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return folds_lib.write(out_path, list(mapping), list(mapping.values()))


def export_npz(name: str, split: str, out_path: str | os.PathLike, *,
               data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Writes one split (or split="all": every split, train first, concatenated) in the reference's .npz layout:
    image uint8 [N, 64, 64, 3] BGR, age, gender in the reference's code for that dataset (IMDB-WIKI 1 = male, else
    0 = male; omitted when unknown) and img_size 64. Written atomically; returns the path."""
    builder = _prepared(name, data_dir)
    names = split_order(builder.info.splits.keys()) if split == "all" else [split]
    parts = [_load(builder, s, slice(None)) for s in names]
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    gender = arrays.get("gender")
    if gender is not None:
        gender = np.where(gender == 0, builder.NPZ_MALE, 1 - builder.NPZ_MALE).astype(np.int64)
    out_path = pathlib.Path(out_path).expanduser()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return write_reference_npz(out_path, image=arrays["image"], age=arrays["age"].astype(np.int64), gender=gender)


def dataset_dir(name: str, *, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The version directory of a prepared dataset (NotPreparedError, with the command to run, when there is none)."""
    return pathlib.Path(_prepared(name, data_dir).data_dir)


def _data_dir(data_dir) -> pathlib.Path:
    return pathlib.Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def _prepared(name: str, data_dir) -> FaceBuilder:
    """The builder of a prepared dataset, or NotPreparedError with the command that prepares it."""
    directory = _data_dir(data_dir)
    builder = get_builder(name, directory)
    if not builder.is_prepared():
        command = f"ssr-jax data prepare {name}"
        if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
            command += " --manual_dir DIR"
        if data_dir is not None:
            command += f" --data_dir {directory}"
        raise NotPreparedError(f"{builder.info.full_name} is not prepared in {directory}: run `{command}` first")
    return builder


def _check_cap(cap) -> None:
    if cap is not None and (not isinstance(cap, (int, np.integer)) or cap < 1):
        raise ValueError(f"cap must be a positive integer or None, got {cap!r}")


def _load(builder: FaceBuilder, split: str, rows: slice | np.ndarray) -> dict[str, np.ndarray]:
    """The split's image / age / gender arrays at `rows` (a slice, or ascending indices), read from the cache."""
    cache = _split_cache(builder, split)
    arrays = {}
    for key in ("image", "age", "gender"):
        path = cache / f"{key}.npy"
        if path.exists():
            arrays[key] = np.array(np.load(path, mmap_mode="r")[rows])
    return arrays


def _prepare_command(builder: FaceBuilder, *, manual_dir: bool = False) -> str:
    """`ssr-jax data prepare NAME [--manual_dir DIR] --data_dir D` for this builder's prepared dataset."""
    version_dir = pathlib.Path(builder.data_dir)
    name = builder.info.full_name.rsplit("/", 1)[0]
    data_dir = version_dir.parent.parent.parent if "/" in name else version_dir.parent.parent
    return f"ssr-jax data prepare {name}{' --manual_dir DIR' if manual_dir else ''} --data_dir {data_dir}"


def _fold_path(builder: FaceBuilder) -> pathlib.Path:
    return pathlib.Path(builder.data_dir) / FOLD_FILE


def _stored_folds(builder: FaceBuilder) -> dict[str, int]:
    """{file: fold} of the prepared dataset; `ConfigError` naming the prepare command when it has none."""
    path = _fold_path(builder)
    if not path.exists():
        raise ConfigError(f"{builder.info.full_name} in {builder.data_dir} was prepared before folds existed: run "
                          f"`{_prepare_command(builder)}` to add them (the images are kept)")
    return folds_lib.read(path)


def _write_folds(builder: FaceBuilder) -> pathlib.Path | None:
    """Assigns and writes the folds of a prepared dataset that has none (prepared now, or before folds existed);
    returns the fold file's path when it wrote one. Folds, once written, are never recomputed."""
    path = _fold_path(builder)
    if path.exists():
        return None
    labels = [_stored_labels(builder, split) for split in split_order(builder.info.splits.keys())]
    files, ages = (np.concatenate(column) for column in zip(*labels))
    return folds_lib.write(path, files, folds_lib.assign(files, ages, [builder.identity(f) for f in files]))


def _stored_labels(builder: FaceBuilder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(file str [N], age int32 [N]) of a split in stored order, read from the TFDS files (no cache is written:
    `prepare` leaves the caches to the first load)."""
    source = builder.as_data_source(split)
    files, ages = [], np.empty(len(source), np.int32)
    for i in range(len(source)):  # one example (and its image) in memory at a time
        example = source[i]
        files.append(bytes(example["file"]).decode())
        ages[i] = example["age"]
    return np.array(files, dtype=str), ages


def _fold_summary(builder: FaceBuilder, ages_by_split: dict[str, np.ndarray]) -> list[dict]:
    """Per fold: examples, identities where the dataset names them, and ages ([] without folds)."""
    if not _fold_path(builder).exists():
        return []
    mapping = _stored_folds(builder)
    files = np.concatenate([_file_names(builder, split) for split in ages_by_split])
    folds = folds_lib.lookup(mapping, files, source=str(_fold_path(builder)), dataset=builder.info.full_name)
    ages = np.concatenate(list(ages_by_split.values()))
    identities = np.array([builder.identity(file) or "" for file in files])
    rows = []
    for fold in range(folds_lib.NUM_FOLDS):
        in_fold = folds == fold
        row = {"fold": fold, "count": int(in_fold.sum())}
        if identities.any():
            row["identities"] = len(set(identities[in_fold]) - {""})
        fold_ages = ages[in_fold]
        row.update(age_min=int(fold_ages.min()) if len(fold_ages) else None,
                   age_max=int(fold_ages.max()) if len(fold_ages) else None,
                   age_mean=round(float(fold_ages.mean()), 2) if len(fold_ages) else None)
        rows.append(row)
    return rows


def _file_names(builder: FaceBuilder, split: str) -> np.ndarray:
    """The split's `file` feature (str [N], stored order), cached as file.npy beside the split's arrays on first use
    (written atomically; a cache made before file names were cached gets it added)."""
    path = _split_cache(builder, split) / "file.npy"
    if not path.exists():
        names, _ = _stored_labels(builder, split)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".file.", suffix=".npy", delete=False) as tmp:
            np.save(tmp, names)
        os.replace(tmp.name, path)
    return np.load(path)


def _split_cache(builder: FaceBuilder, split: str) -> pathlib.Path:
    """The split's .npy directory, written on first use from the TFDS files.

    Written into a temporary directory and renamed into place, so a killed load leaves no partial cache and two
    concurrent loads both end with a complete one.
    """
    splits = builder.info.splits
    if split not in splits:
        raise ValueError(f"{builder.info.full_name} has no split {split!r}: choose one of "
                         f"{', '.join(split_order(splits.keys()))}")
    version_dir = pathlib.Path(builder.data_dir)
    cache = version_dir / CACHE_DIR / split
    if cache.is_dir():
        return cache
    if not _writable(version_dir):
        cache = _user_cache_dir() / hashlib.sha256(str(version_dir.resolve()).encode()).hexdigest()[:16] / split
        if cache.is_dir():
            return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_loads(cache.parent, split)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{split}.{os.getpid()}@{socket.gethostname()}."))
    try:
        source = builder.as_data_source(split)
        num = len(source)
        arrays = {"image": np.lib.format.open_memmap(tmp / "image.npy", "w+", np.uint8,
                                                     (num, IMAGE_SIZE, IMAGE_SIZE, 3)),
                  "age": np.empty(num, np.int32)}
        _reserve(tmp / "image.npy")
        if "gender" in builder.info.features:
            arrays["gender"] = np.empty(num, np.int32)
        for i in range(num):
            example = source[i]
            for key, values in arrays.items():
                values[i] = example[key]
        arrays["image"].flush()
        for key in ("age", "gender"):
            if key in arrays:
                np.save(tmp / f"{key}.npy", arrays[key])
        os.rename(tmp, cache)
    except OSError:
        if not cache.is_dir():  # not a concurrent load that finished first
            raise
    except RuntimeError as error:  # array_record: "Corrupted Riegeli/records file: ..." (no file name)
        raise _damaged(builder, split, error) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache


def _reserve(path: pathlib.Path) -> None:
    """Allocates the disk blocks of the (sparse) memory-mapped file `path` now: a full disk is then an OSError here,
    not a SIGBUS ("Bus error") when a page is written back."""
    with open(path, "r+b") as file:
        try:
            os.posix_fallocate(file.fileno(), 0, os.fstat(file.fileno()).st_size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without it: as before
                raise OSError(error.errno, error.strerror, str(path)) from None


def _remove_dead_loads(directory: pathlib.Path, split: str) -> None:
    """Removes the temporary directories that loads of `split` killed mid-write (SIGKILL, a crash on a full disk)
    left in `directory`: those named by a pid of this host that is gone, and those of versions that named none.
    A load in progress (its process alive, or on another host) keeps its directory."""
    host = socket.gethostname()
    for path in directory.glob(f".{split}.*"):
        owner = path.name[len(split) + 2:].rsplit(".", 1)[0]  # "<pid>@<host>", or the random part of an old name
        pid, _, owner_host = owner.partition("@")
        if owner_host and (owner_host != host or not pid.isdigit() or _alive(int(pid))):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _damaged(builder: FaceBuilder, split: str, error: Exception) -> DamagedDatasetError:
    version_dir = pathlib.Path(builder.data_dir)
    files = sorted(version_dir.glob(f"*-{split}.array_record*")) or [version_dir]
    reason = (str(error).strip().splitlines() or [""])[0].split(";")[0]
    return DamagedDatasetError(f"{files[0]} is damaged ({reason}): delete {version_dir} and prepare it again with "
                               f"`{_prepare_command(builder, manual_dir=True)}`")


def _writable(directory: pathlib.Path) -> bool:
    return os.access(directory, os.W_OK)


def _user_cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "ssr_jax"


def _plot_ages(ages_by_split: dict[str, np.ndarray], title: str, path: pathlib.Path) -> None:
    """Per-year age counts of each split as step lines, written atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    figure = Figure(figsize=(7, 4))
    axes = figure.add_subplot()
    years = np.arange(0, 101)
    for split, ages in ages_by_split.items():
        axes.step(years, np.bincount(ages, minlength=101)[:101], where="mid", label=f"{split} ({len(ages):,})")
    axes.set_xlabel("age (years)")
    axes.set_ylabel("images")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".png", delete=False) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    os.replace(tmp.name, path)
