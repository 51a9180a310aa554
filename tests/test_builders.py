"""TFDS builders and the prepared-data library on tiny files written in each dataset's real format (JPG folders,
IMDB-WIKI .mat metadata, MegaAge lists, the reference's .npz), prepared into tmp_path and read back — all offline:
every test runs with non-loopback network connections and DNS look-ups refused."""
from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from ssr_jax.data import prepared, synthetic
from ssr_jax.data.builders import (
    BUILDERS,
    ManualFilesError,
    SyntheticFacesConfig,
    common,
    get_builder,
)
from ssr_jax.data.builders.imdb_wiki import (
    LOW_FACE_SCORE,
    SECOND_FACE,
    MetadataError,
    age_at_photo,
)
from ssr_jax.data.builders.reference_npz import NpzLayoutError, read_reference_npz, write_reference_npz

# --- offline guard ---------------------------------------------------------------------------------------------

def _is_loopback(host) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any connection or DNS look-up beyond loopback fails the test — also one that library code catches and
    ignores, since every attempt is recorded and checked at the end: preparing and reading never go online."""
    attempts = []
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, \
        socket.getaddrinfo

    def refuse(address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            attempts.append(address)
            raise AssertionError(f"network access attempted: {address!r}")

    def connect(self, address):
        refuse(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        refuse(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        refuse((host, 0))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"


def test_offline_guard_refuses_the_network(offline):
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.getaddrinfo("storage.googleapis.com", 443)
    assert len(offline) == 2
    offline.clear()  # the two attempts above were the point of this test


# --- helpers: tiny files in the real formats -------------------------------------------------------------------

def write_image(path, *, seed=0, size=(40, 48), colour=None, fmt=None):
    """A small smooth image (a random gradient, or one RGB colour) saved as JPEG or PNG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if colour is not None:
        pixels = np.broadcast_to(np.array(colour, np.uint8), (*size, 3))
    else:
        rng = np.random.default_rng(seed)
        low, high = rng.integers(0, 256, (2, 3))
        ramp = np.linspace(0, 1, size[1])[None, :, None]
        pixels = (low + (high - low) * ramp + np.zeros((size[0], 1, 1))).astype(np.uint8)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, format=fmt)
    return path


def read_all(builder, split):
    """{file: example} of one prepared split, read through the TFDS data source (no TensorFlow)."""
    source = builder.as_data_source(split)
    examples = [source[i] for i in range(len(source))]
    return {example["file"].decode(): example for example in examples}


def version_dirs(data_dir, name):
    """Every directory under <data_dir>/<name> that TFDS would take for a prepared (or in-progress) version."""
    return sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / name).glob("*/*") if p.is_dir())


MORPH_FILES = {  # name: (age, gender 0 male / 1 female); subject = the first field
    "000101_00M30.JPG": (30, 0), "000101_01M31.JPG": (31, 0), "000102_00F22.JPG": (22, 1),
    "000102_01F23.jpg": (23, 1), "000103_00M45.JPG": (45, 0), "000104_00F61.JPG": (61, 1),
    "album/000105_00M19.JPG": (19, 0), "album/000105_01M20.JPG": (20, 0), "000106_00F35.JPG": (35, 1),
    "000107_00M50.JPG": (50, 0),
}


@pytest.fixture
def morph_dir(tmp_path):
    """MORPH2-style JPG folder: 10 good files (one in a subfolder), plus one of each kind of bad input."""
    root = tmp_path / "morph"
    for i, name in enumerate(MORPH_FILES):
        write_image(root / name, seed=i)
    write_image(root / "000108_00M101.JPG", seed=50)  # age outside [0, 100]
    write_image(root / "notes.jpg", seed=51)  # not SUBJECT_PICTURE{M|F}AGE
    (root / "000109_00F33.JPG").write_bytes(b"not a jpeg")  # unreadable
    (root / "README.txt").write_text("not an image, ignored")
    return root


def datenum(year, month, day) -> float:
    """MATLAB datenum of a date, as IMDB-WIKI stores dates of birth."""
    return float(datetime.date(year, month, day).toordinal() + 366)


