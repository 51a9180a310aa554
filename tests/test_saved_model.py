"""A run's directory loads back as (config, variables) that predict exactly what the run evaluated."""
import jax
import jax.numpy as jnp
import numpy as np

from configs import ssrnet
from ssr_jax import saved_model
from ssr_jax.models import create_model, init_variables, predict_age


def test_save_and_load_round_trip(tmp_path):
    config = ssrnet.get_config("smoke")
    config.model.stages = (5, 2)
    model = create_model(config.model)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)), jnp.float32)
    # An "rbg" key: XLA:CPU compiles the default threefry sampler slowly (see test_baselines.initialised).
    variables = init_variables(model, images[:1], jax.random.key(7, impl="rbg"))
    saved_model.save(tmp_path / "model", config, variables, source={"kind": "test"})

    loaded_config, loaded = saved_model.load(tmp_path / "model")
    assert loaded_config.model.stages == (5, 2)  # tuples survive the JSON round trip
    assert jax.tree.structure(loaded) == jax.tree.structure(variables)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded)))
    # One compiled program for both sets of weights (eagerly, each of the model's ~240 operations compiles alone).
    predict = jax.jit(lambda v: predict_age(config.model, model.apply(v, images, train=False), lambda_local=1.0,
                                            lambda_d=1.0))
    np.testing.assert_array_equal(np.asarray(predict(variables)), np.asarray(predict(loaded)))


def test_missing_directory_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="not a model directory"):
        saved_model.load(tmp_path / "nothing")
