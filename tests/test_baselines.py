"""The paper's compact baselines (MobileNet α 0.25/0.5, DenseNet depth 13/19) against the Keras reference.

Totals are facts (ssrnet-facts.md §3.4, read off the released .h5 files) and are asserted without the reference
folder; the layer-by-layer comparison with the saved Keras architectures needs /work/shared/reference and is
skipped without it.
"""
import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssr_jax.models import count_parameters, init_variables
from ssr_jax.models.baselines_keras import first_difference, flax_layers, read_keras_layers
from ssr_jax.models.densenet import WEIGHT_DECAY, DenseNet, regularised_convs, weight_decay_penalty
from ssr_jax.models.mobilenet import MobileNet
from ssr_jax.xla_options import COMPILE_SPEED_OPTIONS

BASELINES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference" / "baselines"

# netType → (model, trainable + BatchNorm moving statistics of the released Keras model).
REFERENCE_TOTALS = {
    "mobilenet_0.25": (MobileNet(alpha=0.25), 226_309),
    "mobilenet_0.5": (MobileNet(alpha=0.5), 842_421),
    "densenet_13": (DenseNet(depth=13), 108_377),
    "densenet_19": (DenseNet(depth=19), 242_009),
}
SAVED_ARCHITECTURES = {"mobilenet_0.25": "mobilenet_reg_0.25_64.json", "densenet_19": "densenet_reg_19_64.json"}


def abstract_variables(model, image_size=64):
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    return jax.eval_shape(lambda key, x: model.init(key, x, train=False), jax.random.key(0), images)


def faces(batch, seed=0):
    """Raw 0–255 pixel values, the input range of the reference."""
    return jax.random.uniform(jax.random.key(seed), (batch, 64, 64, 3), maxval=255.0)


@pytest.fixture(scope="module")
def initialised():
    """Real initial variables of the two models with a saved architecture (`init_variables`: one program each,
    compiled for compile speed as the trainer's own initialisation is).

    With an "rbg" key: at XLA's default optimisation XLA:CPU compiles the default (partitionable threefry) sampler
    slowly for rank-4 kernel shapes (≈2 s per shape measured here, ≈40 s for DenseNet-19's init against ≈7 s); the
    initialisers' laws do not depend on the generator.
    """
    images = jnp.zeros((1, 64, 64, 3))
    return {
        name: init_variables(REFERENCE_TOTALS[name][0], images, jax.random.key(1, impl="rbg"))
        for name in SAVED_ARCHITECTURES
    }


@pytest.mark.parametrize("name", REFERENCE_TOTALS)
def test_parameter_totals_match_the_reference(name):
    model, total = REFERENCE_TOTALS[name]
    assert count_parameters(abstract_variables(model))["total"] == total


@pytest.mark.parametrize("name", SAVED_ARCHITECTURES)
def test_every_layer_matches_the_saved_keras_architecture(name):
    path = BASELINES / SAVED_ARCHITECTURES[name]
    if not path.exists():
        pytest.skip(f"{path} not available")
    model, total = REFERENCE_TOTALS[name]
    keras = read_keras_layers(path)
    assert first_difference(keras, flax_layers(model)) is None
    # Keras's split: trainable (kernels, biases, γ, β) ↔ params; non-trainable (moving mean/variance) ↔ batch_stats.
    counts = count_parameters(abstract_variables(model))
    assert counts["trainable"] == sum(layer.trainable for layer in keras)
    assert counts["batch_stats"] == sum(layer.non_trainable for layer in keras)
    assert counts["total"] == total


def test_a_differing_layer_is_named():
    path = BASELINES / SAVED_ARCHITECTURES["densenet_19"]
    if not path.exists():
        pytest.skip(f"{path} not available")
    message = first_difference(read_keras_layers(path), flax_layers(DenseNet(depth=19, bn_epsilon=1e-3)))
    assert message.startswith("layer 1: Keras batch_normalization_1 ")
    assert "densenet/block1_layer1_bn" in message