def write_mat(crop_dir, db, records):
    """IMDB-WIKI metadata: a 1×1 struct named `db` whose fields are 1×N rows (full_path and name cell arrays)."""
    crop_dir.mkdir(parents=True, exist_ok=True)
    n = len(records)
    face_location = np.empty(n, dtype=object)
    for i in range(n):
        face_location[i] = np.array([[1.0, 2.0, 30.0, 40.0]])
    struct = {
        "dob": np.array([r["dob"] for r in records]),
        "photo_taken": np.array([r["photo_taken"] for r in records], np.uint16),
        "full_path": np.array([r["full_path"] for r in records], dtype=object),  # 1-D object array → cell
        "gender": np.array([r["gender"] for r in records]),
        "name": np.array([f"person {i}" for i in range(n)], dtype=object),
        "face_location": face_location,
        "face_score": np.array([r["face_score"] for r in records]),
        "second_face_score": np.array([r["second"] for r in records]),
    }
    scipy.io.savemat(crop_dir / f"{db}.mat", {db: struct})


def imdb_records():
    """8 kept records and one of each rejection, in the reference's filter order."""
    good = [dict(full_path=f"{i:02d}/nm{i}_rm1_1980-3-15_2010.jpg", dob=datenum(1980, 3, 15), photo_taken=2010,
                 gender=float(i % 2), face_score=2.5, second=np.nan) for i in range(8)]
    good[1].update(dob=datenum(1980, 9, 1))  # born in the second half of the year: one year younger
    good[2].update(second=0.0)  # second_face_score 0 is no second face
    bad = [
        dict(full_path="20/noface.jpg", dob=datenum(1980, 1, 1), photo_taken=2010, gender=1.0, face_score=-np.inf,
             second=np.nan),
        dict(full_path="21/lowscore.jpg", dob=datenum(1980, 1, 1), photo_taken=2010, gender=1.0, face_score=0.5,
             second=np.nan),
        dict(full_path="22/twofaces.jpg", dob=datenum(1980, 1, 1), photo_taken=2010, gender=1.0, face_score=3.0,
             second=1.7),
        dict(full_path="23/old.jpg", dob=datenum(1890, 1, 1), photo_taken=2012, gender=1.0, face_score=3.0,
             second=np.nan),
        dict(full_path="24/nodob.jpg", dob=np.nan, photo_taken=2012, gender=1.0, face_score=3.0, second=np.nan),
        dict(full_path="25/nogender.jpg", dob=datenum(1980, 1, 1), photo_taken=2010, gender=np.nan,
             face_score=3.0, second=np.nan),
        dict(full_path="26/corrupt.jpg", dob=datenum(1980, 1, 1), photo_taken=2010, gender=1.0, face_score=3.0,
             second=np.nan),
        dict(full_path="27/missing.jpg", dob=datenum(1980, 1, 1), photo_taken=2010, gender=1.0, face_score=3.0,
             second=np.nan),
    ]
    return good, bad


@pytest.fixture
def imdb_dir(tmp_path):
    root = tmp_path / "imdb_manual"
    good, bad = imdb_records()
    for i, record in enumerate(good + bad[:-2]):
        write_image(root / "imdb_crop" / record["full_path"], seed=i, size=(70, 60))
    (root / "imdb_crop" / "26").mkdir(exist_ok=True)
    (root / "imdb_crop" / "26" / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    write_mat(root / "imdb_crop", "imdb", good + bad)
    return root


def prepare(name, manual_dir, data_dir, **kwargs):
    return prepared.prepare(name, manual_dir=manual_dir, data_dir=data_dir, progress=False, **kwargs)


# --- shared pieces ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("54", (54, None)), (54.0, (54, None)), (0, (0, None)), (100, (100, None)), ("23.0", (23, None)),
    (54.5, (None, common.AGE_NOT_INTEGER)), (-1, (None, common.AGE_OUT_OF_RANGE)),
    (101, (None, common.AGE_OUT_OF_RANGE)), (float("nan"), (None, common.NO_AGE)), ("x", (None, common.NO_AGE)),
])
def test_check_age(value, expected):
    assert common.check_age(value) == expected


def test_random_split_is_seeded_disjoint_and_80_20():
    first, again = common.random_split(101), common.random_split(101)
    assert all(np.array_equal(first[s], again[s]) for s in ("train", "test"))
    assert len(first["train"]) == 80 and len(first["test"]) == 21
    assert sorted(np.concatenate([first["train"], first["test"]])) == list(range(101))


def test_subject_split_keeps_each_subject_on_one_side():
    subjects = [f"s{i // 3}" for i in range(60)]
    split = common.subject_split(subjects)
    train = {subjects[i] for i in split["train"]}
    test = {subjects[i] for i in split["test"]}
    assert not train & test and len(train) == 16 and len(test) == 4


def test_age_at_photo_follows_the_reference_mid_year_rule():
    assert age_at_photo(datenum(1980, 6, 30), 2010) == 30
    assert age_at_photo(datenum(1980, 7, 1), 2010) == 29
    assert np.isnan(age_at_photo(float("nan"), 2010))


