"""A real dataset end to end, as a user meets it: the reference's morph2_db_align.npz → `ssr-jax data prepare` →
`data info` → `data export-npz` round trip → training on it (augmentation on) → `ssr-jax evaluate` on it."""
import json
import os
import shutil

import numpy as np
import pytest

from configs import ssrnet
from conftest import run_cli
from ssr_jax import config_lib
from ssr_jax.data import PREPARED_DATASETS, builders, synthetic
from ssr_jax.train import train_and_evaluate

NUM = 100


@pytest.fixture(scope="module")
def prepared_morph2(tmp_path_factory):
    """(manual dir, data dir, the arrays written): 100 synthetic faces in the reference's MORPH2 .npz layout
    (float64 BGR 0–255, gender M → 0), prepared with the command line."""
    root = tmp_path_factory.mktemp("morph2")
    faces = synthetic.generate(NUM, seed=11)
    arrays = {"image": faces["image"].astype(np.float64), "age": faces["age"].astype(np.int64),
              "gender": np.arange(NUM) % 2, "img_size": np.int64(64)}
    (root / "manual").mkdir()
    np.savez(root / "manual" / "morph2_db_align.npz", **arrays)
    result = run_cli("data", "prepare", "morph2", "--manual_dir", root / "manual", "--data_dir", root / "data")
    assert "kept: train 80, test 20" in result.stdout
    # Its output is a pipe here, as a log file would be: plain lines, no progress bars' \r or escape sequences.
    output = result.stdout + result.stderr
    assert "\r" not in output and "\x1b[" not in output, output
    return root / "manual", root / "data", arrays


def test_the_dataset_names_in_configs_are_the_builders():
    assert tuple(builders.BUILDERS) == PREPARED_DATASETS


def test_info_counts_and_draws_the_age_histogram(prepared_morph2, tmp_path):
    _, data_dir, arrays = prepared_morph2
    result = run_cli("data", "info", "morph2", "--data_dir", data_dir, "--out", tmp_path / "ages.png", "--json")
    summary = json.loads(result.stdout)
    assert summary["splits"]["train"]["count"] == 80 and summary["splits"]["test"]["count"] == 20
    assert summary["splits"]["train"]["male"] + summary["splits"]["test"]["male"] == NUM // 2
    assert sum(sum(counts) for counts in summary["age_histogram"].values()) == NUM
    assert [row["fold"] for row in summary["folds"]] == list(range(10))  # the npz names no subjects: round-robin
    assert [row["count"] for row in summary["folds"]] == [NUM // 10] * 10
    assert (tmp_path / "ages.png").read_bytes()[:4] == b"\x89PNG"


def test_info_on_a_read_only_data_dir_asks_for_out(prepared_morph2, monkeypatch, capsys):
    from ssr_jax import cli
    from ssr_jax.data import prepared

    _, data_dir, _ = prepared_morph2
    version_dir = prepared.dataset_dir("morph2", data_dir=data_dir)
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and str(path) != str(version_dir))
    with pytest.raises(SystemExit) as exit_:  # the test may run as root, whom permissions never stop
        cli.main(["ssr-jax", "data", "info", "morph2", "--data_dir", str(data_dir)])
    assert exit_.value.code == 2 and not (version_dir / "ages.png").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {version_dir} is not writable (a shared, read-only data directory?), so the age histogram cannot go "
        "there: pass --out FILE.png")


def test_export_npz_round_trips_the_reference_layout(prepared_morph2, tmp_path):
    _, data_dir, arrays = prepared_morph2
    run_cli("data", "export-npz", "morph2", "--split", "all", "--out", tmp_path / "back.npz", "--data_dir", data_dir)
    back = np.load(tmp_path / "back.npz")
    assert set(back.files) == {"image", "age", "gender", "img_size"} and int(back["img_size"]) == 64
    assert back["image"].dtype == np.uint8 and back["image"].shape == (NUM, 64, 64, 3)
    # Same examples (TFDS stores them shuffled): match them by their pixels.
    key = lambda images: [image.tobytes() for image in images]  # noqa: E731
    original = dict(zip(key(arrays["image"].astype(np.uint8)), zip(arrays["age"], arrays["gender"])))
    for image, age, gender in zip(key(back["image"]), back["age"], back["gender"]):
        assert original[image] == (age, gender)


