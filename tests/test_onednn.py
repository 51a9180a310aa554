"""oneDNN convolutions through jax.ffi (ssr_jax/models/onednn.py): values and gradients against lax.conv, the fused
evaluation primitive, vmap, `auto`'s choice and the one-line reasons when the extension cannot be used."""
import collections
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import NEEDS_ONEDNN, ONEDNN_MISSING
from configs import ssrnet
from ssr_jax import config_lib
from ssr_jax.models import conv, create_model, init_variables, onednn, validate_config

NHWC = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.jit, static_argnums=(2, 3))
def lax_conv(lhs, rhs, strides, padding):
    return jax.lax.conv_general_dilated(lhs, rhs, strides, padding, dimension_numbers=NHWC,
                                        precision=jax.lax.Precision.HIGHEST)


@pytest.fixture(autouse=True, scope="module")
def loaded():
    """The extension built and loaded before any test traces it (as a run resolves its convolutions before
    tracing), wherever it can exist."""
    if ONEDNN_MISSING is None:
        onednn.unavailable()


@NEEDS_ONEDNN
def test_the_extension_builds_and_loads_here():
    """CI has a C++ compiler and the pinned wheels: the oneDNN path must really be tested, not skipped."""
    assert onednn.unavailable() is None
    assert conv.resolve("auto", train=True, backend="cpu") == "onednn"


@NEEDS_ONEDNN
@pytest.mark.parametrize("kernel, strides, padding", [
    ((3, 3), (1, 1), "VALID"), ((3, 3), (1, 1), "SAME"), ((3, 3), (2, 2), "SAME"), ((1, 1), (1, 1), "VALID"),
    ((3, 3), (2, 1), ((1, 0), (2, 1))),
])
def test_onednn_conv_values_and_gradients_equal_lax_conv(kernel, strides, padding):
    """Forward, input gradient and kernel gradient (three oneDNN primitives) against JAX's lax.conv and its own
    gradients: SSR-Net's VALID 3×3 and 1×1, the baselines' strided SAME (odd padding at the end), uneven explicit
    padding."""
    rng = np.random.default_rng(8)
    lhs = jnp.asarray(rng.standard_normal((2, 9, 10, 3)), jnp.float32)
    rhs = jnp.asarray(rng.standard_normal((*kernel, 3, 5)), jnp.float32)
    weights = jnp.asarray(rng.standard_normal(lax_conv(lhs, rhs, strides, padding).shape), jnp.float32)

    def value_and_grads(function):
        value = lambda lhs, rhs: jnp.sum(jnp.sin(function(lhs, rhs, strides, padding)) * weights)  # noqa: E731
        return jax.jit(jax.value_and_grad(value, argnums=(0, 1)))(lhs, rhs)

    (got, got_grads), (want, want_grads) = value_and_grads(onednn.onednn_conv), value_and_grads(lax_conv)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for got_grad, want_grad in zip(got_grads, want_grads):
        assert got_grad.shape == want_grad.shape
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "tanh", "linear"])
@NEEDS_ONEDNN
def test_conv_bias_act_is_one_fused_primitive_with_the_same_values(activation):
    rng = np.random.default_rng(2)
    lhs = jnp.asarray(rng.standard_normal((2, 8, 7, 4)), jnp.float32)
    rhs = jnp.asarray(rng.standard_normal((3, 3, 4, 6)), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(6), jnp.float32)
    act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "linear": lambda z: z}[activation]
    got = jax.jit(lambda *a: onednn.conv_bias_act(*a, (1, 1), "VALID", activation))(lhs, rhs, bias)
    np.testing.assert_allclose(got, act(lax_conv(lhs, rhs, (1, 1), "VALID") + bias), rtol=1e-5, atol=1e-5)


@NEEDS_ONEDNN
def test_evaluation_fuses_conv_batchnorm_activation_and_training_does_not():
    """In evaluation each of the 8 stream blocks is one fused oneDNN call (the 6 fusion-stage 1×1 convolutions are
    plain ones); training keeps BatchNorm's batch statistics in XLA and calls the forward, backward-data (not for
    the two convolutions of the images) and backward-weights primitives."""
    config = ssrnet.get_config().model
    config.conv = "onednn"
    model, images = create_model(config), jnp.zeros((2, 64, 64, 3))
    variables = init_variables(model, images, jax.random.key(0))

    def calls(function, *args, threads):
        """The oneDNN calls of `function`'s program by target, after checking that each runs on `threads`."""
        program = jax.jit(function).lower(*args).as_text()
        found = re.findall(r"custom_call @ssr_onednn_(\w+)\(.*?threads = (\d+) : i64", program)
        assert {int(count) for _, count in found} == {threads}
        return collections.Counter(target for target, _ in found)

    # Evaluation's calls on the default thread count (0), a training step's on `training_threads()`.
    assert calls(lambda v: model.apply(v, images, train=False), variables, threads=0) == {
        "forward_bias_act": 8, "forward": 6}
    loss = lambda p: sum(jnp.sum(leaf) for leaf in jax.tree.leaves(model.apply(  # noqa: E731
        {**variables, "params": p}, images, train=True, mutable=["batch_stats"],
        rngs={"dropout": jax.random.key(1)})[0]))
    assert calls(jax.grad(loss), variables["params"], threads=onednn.training_threads()) == {
        "forward": 14, "backward_data": 12, "backward_weights": 14}