def test_get_builder_names_the_valid_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'morph3'.*morph2, imdb, wiki, megaage_asian, utkface"):
        get_builder("morph3", tmp_path)
    with pytest.raises(ValueError, match="no config 'identity'.*random, subject"):
        get_builder("morph2/identity", tmp_path)
    assert get_builder("morph2/subject", tmp_path).builder_config.name == "subject"
    assert {name: cls.name for name, cls in BUILDERS.items()} == {name: name for name in BUILDERS}


def test_a_builder_of_an_unprepared_dataset_leaves_no_temporary_directory(tmp_path, monkeypatch):
    """TFDS's look-up of GCS metadata makes a temporary directory per builder and never removes it."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    for name in ("morph2", "utkface", "synthetic_faces"):
        builder = get_builder(name, tmp_path / "data")
        assert not builder.is_prepared() and builder.info.features is not None
    assert list((tmp_path / "tmp").iterdir()) == []


def test_default_data_dir_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SSR_JAX_DATA_DIR", str(tmp_path / "d"))
    assert prepared.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("SSR_JAX_DATA_DIR")
    assert prepared.default_data_dir().name == "ssr_jax_data"


# --- MORPH2 ----------------------------------------------------------------------------------------------------

def test_morph2_from_jpgs(morph_dir, tmp_path):
    data_dir = tmp_path / "data"
    report = prepare("morph2", morph_dir, data_dir)
    assert not report.reused and report.dataset == "morph2/random/1.0.0"
    assert sum(report.kept.values()) == 10 and min(report.kept.values()) > 0
    assert report.skipped == {common.AGE_OUT_OF_RANGE: 1, common.BAD_FILE_NAME: 1, common.UNREADABLE: 1}
    assert report.skipped_examples[common.UNREADABLE][0].startswith("000109_00F33.JPG")
    saved = json.loads((data_dir / "morph2/random/1.0.0" / common.REPORT_FILE).read_text())
    assert saved["skipped"] == report.skipped and saved["kept"] == report.kept

    builder = get_builder("morph2", data_dir)
    examples = read_all(builder, "train") | read_all(builder, "test")
    assert {file: (int(e["age"]), int(e["gender"])) for file, e in examples.items()} == MORPH_FILES
    image = examples["000101_00M30.JPG"]["image"]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert "tensorflow" not in sys.modules

    again = prepare("morph2", morph_dir, data_dir)
    assert again.reused and again.kept == report.kept and again.skipped == report.skipped
    assert prepare("morph2", None, data_dir).reused  # no manual directory: the prepared copy
    other = tmp_path / "other_morph"
    other.mkdir()
    with pytest.raises(ValueError, match=f"prepared from {morph_dir.resolve()}, not {other.resolve()}: to rebuild "
                                         "it from the new files delete .*morph2/random/1.0.0"):
        prepare("morph2", other, data_dir)


def test_images_are_stored_bgr(tmp_path):
    root = tmp_path / "morph"
    for i in range(5):
        write_image(root / f"00020{i}_00M30.JPG", colour=(250, 10, 10), size=(64, 64))  # red in RGB
    prepare("morph2", root, tmp_path / "data")
    data = prepared.load_split("morph2", "train", data_dir=tmp_path / "data")
    mean = data["image"].reshape(-1, 3).mean(axis=0)
    assert mean[2] > 240 and mean[0] < 20  # channel 2 is red: BGR


def test_morph2_subject_split_is_subject_exclusive(morph_dir, tmp_path):
    report = prepare("morph2/subject", morph_dir, tmp_path / "data")
    builder = get_builder("morph2/subject", tmp_path / "data")
    subjects = {split: {file.rsplit("/", 1)[-1].split("_")[0] for file in read_all(builder, split)}
                for split in ("train", "test")}
    assert subjects["train"] and subjects["test"] and not subjects["train"] & subjects["test"]
    assert sum(report.kept.values()) == 10


def reference_npz(path, *, num=12, img_size=64, gender_male=0, dtype=np.float64, seed=0):
    """A reference-style .npz: float64 0–255 BGR images (like morph2_db_align.npz), ages and genders."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (num, img_size, img_size, 3)).astype(dtype)
    age = rng.integers(16, 78, num)
    gender = np.where(np.arange(num) % 2 == 0, gender_male, 1 - gender_male)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, image=image, gender=gender, age=age, img_size=img_size)
    return image, age, gender


