"""Component diagnostics on a hand-built model whose heads are known exactly, and the readout identities they use."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ssrnet
from ssr_jax import saved_model
from ssr_jax.inspect_model import format_table, inspect, plot, stage_contributions, stage_report
from ssr_jax.models import abstract_variables
from ssr_jax.ssr import ssr_age

V = 101.0
# Head biases of the hand-built (2, 3) model; every kernel is zero, so p = ReLU(b_p), η = tanh(b_η), Δ = tanh(b_Δ)
# for every input.
P_BIAS = ([0.5, -1.0], [1.0, 2.0, 0.25])
ETA_BIAS = ([0.4, 0.2], [-0.3, 0.0, 0.1])
DELTA_BIAS = (np.arctanh(0.5), 0.0)
ABLATIONS = ["full", "delta off (λ_d=0)", "eta off (λ_local=0)", "delta and eta off", "stage 1 dropped",
             "stage 2 dropped"]


@pytest.fixture(scope="module")
def constant_heads_model(tmp_path_factory):
    config = ssrnet.get_config("smoke")
    config.model.stages = (2, 3)
    config.model.conv = "xla"  # same parameters; compiles faster than "patches" for one small batch
    shapes = abstract_variables(config.model, 64)
    variables = jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), shapes)
    variables["batch_stats"] = jax.tree_util.tree_map_with_path(
        lambda path, leaf: np.full(leaf.shape, 1.0 if path[-1].key == "var" else 0.0, np.float32),
        shapes["batch_stats"])
    for k in range(2):
        stage = variables["params"][f"stage{k + 1}"]
        stage["p"]["bias"] = np.float32(P_BIAS[k])
        stage["eta"]["bias"] = np.float32(ETA_BIAS[k])
        stage["delta"]["bias"] = np.float32([DELTA_BIAS[k]])
    return saved_model.save(tmp_path_factory.mktemp("constant") / "model", config, variables)


def expected_contributions(lambda_local=1.0, lambda_d=1.0) -> np.ndarray:
    """c_k for the hand-built model, written out term by term."""
    p1, p2 = np.maximum(P_BIAS[0], 0), np.maximum(P_BIAS[1], 0)
    eta1, eta2 = np.tanh(ETA_BIAS[0]), np.tanh(ETA_BIAS[1])
    d1, d2 = 2 * (1 + lambda_d * 0.5), 3 * (1 + lambda_d * 0.0)
    c1 = V * (p1[0] * (0 + lambda_local * eta1[0]) + p1[1] * (1 + lambda_local * eta1[1])) / d1
    c2 = V * sum(p2[i] * (i + lambda_local * eta2[i]) for i in range(3)) / (d1 * d2)
    return np.array([c1, c2])


def test_contributions_and_ablations_of_known_heads(constant_heads_model):
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    ages = np.array([10, 20, 30, 40])
    result = inspect(constant_heads_model, images, ages)
    json.dumps(result)  # the CLI writes it as JSON

    c1, c2 = expected_contributions()
    stage1, stage2 = result["stages"]
    assert stage1["contribution_mean"] == pytest.approx(c1, abs=1e-4)
    assert stage2["contribution_mean"] == pytest.approx(c2, abs=1e-4)
    assert stage1["contribution_std"] == pytest.approx(0, abs=1e-5)
    assert stage1["p_active"] == [1.0, 0.0] and stage2["p_active"] == [1.0, 1.0, 1.0]
    assert stage2["eta_active"] == [1.0, 0.0, 1.0]  # tanh(0) is exactly 0
    assert stage1["p_constant"] and stage1["eta_constant"] and stage2["p_constant"]
    assert stage1["delta_mean"] == pytest.approx(0.5, abs=1e-6) and stage2["delta_mean"] == 0.0

    rows = {row["name"]: row for row in result["ablations"]}
    assert list(rows) == ABLATIONS
    assert rows["full"]["mean_prediction"] == pytest.approx(c1 + c2, abs=1e-4)  # the stages add up to the age
    assert rows["full"]["mae"] == pytest.approx(np.abs(c1 + c2 - ages).mean(), abs=1e-4)
    assert rows["delta off (λ_d=0)"]["mean_prediction"] == pytest.approx(expected_contributions(lambda_d=0).sum(),
                                                                          abs=1e-4)
    assert rows["eta off (λ_local=0)"]["mean_prediction"] == pytest.approx(
        expected_contributions(lambda_local=0).sum(), abs=1e-4)
    assert rows["delta and eta off"]["mean_prediction"] == pytest.approx(expected_contributions(0, 0).sum(), abs=1e-4)
    assert rows["stage 1 dropped"]["mean_prediction"] == pytest.approx(c2, abs=1e-4)
    assert rows["stage 2 dropped"]["mean_abs_change"] == pytest.approx(c2, abs=1e-4)

    table = format_table(result)
    assert "MAE" in table and all(name in table for name in ABLATIONS)
    without_ages = inspect(constant_heads_model, images)
    assert all(row["mae"] is None for row in without_ages["ablations"])
    assert "MAE" not in format_table(without_ages) and "mean |change|" in format_table(without_ages)


def test_stage_contributions_sum_to_the_ssr_age():
    rng = np.random.default_rng(1)
    stages = (3, 5, 2)
    p = [rng.uniform(0, 1, (6, s)) for s in stages]
    eta = [rng.uniform(-1, 1, (6, s)) for s in stages]
    delta = [rng.uniform(-0.9, 0.9, 6) for _ in stages]
    contributions = stage_contributions(p, eta, delta, stages=stages, v=V, lambda_local=0.5, lambda_d=0.25)
    age = ssr_age([jnp.asarray(a) for a in p], [jnp.asarray(a) for a in eta], [jnp.asarray(a) for a in delta],
                  stages=stages, v=V, lambda_local=0.5, lambda_d=0.25)
    assert contributions.shape == (3, 6)
    np.testing.assert_allclose(contributions.sum(axis=0), age, rtol=1e-5)


def test_constancy_detection():
    rng = np.random.default_rng(2)
    varying = rng.uniform(0, 1, (5, 3))
    constant = np.tile([0.0, 0.2, 0.7], (5, 1))
    report = stage_report(1, 3, varying, constant, np.zeros(5), np.zeros(5))
    assert not report["p_constant"] and report["eta_constant"]
    assert report["eta_active"] == [0.0, 1.0, 1.0]


def test_plot_writes_a_png(constant_heads_model, tmp_path):
    pytest.importorskip("matplotlib")
    images = np.zeros((2, 64, 64, 3), np.uint8)
    plot(inspect(constant_heads_model, images), tmp_path / "inspect.png")
    assert (tmp_path / "inspect.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