@pytest.mark.parametrize("cores, environment, threads", [
    (2, {}, 1), (1, {}, 1), (16, {}, 8), (2, {"OMP_NUM_THREADS": "2"}, 0)])
def test_training_threads_are_half_the_usable_cores_unless_omp_num_threads_is_set(monkeypatch, cores, environment,
                                                                                   threads):
    """Half the cores the process may run on (its affinity, as `taskset` sets it), at least one; OMP_NUM_THREADS,
    when set, is the user's choice and left to the library (0)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(onednn.os, "sched_getaffinity", lambda pid: set(range(cores)))
    onednn.training_threads.cache_clear()
    try:
        assert onednn.training_threads() == threads
    finally:
        onednn.training_threads.cache_clear()


@NEEDS_ONEDNN
def test_vmapped_members_each_get_their_own_kernel():
    """Under vmap (members with different kernels) the call runs once per member: exact, not fast."""
    rng = np.random.default_rng(4)
    lhs = jnp.asarray(rng.standard_normal((3, 2, 7, 7, 2)), jnp.float32)
    rhs = jnp.asarray(rng.standard_normal((3, 3, 3, 2, 4)), jnp.float32)
    got = jax.jit(jax.vmap(lambda x, w: onednn.onednn_conv(x, w, (1, 1), "SAME")))(lhs, rhs)
    np.testing.assert_allclose(got, jax.vmap(lambda x, w: lax_conv(x, w, (1, 1), "SAME"))(lhs, rhs), rtol=1e-5,
                               atol=1e-5)


@NEEDS_ONEDNN
def test_what_onednn_does_not_compute_goes_to_patches(monkeypatch):
    """Depthwise (MobileNet) and bfloat16 convolutions are `patches_conv`'s under model.conv="onednn"."""
    calls = []
    monkeypatch.setattr(conv, "patches_conv", lambda *args, **kwargs: calls.append(args[1].dtype) or "patches")
    lhs = jnp.zeros((1, 8, 8, 4))
    assert conv.onednn_or_patches(lhs, jnp.zeros((3, 3, 1, 4)), (1, 1), "SAME", feature_group_count=4) == "patches"
    assert conv.onednn_or_patches(lhs.astype(jnp.bfloat16), jnp.zeros((3, 3, 4, 4), jnp.bfloat16), (1, 1),
                                  "SAME") == "patches"
    assert calls == [jnp.float32, jnp.bfloat16]
    assert conv.onednn_or_patches(lhs, jnp.zeros((3, 3, 4, 2)), (1, 1), "VALID").shape == (1, 6, 6, 2)


def test_without_the_extension_auto_falls_back_and_onednn_is_refused_in_one_line(monkeypatch):
    reason = "oneDNN convolutions unavailable: no C++ compiler (g++) on PATH to build onednn_conv.cc"
    monkeypatch.setattr(onednn, "unavailable", lambda: reason)
    monkeypatch.setattr(conv, "_onednn_fallback", conv._onednn_fallback.__wrapped__)  # warn on every call
    for train, want in ((True, "mixed"), (False, "xla")):
        with pytest.warns(RuntimeWarning, match=re.escape(f"model.conv=auto: {reason}; using XLA's convolutions")):
            assert conv.resolve("auto", train=train, backend="cpu") == want
    config = ssrnet.get_config()
    config.model.conv = "onednn"
    with pytest.raises(config_lib.ConfigError, match=re.escape(f"model.conv='onednn': {reason}; choose 'auto'")):
        validate_config(config)


def test_build_reasons(monkeypatch, tmp_path):
    """No compiler: the reason names it; nothing is left in the cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(OSError, match=r"^no C\+\+ compiler \(no-such-compiler\) on PATH to build onednn_conv.cc$"):
        onednn._build()
    assert not any(path.is_file() for path in tmp_path.rglob("*"))