def test_morph2_from_reference_npz(tmp_path):
    image, age, gender = reference_npz(tmp_path / "m" / "morph2_db_align.npz")
    report = prepare("morph2", tmp_path / "m", tmp_path / "data")
    assert report.kept == {"train": 9, "test": 3} and not report.skipped
    assert "reference npz" in report.source
    builder = get_builder("morph2", tmp_path / "data")
    for split, indices in common.random_split(12).items():
        examples = read_all(builder, split)
        assert sorted(examples) == sorted(f"morph2_db_align.npz[{i}]" for i in indices)
        for i in indices:
            example = examples[f"morph2_db_align.npz[{i}]"]
            np.testing.assert_array_equal(example["image"], image[i].astype(np.uint8))
            assert (example["age"], example["gender"]) == (age[i], gender[i])


def test_reference_npz_of_another_size_is_resized(tmp_path):
    reference_npz(tmp_path / "m" / "morph2_db_align.npz", img_size=32, dtype=np.uint8)
    prepare("morph2", tmp_path / "m", tmp_path / "data")
    assert prepared.load_split("morph2", "test", data_dir=tmp_path / "data")["image"].shape == (3, 64, 64, 3)


def test_morph2_subject_split_needs_the_jpgs(tmp_path):
    reference_npz(tmp_path / "m" / "morph2_db_align.npz")
    with pytest.raises(ManualFilesError, match="subject ids"):
        prepare("morph2/subject", tmp_path / "m", tmp_path / "data")


def test_missing_manual_files_name_what_is_expected_and_leave_nothing(tmp_path):
    data_dir = tmp_path / "data"
    with pytest.raises(ManualFilesError, match="(?s)morph2_db_align.npz.*no manual directory given"):
        prepared.prepare("morph2", data_dir=data_dir, progress=False)
    with pytest.raises(ManualFilesError, match="does not exist"):
        prepare("utkface", tmp_path / "nowhere", data_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManualFilesError, match="found neither morph2_db_align.npz nor any .JPG file"):
        prepare("morph2", tmp_path / "empty", data_dir)
    with pytest.raises(ManualFilesError, match=r"found none of imdb_db.npz, imdb_crop/imdb.mat"):
        prepare("imdb", tmp_path / "empty", data_dir)
    with pytest.raises(ManualFilesError, match="list/train_name.txt.*train, test"):
        prepare("megaage_asian", tmp_path / "empty", data_dir)
    assert not data_dir.exists() or not list(data_dir.rglob("dataset_info.json"))


@pytest.mark.parametrize("problem, match", [
    ("no_gender", r"missing key\(s\) \['gender'\]"),
    ("flat_images", r"image has shape \(4, 12288\), expected \(N, 64, 64, 3\)"),
    ("size_mismatch", r"image has shape \(4, 32, 32, 3\), expected \(N, 64, 64, 3\)"),
    ("short_ages", "3 age values for 4 images"),
    ("not_npz", r"not an .npz \(zip\) file"),
    ("size_zero", "img_size is 0; an image has at least one pixel a side"),
])
def test_reference_npz_layout_errors(tmp_path, problem, match):
    path = tmp_path / "x.npz"
    image = np.zeros((4, 64, 64, 3), np.uint8)
    arrays = dict(image=image, age=np.arange(4), gender=np.zeros(4, int), img_size=64)
    if problem == "no_gender":
        del arrays["gender"]
    elif problem == "flat_images":
        arrays["image"] = image.reshape(4, -1)
    elif problem == "size_mismatch":
        arrays["image"] = np.zeros((4, 32, 32, 3), np.uint8)
    elif problem == "short_ages":
        arrays["age"] = np.arange(3)
    elif problem == "size_zero":
        arrays.update(image=np.zeros((4, 0, 0, 3), np.uint8), img_size=0)
    if problem == "not_npz":
        path.write_bytes(b"plain text")
    else:
        np.savez(path, **arrays)
    with pytest.raises(NpzLayoutError, match=match):
        read_reference_npz(path)


def test_reference_npz_images_normalised_to_0_1_are_refused_not_stored_black(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (4, 64, 64, 3)).astype(np.float64)
    for image, problem in ((raw, None), (raw / 255.0, "hold fractions within 0–1 .*save image \\* 255 instead")):
        np.savez(tmp_path / "x.npz", image=image, age=np.arange(4), gender=np.zeros(4, int), img_size=64)
        npz = read_reference_npz(tmp_path / "x.npz")
        if problem is None:
            assert [image.max() for _, image in npz.iter_images(np.ones(4, bool))] == [255] * 4
        else:
            with pytest.raises(NpzLayoutError, match=problem):
                list(npz.iter_images(np.ones(4, bool)))


