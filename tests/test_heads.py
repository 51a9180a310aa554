"""The heads (`ssr_jax.models.heads`): each loss and readout against numbers worked by hand from the papers'
formulas, the decision rules at their edges, finite gradients, every head on every backbone training, and the
one-line refusals of what a head cannot do."""
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from absl import flags

from conftest import REPO, run_cli
from configs import dex, ssrnet
from ssr_jax import cli, config_lib, data, predict, report, saved_model, sweep, tensorboard_log, validation
from ssr_jax.data import synthetic
from ssr_jax.models import (abstract_variables, architecture, count_parameters, create_model, heads, init_variables,
                            model_input, with_head)
from ssr_jax.models.heads import base, corn
from ssr_jax.ssr import ssr_age
from ssr_jax.train import train_and_evaluate
from ssr_jax.xla_options import run_once

LN3 = math.log(3.0)


def outputs(**arrays):
    """One-stage head outputs, as the backbones return them."""
    return {name: (jnp.asarray(value, jnp.float32),) for name, value in arrays.items()}


def head(name, num_bins=3, v=3.0, **options):
    """A head over `num_bins` classes at ages 0, v/s, 2v/s, … (s = v = 3: the ages 0, 1, 2)."""
    return heads.HEADS[name](num_bins=num_bins, v=v, **options)


# ----------------------------------------------------------------------------------------------------------------
# Bins and decision rules
# ----------------------------------------------------------------------------------------------------------------
def test_ages_fall_in_the_nearest_bin_clipped_to_the_range():
    np.testing.assert_array_equal(head("dex", 101, 101.0).classes(jnp.array([0.0, 0.4, 0.6, 100.0, 120.0, -3.0])),
                                  [0, 0, 1, 100, 100, 0])
    # s = 10 bins over V = 101: class round(y · 10 / 101); 100 → round(9.9) = 10, clipped to 9.
    np.testing.assert_array_equal(head("dex", 10, 101.0).classes(jnp.array([5.0, 6.0, 100.0])), [0, 1, 9])
    np.testing.assert_allclose(head("dex", 4, 10.0).bin_ages(), [0.0, 2.5, 5.0, 7.5])


@pytest.mark.parametrize("probs, expectation, median, mode", [
    ([0.25, 0.25, 0.5], 1.25, 1.0, 2.0),  # the cumulative probability reaches 0.5 exactly at bin 1
    ([0.5, 0.5, 0.0], 0.5, 0.0, 0.0),     # even-sized support: the lower median; a tie: the first mode
    ([0.0, 0.5, 0.5], 1.5, 1.0, 1.0),
    ([0.2, 0.2, 0.2, 0.2, 0.2], 2.0, 2.0, 0.0),  # uniform over five: median the middle bin, mode the first
    ([1.0, 0.0, 0.0], 0.0, 0.0, 0.0),     # all mass on age 0
])
def test_posterior_rules(probs, expectation, median, mode):
    probs = jnp.array([probs])
    bin_ages = jnp.arange(probs.shape[1], dtype=jnp.float32)
    got = {rule: float(base.decode_posterior(probs, bin_ages, rule)[0]) for rule in base.RULES}
    assert got == pytest.approx({"expectation": expectation, "median": median, "mode": mode}, abs=1e-6)


def test_posterior_heads_read_the_softmax_of_their_logits_at_the_top_bin():
    logits = np.zeros((1, 101), np.float32)
    logits[0, 100] = 50.0  # all mass on age 100
    for name in ("dex", "mean_variance", "dldl", "dldl_v2", "sord"):
        for rule in base.RULES:
            assert float(head(name, 101, 101.0).age(outputs(logits=logits), rule)[0]) == pytest.approx(100.0)