def test_keras_reader_on_a_small_architecture(tmp_path):
    def layer(class_name, name, inbound, **config):
        return {"class_name": class_name, "name": name, "config": {"name": name, **config},
                "inbound_nodes": [[[inbound, 0, 0, {}]]] if inbound else []}

    layers = [
        layer("InputLayer", "input_1", None, batch_input_shape=[None, 8, 8, 3]),
        layer("Conv2D", "conv", "input_1", filters=4, kernel_size=[3, 3], strides=[2, 2], padding="same",
              use_bias=True, kernel_regularizer={"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.5}}),
        layer("BatchNormalization", "bn", "conv", epsilon=1e-3, momentum=0.99, center=True, scale=True),
        layer("Activation", "relu", "bn", activation="relu"),
        layer("Flatten", "flatten", "relu"),
        layer("Dropout", "dropout", "flatten", rate=0.2),
        layer("Dense", "dense", "dropout", units=2, use_bias=True),
    ]
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"class_name": "Model", "config": {"layers": layers}}))
    conv, bn, dropout, dense = read_keras_layers(path)
    assert (conv.trainable, conv.output_shape, conv.l2) == (3 * 3 * 3 * 4 + 4, (4, 4, 4), 0.5)
    assert (bn.trainable, bn.non_trainable, bn.config) == (8, 8, (1e-3, 0.99))
    assert (dropout.config, dropout.output_shape) == ((0.2,), (64,))
    assert (dense.trainable, dense.output_shape) == (64 * 2 + 2, (2,))

    # A preprocessing layer the reader does not know is refused, not skipped.
    layers.insert(1, layer("Lambda", "preprocess", "input_1"))
    layers[2]["inbound_nodes"] = [[["preprocess", 0, 0, {}]]]
    path.write_text(json.dumps({"class_name": "Model", "config": {"layers": layers}}))
    with pytest.raises(ValueError, match="Lambda"):
        read_keras_layers(path)


def test_keras_regularises_exactly_the_kernels_of_the_weight_decay_penalty():
    path = BASELINES / SAVED_ARCHITECTURES["densenet_19"]
    if not path.exists():
        pytest.skip(f"{path} not available")
    model = DenseNet(depth=19)
    regularised = [flax.name for keras, flax in zip(read_keras_layers(path), flax_layers(model)) if keras.l2]
    assert [layer.l2 for layer in read_keras_layers(path) if layer.l2] == pytest.approx([WEIGHT_DECAY] * 3)
    assert [f"densenet/{name}" for name in regularised_convs(abstract_variables(model)["params"])] == regularised


def test_weight_decay_penalty_counts_only_the_regularised_kernels(initialised):
    params = initialised["densenet_19"]["params"]
    penalty = float(weight_decay_penalty(params))
    assert penalty > 0

    def bumped(name):  # every weight of one conv's kernel + 1
        body = params["densenet"]
        return {**params, "densenet": {**body, name: {"kernel": body[name]["kernel"] + 1.0}}}

    # Σ 1e-4·(w + 1)² − Σ 1e-4·w² over the transition conv's kernel (84 → 84, 1×1).
    kernel = params["densenet"]["transition1_conv"]["kernel"]
    expected = WEIGHT_DECAY * float(jnp.sum(2 * kernel + 1))
    assert float(weight_decay_penalty(bumped("transition1_conv"))) - penalty == pytest.approx(expected, rel=1e-4)
    assert float(weight_decay_penalty(bumped("block1_layer1_conv"))) == pytest.approx(penalty)


def test_keras_2_0_initialisers(initialised):
    densenet = initialised["densenet_19"]["params"]
    # he_normal in Keras 2.0.6: normal σ = √(2/fan_in) truncated at ±2σ (std ≈ 0.88σ after truncation).
    kernel = np.asarray(densenet["densenet"]["transition2_conv"]["kernel"])  # 1×1, 144 → 144
    sigma = np.sqrt(2.0 / 144)
    assert np.abs(kernel).max() <= 2 * sigma
    assert kernel.std() == pytest.approx(0.8796 * sigma, rel=0.05)
    # Glorot uniform elsewhere (MobileNet convs, all Dense kernels); the depthwise fan is symmetric, so Flax's
    # [3, 3, 1, C] kernel gets the same limit as Keras's [3, 3, C, 1].
    mobilenet = initialised["mobilenet_0.25"]["params"]
    for kernel, fans in [
        (mobilenet["mobilenet"]["conv_pw_13"]["kernel"], 256 + 256),  # 1×1, int(1024·0.25) channels
        (mobilenet["mobilenet"]["conv_dw_13"]["kernel"], 9 + 9 * 256),
        (mobilenet["head"]["feat_a"]["kernel"], 80 + 32),
        (densenet["hidden"]["kernel"], 204 + 128),
    ]:
        limit = np.sqrt(6.0 / fans)
        assert 0.9 * limit < float(jnp.abs(kernel).max()) <= limit
    assert float(jnp.abs(densenet["hidden"]["bias"]).max()) == 0.0