def test_a_failure_while_writing_leaves_no_complete_looking_dataset(tmp_path):
    """Normalised float images are found mid-way through generation: TFDS drops its temporary directory."""
    path = tmp_path / "m" / "morph2_db_align.npz"
    image, _, _ = reference_npz(path)
    np.savez(path, image=image / 255.0 - 0.5, gender=np.zeros(12, int), age=np.full(12, 30), img_size=64)
    with pytest.raises(NpzLayoutError, match="values outside 0–255"):
        prepare("morph2", tmp_path / "m", tmp_path / "data")
    assert version_dirs(tmp_path / "data", "morph2") == []
    assert not get_builder("morph2", tmp_path / "data").is_prepared()


def test_strict_raises_on_an_unreadable_image_and_leaves_nothing(morph_dir, tmp_path):
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match="notes.jpg: file name not in the expected pattern"):
        prepare("morph2", morph_dir, data_dir, strict=True)
    (morph_dir / "notes.jpg").unlink()
    with pytest.raises(ValueError, match="000109_00F33.JPG: unreadable image"):
        prepare("morph2", morph_dir, data_dir, strict=True)
    assert version_dirs(data_dir, "morph2") == []
    with pytest.raises(prepared.NotPreparedError):
        prepared.load_split("morph2", "train", data_dir=data_dir)
    (morph_dir / "000109_00F33.JPG").unlink()
    report = prepare("morph2", morph_dir, data_dir, strict=True)
    assert sum(report.kept.values()) == 10 and report.skipped == {common.AGE_OUT_OF_RANGE: 1}  # a filter, not damage


def test_a_killed_run_is_not_taken_for_a_prepared_dataset(morph_dir, tmp_path):
    """SIGKILL skips every clean-up: what stays is TFDS's temporary directory, which is not the version directory."""
    leftover = tmp_path / "data" / "morph2" / "random" / "incomplete.KILLED_1.0.0"
    leftover.mkdir(parents=True)
    (leftover / "dataset_info.json").write_text("{}")
    assert not get_builder("morph2", tmp_path / "data").is_prepared()
    report = prepare("morph2", morph_dir, tmp_path / "data")
    assert not report.reused and sum(report.kept.values()) == 10
    assert not leftover.exists()  # removed by the next preparation, which held the lock


def test_preparations_of_one_dataset_take_turns(morph_dir, tmp_path, capfd):
    """A second preparation waits for the lock (here held by the test), saying whom it waits for, then prepares."""
    import os
    import threading

    builder, reports = get_builder("morph2", tmp_path / "data"), []
    with builder._prepare_lock():
        waiting = threading.Thread(target=lambda: reports.append(prepare("morph2", morph_dir, tmp_path / "data")))
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive() and not builder.is_prepared()
        assert f"waiting for pid {os.getpid()} on {socket.gethostname()}, which is preparing morph2" in \
            capfd.readouterr().err
    waiting.join(timeout=120)
    assert len(reports) == 1 and not reports[0].reused and builder.is_prepared()


def test_an_empty_split_is_a_clear_error(tmp_path):
    write_image(tmp_path / "m" / "000001_00M30.JPG")
    with pytest.raises(ValueError, match="no usable examples for split 'train'"):
        prepare("morph2", tmp_path / "m", tmp_path / "data")
    assert version_dirs(tmp_path / "data", "morph2") == []


# --- IMDB and WIKI ---------------------------------------------------------------------------------------------

def test_imdb_from_mat_applies_the_reference_filters(imdb_dir, tmp_path):
    report = prepare("imdb", imdb_dir, tmp_path / "data")
    assert sum(report.kept.values()) == 8
    assert report.skipped == {LOW_FACE_SCORE: 2, SECOND_FACE: 1, common.AGE_OUT_OF_RANGE: 1, common.NO_AGE: 1,
                              common.NO_GENDER: 1, common.UNREADABLE: 1, common.MISSING_FILE: 1}
    builder = get_builder("imdb", tmp_path / "data")
    examples = read_all(builder, "train") | read_all(builder, "test")
    good, _ = imdb_records()
    expected = {r["full_path"]: (30, 1 - int(r["gender"])) for r in good}  # metadata 1 = male → 0
    expected[good[1]["full_path"]] = (29, 1 - int(good[1]["gender"]))
    assert {file: (int(e["age"]), int(e["gender"])) for file, e in examples.items()} == expected