@pytest.mark.parametrize("survival, median, expectation, mode", [
    # S = (0.75, 0.5): the 0.5 is not counted; P(class) = (0.25, 0.25, 0.5)
    ([0.75, 0.5], 1.0, 1.25, 2.0),
    # P = (0.5, 0.5, 0): a tie, the first class
    ([0.5, 0.0], 0.0, 0.5, 0.0),
    ([1.0, 1.0], 2.0, 2.0, 2.0),  # the top class (age 100 at s = 101)
    ([0.0, 0.0], 0.0, 0.0, 0.0),  # the bottom class (age 0)
])
def test_ordinal_rules_from_the_survival_function(survival, median, expectation, mode):
    got = {rule: float(base.decode_survival(jnp.array([survival]), jnp.arange(3.0), rule)[0])
           for rule in ("median", "expectation", "mode")}
    assert got == pytest.approx({"median": median, "expectation": expectation, "mode": mode}, abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Losses, worked by hand (s = v = 3: bins at the ages 0, 1, 2)
# ----------------------------------------------------------------------------------------------------------------
def test_dex_l1_on_the_expectation_and_its_papers_cross_entropy():
    logits = outputs(logits=[[0.0, math.log(3.0), 0.0]] * 2)  # p = (1/5, 3/5, 1/5), expectation 1
    ages = jnp.array([0.0, 2.0])
    assert float(head("dex").loss(logits, ages)) == pytest.approx(1.0, rel=1e-6)  # |1 − 0|, |1 − 2|
    cross_entropy = head("dex", loss_name="cross_entropy").loss(logits, jnp.array([0.0, 1.0]))
    assert float(cross_entropy) == pytest.approx((-math.log(1 / 5) - math.log(3 / 5)) / 2, rel=1e-6)
    # The edges of the reference's 101 bins: age 0 is class 0, age 100 class 100.
    edge = np.zeros((2, 101), np.float32)
    edge[:, 100] = math.log(2.0)  # p_100 = 2/102, every other p_i = 1/102
    got = head("dex", 101, 101.0, loss_name="cross_entropy").loss(outputs(logits=edge), jnp.array([0.0, 100.0]))
    assert float(got) == pytest.approx((math.log(102) + math.log(51)) / 2, rel=1e-6)


def test_mean_variance_loss():
    # p = (1/4, 1/4, 1/2): mean m = 1.25, variance 1/4·1.25² + 1/4·0.25² + 1/2·0.75² = 0.6875.
    logits = outputs(logits=[np.log([0.25, 0.25, 0.5])])
    want = -math.log(0.25) + 0.2 * (1.25 - 1.0) ** 2 / 2 + 0.05 * 0.6875  # y = 1: class 1
    assert float(head("mean_variance").loss(logits, jnp.array([1.0]))) == pytest.approx(want, rel=1e-6)
    want = -math.log(0.5) + 0.2 * (1.25 - 2.0) ** 2 / 2 + 0.05 * 0.6875  # y = 2: the top class
    assert float(head("mean_variance").loss(logits, jnp.array([2.0]))) == pytest.approx(want, rel=1e-6)


def gaussian(mean, sigma, support):
    weights = np.exp(-((np.asarray(support, np.float64) - mean) ** 2) / (2 * sigma**2))
    return weights / weights.sum()


def test_dldl_is_the_kl_from_a_discretised_gaussian_and_v2_adds_the_l1_of_the_expectation():
    uniform = outputs(logits=[[0.0, 0.0, 0.0]])  # p = 1/3 each, expectation 1
    for age in (0.0, 1.0):
        q = gaussian(age, 1.0, [0, 1, 2])
        kl = float(np.sum(q * np.log(q)) + math.log(3))  # Σ q log q − Σ q log(1/3)
        assert float(head("dldl", sigma=1.0).loss(uniform, jnp.array([age]))) == pytest.approx(kl, rel=1e-5)
        v2 = head("dldl_v2", sigma=1.0, lambda_expectation=0.5).loss(uniform, jnp.array([age]))
        assert float(v2) == pytest.approx(kl + 0.5 * abs(1.0 - age), rel=1e-5)
    # The label distribution of age 100 at σ = 2 over the 101 reference bins: the half-Gaussian at the top.
    q = heads.DLDL(num_bins=101, v=101.0, sigma=2.0).label_distribution(jnp.array([100.0]))[0]
    np.testing.assert_allclose(q, gaussian(100.0, 2.0, range(101)), rtol=1e-5, atol=1e-12)


def test_sord_targets_decay_with_the_absolute_distance():
    probs = np.array([0.5, 0.25, 0.25])
    q = np.exp(-np.abs(np.arange(3) - 0.0) / 1.0)
    q /= q.sum()  # (1, e⁻¹, e⁻²) / Z: Laplace-shaped, unlike DLDL's Gaussian
    got = head("sord", scale=1.0).loss(outputs(logits=[np.log(probs)]), jnp.array([0.0]))
    assert float(got) == pytest.approx(float(-np.sum(q * np.log(probs))), rel=1e-6)


def test_coral_loss_sums_the_binary_tasks_and_shares_one_weight_vector():
    logits = outputs(logits=[[LN3, 0.0]] * 3)  # σ = (0.75, 0.5)
    per_age = {0.0: -math.log(0.25) - math.log(0.5),   # y = (0, 0)
               1.0: -math.log(0.75) - math.log(0.5),   # y = (1, 0)
               2.0: -math.log(0.75) - math.log(0.5)}   # y = (1, 1)
    got = head("coral").loss(logits, jnp.array(list(per_age)))
    assert float(got) == pytest.approx(sum(per_age.values()) / 3, rel=1e-6)
    config = dex.get_config().model
    config.head = "coral"
    variables = abstract_variables(config, 64)
    layer = variables["params"]["stage1"]["p"]
    assert layer["shared"]["kernel"].shape == (202, 1) and layer["bias"].shape == (100,)
    # DEX's p layer Dense(202→101) becomes one weight vector and 100 biases: 110,945 − 202·101 − 101 + 202 + 100.
    assert count_parameters(variables)["total"] == 110_945 - 202 * 101 - 101 + 202 + 100 == 90_744


def test_corn_trains_each_task_on_its_conditional_subset():
    classes = jnp.array([0, 1, 2, 2])
    np.testing.assert_array_equal(corn.conditional_subsets(classes, 4), [[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]])
    logits = outputs(logits=[[LN3, 0.0, -LN3]] * 4)  # σ = (0.75, 0.5, 0.25)
    # task 0 on all four (labels 0, 1, 1, 1), task 1 on classes ≥ 1 (labels 0, 1, 1; σ = 0.5 either way),
    # task 2 on classes ≥ 2 (labels 0, 0): nine (task, example) pairs.
    total = -math.log(0.25) - 3 * math.log(0.75) - 3 * math.log(0.5) - 2 * math.log(0.75)
    got = head("corn", num_bins=4, v=4.0).loss(logits, classes.astype(jnp.float32))
    assert float(got) == pytest.approx(total / 9, rel=1e-6)
    # P(class > k) = Π σ: (0.75, 0.375, 0.09375); P(class) = (0.25, 0.375, 0.28125, 0.09375).
    ages = {rule: float(head("corn", num_bins=4, v=4.0).age(logits, rule)[0]) for rule in ("median", "expectation",
                                                                                            "mode")}
    assert ages == pytest.approx({"median": 1.0, "expectation": 1.21875, "mode": 1.0}, abs=1e-6)


def test_or_cnn_weighs_independent_tasks_by_their_importance():
    logits = outputs(logits=[[LN3, 0.0]])
    task_losses = [-math.log(0.75), -math.log(0.5)]  # age 1: y = (1, 0)
    assert float(head("or_cnn").loss(logits, jnp.array([1.0]))) == pytest.approx(sum(task_losses) / 2, rel=1e-6)
    weighted = head("or_cnn", importance=(3.0, 1.0)).loss(logits, jnp.array([1.0]))
    assert float(weighted) == pytest.approx(0.75 * task_losses[0] + 0.25 * task_losses[1], rel=1e-6)
    # σ = 0.5 exactly is not counted: the label is 1.
    assert float(head("or_cnn").age(logits, "median")[0]) == 1.0


def test_ssr_and_regression_readouts():
    rng = np.random.default_rng(0)
    p = [jnp.asarray(rng.random((2, 3)), jnp.float32) for _ in range(3)]
    eta = [jnp.asarray(rng.uniform(-1, 1, (2, 3)), jnp.float32) for _ in range(3)]
    delta = [jnp.asarray(rng.uniform(-0.5, 0.5, 2), jnp.float32) for _ in range(3)]
    ssr = heads.SSR(stages=(3, 3, 3), lambda_local=0.5, lambda_d=0.25)
    got = ssr.age({"p": tuple(p), "eta": tuple(eta), "delta": tuple(delta)}, "expectation")
    np.testing.assert_array_equal(got, ssr_age(p, eta, delta, stages=(3, 3, 3), lambda_local=0.5, lambda_d=0.25))
    out = outputs(p=[[0.5], [-0.25]])
    np.testing.assert_allclose(heads.Regression(scale=101.0).age(out, "expectation"), [50.5, -25.25])
    assert float(heads.Regression(scale=101.0).loss(out, jnp.array([50.5, 0.0]))) == pytest.approx(25.25 / 2)
    model = dex.get_config().model
    model.head = "regression"
    assert heads.create(model).scale == 101.0
    model.backbone = "mobilenet"  # the reference baselines regress years
    assert heads.create(model).scale == 1.0


@pytest.mark.parametrize("name", [name for name in heads.HEADS if name != "ssr"])
def test_gradients_are_finite_at_the_edges(name):
    """Saturated logits (±60: probabilities that round to 0 or 1), logits 0 (probabilities exactly 1/2), at the
    ages 0 and 100."""
    model = dex.get_config().model
    model.head = name
    head_ = heads.create(model)
    width = 1 if name == "regression" else 100 if name in ("coral", "corn", "or_cnn") else 101
    ages = jnp.array([0.0, 100.0, 0.0, 100.0])
    logits = jnp.stack([jnp.full(width, 60.0), jnp.full(width, -60.0), jnp.zeros(width), jnp.zeros(width)])
    key = "p" if name == "regression" else "logits"
    loss, grad = jax.value_and_grad(lambda x: head_.loss({key: (x,)}, ages))(logits)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))