def test_training_on_a_prepared_dataset_with_augmentation_then_evaluate(prepared_morph2, tmp_path):
    _, data_dir, _ = prepared_morph2
    config = config_lib.apply_overrides(ssrnet.get_config("smoke"), {
        "data.name": "morph2", "data.data_dir": str(data_dir), "data.cap": 64, "data.augment.enabled": True})
    summary = train_and_evaluate(config, tmp_path / "run", progress=False)
    assert summary["status"] == "ok" and summary["num_train"] == 64 and summary["num_test"] == 20
    result = run_cli("evaluate", tmp_path / "run", "--data", "morph2", "--data_dir", data_dir, "--json")
    evaluated = json.loads(result.stdout)
    assert evaluated["num_test"] == 20
    assert evaluated["mae"] == pytest.approx(summary["mae"], rel=1e-4)  # the run's last evaluation, recomputed


def test_unprepared_dataset_fails_before_training_with_the_command_to_run(tmp_path):
    config = config_lib.apply_overrides(ssrnet.get_config("smoke"), {
        "data.name": "utkface", "data.data_dir": str(tmp_path / "empty")})
    with pytest.raises(FileNotFoundError, match="ssr-jax data prepare utkface --manual_dir DIR"):
        train_and_evaluate(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_data_command_errors_are_one_line(tmp_path):
    missing = run_cli("data", "prepare", "wiki", "--manual_dir", tmp_path / "nowhere", check=False)
    assert missing.returncode == 2 and "wiki_crop" in missing.stderr
    usage = run_cli("data", "frobnicate", "morph2", check=False)
    assert usage.returncode == 2 and usage.stderr.startswith("error: usage: ssr-jax data prepare")


def test_export_npz_refuses_targets_that_are_not_regular_files_and_leaves_no_temporary_file(prepared_morph2, tmp_path):
    _, data_dir, _ = prepared_morph2
    (tmp_path / "taken").mkdir()
    for target in (tmp_path / "taken", "/dev/null"):
        result = run_cli("data", "export-npz", "morph2", "--split", "test", "--out", target, "--data_dir", data_dir,
                         check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1] == (f"error: {target} exists and is not a regular file; pass a "
                                                          "new file name")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    unwritable = run_cli("data", "export-npz", "morph2", "--split", "test", "--out", "/proc/version/x.npz",
                         "--data_dir", data_dir, check=False)
    assert unwritable.returncode == 2 and "Traceback" not in unwritable.stderr
    assert "/proc/version" in unwritable.stderr.strip().splitlines()[-1]
    assert os.listdir(tmp_path) == ["taken"] and os.listdir(tmp_path / "taken") == []


def test_a_damaged_prepared_dataset_names_the_file_and_the_prepare_command(prepared_morph2, tmp_path):
    _, data_dir, _ = prepared_morph2
    shutil.copytree(data_dir, tmp_path / "data", ignore=shutil.ignore_patterns("ssr_jax_cache"))
    (records,) = (tmp_path / "data").rglob("morph2-train.array_record*")
    records.write_bytes(records.read_bytes()[:len(records.read_bytes()) // 2])
    result = run_cli("data", "export-npz", "morph2", "--split", "train", "--out", tmp_path / "train.npz",
                     "--data_dir", tmp_path / "data", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert f"{records} is damaged (Corrupted Riegeli" in line and f"delete {records.parent}" in line
    assert f"ssr-jax data prepare morph2/random --manual_dir DIR --data_dir {tmp_path / 'data'}" in line
    assert not (tmp_path / "train.npz").exists()