def test_wiki_accepts_the_crop_folder_itself_and_strict_names_missing_files(tmp_path):
    root = tmp_path / "wiki_crop"
    good, bad = imdb_records()
    for i, record in enumerate(good):
        write_image(root / record["full_path"], seed=i)
    write_mat(root, "wiki", good + [bad[-1]])
    with pytest.raises(ValueError, match="27/missing.jpg: missing image file"):
        prepare("wiki", root, tmp_path / "data", strict=True)
    report = prepare("wiki", root, tmp_path / "data")
    assert sum(report.kept.values()) == 8 and report.skipped == {common.MISSING_FILE: 1}
    assert report.dataset == "wiki/1.0.0"


def test_mat_without_the_expected_fields_is_one_clear_error(tmp_path):
    root = tmp_path / "imdb_crop"
    root.mkdir()
    scipy.io.savemat(root / "imdb.mat", {"imdb": {"dob": np.array([1.0]), "full_path": np.array(["a"], object)}})
    with pytest.raises(MetadataError, match=r"lacks field\(s\) \['gender', 'photo_taken', 'face_score'"):
        prepare("imdb", tmp_path, tmp_path / "data")
    scipy.io.savemat(root / "imdb.mat", {"wiki": {"dob": np.array([1.0])}})
    with pytest.raises(MetadataError, match="no struct named 'imdb'"):
        prepare("imdb", tmp_path, tmp_path / "data")
    for text in (b"", b"a text file, not MATLAB\n"):  # scipy's MatReadError is neither OSError nor ValueError
        (root / "imdb.mat").write_bytes(text)
        with pytest.raises(MetadataError, match="imdb.mat: cannot read as a MATLAB .mat file"):
            prepare("imdb", tmp_path, tmp_path / "data")


# --- MegaAge-Asian, UTKFace, synthetic -------------------------------------------------------------------------

def write_megaage(root, names_ages):
    """The official layout: train/, test/ image folders and line-aligned list/{split}_{name,age}.txt files. Images
    are 100×80, black with white 20-row bands at the top and bottom that the reference's [20:-20] cuts off."""
    pixels = np.zeros((100, 80, 3), np.uint8)
    pixels[:20] = pixels[-20:] = 255
    (root / "list").mkdir(parents=True)
    for split, rows in names_ages.items():
        (root / split).mkdir()
        for name, _ in rows:
            Image.fromarray(pixels).save(root / split / name)
        (root / "list" / f"{split}_name.txt").write_text("".join(f"{name}\n" for name, _ in rows))
        (root / "list" / f"{split}_age.txt").write_text("".join(f"{age}\n" for _, age in rows))


def test_megaage_asian_official_split_and_row_crop(tmp_path):
    root = tmp_path / "megaage_asian"
    write_megaage(root, {"train": [("1.jpg", 3), ("2.jpg", 70), ("3.jpg", 120), ("4.jpg", 25)],
                         "test": [("1.jpg", 40), ("2.jpg", 12.5)]})
    report = prepare("megaage_asian", tmp_path, tmp_path / "data")  # the parent of megaage_asian/ also works
    assert report.kept == {"train": 3, "test": 1}
    assert report.skipped == {common.AGE_OUT_OF_RANGE: 1, common.AGE_NOT_INTEGER: 1}
    data = prepared.load_split("megaage_asian", "train", data_dir=tmp_path / "data")
    assert set(data) == {"image", "age"} and sorted(data["age"]) == [3, 25, 70]
    assert data["image"].max() < 30  # the white bands were cut before resizing


def test_megaage_lists_must_be_line_aligned(tmp_path):
    write_megaage(tmp_path, {"train": [("1.jpg", 3)], "test": [("1.jpg", 4)]})
    (tmp_path / "list" / "test_age.txt").write_text("4\n5\n")
    with pytest.raises(ManualFilesError, match="list/test_name.txt has 1 names but list/test_age.txt has 2 ages"):
        prepare("megaage_asian", tmp_path, tmp_path / "data")
    (tmp_path / "list" / "test_age.txt").write_bytes(b"4\n\xff5\n")
    with pytest.raises(ValueError, match=r"test_age.txt, line 2: byte 0xff is not UTF-8 text; save the list as UTF-8"):
        prepare("megaage_asian", tmp_path, tmp_path / "data")


def test_megaage_names_may_hold_spaces(tmp_path):
    write_megaage(tmp_path, {"train": [("a face.jpg", 3), ("2.jpg", 30)], "test": [("1.jpg", 4)]})
    report = prepare("megaage_asian", tmp_path, tmp_path / "data")
    assert report.kept == {"train": 2, "test": 1} and not report.skipped