# ----------------------------------------------------------------------------------------------------------------
# Configs: the bad inputs, one line each, before anything compiles
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, field, hint", [
    ({"model.head": "softmax"}, "model.head", "must be one of"),
    ({"model.backbone": "resnet50"}, "model.backbone", "must be one of"),
    ({"model.head": "ssr", "model.backbone": "mobilenet", "model.stages": (3, 3, 3)}, "model.head", "ssrnet"),
    ({"model.head": "ssr", "model.decode": "median", "model.stages": (3, 3, 3)}, "model.decode", "Eq. 7"),
    ({"model.head": "regression", "model.decode": "mode"}, "model.decode", "expectation"),
    ({"model.head": "or_cnn", "model.decode": "expectation"}, "model.decode", "median"),
    ({"model.decode": "mean"}, "model.decode", "expectation or median or mode"),
    ({"model.head": "coral", "model.stages": (1,)}, "model.stages", "at least 2"),
    ({"model.head": "corn", "model.stages": (3, 3)}, "model.stages", "one stage"),
    ({"model.head": "dldl", "model.label_sigma": 0.0}, "model.label_sigma", "positive"),
    ({"model.head": "sord", "model.sord_scale": -1.0}, "model.sord_scale", "positive"),
    ({"model.head": "mean_variance", "model.lambda_mean": -0.2}, "model.lambda_mean", "not negative"),
    ({"model.head": "mean_variance", "model.lambda_variance": float("inf")}, "model.lambda_variance", "finite"),
    ({"model.head": "dldl_v2", "model.lambda_expectation": -1.0}, "model.lambda_expectation", "not negative"),
    ({"model.dex_loss": "kl"}, "model.dex_loss", "cross_entropy"),
])
def test_bad_head_settings_fail_in_one_line(overrides, field, hint):
    config = config_lib.apply_overrides(dex.get_config("smoke"), overrides)
    with pytest.raises(config_lib.ConfigError) as error:
        validation.validate(config)
    message = str(error.value)
    assert message.startswith(f"{field}=") and hint in message and "\n" not in message


