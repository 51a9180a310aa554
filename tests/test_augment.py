"""Augmentation: exact geometry of each part on tiny images, composition order, clamp-to-edge fill, key handling,
the reference's probabilities, and the config plumbing."""
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssr_jax.data import augment

H, W = 6, 5  # not square, so a row/column mix-up cannot pass


def _image(height=H, width=W):
    """uint8 [height, width, 3] with every value distinct (needs height·width·3 <= 256)."""
    return np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)


def _params(**overrides):
    """`sample_parameters`' dict with every part switched off and neutral values, then `overrides`."""
    params = {
        "flip": False, "rotate": False, "shear": False, "shift": False, "zoom": False,
        "angle": 0.0, "shear_angle": 0.0, "shift_fraction": (0.0, 0.0), "zoom_factors": (1.0, 1.0),
    }
    params.update(overrides)
    return {name: jnp.asarray(value) for name, value in params.items()}


def _apply(image, params):
    return np.asarray(augment.apply_affine(image, augment.transform_from_parameters(params, image.shape[:2])))


def test_identity_is_bit_exact():
    image = _image()
    np.testing.assert_array_equal(augment.apply_affine(image, jnp.eye(3)), image)
    np.testing.assert_array_equal(_apply(image, _params()), image)
    # Parameters drawn but every gate off: still the identity.
    np.testing.assert_array_equal(_apply(image, _params(angle=0.3, shear_angle=0.2, shift_fraction=(0.2, -0.2),
                                                        zoom_factors=(1.2, 0.8))), image)
    never = augment.AugmentConfig(flip=False, probability=0.0)
    np.testing.assert_array_equal(augment.augment_image(jax.random.key(0), image, never), image)


def test_flip_is_column_reversal():
    image = _image()
    np.testing.assert_array_equal(_apply(image, _params(flip=True)), image[:, ::-1])


@pytest.mark.parametrize("size", [5, 6])  # odd and even: the centre is a pixel, or between four pixels
def test_rotation_by_90_degrees_is_rot90_clockwise(size):
    image = _image(size, size)
    matrix = augment.about_center(augment.rotation_matrix(math.pi / 2), (size, size))
    out = np.asarray(augment.apply_affine(image, matrix))
    np.testing.assert_array_equal(out, np.rot90(image, k=-1))
    # The top-left pixel ends top-right: clockwise on screen for θ > 0.
    np.testing.assert_array_equal(out[0, size - 1], image[0, 0])
    np.testing.assert_array_equal(_apply(image, _params(rotate=True, angle=math.pi / 2)), out)


def test_integer_shift_replicates_the_edge():
    image = _image()
    # Sample one row down and two columns left: the picture moves up 1 and right 2, edges replicated.
    out = _apply(image, _params(shift=True, shift_fraction=(1 / H, -2 / W)))
    expected = np.pad(image, ((0, 1), (2, 0), (0, 0)), mode="edge")[1:, :W]
    np.testing.assert_array_equal(out, expected)


def test_clamp_to_edge_fill():
    image = _image()
    # Shifted wholly off the image: every pixel samples beyond the bottom-right corner.
    far = augment.apply_affine(image, augment.translation_matrix((100.0, 100.0)))
    np.testing.assert_array_equal(far, np.broadcast_to(image[-1, -1], image.shape))
    # Zoom ×2 about the centre (2, 2) of a 5×5 image: source = 2·p − 2, clamped to [0, 4].
    square = _image(5, 5)
    out = _apply(square, _params(zoom=True, zoom_factors=(2.0, 2.0)))
    index = np.clip(2 * np.arange(5) - 2, 0, 4)
    np.testing.assert_array_equal(out, square[index][:, index])


def test_parts_compose_in_reference_order():
    """One resample equals the reference's sequential flip → rotation → shift where each step is exact."""
    image = _image(5, 5)
    size = image.shape[:2]
    flipped = augment.apply_affine(image, augment.about_center(augment.flip_matrix(), size))
    rotated = augment.apply_affine(flipped, augment.about_center(augment.rotation_matrix(math.pi / 2), size))
    sequential = augment.apply_affine(rotated, augment.translation_matrix((1.0, -2.0)))
    at_once = _apply(image, _params(flip=True, rotate=True, angle=math.pi / 2, shift=True,
                                    shift_fraction=(1 / 5, -2 / 5)))
    np.testing.assert_array_equal(at_once, sequential)
    # The opposite order gives a different picture, so the check above can fail.
    shifted_first = augment.apply_affine(augment.apply_affine(image, augment.translation_matrix((1.0, -2.0))),
                                         augment.about_center(augment.rotation_matrix(math.pi / 2), size))
    assert not np.array_equal(augment.apply_affine(shifted_first, augment.about_center(augment.flip_matrix(), size)),
                              sequential)


