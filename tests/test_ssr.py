"""The readout equations against a NumPy transcription, the paper's worked example, and the switches."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssr_jax.ssr import dex_age, ssr_age


def numpy_ssr(p, eta, delta, stages, v, lambda_local, lambda_d):
    """Eq. 7 written out with explicit loops, one example at a time."""
    batch = p[0].shape[0]
    out = np.zeros(batch)
    for b in range(batch):
        total = 0.0
        for k in range(len(stages)):
            denominator = 1.0
            for j in range(k + 1):
                denominator *= stages[j] * (1.0 + lambda_d * delta[j][b])
            for i in range(stages[k]):
                total += p[k][b, i] * (i + lambda_local * eta[k][b, i]) / denominator
        out[b] = v * total
    return out


def random_heads(rng, stages, batch=5):
    p = [rng.uniform(0, 1, (batch, s)).astype(np.float32) for s in stages]
    eta = [rng.uniform(-1, 1, (batch, s)).astype(np.float32) for s in stages]
    delta = [rng.uniform(-0.9, 0.9, (batch,)).astype(np.float32) for _ in stages]
    return p, eta, delta


@pytest.mark.parametrize("stages", [(7,), (3, 3), (3, 3, 3), (2, 5, 3, 4)])
@pytest.mark.parametrize("lambdas", [(1.0, 1.0), (0.25, 0.75), (0.0, 0.0)])
def test_matches_numpy_transcription(stages, lambdas):
    rng = np.random.default_rng(len(stages))
    p, eta, delta = random_heads(rng, stages)
    lambda_local, lambda_d = lambdas
    got = ssr_age(p, eta, delta, stages=stages, v=101.0, lambda_local=lambda_local, lambda_d=lambda_d)
    want = numpy_ssr(p, eta, delta, stages, 101.0, lambda_local, lambda_d)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_paper_worked_example():
    # V = 90, s = (3, 3): bin 1 of stage 1 (30 years) plus bin 2 of stage 2 (2 × 10 years) = 50.
    p = [jnp.array([[0.0, 1.0, 0.0]]), jnp.array([[0.0, 0.0, 1.0]])]
    eta = [jnp.zeros((1, 3)), jnp.zeros((1, 3))]
    delta = [jnp.zeros((1,)), jnp.zeros((1,))]
    age = ssr_age(p, eta, delta, stages=(3, 3), v=90.0)
    assert float(age[0]) == pytest.approx(50.0)


def test_single_stage_softmax_without_dynamic_range_is_dex():
    rng = np.random.default_rng(0)
    probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(4, 101)), jnp.float32))
    eta = [jnp.asarray(rng.uniform(-1, 1, (4, 101)), jnp.float32)]
    delta = [jnp.asarray(rng.uniform(-0.5, 0.5, (4,)), jnp.float32)]
    ssr = ssr_age([probs], eta, delta, stages=(101,), lambda_local=0.0, lambda_d=0.0)
    np.testing.assert_allclose(np.asarray(ssr), np.asarray(dex_age(probs)), rtol=1e-5)
    # With V = s = 101 the bin centres are the ages 0 … 100 themselves.
    one_hot = jax.nn.one_hot(jnp.array([0, 37, 100]), 101)
    np.testing.assert_allclose(np.asarray(dex_age(one_hot)), [0.0, 37.0, 100.0], atol=1e-4)


def test_switches_cut_the_gradient():
    stages = (3, 3, 3)
    p, eta, delta = random_heads(np.random.default_rng(1), stages)

    def age_sum(eta, delta, lambda_local, lambda_d):
        return jnp.sum(ssr_age(p, eta, delta, stages=stages, lambda_local=lambda_local, lambda_d=lambda_d))

    grad_eta, grad_delta = jax.grad(age_sum, argnums=(0, 1))(eta, delta, 0.0, 0.0)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in grad_eta + grad_delta)
    grad_eta, grad_delta = jax.grad(age_sum, argnums=(0, 1))(eta, delta, 1.0, 1.0)
    assert all(float(jnp.abs(g).max()) > 0.0 for g in grad_eta + grad_delta)


def test_lambdas_ride_a_vmapped_axis_under_jit():
    stages = (3, 3, 3)
    p, eta, delta = random_heads(np.random.default_rng(2), stages)
    lambdas = jnp.array([[0.0, 0.0], [0.5, 1.0], [1.0, 0.25]])

    @jax.jit
    @jax.vmap
    def ages(lam):
        return ssr_age(p, eta, delta, stages=stages, lambda_local=lam[0], lambda_d=lam[1])

    got = ages(lambdas)
    for row, (lambda_local, lambda_d) in enumerate(np.asarray(lambdas)):
        want = numpy_ssr(p, eta, delta, stages, 101.0, lambda_local, lambda_d)
        np.testing.assert_allclose(np.asarray(got[row]), want, rtol=1e-5)


def test_mismatched_heads_are_rejected():
    p, eta, delta = random_heads(np.random.default_rng(3), (3, 3))
    with pytest.raises(ValueError, match="one p, eta and delta per stage"):
        ssr_age(p, eta, delta, stages=(3, 3, 3))
