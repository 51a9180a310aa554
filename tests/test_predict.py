"""Predicting image files: reading and resizing as the reference does, unreadable files, and the Keras ages."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ssr_jax.models import create_model, predict_age
from ssr_jax.data.images import load_image, resize_bilinear
from ssr_jax.predict import predict_files



def reference_ages(config, variables, bgr: np.ndarray) -> np.ndarray:
    heads = create_model(config.model).apply(variables, jnp.asarray(bgr, jnp.float32), train=False)
    return np.asarray(predict_age(config.model, heads, lambda_local=1.0, lambda_d=1.0))


def test_resize_matches_cv2_inter_linear_on_known_cases():
    # Shrinking by 2: output centres fall midway between input pixels, so each output is a 2×2 block mean
    # (Pillow's anti-aliased BILINEAR would blend a 4×4 neighbourhood instead).
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    block_mean = pixels.reshape(4, 2, 4, 2, 3).astype(float).mean(axis=(1, 3))
    np.testing.assert_array_equal(resize_bilinear(pixels, 4), np.floor(block_mean + 0.5).astype(np.uint8))
    # Enlarging 2 → 4: sample points −0.25 (clamped to the edge), 0.25, 0.75, 1.25 (clamped).
    row = np.array([[[0], [100]]], np.uint8).repeat(2, axis=0)
    np.testing.assert_array_equal(resize_bilinear(row, 4)[0, :, 0], [0, 25, 75, 100])


def test_load_image_orders_channels_and_resizes_only_when_needed(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png", 64), rgb[..., ::-1])
    np.testing.assert_array_equal(load_image(tmp_path / "a.png", 64, colour_order="RGB"), rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")  # greyscale files become three equal channels
    assert load_image(tmp_path / "grey.png", 64).shape == (64, 64, 3)
    assert load_image(tmp_path / "a.png", 32).shape == (32, 32, 3)


def test_predict_files_matches_the_model_and_reports_unreadable_files(tmp_path, random_model):
    directory, config, variables = random_model
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    paths = []
    for i, image in enumerate(rgb):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    # A 128×128 file made of 2×2 blocks shrinks back to exactly image 0.
    Image.fromarray(rgb[0].repeat(2, axis=0).repeat(2, axis=1)).save(tmp_path / "big.png")
    (tmp_path / "x.png").write_text("not an image")
    files = [paths[0], tmp_path / "x.png", paths[1], tmp_path / "missing.png", paths[2], tmp_path / "big.png"]

    results = predict_files(directory, files, batch_size=2)
    assert [r["file"] for r in results] == [str(f) for f in files]
    assert "error" in results[1] and "age" not in results[1]
    assert "error" in results[3] and "missing.png" in results[3]["error"]
    expected = reference_ages(config, variables, rgb[..., ::-1])
    ages = [results[i]["age"] for i in (0, 2, 4, 5)]
    assert np.all(np.isfinite(expected)) and np.ptp(expected) > 0  # a comparison that can fail
    np.testing.assert_allclose(ages, [*expected, expected[0]], rtol=1e-5, atol=1e-4)


def test_released_morph2_weights_give_the_keras_ages_on_the_golden_files(released_morph2):
    directory, golden = released_morph2
    if not (golden / "keras_ages.json").is_file():
        pytest.skip(f"golden outputs not available under {golden}")
    keras = json.loads((golden / "keras_ages.json").read_text())
    results = predict_files(directory, [golden / entry["file"] for entry in keras])
    np.testing.assert_allclose([r["age"] for r in results], [entry["age"] for entry in keras], atol=1e-3, rtol=0)


def test_exif_orientation_is_applied_as_cv2_imread_does(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(rgb).save(tmp_path / "rotated.png", exif=exif)
    np.testing.assert_array_equal(load_image(tmp_path / "rotated.png", 64, colour_order="RGB"), np.rot90(rgb, k=-1))


def test_resize_of_a_large_photo_equals_the_float_formula():
    """Gathering rows before the float conversion is an optimisation only: the values are the formula's."""
    pixels = np.random.default_rng(5).integers(0, 256, (300, 200, 3)).astype(np.uint8)
    out = resize_bilinear(pixels, 64)
    y, x = 17, 41  # one output pixel by hand: centre (y + ½)·300/64 − ½, (x + ½)·200/64 − ½
    cy, cx = (y + 0.5) * 300 / 64 - 0.5, (x + 0.5) * 200 / 64 - 0.5
    y0, x0, wy, wx = int(np.floor(cy)), int(np.floor(cx)), cy - np.floor(cy), cx - np.floor(cx)
    p = pixels.astype(np.float64)
    rows = p[y0] * (1 - wy) + p[y0 + 1] * wy  # rows first, then columns, as the implementation
    value = rows[x0] * (1 - wx) + rows[x0 + 1] * wx
    np.testing.assert_array_equal(out[y, x], np.floor(value + 0.5))