def test_every_head_from_the_command_line():
    """`--config.model.head=X` for every X through the CLI's own config flag, and `ssr-jax info`'s table of every
    head's parameters on the backbone (the SSR head with its stages, the others with 101 bins)."""
    want = {"ssr": 40_915, "dex": 110_945, "regression": 90_645, "coral": 90_744, "corn": 110_742,
            "or_cnn": 110_742, "mean_variance": 110_945, "dldl": 110_945, "dldl_v2": 110_945, "sord": 110_945}
    for name in want:
        values = flags.FlagValues()
        argv = ["ssr-jax info", "--config", "configs/ssrnet.py", f"--config.model.head={name}",
                f"--config.model.stages={'3,3,3' if name == 'ssr' else '(101,)'}"]
        cli.config_flag()(values, argv)
        values(argv)
        validation.validate(values.config)
        assert values.config.model.head == name
    result = run_cli("info", "--config", "configs/ssrnet.py", "--config.model.head=corn",
                     "--config.model.stages=(101,)")
    assert "head corn" in result.stdout and "total       110,742" in result.stdout
    assert all(f"  {name:<14}{total:>10,}" in result.stdout for name, total in want.items())


# ----------------------------------------------------------------------------------------------------------------
# Training: every head on every backbone
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AllHeads(base.Head):
    """Every one-stage head side by side on one backbone (output layers "p_<head>"), so that one compiled program
    per backbone trains them all; each head's loss is reported on its own."""

    members: tuple[tuple[str, base.Head], ...] = ()

    def layer(self, features, *, stage, name):
        return {f"{label}/{key}": value for label, member in self.members
                for key, value in member.layer(features, stage=stage, name=f"{name}_{label}").items()}

    def losses(self, outputs, ages):
        return jnp.stack([member.loss({key.split("/")[1]: value for key, value in outputs.items()
                                       if key.startswith(f"{label}/")}, ages) for label, member in self.members])