def test_keras_shear_matrix():
    s = 0.2
    np.testing.assert_allclose(augment.shear_matrix(s), [[1, -math.sin(s), 0], [0, math.cos(s), 0], [0, 0, 1]],
                               rtol=1e-6)


def test_keys_dtype_shape_jit_and_vmap():
    config = augment.AugmentConfig(probability=1.0)
    image = _image()
    batch = np.stack([image] * 6)
    key = jax.random.key(3)

    out = augment.augment_batch(key, batch, config)
    assert out.shape == batch.shape and out.dtype == np.uint8
    # Per-example keys split from `key`, as documented.
    keys = jax.random.split(key, 6)
    per_image = np.stack([augment.augment_image(k, image, config) for k in keys])
    np.testing.assert_array_equal(out, per_image)
    # Same key, same result; different keys, different results.
    np.testing.assert_array_equal(augment.augment_batch(key, batch, config), out)
    assert len({np.asarray(o).tobytes() for o in out}) > 1
    # Nearest neighbour: every output pixel is one of the input's pixels.
    pixels = {tuple(p) for p in image.reshape(-1, 3)}
    assert {tuple(p) for p in np.asarray(out).reshape(-1, 3)} <= pixels
    # Plain jax.vmap and jax.jit around the per-example function.
    vmapped = jax.jit(jax.vmap(functools.partial(augment.augment_image, config=config)))(keys, batch)
    np.testing.assert_array_equal(vmapped, out)
    assert jax.jit(augment.apply_affine)(image, jnp.eye(3)).dtype == np.uint8


def test_probabilities_and_ranges():
    config = augment.AugmentConfig()
    n = 4000
    params = jax.vmap(lambda k: augment.sample_parameters(k, config))(jax.random.split(jax.random.key(0), n))
    params = jax.tree.map(np.asarray, params)
    # Binomial standard errors: 0.008 (p = 0.5) and 0.007 (p = 0.25); tolerances are > 4 of them.
    assert abs(params["flip"].mean() - 0.5) < 0.035
    for part in ("rotate", "shear", "shift", "zoom"):
        assert abs(params[part].mean() - 0.25) < 0.03, part
    # The gates are independent: e.g. rotation and zoom together ≈ 1/16.
    assert abs((params["rotate"] & params["zoom"]).mean() - 1 / 16) < 0.02
    for name, low, high in (("angle", -math.radians(20), math.radians(20)), ("shear_angle", -0.2, 0.2),
                            ("shift_fraction", -0.2, 0.2), ("zoom_factors", 0.8, 1.2)):
        values = params[name]
        assert values.min() >= low and values.max() <= high, name
        assert values.min() < low + 0.05 * (high - low) and values.max() > high - 0.05 * (high - low), name
    # Keras draws the two zoom factors independently.
    assert abs(np.corrcoef(params["zoom_factors"].T)[0, 1]) < 0.1

    no_flip = augment.AugmentConfig(flip=False)
    flips = jax.vmap(lambda k: augment.sample_parameters(k, no_flip)["flip"])(jax.random.split(jax.random.key(1), 200))
    assert not np.asarray(flips).any()


def test_from_config_and_validation():
    section = ml_collections.ConfigDict(dict(enabled=True, flip=True, rotation_deg=10.0, shear=0.1, shift=0.05,
                                             zoom=[0.9, 1.1], probability=0.5))
    config = augment.from_config(section)
    assert config == augment.AugmentConfig(rotation_deg=10.0, shear=0.1, shift=0.05, zoom=(0.9, 1.1),
                                           probability=0.5)
    hash(config)  # static argument of the jitted functions
    section.enabled = False
    assert augment.from_config(section) is None
    with pytest.raises(ValueError, match="zoom"):
        augment.AugmentConfig(zoom=(1.2, 0.8))
    with pytest.raises(ValueError, match="probability"):
        augment.AugmentConfig(probability=1.5)
    with pytest.raises(ValueError, match="shift"):
        augment.AugmentConfig(shift=-0.1)
