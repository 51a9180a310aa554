"""SSR-Net's structure: the reference's parameter counts, the tap rule for any K, and the switches."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import NEEDS_ONEDNN
from configs import dex, regression, ssrnet
from ssr_jax.models import abstract_variables, count_parameters, create_model, init_variables, predict_age
from ssr_jax.models.ssrnet import BLOCK_POOL_FOR_TAP, TAPS_FOR_NUM_STAGES
from ssr_jax.xla_options import run_once


def model_config(stages=(3, 3, 3), **changes):
    config = ssrnet.get_config().model
    config.stages = stages
    config.update(changes)
    return config


# Totals from ssrnet-facts.md §1.4 (reference block structure; the (3,3,3) split is read off the released .h5).
@pytest.mark.parametrize("stages, total", [
    ((3, 3, 3), 40_915), ((5, 5, 5), 42_599), ((2, 2, 2), 40_127), ((4, 4, 4), 41_739), ((27,), 50_653),
    ((101,), 131_609),
])
def test_parameter_totals_match_the_reference(stages, total):
    counts = count_parameters(abstract_variables(model_config(stages), 64))
    assert counts["total"] == total
    assert counts["batch_stats"] == 384
    assert counts["bytes"] == 4 * total


def test_reference_split_of_trainable_and_statistics():
    counts = count_parameters(abstract_variables(model_config(), 64))
    assert (counts["trainable"], counts["batch_stats"]) == (40_531, 384)


def test_switching_off_heads_removes_exactly_their_parameters():
    full = count_parameters(abstract_variables(model_config(), 64))["total"]
    no_delta = count_parameters(abstract_variables(model_config(with_delta=False), 64))["total"]
    no_eta = count_parameters(abstract_variables(model_config(with_eta=False), 64))["total"]
    # Δ: Dense(160→1) + 2 × Dense(90→1); η: Dense(6→3) per stage.
    assert full - no_delta == 161 + 91 + 91
    assert full - no_eta == 3 * 21


def test_dex_is_one_softmax_stage_without_dynamic_range():
    config = dex.get_config().model
    variables = abstract_variables(config, 64)
    stage = variables["params"]["stage1"]
    assert "delta" not in stage and "eta" not in stage
    assert stage["p"]["kernel"].shape == (202, 101)
    assert "stage2" not in variables["params"]


def test_regression_head_is_dex_with_one_linear_output_scaled_by_v():
    config = regression.get_config().model
    variables = abstract_variables(config, 64)
    stage = variables["params"]["stage1"]
    assert "delta" not in stage and "eta" not in stage and stage["p"]["kernel"].shape == (202, 1)
    # DEX's p layer Dense(202→101) becomes Dense(202→1): 110,945 − 202·101 − 101 + 202 + 1.
    assert count_parameters(variables)["total"] == 110_945 - 202 * 101 - 101 + 203 == 90_645
    heads = {"p": (jnp.array([[-0.25], [0.5]]),), "eta": (jnp.zeros((2, 1)),), "delta": (jnp.zeros(2),)}
    np.testing.assert_allclose(predict_age(config, heads, lambda_local=0.0, lambda_d=0.0), [-25.25, 50.5])
    zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), variables)
    zeros["params"]["stage1"]["p"]["bias"] = np.array([-0.5], np.float32)
    out = create_model(config).apply(zeros, jnp.full((2, 64, 64, 3), 128.0), train=False)
    np.testing.assert_array_equal(out["p"][0], [[-0.5], [-0.5]])  # linear: a ReLU would give 0, a softmax 1


@pytest.mark.parametrize("num_stages", [1, 2, 3, 4])
def test_tap_rule_and_head_shapes(num_stages):
    stages = (3,) * num_stages
    config = model_config(stages)
    variables = abstract_variables(config, 64)
    # Fused vector length: 160 for the 4×4 conv4 tap, 90 for pooled 3×3 taps.
    for k, tap in enumerate(TAPS_FOR_NUM_STAGES[num_stages], start=1):
        fused = variables["params"][f"stage{k}"]["s_mix"]["kernel"].shape[0]
        assert fused == (160 if BLOCK_POOL_FOR_TAP[tap] == 1 else 90)
    model = create_model(config)
    images = jnp.zeros((2, 64, 64, 3))
    heads = jax.eval_shape(lambda v: model.apply(v, images, train=False), variables)
    assert [p.shape for p in heads["p"]] == [(2, 3)] * num_stages
    assert [d.shape for d in heads["delta"]] == [(2,)] * num_stages


def test_keras_batchnorm_and_initialisers():
    model = create_model(model_config())
    assert (model.bn_momentum, model.bn_epsilon) == (0.99, 1e-3)
    # An "rbg" key in these tests: XLA:CPU compiles the default threefry sampler slowly for rank-4 kernels (see
    # test_baselines.initialised); the initialisers' laws do not depend on the generator.
    variables = init_variables(model, jnp.zeros((1, 64, 64, 3)), jax.random.key(0, impl="rbg"))
    conv = variables["params"]["x_stream"]["conv2"]
    assert float(jnp.abs(conv["bias"]).max()) == 0.0
    # Glorot uniform: |w| ≤ sqrt(6 / (fan_in + fan_out)) with fan_in = 3·3·32, fan_out = 3·3·32.
    limit = np.sqrt(6.0 / (288 + 288))
    assert float(jnp.abs(conv["kernel"]).max()) <= limit
    assert float(jnp.abs(conv["kernel"]).max()) > 0.9 * limit


@pytest.mark.parametrize("conv", ["patches", "mixed", pytest.param("onednn", marks=NEEDS_ONEDNN), "auto"])
def test_patch_convolution_matches_xla_convolution(conv):
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3)), jnp.float32)
    fast, reference = create_model(model_config(conv=conv)), create_model(model_config(conv="xla"))
    variables = init_variables(fast, images[:1], jax.random.key(1, impl="rbg"))
    # Compare the heads: at random initialisation 1 + Δ can be near 0, which makes ages themselves ill-conditioned.
    heads = [jax.tree.leaves(run_once(lambda v, x, m=m: m.apply(v, x, train=False), variables, images))
             for m in (fast, reference)]
    for got, want in zip(*heads):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("conv", ["patches", "mixed", pytest.param("onednn", marks=NEEDS_ONEDNN), "auto"])
def test_every_convolution_choice_trains_like_lax_conv(conv):
    """The training pass (batch statistics, dropout) and its gradients with respect to every parameter, the
    computation an epoch repeats, against lax.conv + flax pooling."""
    images = jnp.asarray(np.random.default_rng(5).integers(0, 256, (4, 64, 64, 3)), jnp.float32)
    models = {name: create_model(model_config(conv=name)) for name in (conv, "xla")}
    variables = init_variables(models["xla"], images[:1], jax.random.key(6, impl="rbg"))

    def loss_and_grads(model):
        def loss(params):
            heads, _ = model.apply({**variables, "params": params}, images, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": jax.random.key(7)})
            return sum(jnp.sum(leaf * (index + 1)) for index, leaf in enumerate(jax.tree.leaves(heads)))
        return run_once(jax.value_and_grad(loss), variables["params"])

    (got_loss, got), (want_loss, want) = loss_and_grads(models[conv]), loss_and_grads(models["xla"])
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    largest = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(want))
    for path, leaf in jax.tree_util.tree_leaves_with_path(want):
        other = got
        for key in path:
            other = other[key.key]
        # Conv biases in front of batch-statistics BatchNorm have a true gradient of 0: rounding noise only.
        scale = max(float(jnp.max(jnp.abs(leaf))), 1e-3 * largest)
        np.testing.assert_allclose(other, leaf, rtol=0, atol=2e-4 * scale, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("padding", ["VALID", "SAME", ((1, 0), (2, 1))])
def test_mixed_conv_values_and_gradients_equal_lax_conv(padding):
    """The hand-written backward (kernel gradient as a patch dot, input gradient as a transposed lax.conv) against
    JAX's own gradients of lax.conv, with uneven explicit padding."""
    from ssr_jax.models.conv import mixed_conv

    rng = np.random.default_rng(8)
    lhs = jnp.asarray(rng.standard_normal((2, 9, 8, 3)), jnp.float32)
    rhs = jnp.asarray(rng.standard_normal((3, 3, 3, 5)), jnp.float32)
    numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    weights = None

    def loss(conv):
        def value(lhs, rhs):
            out = conv(lhs, rhs, (1, 1), padding, dimension_numbers=numbers, precision=jax.lax.Precision.HIGHEST)
            return jnp.sum(jnp.sin(out) * weights)
        return jax.jit(jax.value_and_grad(value, argnums=(0, 1)))

    out_shape = jax.eval_shape(lambda: jax.lax.conv_general_dilated(lhs, rhs, (1, 1), padding,
                                                                    dimension_numbers=numbers)).shape
    weights = jnp.asarray(rng.standard_normal(out_shape), jnp.float32)
    (got, got_grads), (want, want_grads) = loss(mixed_conv)(lhs, rhs), loss(jax.lax.conv_general_dilated)(lhs, rhs)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for got_grad, want_grad in zip(got_grads, want_grads):
        assert got_grad.shape == want_grad.shape
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-4)