ONE_STAGE_HEADS = [name for name in heads.HEADS if name != "ssr"]


@pytest.mark.parametrize("backbone", ["ssrnet", "mobilenet", "densenet"])
def test_every_head_on_every_backbone_trains_with_a_falling_loss(backbone):
    """Twenty Adam steps on one batch of 40×40 synthetic faces that includes the ages 0 and 100, dropout off so
    that the steps see the same batch alike; every head's loss falls. (The regression head on MobileNet first rises
    for a few steps: after ten it sat within a year of its start and on one side or the other of it depending on
    the CPU's rounding; after twenty it is ≥ 7 years below on every compiler setting tried.) On the SSR-Net trunk the
    step is 3e-3: at 1e-2 its regression head swings between 15 and 78 years of loss, so that whether the twentieth
    step ends below the first was a matter of rounding (it did at XLA's level 0, not with the loop emitters); at 3e-3
    every head there ends at ≤ 0.7 of its start with either. The deep trunks keep 1e-2, at which their regression
    heads fall and at 3e-3 do not yet. The SSR head, which needs the ssrnet backbone's stages, is the reference
    model every training test trains."""
    config = dex.get_config("smoke")
    config.model.update(backbone=backbone, densenet_depth=7, dropout_rate=0.0, conv="xla")
    members = tuple((name, heads.create(with_head(config.model, name))) for name in ONE_STAGE_HEADS)
    all_heads = AllHeads(members=members)
    model = create_model(config.model).clone(head=all_heads)
    data = synthetic.generate(4, seed=0, image_size=40)
    images = model_input(jnp.asarray(data["image"]), config.data)
    ages = jnp.asarray(data["age"], jnp.float32).at[:2].set(jnp.array([0.0, 100.0]))
    # One program each, compiled for compile speed: twenty small steps run in a fraction of their compile time.
    variables = init_variables(model, images[:1], jax.random.key(0))
    optimizer = optax.adam(3e-3 if backbone == "ssrnet" else 1e-2)

    def losses(params, batch_stats):
        out, updates = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                                   mutable=["batch_stats"])
        return all_heads.losses(out, ages), updates["batch_stats"]

    def step(carry, _):
        params, batch_stats, opt_state = carry
        def objective(params):  # each head's loss relative to its value: no head's scale drowns the others
            each, batch_stats_after = losses(params, batch_stats)
            return jnp.sum(each / jax.lax.stop_gradient(each)), (each, batch_stats_after)

        (_, (each, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), each

    def train(params, batch_stats):
        _, each = jax.lax.scan(step, (params, batch_stats, optimizer.init(params)), None, length=20)
        return each

    each = np.asarray(run_once(train, variables["params"], variables["batch_stats"]))  # [steps, heads]
    assert np.all(np.isfinite(each))
    falling = {name: (float(each[0, i]), float(each[-1, i])) for i, (name, _) in enumerate(members)}
    assert all(last < first for first, last in falling.values()), falling


def test_a_head_trains_end_to_end_and_is_re_read_by_another_rule(tmp_path):
    """`:smoke` with the mean-variance head: summary.json records head and rule; `ssr-jax evaluate --decode median`
    re-reads the run (no training) and its MAE is the one of the posteriors' medians worked out in NumPy."""
    config = dex.get_config("smoke")
    config.model.head = "mean_variance"
    summary = train_and_evaluate(config, tmp_path / "run", progress=False)
    assert (summary["backbone"], summary["head"], summary["decode"]) == ("ssrnet", "mean_variance", "expectation")
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]

    result = json.loads(run_cli("evaluate", "--decode", "median", tmp_path / "run", "--json").stdout)
    assert result["decode"] == "median" and result["split"] == "test"
    assert (tmp_path / "run" / "evaluations" / "synthetic_test_median.json").is_file()
    _, variables = saved_model.load(tmp_path / "run")
    test = data.load_splits(config.data)[1]
    logits = np.asarray(saved_model.make_apply(config, heads=True)(variables, test["image"])["logits"][0], np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    medians = np.argmax(np.cumsum(probs, axis=1) >= 0.5, axis=1)  # the first bin holding half the mass; bin i = age i
    assert result["mae"] == pytest.approx(np.mean(np.abs(medians - test["age"])), rel=1e-5)
    with pytest.raises(config_lib.ConfigError, match="^model.decode='mean': "):
        predict.evaluate_split(tmp_path / "run", test, decode="mean")


def test_a_run_recorded_with_model_family_reads_as_its_backbone_and_head(tmp_path):
    for family, pair, stages in (("dex", ("ssrnet", "dex"), (101,)), ("mobilenet", ("mobilenet", "regression"),
                                                                       (101,))):
        record = config_lib.to_json(ssrnet.get_config())
        record["model"] = {"family": family, **{key: value for key, value in record["model"].items()
                                                if key not in ("backbone", "head")}}
        if family == "dex":
            record["model"]["stages"] = [101]
        (tmp_path / family).mkdir()
        (tmp_path / family / "config.json").write_text(json.dumps({"config": record, "overrides": {}}))
        model = saved_model.read_config(tmp_path / family).model
        assert ((model.backbone, model.head), tuple(model.stages), "family" in model) == (pair, stages, False)


def test_the_heads_experiment_is_one_group_per_head_and_report_rows_name_head_and_rule(tmp_path):
    runs = sweep.expand(str(REPO / "experiments" / "heads.py:smoke"), seeds=1)
    groups = sweep.group_runs(runs)
    assert sorted(members[0].config.model.head for members in groups) == sorted(heads.HEADS)
    assert [run.name for run in runs][:3] == ["SSR-Net (3,3,3)", "DEX", "regression"]
    assert sorted(tensorboard_log.varied_keys([run.overrides for run in runs])["model.head"]) == sorted(heads.HEADS)
    # On a prepared dataset: the benchmark protocol's five splits for every head, each head's name covering its
    # splits as it covers seeds, one group per head and split, under the real-faces recipe for `epochs`.
    real = sweep.expand(str(REPO / "experiments" / "heads.py:data=utkface,epochs=24"), seeds=1)
    assert sorted((run.name, run.overrides["data.split_index"]) for run in real) == sorted(
        (run.name, k) for run in runs for k in range(5))
    assert {(run.config.data.name, run.config.data.protocol, run.config.train.epochs, run.config.data.cap,
             run.config.train.measure_inference) for run in real} == {("utkface", "benchmark", 24, 0, False)}
    assert len(sweep.group_runs(real)) == 50
    with pytest.raises(config_lib.ConfigError, match="medium is a schedule of the synthetic faces"):
        sweep.expand(str(REPO / "experiments" / "heads.py:data=utkface,medium"), seeds=1)
    rows = [{"run_id": run.run_id, "overrides": run.overrides, "name": run.name, "seed": 0, "status": "ok",
             "mae": 10.0 + index, "ca3": 0.1, "ca5": 0.2, "params": 1, "model_bytes": 4, "wall_s": 1.0,
             **architecture(run.config.model)} for index, run in enumerate(runs)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    table = report.display_table(report.aggregate(report.load_results(tmp_path)))
    assert table.loc["CORN", "head"] == "corn" and table.loc["CORN", "decode"] == "median"
    assert table.loc["SSR-Net (3,3,3)", "decode"] == "expectation"