def test_megaage_asian_from_the_official_scripts_npz_files(tmp_path):
    """megaage_train.npz / megaage_test.npz (already cropped, 64×64, no gender) are used as they are."""
    images = np.arange(4 * 64 * 64 * 3, dtype=np.uint32).reshape(4, 64, 64, 3).astype(np.uint8)
    write_reference_npz(tmp_path / "megaage_train.npz", image=images[:3], age=np.array([5, 130, 33]))
    with pytest.raises(ManualFilesError, match="found megaage_train.npz but not megaage_test.npz"):
        prepare("megaage_asian", tmp_path, tmp_path / "data")
    write_reference_npz(tmp_path / "megaage_test.npz", image=images[3:], age=np.array([61]))
    report = prepare("megaage_asian", tmp_path, tmp_path / "data")
    assert report.kept == {"train": 2, "test": 1} and report.skipped == {common.AGE_OUT_OF_RANGE: 1}
    assert "train: reference npz" in report.source and "megaage_test.npz" in report.source
    train = prepared.load_split("megaage_asian", "train", data_dir=tmp_path / "data")
    order = np.argsort(train["age"])
    assert train["age"][order].tolist() == [5, 33] and set(train) == {"image", "age"}
    np.testing.assert_array_equal(train["image"][order], images[[0, 2]])  # bit-exact: no resampling
    test = prepared.load_split("megaage_asian", "test", data_dir=tmp_path / "data")
    np.testing.assert_array_equal(test["image"], images[3:])


def test_utkface_labels_from_file_names(tmp_path):
    root = tmp_path / "UTKFace"
    names = {"25_0_2_20170116174525125.jpg.chip.jpg": (25, 0), "1_1_0_20161219140623097.jpg.chip.jpg": (1, 1),
             "39_1_20170116174525125.jpg.chip.jpg": (39, 1),  # the real set has a few without the race field
             "61_0_3_20170109150557335.jpg": (61, 0), "80_1_0_20170110131953974.jpg": (80, 1)}
    for i, name in enumerate(names):
        write_image(root / name, seed=i)
    write_image(root / "110_1_0_20170112213001988.jpg.chip.jpg", seed=9)  # older than 100
    write_image(root / "61_3_20170109150557335.jpg.chip.jpg", seed=10)  # gender 3: misnamed
    report = prepare("utkface", root, tmp_path / "data")
    assert report.kept == {"train": 4, "test": 1}
    assert report.skipped == {common.AGE_OUT_OF_RANGE: 1, common.BAD_FILE_NAME: 1}
    builder = get_builder("utkface", tmp_path / "data")
    examples = read_all(builder, "train") | read_all(builder, "test")
    assert {file: (int(e["age"]), int(e["gender"])) for file, e in examples.items()} == names


def test_synthetic_faces_match_the_generator(tmp_path):
    config = SyntheticFacesConfig(name="tiny", num_train=6, num_test=3, seed=5)
    report = get_builder("synthetic_faces", tmp_path, config=config).prepare(progress=False)
    assert report.kept == {"train": 6, "test": 3} and report.dataset == "synthetic_faces/tiny/1.0.0"
    train, test = synthetic.train_test_split(6, 3, seed=5)
    builder = get_builder("synthetic_faces", tmp_path, config=config)
    for split, expected in (("train", train), ("test", test)):
        for file, example in read_all(builder, split).items():
            i = int(file.split("/")[1])
            np.testing.assert_array_equal(example["image"], expected["image"][i])
            assert example["age"] == expected["age"][i] and "gender" not in example


# --- prepared-data library -------------------------------------------------------------------------------------

def test_load_split_caches_and_caps(morph_dir, tmp_path):
    data_dir = tmp_path / "data"
    prepare("morph2", morph_dir, data_dir)
    train = prepared.load_split("morph2", "train", data_dir=data_dir)
    assert set(train) == {"image", "age", "gender"}
    assert train["image"].dtype == np.uint8 and train["image"].shape[1:] == (64, 64, 3)
    assert train["age"].dtype == np.int32 and train["gender"].dtype == np.int32
    assert (data_dir / "morph2/random/1.0.0" / prepared.CACHE_DIR / "train" / "image.npy").exists()
    again = prepared.load_split("morph2", "train", data_dir=data_dir)
    capped = prepared.load_split("morph2", "train", data_dir=data_dir, cap=2)
    for key in train:
        np.testing.assert_array_equal(again[key], train[key])
        np.testing.assert_array_equal(capped[key], train[key][:2])
    with pytest.raises(ValueError, match="has no split 'validation': choose one of train, test"):
        prepared.load_split("morph2", "validation", data_dir=data_dir)
    with pytest.raises(ValueError, match="cap must be a positive integer"):
        prepared.load_split("morph2", "train", data_dir=data_dir, cap=0)