def test_mixed_conv_hands_other_convolutions_to_patches(monkeypatch):
    """Strided, depthwise and 1×1 convolutions keep the patches path, whose gradients are plain dots."""
    from ssr_jax.models import conv

    calls = []
    monkeypatch.setattr(conv, "patches_conv", lambda *args, **kwargs: calls.append(args[2]) or "patches")
    lhs = jnp.zeros((1, 8, 8, 4))
    assert conv.mixed_conv(lhs, jnp.zeros((3, 3, 4, 4)), (2, 2), "SAME") == "patches"
    assert conv.mixed_conv(lhs, jnp.zeros((3, 3, 1, 4)), (1, 1), "SAME", feature_group_count=4) == "patches"
    assert conv.mixed_conv(lhs, jnp.zeros((1, 1, 4, 4)), (1, 1), "VALID") == "patches"
    assert calls == [(2, 2), (1, 1), (1, 1)]
    assert conv.mixed_conv(lhs, jnp.zeros((3, 3, 4, 2)), (1, 1), "VALID").shape == (1, 6, 6, 2)


@pytest.mark.parametrize("backend, train, want", [
    pytest.param("cpu", True, "onednn", marks=NEEDS_ONEDNN), pytest.param("cpu", False, "onednn", marks=NEEDS_ONEDNN),
    ("gpu", True, "xla"), ("gpu", False, "xla"), ("tpu", True, "xla"),
])
def test_auto_convolution_resolves_per_backend_and_pass(backend, train, want):
    from ssr_jax.models.conv import CONV_CHOICES, resolve

    assert resolve("auto", train=train, backend=backend) == want
    for choice in CONV_CHOICES[1:]:  # a named implementation is used as it is, everywhere
        assert resolve(choice, train=train, backend=backend) == choice
    assert resolve("auto", train=train) == resolve("auto", train=train, backend=jax.default_backend())
    # A vmapped group: per-member kernels would make lax.conv a grouped convolution.
    assert resolve("auto", train=train, backend=backend, vmapped=True) == "patches"
    assert resolve("xla", train=train, backend=backend, vmapped=True) == "xla"


