"""The base of every face-age builder: offline preparation from a manual directory into array_record files, examples
from image files or from a reference .npz, and the skip report written inside the dataset directory.

Why the report is written in `_download_and_prepare`: TFDS builds into `<name>/<config>/incomplete.*_<version>/` and
renames that directory to `<version>/` only when everything succeeded (a failure deletes it), so a report written
there appears together with the data or not at all, and no half-prepared directory ever looks complete.

Preparations of one dataset config take turns under a file lock (`<name>/<config>/.prepare.lock`): a second one
waits and then finds the dataset prepared, and the one holding the lock knows that any `incomplete.*` directory
there is a killed preparation's leftover, and deletes it (TFDS itself never does).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import io
import os
import pathlib
import shutil
import socket
import sys
from typing import ClassVar, Iterable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from ssr_jax.data.builders import common
from ssr_jax.data.builders.reference_npz import ReferenceNpz
from ssr_jax.data.images import resize_bilinear

_DECODE_THREADS = min(4, os.cpu_count() or 1)
_DECODE_CHUNK = 256  # images decoded ahead of the writer: bounds memory, keeps the threads busy


class ManualFilesError(FileNotFoundError):
    """The manual directory lacks what a builder needs; the message lists what was expected and where."""


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """One labelled image file that passed the label checks: `file` (relative to the manual directory) is both the
    example key and the stored `file` feature."""

    file: str
    path: pathlib.Path
    age: int
    gender: int | None = None


class _OfflineDatasetInfo(tfds.core.DatasetInfo):
    """TFDS's DatasetInfo without the look-up of a dataset's metadata on TFDS's GCS bucket, which a builder of a
    dataset not prepared yet does first: these datasets are not there, GCS is off (nothing is downloaded at run
    time), and the look-up makes a temporary directory before finding that out and never removes it — one left in
    /tmp by every such builder."""

    def initialize_from_bucket(self) -> None:
        return None


class FaceBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A face-age dataset prepared offline. Subclasses set the class constants and implement `_sources` (find the
    inputs, raise ManualFilesError) and `_examples_by_split`, which returns
    `{split: self._generate_examples(source, indices)}` with `source` a list of ImageFile or a ReferenceNpz."""

    DESCRIPTION: ClassVar[str]
    HOMEPAGE: ClassVar[str] = ""
    CITATION: ClassVar[str] = ""
    HAS_GENDER: ClassVar[bool] = True
    # The code for "male" in this dataset's reference .npz (read and written): 1 for IMDB-WIKI, else 0 like ours.
    NPZ_MALE: ClassVar[int] = 0

    @staticmethod
    def identity(file: str) -> str | None:
        """The person a stored example shows, from its `file` feature, where the dataset names persons (MORPH2
        subjects, IMDB/WIKI ids); None where it does not. Folds keep each person's images together
        (`ssr_jax.data.folds`)."""
        del file
        return None

    def __init__(self, *, manual_dir: str | os.PathLike | None = None, strict: bool = False, **kwargs):
        """`manual_dir`: where the user put the dataset's files; `strict`: raise on a damaged input (unreadable
        image, misnamed file, missing image) instead of skipping it. Other arguments go to TFDS (`data_dir`,
        `config`); the file format is array_record, the one TFDS reads without TensorFlow."""
        kwargs.setdefault("file_format", "array_record")
        self._manual_dir = pathlib.Path(manual_dir).expanduser() if manual_dir is not None else None
        self._strict = strict
        self.report = common.PrepareReport(dataset="")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        metadata = self.get_metadata()  # as `dataset_info_from_configs`: a builder's metadata files prevail
        return _OfflineDatasetInfo(
            builder=self,
            description=metadata.description or self.DESCRIPTION,
            features=common.features(with_gender=self.HAS_GENDER),
            supervised_keys=("image", "age"),
            homepage=self.HOMEPAGE or None,
            citation=metadata.citation or self.CITATION or None,
        )

    def prepare(self, *, progress: bool = True) -> common.PrepareReport:
        """Builds the dataset unless it is already prepared; returns the report saved with it."""
        if not self.is_prepared():
            self.sources()  # a missing input fails here, before any directory is created
            with self._prepare_lock():
                if not self.is_prepared():  # not prepared by the process that held the lock before
                    self._build(progress)
                    return self.read_report(reused=False)
        report = self.read_report(reused=True)
        if self._manual_dir is not None and report.manual_dir and \
                pathlib.Path(report.manual_dir) != self._manual_dir.resolve():
            raise ValueError(f"{report.dataset} in {self.data_dir} was prepared from {report.manual_dir}, not "
                             f"{self._manual_dir.resolve()}: to rebuild it from the new files delete "
                             f"{self.data_dir}; to use the prepared copy, leave out the manual directory")
        return report

    def _build(self, progress: bool) -> None:
        """TFDS's preparation, under the lock: a killed predecessor's leftovers go first."""
        for leftover in self.data_path.parent.glob(f"incomplete.*_{self.data_path.name}"):
            shutil.rmtree(leftover)
        # try_download_gcs=False: TFDS would otherwise ask Google Cloud Storage for a prepared copy first.
        config = tfds.download.DownloadConfig(manual_dir=self._manual_dir, try_download_gcs=False)
        # Bars only on a terminal: redirected to a log file, their carriage returns and escape sequences would be
        # written as text (TFDS's start and end lines stay, as plain lines).
        tfds.display_progress_bar(progress and sys.stderr.isatty())
        try:
            # TFDS prints its start and end lines with print(), not logging: only a redirect silences them.
            with contextlib.redirect_stdout(sys.stdout if progress else io.StringIO()):
                self.download_and_prepare(download_config=config)
        except RuntimeError as error:  # array_record's writer reports a full disk as a RuntimeError of many lines
            if os.strerror(errno.ENOSPC) not in str(error):
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.data_path.parent)) from None
        finally:
            tfds.display_progress_bar(True)

    @contextlib.contextmanager
    def _prepare_lock(self):
        """Exclusive, per dataset config, across processes; released by the OS if the holder is killed. The holder
        writes its pid and host into the lock file, and a preparation that has to wait says whom it waits for (a
        stopped or hung holder would otherwise be an unexplained wait)."""
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        path = self.data_path.parent / ".prepare.lock"
        with open(path, "a+") as lock:  # not "w": that would erase the holder's name before we can read it
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                print(f"waiting for {holder}, which is preparing {self.info.full_name} ({path}); if that process "
                      "is stopped or hung, end it", file=sys.stderr, flush=True)
                fcntl.flock(lock, fcntl.LOCK_EX)
            lock.truncate(0)
            lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            lock.flush()
            yield

    def is_prepared(self) -> bool:
        """Whether the version directory exists. It only ever appears complete (renamed from TFDS's temporary
        directory), so this is exact; TFDS's own check logs a warning for every dataset not prepared yet."""
        return (self.data_path / "dataset_info.json").exists()

    def read_report(self, *, reused: bool = True) -> common.PrepareReport:
        """The report saved with the prepared data (`reused` marks whether this call found it already there)."""
        path = pathlib.Path(self.data_dir) / common.REPORT_FILE
        if not path.exists():  # prepared by plain TFDS calls, outside `prepare`
            splits = self.info.splits
            return common.PrepareReport(dataset=self.info.full_name, path=str(self.data_dir), reused=reused,
                                        kept={s: splits[s].num_examples for s in common.split_order(splits.keys())})
        return common.PrepareReport.from_json(path.read_text(), path=str(self.data_dir), reused=reused)

    def sources(self):
        """The located inputs (what `_sources` returns), checked once per builder."""
        if not hasattr(self, "_located"):
            if self.MANUAL_DOWNLOAD_INSTRUCTIONS:
                self._require_manual_dir()
            self._located = self._sources(self._manual_dir)
        return self._located

    def _sources(self, manual_dir: pathlib.Path | None):
        raise NotImplementedError

    def _examples_by_split(self) -> dict[str, Iterator[tuple[str, dict]]]:
        """{split: (key, example) generator}; subclasses build these from `self.sources()`."""
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        return {split: self._nonempty(split, examples) for split, examples in self._examples_by_split().items()}

    def _nonempty(self, split: str, examples: Iterator[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        """Passes examples through; an empty split raises with the skip counts (TFDS's own error names no cause)."""
        count = 0
        for count, example in enumerate(examples, 1):
            yield example
        if not count:
            raise ValueError(f"{self.report.summary()}\n{self.name}: no usable examples for split {split!r} (too "
                             "few inputs, or all skipped: the summary above says why)")

    def _download_and_prepare(self, dl_manager, download_config) -> None:
        self.report = common.PrepareReport(dataset=self.info.full_name, source=self._describe(self.sources()),
                                           manual_dir=str(self._manual_dir.resolve()) if self._manual_dir else "")
        super()._download_and_prepare(dl_manager, download_config)
        splits = self.info.splits
        self.report.kept = {name: splits[name].num_examples for name in common.split_order(splits.keys())}
        # self.data_dir is still the temporary directory here (see the module docstring).
        (pathlib.Path(self.data_dir) / common.REPORT_FILE).write_text(self.report.to_json())

    def _describe(self, sources) -> str:
        """One line naming the input, for the report."""
        if isinstance(sources, ReferenceNpz):
            return f"reference npz {sources.path} ({sources.num:,} images, img_size {sources.img_size})"
        if isinstance(sources, dict):  # one input per split
            return "; ".join(f"{split}: {self._describe(source)}" for split, source in sources.items())
        if isinstance(sources, list):
            return f"{len(sources):,} image files under {self._manual_dir}"
        return str(sources) if sources is not None else "generated, no input files"

    def _generate_examples(self, source: Sequence[ImageFile] | ReferenceNpz, indices: Iterable[int]):
        """(key, example) for the rows `indices` of `source`; damaged rows are skipped and reported."""
        if isinstance(source, ReferenceNpz):
            yield from self._npz_examples(source, np.asarray(list(indices), int))
        else:
            yield from self._file_examples([source[i] for i in indices])

    def _file_examples(self, files: Sequence[ImageFile], crop_rows: int = 0) -> Iterator[tuple[str, dict]]:
        """Decodes on a few threads (Pillow and NumPy release the GIL; decoding and resizing dominate preparation)
        but reports, raises and yields in input order, so results never depend on thread timing."""
        def decode(item: ImageFile) -> np.ndarray | tuple[str, str]:
            if not item.path.is_file():
                return common.MISSING_FILE, f"{item.path} does not exist"
            try:
                return common.load_face(item.path, crop_rows=crop_rows)
            except common.ImageError as error:
                return common.UNREADABLE, str(error)

        with concurrent.futures.ThreadPoolExecutor(_DECODE_THREADS) as pool:
            for start in range(0, len(files), _DECODE_CHUNK):
                chunk = files[start:start + _DECODE_CHUNK]
                for item, result in zip(chunk, pool.map(decode, chunk)):
                    if isinstance(result, tuple):
                        reason, detail = result
                        self._reject(reason, item.file, detail)
                        continue
                    yield item.file, self._example(result, item.age, item.gender, item.file)

    def _files_from_names(self, paths: Sequence[pathlib.Path], parse, expected: str
                          ) -> tuple[list[ImageFile], list[str]]:
        """ImageFiles labelled by their names, and each one's group (MORPH2's subject). `parse(file name)` gives
        (age text, gender, group), or None for a name not in the pattern `expected` describes (damaged input);
        ages that fail `check_age` are filtered and reported."""
        files, groups = [], []
        for path in paths:
            relative = path.relative_to(self._manual_dir).as_posix()
            try:  # stored as the example's text feature: a name of non-UTF-8 bytes cannot be
                relative.encode()
            except UnicodeEncodeError:
                self._reject(common.BAD_FILE_NAME, relative.encode(errors="surrogateescape").decode(errors="replace"),
                             "its name is not UTF-8; rename it")
                continue
            labels = parse(path.name)
            if labels is None:
                self._reject(common.BAD_FILE_NAME, relative, f"expected {expected}")
                continue
            age_text, gender, group = labels
            age, reason = common.check_age(age_text)
            if reason:
                self.report.skip(reason, relative)
                continue
            files.append(ImageFile(relative, path, age, gender))
            groups.append(group)
        return files, groups

    def _npz_examples(self, npz: ReferenceNpz, indices: np.ndarray) -> Iterator[tuple[str, dict]]:
        wanted = np.zeros(npz.num, bool)
        wanted[indices] = True
        for i, image in npz.iter_images(wanted):
            name = f"{npz.path.name}[{i}]"
            age, reason = common.check_age(npz.age[i])
            if reason is None and npz.gender is not None and npz.gender[i] not in (0, 1):
                reason = common.NO_GENDER
            if reason:
                self.report.skip(reason, name)
                continue
            if image.shape[0] != common.IMAGE_SIZE:
                image = resize_bilinear(image, common.IMAGE_SIZE)
            gender = None if npz.gender is None else int(npz.gender[i] != self.NPZ_MALE)
            yield str(i), self._example(image, age, gender, name)

    def _example(self, image: np.ndarray, age: int, gender: int | None, file: str) -> dict:
        example = {"image": image, "age": age, "file": file}
        if self.HAS_GENDER:
            example["gender"] = gender
        return example

    def _reject(self, reason: str, item: str, detail: str) -> None:
        """A damaged input: raise under strict, else skip and report it."""
        if self._strict:
            raise ValueError(f"{self.name}: {item}: {reason}: {detail} (fix or remove it, or prepare without "
                             "strict to skip such files)")
        self.report.skip(reason, f"{item} ({detail})")

    def _require_manual_dir(self) -> None:
        if self._manual_dir is None:
            raise ManualFilesError(f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}\n{self.name}: no manual directory "
                                   "given; pass --manual_dir DIR holding the files described above")
        if not self._manual_dir.is_dir():
            raise ManualFilesError(f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}\n{self.name}: manual directory "
                                   f"{self._manual_dir} does not exist; pass the folder holding the files described "
                                   "above")

    def _missing(self, what: str) -> ManualFilesError:
        """The one error for inputs that are not where they should be: what was looked for, where, and how to fix."""
        return ManualFilesError(f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}\n{self.name}: {what} in the manual "
                                f"directory {self._manual_dir}; put the files there as described above")


def image_files(root: pathlib.Path, suffixes=(".jpg", ".jpeg", ".png")) -> list[pathlib.Path]:
    """Image files anywhere under `root` (any case of suffix), sorted so splits never depend on listing order."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
