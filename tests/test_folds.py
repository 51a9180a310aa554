"""The benchmark protocol: ten folds per prepared dataset (identity-exclusive where identities exist, ages balanced),
its five splits, fold files, and model selection on the validation part.

Datasets are tiny files in the real formats (MORPH2 album names with repeated subjects, UTKFace names), prepared by
the real builders; training uses the smoke schedule."""
import numpy as np
import pytest
from tensorboard_events import scalars
from test_builders import prepare, write_image

from ssr_jax import data, validation
from ssr_jax.config_lib import ConfigError
from ssr_jax.data import folds, prepared


@pytest.fixture(scope="module")
def morph_subjects(tmp_path_factory):
    """A prepared MORPH2 album of 24 subjects with 1–4 pictures each (60 files), in `data_dir`."""
    root = tmp_path_factory.mktemp("folds")
    rng = np.random.default_rng(0)
    for subject in range(24):
        age = int(rng.integers(16, 70))
        for picture in range(1 + subject % 4):
            write_image(root / "morph" / f"{subject:06d}_{picture}{'MF'[subject % 2]}{age + picture}.JPG",
                        seed=subject * 10 + picture, size=(16, 16))
    prepare("morph2", root / "morph", root / "data")
    return root / "data"


@pytest.fixture(scope="module")
def utkface(tmp_path_factory):
    """A prepared UTKFace folder of 40 files, ages 1–80, in `data_dir`."""
    root = tmp_path_factory.mktemp("utk")
    for i in range(40):
        write_image(root / "utk" / f"{2 * i + 1}_{i % 2}_0_2017011617452{i:04d}.jpg.chip.jpg", seed=i, size=(16, 16))
    prepare("utkface", root / "utk", root / "data")
    return root / "data"


def _every_example(name, data_dir):
    """(files, ages, folds) of every stored example, from the dataset's fold file."""
    builder = prepared._prepared(name, data_dir)
    mapping = folds.read(prepared.dataset_dir(name, data_dir=data_dir) / prepared.FOLD_FILE)
    files = np.concatenate([prepared._file_names(builder, split) for split in ("train", "test")])
    ages = np.concatenate([prepared.load_split(name, split, data_dir=data_dir)["age"] for split in ("train", "test")])
    return files, ages, np.array([mapping[file] for file in files])


def test_assignment_is_deterministic_balanced_and_ignores_order():
    rng = np.random.default_rng(1)
    files = [f"{i:03d}.jpg" for i in range(200)]
    ages = rng.integers(0, 90, 200)
    identities = [f"p{i // 3}" for i in range(200)]
    assigned = folds.assign(files, ages, identities)
    order = rng.permutation(200)
    shuffled = folds.assign([files[i] for i in order], ages[order], [identities[i] for i in order])
    np.testing.assert_array_equal(shuffled, assigned[order])
    sizes = np.bincount(assigned, minlength=10)
    assert sizes.max() - sizes.min() <= 3  # one identity's worth
    means = [ages[assigned == fold].mean() for fold in range(10)]
    assert max(means) - min(means) < 8  # each round of ten spans neighbouring ages
    # one image per identity: round-robin over (age, file name)
    np.testing.assert_array_equal(folds.assign(["b", "a", "c", "d"], [5, 5, 1, 9]), [2, 1, 0, 3])


def test_identities_come_from_the_file_names_where_the_dataset_names_persons():
    from ssr_jax.data.builders import BUILDERS

    assert BUILDERS["imdb"].identity("01/nm0000001_rm124825600_1899-5-10_1968.jpg") == "nm0000001"
    assert BUILDERS["wiki"].identity("17/10000217_1981-05-05_2009.jpg") == "10000217"
    assert BUILDERS["morph2"].identity("album/009055_1M54.JPG") == "009055"
    for name, file in (("imdb", "imdb_db.npz[3]"), ("morph2", "morph2_db_align.npz[3]"),
                       ("utkface", "25_0_2_20170116174525125.jpg.chip.jpg")):
        assert BUILDERS[name].identity(file) is None