@pytest.mark.parametrize("kernel, strides, padding, depthwise", [
    ((3, 3), (1, 1), "VALID", False), ((3, 3), (1, 1), "SAME", False), ((3, 3), (2, 2), "SAME", False),
    ((1, 1), (1, 1), "VALID", False), ((3, 3), (2, 2), "SAME", True), ((3, 3), (1, 1), ((1, 2), (0, 1)), True),
])
def test_patches_conv_equals_lax_conv(kernel, strides, padding, depthwise):
    """Every case SSR-Net and the baselines use: strides, TensorFlow's SAME (odd padding at the end), explicit
    padding, and depthwise (one filter per channel, MobileNet) convolutions."""
    from ssr_jax.models.conv import patches_conv

    rng = np.random.default_rng(0)
    lhs = jnp.asarray(rng.standard_normal((2, 9, 10, 4)), jnp.float32)
    rhs = jnp.asarray(rng.standard_normal((*kernel, 1 if depthwise else 4, 4 if depthwise else 5)), jnp.float32)
    groups = 4 if depthwise else 1
    numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    want = jax.lax.conv_general_dilated(lhs, rhs, strides, padding, dimension_numbers=numbers,
                                        feature_group_count=groups, precision=jax.lax.Precision.HIGHEST)
    got = patches_conv(lhs, rhs, strides, padding, dimension_numbers=numbers, feature_group_count=groups,
                       precision=jax.lax.Precision.HIGHEST)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError):
        patches_conv(lhs, rhs, strides, padding, rhs_dilation=(2, 2), feature_group_count=groups)


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("window, shape", [((2, 2), (2, 31, 31, 3)), ((4, 4), (1, 14, 14, 2)), ((8, 8), (1, 31, 31, 2))])
def test_reshape_pooling_equals_flax_pooling(kind, window, shape):
    """The loop-friendly pooling (crop + reshape + reduce) against flax's reduce-window: same values, odd sizes
    cropped the same way, and the same gradient (random inputs have no ties inside a max window)."""
    from ssr_jax.models.conv import POOLINGS

    inputs = jnp.asarray(np.random.default_rng(3).standard_normal(shape), jnp.float32)
    fast, reference = POOLINGS["patches"][kind], POOLINGS["xla"][kind]
    want = reference(inputs, window)
    assert fast(inputs, window).shape == want.shape == (shape[0], shape[1] // window[0], shape[2] // window[1], shape[3])
    np.testing.assert_array_equal(fast(inputs, window), want)
    weights = jnp.asarray(np.random.default_rng(4).standard_normal(want.shape), jnp.float32)
    grad = lambda pool: jax.grad(lambda x: jnp.sum(pool(x, window) * weights))(inputs)  # noqa: E731
    np.testing.assert_allclose(grad(fast), grad(reference), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backbone", ["mobilenet", "densenet"])
def test_baselines_compute_the_same_with_either_convolution(backbone):
    config = model_config((101,), backbone=backbone, head="regression", densenet_depth=7)
    images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3)), jnp.float32)
    fast, reference = create_model(config), create_model(model_config((101,), backbone=backbone, head="regression",
                                                                          densenet_depth=7, conv="xla"))
    variables = init_variables(reference, images[:1], jax.random.key(2, impl="rbg"))
    got, want = (run_once(lambda v, x, m=m: m.apply(v, x, train=False), variables, images)["p"][0]
                 for m in (fast, reference))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_bfloat16_streams_keep_float32_parameters_and_heads():
    images = jnp.asarray(np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3)), jnp.float32)
    mixed, full = create_model(model_config(compute_dtype="bfloat16")), create_model(model_config())
    variables = init_variables(full, images[:1], jax.random.key(4, impl="rbg"))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {np.dtype("float32")}
    program = str(jax.make_jaxpr(lambda v, x: mixed.apply(v, x, train=False))(variables, images))
    assert "bf16" in program  # the streams really compute in bfloat16
    got, want = (run_once(lambda v, x, m=m: m.apply(v, x, train=False), variables, images) for m in (mixed, full))
    assert {leaf.dtype for leaf in jax.tree.leaves(got)} == {np.dtype("float32")}
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, atol=0.02)  # bfloat16 keeps ~3 significant digits
