"""The model-directory commands end to end: convert-keras, predict, evaluate and inspect, as a user runs them."""
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from ssr_jax import data, keras_import, saved_model
from ssr_jax.models import abstract_variables, count_parameters
from ssr_jax.predict import predict_files
from test_keras_import import keras_layout, write_h5

REPO = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three 64×64 RGB PNGs and one 128×128 (2×2 blocks of the first: it must shrink back to it exactly)."""
    folder = tmp_path_factory.mktemp("faces")
    rgb = np.random.default_rng(5).integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    for i, image in enumerate(rgb):
        Image.fromarray(image).save(folder / f"face_{i}.png")
    Image.fromarray(rgb[0].repeat(2, axis=0).repeat(2, axis=1)).save(folder / "face_big.png")
    (folder / "notes.txt").write_text("not an image: folders contribute only image files")
    return folder


def test_convert_keras_writes_a_model_directory_with_the_weights(tmp_path):
    layout = keras_layout(seed=4)
    h5 = write_h5(tmp_path / "weights.h5", layout)
    result = run_cli("convert-keras", h5, "--out", tmp_path / "model")
    assert "model" in result.stdout
    config, variables = saved_model.load(tmp_path / "model")
    assert tuple(config.model.stages) == (3, 3, 3) and config.model.p_activation == "relu"
    assert config.model.lambda_local == config.model.lambda_d == 1.0
    np.testing.assert_array_equal(conv2d_1_kernel(variables), layout["conv2d_1"]["kernel"])
    record = json.loads((tmp_path / "model" / "config.json").read_text())
    assert record["source"]["kind"] == "keras" and record["source"]["expects"]


def conv2d_1_kernel(variables):
    """The Flax kernel that the layer map sends Keras' conv2d_1 to."""
    module_path, _ = keras_import.layer_map()["conv2d_1"]
    node = variables["params"]
    for name in module_path:
        node = node[name]
    return node["kernel"]


def test_convert_keras_rejects_a_wrong_file_in_one_line(tmp_path):
    layout = keras_layout()
    layout["conv2d_3"]["kernel"] = layout["conv2d_3"]["kernel"][..., :8]
    result = run_cli("convert-keras", write_h5(tmp_path / "bad.h5", layout), "--out", tmp_path / "model",
                     check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: conv2d_3/kernel: expected shape")
    assert not (tmp_path / "model").exists()


def test_predict_prints_one_age_per_image_and_reports_unreadable_files(random_model, image_folder, tmp_path):
    directory, _, _ = random_model
    expected = {pathlib.Path(r["file"]).name: r["age"]
                for r in predict_files(directory, sorted(image_folder.glob("*.png")))}
    result = run_cli("predict", directory, image_folder, "--json")
    rows = json.loads(result.stdout)
    assert [pathlib.Path(row["file"]).name for row in rows] == sorted(expected)
    np.testing.assert_allclose([row["age"] for row in rows], [expected[name] for name in sorted(expected)],
                               rtol=1e-6)
    assert rows[0]["age"] == pytest.approx(expected["face_0.png"]) == pytest.approx(expected["face_big.png"])

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    result = run_cli("predict", directory, image_folder / "face_1.png", tmp_path / "broken.jpg", check=False)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert float(lines[0].split()[0]) == pytest.approx(expected["face_1.png"], abs=0.006)  # printed to 2 decimals
    assert "broken.jpg" in lines[1] and "error" in lines[1]
    assert "1 of 2 files could not be read" in result.stderr


def test_evaluate_scores_a_synthetic_split_and_writes_the_summary(random_model, tmp_path):
    directory, config, _ = random_model
    out = tmp_path / "eval.json"
    run_cli("evaluate", directory, "--data", "synthetic", "--split", "test", "--cap", 24, "--out", out)
    summary = json.loads(out.read_text())
    split = data.load_split("synthetic", "test", data_config=config.data, cap=24)
    images = [Image.fromarray(image[..., ::-1]) for image in split["image"]]  # back to RGB files, read as BGR
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i:02d}.png")
    ages = [row["age"] for row in predict_files(directory, sorted(tmp_path.glob("*.png")))]
    assert summary["num_test"] == 24
    assert summary["params"] == count_parameters(abstract_variables(config.model, 64))["total"]
    assert summary["mae"] == pytest.approx(np.mean(np.abs(np.array(ages) - split["age"])), rel=1e-5)
    assert summary["ca5"] == pytest.approx(np.mean(np.abs(np.array(ages) - split["age"]) <= 5), abs=1e-6)
    assert {"mae", "ca3", "ca5", "params", "trainable_params", "model_bytes", "wall_s", "status"} <= set(summary)


def test_evaluate_without_a_prepared_dataset_says_how_to_prepare_it(random_model, tmp_path):
    directory, _, _ = random_model
    result = run_cli("evaluate", directory, "--data", "morph2", "--data_dir", tmp_path / "empty", check=False)
    assert result.returncode == 2
    assert "ssr-jax data prepare morph2" in result.stderr


def test_inspect_on_an_image_folder_writes_table_json_and_png(random_model, image_folder, tmp_path):
    directory, config, _ = random_model
    result = run_cli("inspect", directory, image_folder, "--out", tmp_path / "inspect")
    report = json.loads((tmp_path / "inspect" / "inspect.json").read_text())
    assert report["num_inputs"] == 4 and len(report["stages"]) == len(config.model.stages)
    assert (tmp_path / "inspect" / "inspect.png").read_bytes()[:4] == b"\x89PNG"
    assert "stage 1 dropped" in result.stdout and "delta off" in result.stdout
    full = np.array(report["predictions"]["full"])
    ages = {pathlib.Path(r["file"]).name: r["age"]
            for r in predict_files(directory, sorted(image_folder.glob("*.png")))}
    np.testing.assert_allclose(full, [ages[name] for name in sorted(ages)], rtol=1e-5)


def test_model_commands_reject_a_directory_that_is_not_a_model(tmp_path):
    for command in (["predict", tmp_path, "x.png"], ["inspect", tmp_path, "x.png"],
                    ["evaluate", tmp_path, "--data", "synthetic"]):
        result = run_cli(*command, check=False)
        assert result.returncode == 2 and "is not a model directory" in result.stderr, command


def test_readme_route_convert_then_predict_matches_keras_on_the_golden_inputs(tmp_path):
    h5 = REFERENCE / "pretrained" / "morph2" / "ssrnet_3_3_3_64_1.0_1.0.h5"
    golden = REFERENCE / "golden" / "morph2"
    if not h5.is_file() or not (golden / "keras_ages.json").is_file():
        pytest.skip(f"reference weights or golden outputs not available under {REFERENCE}")
    run_cli("convert-keras", h5, "--out", tmp_path / "morph2")
    rows = json.loads(run_cli("predict", tmp_path / "morph2", golden, "--json").stdout)
    keras = {entry["file"]: entry["age"] for entry in json.loads((golden / "keras_ages.json").read_text())}
    assert sorted(pathlib.Path(row["file"]).name for row in rows) == sorted(keras)
    for row in rows:
        assert abs(row["age"] - keras[pathlib.Path(row["file"]).name]) <= 1e-3