def test_morph2_folds_are_subject_exclusive(morph_subjects):
    files, _, assigned = _every_example("morph2", morph_subjects)
    assert len(files) == 60 and set(assigned) == set(range(10))
    subjects = [prepared.get_builder("morph2", morph_subjects).identity(file) for file in files]
    fold_of = {}
    for subject, fold in zip(subjects, assigned):
        assert fold_of.setdefault(subject, fold) == fold, f"subject {subject} in folds {fold_of[subject]} and {fold}"
    assert len(fold_of) == 24
    info = prepared.info("morph2", data_dir=morph_subjects)
    assert [row["count"] for row in info["folds"]] == np.bincount(assigned, minlength=10).tolist()
    assert sum(row["identities"] for row in info["folds"]) == 24 and "age_max" in info["table"]


def test_each_split_partitions_the_dataset_and_the_tests_cover_it_once(morph_subjects):
    files, ages, assigned = _every_example("morph2", morph_subjects)
    tested = []
    for k in range(folds.NUM_SPLITS):
        parts = folds.split_indices(assigned, k)
        rows = np.concatenate(list(parts.values()))
        assert sorted(rows) == list(range(len(files)))  # disjoint and covering
        assert set(assigned[parts["test"]]) <= {(2 * k + 8) % 10, (2 * k + 9) % 10}
        loaded = prepared.load_benchmark("morph2", k, data_dir=morph_subjects)
        for part, indices in parts.items():
            np.testing.assert_array_equal(np.sort(loaded[part]["age"]), np.sort(ages[indices]))
        tested.extend(files[parts["test"]])
    assert sorted(tested) == sorted(files)


def test_utkface_folds_are_round_robin_and_load_splits_gives_train_test_val(utkface):
    files, ages, assigned = _every_example("utkface", utkface)
    order = np.lexsort((files, ages))
    np.testing.assert_array_equal(assigned[order], np.arange(40) % 10)
    config = validation_config(split_index=4, data_dir=str(utkface))
    train, test, val = data.load_splits(config.data)
    assert (len(train["age"]), len(val["age"]), len(test["age"])) == (24, 8, 8)
    assert set(test["age"]) == set(ages[np.isin(assigned, (6, 7))])


def test_export_then_import_round_trips(utkface, tmp_path, capsys):
    from ssr_jax import cli

    path = tmp_path / "folds.csv"
    with pytest.raises(SystemExit) as exit_:  # absl's app.run ends the command
        cli.main(["ssr-jax", "data", "export-folds", "utkface", "--data_dir", str(utkface), "--out", str(path)])
    assert not exit_.value.code and capsys.readouterr().out == f"written: {path}\n"
    mapping = folds.read(path)
    assert mapping == folds.read(prepared.dataset_dir("utkface", data_dir=utkface) / prepared.FOLD_FILE)
    own = prepared.load_benchmark("utkface", 1, data_dir=utkface)
    imported = prepared.load_benchmark("utkface", 1, data_dir=utkface, fold_file=path)
    for part in folds.PARTS:
        np.testing.assert_array_equal(imported[part]["image"], own[part]["image"])
    # someone else's folds, every example two folds on: their split 1 is our split 0
    files = list(mapping)
    folds.write(tmp_path / "theirs.csv", files, [(mapping[file] + 2) % 10 for file in files])
    theirs = prepared.load_benchmark("utkface", 1, data_dir=utkface, fold_file=tmp_path / "theirs.csv")
    ours = prepared.load_benchmark("utkface", 0, data_dir=utkface)
    for part in folds.PARTS:
        np.testing.assert_array_equal(theirs[part]["image"], ours[part]["image"])


def validation_config(**data_fields):
    from configs import ssrnet

    config = ssrnet.get_config("smoke")
    config.data.name, config.data.protocol = "utkface", "benchmark"
    config.data.update(data_fields)
    return config


