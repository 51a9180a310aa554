"""Exact metrics over a whole split with padding, from a fake model whose predictions are known."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssr_jax.evaluate import AGE_GROUPS, by_age, evaluate_batches, pad_to_batches, predict_the_mean_mae


def test_padded_batches_give_exact_split_metrics():
    # The "model" reads its prediction from pixel (0, 0, 0), so the errors are known exactly.
    ages = np.array([10, 20, 30, 40, 50, 60, 70], np.int32)
    predictions = np.array([10, 23, 35, 46, 50, 57, 0], np.uint8)  # errors 0, 3, 5, 6, 0, 3, 70
    images = np.zeros((7, 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = predictions
    batches = pad_to_batches(images, ages, batch_size=3)  # 3 batches, 2 padded slots
    assert batches["image"].shape == (3, 3, 4, 4, 3) and int(batches["mask"].sum()) == 7

    metrics = jax.jit(lambda b: evaluate_batches(lambda x: x[:, 0, 0, 0].astype(jnp.float32), b))(batches)
    assert float(metrics["count"]) == 7
    assert float(metrics["mae"]) == pytest.approx((0 + 3 + 5 + 6 + 0 + 3 + 70) / 7)
    # ≤ as in the reference's CA script: an error of exactly 3 (or 5) counts.
    assert float(metrics["ca3"]) == pytest.approx(4 / 7)
    assert float(metrics["ca5"]) == pytest.approx(5 / 7)


def test_mae_by_decade_of_true_age_is_exact_over_the_padded_split():
    ages = np.array([0, 9, 10, 35, 39, 90, 100, 100], np.int32)
    predictions = np.array([2, 9, 20, 30, 39, 80, 100, 97], np.uint8)  # errors 2, 0, 10, 5, 0, 10, 0, 3
    images = np.zeros((8, 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = predictions
    metrics = jax.jit(lambda b: evaluate_batches(lambda x: x[:, 0, 0, 0].astype(jnp.float32), b))(
        pad_to_batches(images, ages, batch_size=3))  # one padded slot, of age 0
    assert AGE_GROUPS == ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90-100")
    assert by_age(metrics["age_abs_error"], metrics["age_count"]) == {
        "mae_by_age": {"0-9": 1.0, "10-19": 10.0, "20-29": None, "30-39": 2.5, "40-49": None, "50-59": None,
                       "60-69": None, "70-79": None, "80-89": None, "90-100": 13 / 3},
        "count_by_age": {"0-9": 2, "10-19": 1, "20-29": 0, "30-39": 2, "40-49": 0, "50-59": 0, "60-69": 0,
                         "70-79": 0, "80-89": 0, "90-100": 3}}


def test_predict_the_mean():
    assert predict_the_mean_mae(np.array([0, 10]), np.array([5, 15])) == pytest.approx(5.0)