def test_a_read_only_prepared_dataset_caches_in_the_users_cache_dir(morph_dir, tmp_path, monkeypatch):
    """A shared data_dir prepared once and read-only for its users: the host-array cache goes to
    $XDG_CACHE_HOME/ssr_jax, and the prepared directory is left untouched. (The tests run as root, for whom
    every directory is writable, so "read-only" is what `_writable` answers.)"""
    data_dir = tmp_path / "data"
    prepare("morph2", morph_dir, data_dir)
    version_dir = data_dir / "morph2/random/1.0.0"
    before = sorted(version_dir.rglob("*"))
    monkeypatch.setattr(prepared, "_writable", lambda directory: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home_cache"))
    train = prepared.load_split("morph2", "train", data_dir=data_dir)
    assert sorted(version_dir.rglob("*")) == before
    cached = list((tmp_path / "home_cache" / "ssr_jax").glob("*/train/image.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(np.load(cached[0]), train["image"])
    again = prepared.load_split("morph2", "train", data_dir=data_dir)  # served from there
    np.testing.assert_array_equal(again["age"], train["age"])
    assert len(list((tmp_path / "home_cache" / "ssr_jax").rglob("image.npy"))) == 1


def test_load_split_of_an_unprepared_dataset_gives_the_command(tmp_path):
    with pytest.raises(prepared.NotPreparedError,
                       match=r"`ssr-jax data prepare morph2/subject --manual_dir DIR --data_dir .*` first"):
        prepared.load_split("morph2/subject", "train", data_dir=tmp_path)
    with pytest.raises(prepared.NotPreparedError, match=r"`ssr-jax data prepare synthetic_faces --data_dir"):
        prepared.info("synthetic_faces", data_dir=tmp_path)


def test_info_counts_histogram_and_png(morph_dir, tmp_path):
    data_dir = tmp_path / "data"
    report = prepare("morph2", morph_dir, data_dir)
    summary = prepared.info("morph2", data_dir=data_dir, png_path=tmp_path / "fig" / "ages.png")
    assert {s: v["count"] for s, v in summary["splits"].items()} == report.kept
    assert sum(v["male"] + v["female"] for v in summary["splits"].values()) == 10
    assert {s: sum(h) for s, h in summary["age_histogram"].items()} == report.kept
    assert summary["age_bins"][-1] == "90–100" and "train" in summary["table"] and "30–39" in summary["table"]
    assert (tmp_path / "fig" / "ages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _rows(data):
    """Examples as a sorted list of (image bytes, age, gender): order-free comparison of two datasets."""
    return sorted(zip((im.tobytes() for im in data["image"]), data["age"].tolist(), data["gender"].tolist()))


def _all_splits(name, data_dir):
    parts = [prepared.load_split(name, split, data_dir=data_dir) for split in ("train", "test")]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


@pytest.mark.parametrize("name, npz_name, npz_male", [("morph2", "morph2_db_align.npz", 0),
                                                      ("imdb", "imdb_db.npz", 1)])
def test_export_npz_round_trip(name, npz_name, npz_male, morph_dir, imdb_dir, tmp_path):
    manual = morph_dir if name == "morph2" else imdb_dir
    prepare(name, manual, tmp_path / "data")
    out = prepared.export_npz(name, "all", tmp_path / "export" / npz_name, data_dir=tmp_path / "data")
    original = _all_splits(name, tmp_path / "data")

    with np.load(out) as npz:
        assert sorted(npz.files) == ["age", "gender", "image", "img_size"] and int(npz["img_size"]) == 64
        assert npz["image"].dtype == np.uint8 and len(npz["age"]) == len(original["age"])
        # the reference's own gender code for this dataset
        np.testing.assert_array_equal(np.sort(npz["gender"] == npz_male), np.sort(original["gender"] == 0))
    assert not list(out.parent.glob(".*"))  # no temporary file left beside it

    report = prepare(name, out.parent, tmp_path / "data2")
    assert "reference npz" in report.source
    assert _rows(_all_splits(name, tmp_path / "data2")) == _rows(original)


def test_export_one_split_without_gender(tmp_path):
    write_megaage(tmp_path / "m", {"train": [("1.jpg", 3), ("2.jpg", 4)], "test": [("1.jpg", 5)]})
    prepare("megaage_asian", tmp_path / "m", tmp_path / "data")
    out = prepared.export_npz("megaage_asian", "test", tmp_path / "megaage_test.npz", data_dir=tmp_path / "data")
    npz = read_reference_npz(out, with_gender=False)
    assert npz.num == 1 and npz.img_size == 64 and npz.age.tolist() == [5]
    with np.load(out) as arrays:
        assert "gender" not in arrays.files
