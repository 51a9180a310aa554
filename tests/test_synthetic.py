"""The synthetic face generator: format, determinism, age distributions, validation, and that age is learnable."""
import numpy as np
import pytest

from ssr_jax.data import synthetic


@pytest.fixture(scope="module")
def split():
    return synthetic.train_test_split(2000, 1000, seed=0)


def test_format_and_pixel_statistics():
    data = synthetic.generate(50, seed=0)
    assert set(data) == {"image", "age"}
    assert data["image"].shape == (50, 64, 64, 3) and data["image"].dtype == np.uint8
    assert data["age"].shape == (50,) and data["age"].dtype == np.int32
    assert data["age"].min() >= 0 and data["age"].max() <= 100
    pixels = data["image"].astype(np.float64)
    assert 50 < pixels.mean() < 200
    assert pixels.std() > 30
    # Every image has real content, not a flat fill.
    assert (pixels.reshape(50, -1).std(axis=1) > 10).all()


def test_other_image_size():
    data = synthetic.generate(3, seed=1, image_size=40)
    assert data["image"].shape == (3, 40, 40, 3)


def test_channels_are_bgr(split):
    # Skin is redder than it is blue in every palette entry, so in BGR order channel 2 beats channel 0 at the face
    # centre, while the random backgrounds are colour-neutral on average.
    centre = split[0]["image"][:500, 26:38, 26:38].astype(np.float64).mean(axis=(0, 1, 2))
    assert centre[2] > centre[0] + 20


def test_deterministic_per_seed():
    a, b = synthetic.generate(20, seed=7), synthetic.generate(20, seed=7)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["age"], b["age"])
    c = synthetic.generate(20, seed=8)
    assert not np.array_equal(a["image"], c["image"])


def test_prefix_property():
    # Crosses a chunk boundary so chunking cannot change what an example looks like.
    long, short = synthetic.generate(70, seed=3), synthetic.generate(45, seed=3)
    np.testing.assert_array_equal(long["image"][:45], short["image"])
    np.testing.assert_array_equal(long["age"][:45], short["age"])


def test_train_test_split_uses_disjoint_streams():
    train, test = synthetic.train_test_split(30, 20, seed=5, image_size=48, age_min=10, age_max=60)
    assert train["image"].shape == (30, 48, 48, 3) and test["image"].shape == (20, 48, 48, 3)
    assert not np.array_equal(train["image"][:20], test["image"])
    assert not np.array_equal(train["image"][:20], synthetic.generate(20, seed=5, image_size=48, age_min=10,
                                                                    age_max=60)["image"])
    for part in (train, test):
        assert part["age"].min() >= 10 and part["age"].max() <= 60


def test_uniform_ages_are_flat(split):
    counts = np.histogram(split[0]["age"], bins=10, range=(0, 101))[0]
    expected = len(split[0]["age"]) / 10
    assert (counts > 0.7 * expected).all() and (counts < 1.3 * expected).all()


def test_morph_ages_are_skewed_adult():
    ages = synthetic.generate(500, seed=0, age_distribution="morph")["age"]
    assert ages.min() >= 16 and ages.max() <= 77
    assert np.mean((ages >= 16) & (ages <= 50)) > 0.85
    assert 25 <= np.median(ages) <= 40
    clipped = synthetic.generate(50, seed=0, age_distribution="morph", age_min=30, age_max=40)["age"]
    assert clipped.min() >= 30 and clipped.max() <= 40


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_examples=0), "num_examples"),
    (dict(seed=-1), "seed"),
    (dict(image_size=16), "image_size"),
    (dict(age_distribution="imdb"), r"data\.age_distribution.*uniform.*morph"),
    (dict(age_min=50, age_max=40), "age_min"),
    (dict(age_max=120), "age_max"),
])
def test_invalid_arguments(kwargs, match):
    arguments = dict(num_examples=4, seed=0) | kwargs
    with pytest.raises(ValueError, match=match):
        synthetic.generate(arguments.pop("num_examples"), **arguments)


def _pooled_features(images):
    """8×8 average-pooled pixels (192 features) plus a bias column."""
    n, size = len(images), images.shape[1]
    pooled = images.astype(np.float64).reshape(n, 8, size // 8, 8, size // 8, 3).mean(axis=(2, 4)) / 255.0
    return np.concatenate([pooled.reshape(n, -1), np.ones((n, 1))], axis=1)


def test_age_is_learnable_but_not_trivially(split):
    # A linear model on coarse pixel averages must capture much of the age signal (the cues are real) without
    # getting it exactly (noise and per-person variation make some error irreducible).
    train, test = split
    x_train, x_test = _pooled_features(train["image"]), _pooled_features(test["image"])
    weights = np.linalg.solve(x_train.T @ x_train + 0.1 * np.eye(x_train.shape[1]), x_train.T @ train["age"])
    ridge_mae = np.abs(x_test @ weights - test["age"]).mean()
    mean_mae = np.abs(test["age"] - train["age"].mean()).mean()
    assert ridge_mae < 0.7 * mean_mae
    assert ridge_mae > 1.0