@pytest.mark.parametrize("fields, match", [
    ({"split_index": 5}, r"data.split_index=5: the benchmark protocol's split, 0–4"),
    ({"split_index": -1}, r"data.split_index=-1: the benchmark protocol's split"),
    ({"split_index": 2, "protocol": ""}, r"data.split_index=2: only the benchmark protocol has splits"),
    ({"split_index": 0, "fold_file": "/nowhere.csv"}, r"data.fold_file='/nowhere.csv': no such file"),
    ({"split_index": 0, "name": "synthetic"}, r"data.protocol='benchmark': needs a prepared dataset"),
])
def test_bad_protocol_fields_are_one_line(fields, match):
    with pytest.raises(ConfigError, match=match):
        validation.validate(validation_config(**fields))


def test_bad_fold_files_and_datasets_without_folds_are_one_line(utkface, tmp_path):
    mapping = folds.read(prepared.dataset_dir("utkface", data_dir=utkface) / prepared.FOLD_FILE)
    files = list(mapping)
    folds.write(tmp_path / "short.csv", files[1:], [mapping[f] for f in files[1:]])
    with pytest.raises(ConfigError, match=rf"gives no fold to 1 of the 40 examples .*\(e.g. {files[0]}\)"):
        prepared.load_benchmark("utkface", 0, data_dir=utkface, fold_file=tmp_path / "short.csv")
    folds.write(tmp_path / "extra.csv", [*files, "1_0_0_x.jpg"], [*mapping.values(), 3])
    with pytest.raises(ConfigError, match=r"names 1 file\(s\) utkface/1.0.0 does not hold \(e.g. 1_0_0_x.jpg\)"):
        prepared.load_benchmark("utkface", 0, data_dir=utkface, fold_file=tmp_path / "extra.csv")
    (tmp_path / "bad.csv").write_text("file,fold\na.jpg,12\n")
    with pytest.raises(ConfigError, match=r"bad.csv, line 2: expected FILE,FOLD with a fold 0–9"):
        folds.read(tmp_path / "bad.csv")
    fold_file = prepared.dataset_dir("utkface", data_dir=utkface) / prepared.FOLD_FILE
    saved = fold_file.read_bytes()
    fold_file.unlink()  # as a dataset prepared before folds existed
    try:
        with pytest.raises(ConfigError, match=r"prepared before folds existed: run `ssr-jax data prepare utkface "
                                              r"--data_dir .*` to add them"):
            data.load_splits(validation_config(split_index=0, data_dir=str(utkface)).data)
        prepared.prepare("utkface", data_dir=utkface, progress=False)  # adds them, from the stored examples
        assert fold_file.read_bytes() == saved
    finally:
        if not fold_file.exists():
            fold_file.write_bytes(saved)


# --- model selection on the validation part -------------------------------------------------------------------

# Scripted validation MAEs of a 4-epoch run: epoch 2 is the best, the last is not.
VAL_MAES = (5.0, 3.0, 4.0, 3.5)
SELECTED = 2


def scripted(run_epochs):
    """`train.run_epochs` with every member's validation MAE replaced by `VAL_MAES` (the rest as trained): a
    crafted run whose selected epoch is known."""
    def scripted_epochs(*args, **kwargs):
        for result in run_epochs(*args, **kwargs):
            result.metrics["val_mae"] = np.full_like(result.metrics["val_mae"], VAL_MAES[result.epoch - 1])
            yield result

    return scripted_epochs


def test_the_selected_epoch_is_the_first_with_the_lowest_finite_validation_mae():
    from ssr_jax.train import selected_row

    def history(*maes):
        return [{"epoch": epoch, "val_mae": mae} for epoch, mae in enumerate(maes, start=1)]

    assert selected_row(history(5.0, 3.0, 3.0, 4.0))["epoch"] == 2  # a tie keeps the earlier epoch
    assert selected_row(history(None, float("nan"), 7.0, None))["epoch"] == 3  # non-finite: never better
    assert selected_row(history(None, None))["epoch"] == 1  # nothing finite: the first epoch stands