@pytest.mark.parametrize("name", SAVED_ARCHITECTURES)
def test_eval_gives_one_age_per_image_deterministically_and_jit_matches_eager(name, initialised):
    model, variables = REFERENCE_TOTALS[name][0], initialised[name]
    images = faces(2)
    evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))  # no 'dropout' rng, batch_stats immutable
    jitted = evaluate(variables, images)
    assert set(jitted) == {"p"}  # the regression head's one linear output, one stage
    assert jitted["p"][0].shape == (2, 1) and jitted["p"][0].dtype == jnp.float32
    np.testing.assert_array_equal(evaluate(variables, images)["p"][0], jitted["p"][0])
    np.testing.assert_allclose(jitted["p"][0], model.apply(variables, images, train=False)["p"][0], rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("name", SAVED_ARCHITECTURES)
def test_training_steps_use_dropout_and_batch_statistics_and_reduce_the_mae(name, initialised):
    """One compiled Adam step (the reference optimiser; lr raised for a short test) serves all three checks."""
    model, variables = REFERENCE_TOTALS[name][0], initialised[name]
    images, ages = faces(4), jnp.array([18.0, 30.0, 45.0, 60.0])
    optimizer = optax.adam(1e-2)
    regulariser = weight_decay_penalty if isinstance(model, DenseNet) else (lambda params: 0.0)

    def loss_fn(params, batch_stats, key):
        out, updates = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                                   rngs={"dropout": key}, mutable=["batch_stats"])
        return jnp.mean(jnp.abs(out["p"][0][:, 0] - ages)) + regulariser(params), updates["batch_stats"]

    def train_step(params, batch_stats, opt_state, key):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state, key = optimizer.init(params), jax.random.key(2)
    # Compiled for compile speed (COMPILE_SPEED_OPTIONS): eleven small steps run in a fraction of the compile
    # time.
    step = jax.jit(train_step).lower(params, batch_stats, opt_state, key).compile(COMPILE_SPEED_OPTIONS)
    loss_with = lambda key: float(step(params, batch_stats, opt_state, key)[3])  # noqa: E731
    assert loss_with(key) == loss_with(key)
    assert loss_with(key) != loss_with(jax.random.key(3))  # the head's dropout follows the 'dropout' rng

    losses = []  # each step's loss is the one before its update, all with the same dropout mask
    for _ in range(8):
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, key)
        losses.append(float(loss))
    assert losses[-1] < 0.75 * losses[0]  # measured: ≈38 → ≈9–15 years
    # Train mode normalises with the batch's statistics and moves the moving averages towards them.
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(variables["batch_stats"]), jax.tree.leaves(batch_stats))]
    assert all(moved)


def test_densenet_depth_must_be_3n_plus_4():
    with pytest.raises(ValueError, match="3·n \\+ 4"):
        abstract_variables(DenseNet(depth=14))


def test_same_padding_pads_like_tensorflow():
    """Stride-2 'SAME' pads the extra row/column at the bottom/right, as TensorFlow's 'same' does (§3.4's Keras)."""
    conv = nn.Conv(1, (3, 3), strides=2, padding="SAME", use_bias=False)
    images = jax.random.normal(jax.random.key(0), (1, 8, 8, 1))
    variables = conv.init(jax.random.key(1), images)
    explicit = nn.Conv(1, (3, 3), strides=2, padding=((0, 1), (0, 1)), use_bias=False)
    np.testing.assert_allclose(conv.apply(variables, images), explicit.apply(variables, images), rtol=1e-6)