def benchmark_config(data_dir):
    """Smoke SSR-Net on split 0 of the prepared `utkface` fixture (24 train / 8 val / 8 test), 4 epochs of one step."""
    config = validation_config(split_index=0, data_dir=str(data_dir))
    config.train.epochs = len(VAL_MAES)
    return config


# The killed run: SIGKILL right after epoch 3's checkpoint, with the same scripted validation.
KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_folds
from ssr_jax import checkpoint, train
train.run_epochs = test_folds.scripted(train.run_epochs)
save = checkpoint.save
def save_then_die(directory, step, state, **kwargs):
    save(directory, step, state, **kwargs)
    if step == 3:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save = save_then_die
train.train_and_evaluate(test_folds.benchmark_config({data_dir!r}), {workdir!r}, progress=False)
"""


def test_the_best_validation_epoch_is_reported_kept_through_a_sigkill_and_predicted(utkface, tmp_path, monkeypatch):
    """A run SIGKILLed after epoch 3 (its validation best at epoch 2) and resumed: the summary reports epoch 2's test
    metrics, and the run's weights are epoch 2's (the resumed process never held them: they came through the
    checkpoint)."""
    import json
    import pathlib
    import signal
    import subprocess
    import sys

    from ssr_jax import predict, train

    tests, run = str(pathlib.Path(__file__).parent), tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN.format(tests=tests, data_dir=str(utkface),
                                                                     workdir=str(run))],
                            cwd=pathlib.Path(tests).parent, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (run / "summary.json").exists() and not (run / "checkpoint").exists()

    monkeypatch.setattr(train, "run_epochs", scripted(train.run_epochs))
    config = benchmark_config(utkface)
    summary = train.train_and_evaluate(config, run, progress=False)
    assert summary["resumed_from_epoch"] == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["val_mae"] for row in rows] == list(VAL_MAES) and all("val_ca5" in row for row in rows)
    chosen = rows[SELECTED - 1]
    assert (summary["selected_epoch"], summary["val_mae"]) == (SELECTED, VAL_MAES[SELECTED - 1])
    assert (summary["num_val"], summary["epochs"]) == (8, 4)
    assert summary["mae"] == chosen["mae"] and summary["mae_by_age"] == chosen["mae_by_age"]
    assert summary["last_mae"] == rows[-1]["mae"] != chosen["mae"]
    # TensorBoard has the validation curve, each epoch once, and the selection among the final numbers.
    logged = scalars(run)
    assert [value for _, value in logged["epoch/val_mae"]] == list(VAL_MAES)
    assert [value for _, value in logged["final/selected_epoch"]] == [SELECTED]
    # The model directory holds the selected epoch's weights: evaluating them gives that epoch's test MAE.
    # (`ssr-jax evaluate RUN --data utkface --split test` reads the test part of the run's own split.)
    test = data.load_split("utkface", "test", data_config=config.data, data_dir=str(utkface))
    np.testing.assert_array_equal(test["image"], data.load_splits(config.data)[1]["image"])
    assert predict.evaluate_split(run, test)["mae"] == pytest.approx(chosen["mae"], rel=1e-4)


def test_the_utkface_config_and_the_splits_experiment():
    from ssr_jax import config_lib, sweep

    config = config_lib.load_config("configs/utkface.py:split=3")
    validation.validate(config)
    assert (config.data.name, config.data.protocol, config.data.split_index, config.train.epochs) == (
        "utkface", "benchmark", 3, 30)
    assert config_lib.load_config("configs/utkface.py").data.protocol == ""  # the reference's random 80/20
    runs = sweep.expand("experiments/utkface_splits.py:smoke")
    assert [run.config.data.split_index for run in runs] == [0, 1, 2, 3, 4]
    assert len(sweep.group_runs(runs)) == 5  # the splits' index sets differ: one program each
