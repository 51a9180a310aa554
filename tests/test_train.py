"""Device-resident training: losses fall, one compile per config, bench and train agree epoch by epoch (one loop),
vmapped members agree with their runs alone, run files appear, and a SIGKILLed run resumes to the uninterrupted
result (and TensorBoard shows each of its epochs once)."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ssrnet
from ssr_jax import bench, config_lib, environment, tensorboard_log, train, xla_options
from ssr_jax.data import load_splits
from ssr_jax.models import onednn
from ssr_jax.models.conv import resolve
from ssr_jax.state import stack_members
from ssr_jax.train import make_train, run_epochs, train_and_evaluate
from one_step import LOSS_RTOL, assert_same_step, one_step
from tensorboard_events import assert_run_matches_its_files, scalars

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def smoke():
    config = ssrnet.get_config("smoke")
    return config, load_splits(config.data)


def test_loss_falls_and_the_epoch_compiles_once():
    # 32 steps at a constant learning rate, so that all of them train: the recipe's decay at 1/3 and 2/3 of 4 epochs
    # would leave only epoch 1 at full rate and make the ratio below a matter of the seed's first draws.
    config = config_lib.apply_overrides(ssrnet.get_config("smoke"), {
        "data.num_train": 256, "train.batch_size": 32, "train.epochs": 4,
        "optim.learning_rate": 3e-3, "optim.decay_fractions": ()})
    trainer = make_train(config, load_splits(config.data))
    assert trainer.data["train"]["image"].dtype == jnp.uint8  # the split lives on the device as uint8
    keys, hparams = stack_members([config])
    state = trainer.init(keys, hparams)
    losses = []
    for epoch in range(1, 5):
        state, metrics = trainer.train_epoch(state, keys, hparams, epoch)
        losses.append(float(metrics["train_loss"][0]))
    assert int(state.step[0]) == 4 * 8
    assert losses[-1] < 0.8 * losses[0], losses
    assert trainer.compiles("train_epoch") == 1
    # A new λ is a new value, not a new program.
    state, _ = trainer.train_epoch(state, keys, {**hparams, "lambda_d": jnp.full((1,), 0.5, jnp.float32)}, 5)
    assert trainer.compiles("train_epoch") == 1


def test_trainers_of_one_program_share_its_traces_and_train_as_a_fresh_trace_does(monkeypatch, smoke):
    """train.TRACED: a trainer of a config that differs only in values (seed, λ, learning rate) takes the traced
    programs of the trainer before it, and trains to the numbers of a trainer traced afresh for that config, bit for
    bit (a value baked into the shared trace as a constant would give the first config's numbers); another structure
    or another training split traces its own."""
    config, splits = smoke
    other = config_lib.apply_overrides(config, {"seed": 5, "model.lambda_d": 0.25, "model.lambda_local": 0.5,
                                                "optim.learning_rate": 3e-3})

    def history(trainer, config):
        keys, hparams = stack_members([config])
        epochs = run_epochs(trainer, trainer.init(keys, hparams), keys, hparams, first=1, last=config.train.epochs)
        return np.stack([[epoch.train_loss[0], epoch.metrics["mae"][0]] for epoch in epochs])

    monkeypatch.setattr(train, "TRACED", train.TracedPrograms())
    history(make_train(config, splits), config)
    shared = history(make_train(other, splits), other)
    assert train.TRACED.traced == 1
    monkeypatch.setattr(train, "TRACED", train.TracedPrograms())
    np.testing.assert_array_equal(shared, history(make_train(other, splits), other))
    make_train(config_lib.apply_overrides(other, {"train.batch_size": 8}), splits)
    make_train(other, ({name: values[:32] for name, values in splits[0].items()}, *splits[1:]))
    assert train.TRACED.traced == 3


def test_a_short_run_compiles_for_compile_speed_and_a_long_one_for_run_speed(monkeypatch):
    """train.SHORT_RUN_IMAGES: a run's training images over all its epochs and members decide XLA's optimisation
    level for its training and evaluation programs (init is always compiled for compile speed)."""
    compiled = []
    compile_program = train.EXECUTABLES.compile
    monkeypatch.setattr(train.EXECUTABLES, "compile", lambda lowered, signature, options, mesh: compiled.append(
        options) or compile_program(lowered, signature, options, mesh))
    smoke = ssrnet.get_config("smoke")  # 2 epochs of 64 images
    run_images = smoke.train.epochs * smoke.data.num_train
    trainer = make_train(smoke)
    keys, hparams = stack_members([smoke])
    state = trainer.init(keys, hparams)
    trainer.compile(state, keys, hparams)
    fast_compile = xla_options.COMPILE_SPEED_OPTIONS
    assert compiled[-3:] == [fast_compile, {**xla_options.compiler_options(), **fast_compile},
                             {**xla_options.compiler_options(), **fast_compile}]
    # The same run as a group just past the bound, and one member of a run just past it: optimised as always.
    members = train.SHORT_RUN_IMAGES // run_images + 1
    assert trainer.compiler_options("train_epoch", members) == xla_options.compiler_options()
    assert trainer.compiler_options("evaluate", members - 1) == {**xla_options.compiler_options(), **fast_compile}
    longer = make_train(config_lib.apply_overrides(smoke, {
        "train.epochs": train.SHORT_RUN_IMAGES // smoke.data.num_train + 1}))
    assert longer.compiler_options("train_epoch", 1) == longer.compiler_options("evaluate", 1) == \
        xla_options.compiler_options()


def test_bench_and_train_give_the_same_per_epoch_metrics(tmp_path, smoke):
    """`ssr-jax bench` times the loop that `ssr-jax train` runs (`train.run_epochs`): same config, same numbers."""
    config, splits = smoke
    config = config_lib.apply_overrides(config, {"seed": 3})
    result = bench.run_benchmark(config, warmup_epochs=1, timed_epochs=config.train.epochs - 1, splits=splits)
    train_and_evaluate(config, tmp_path / "run", splits=splits, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [entry["epoch"] for entry in result["history"]] == [1, 2]
    for row, entry in zip(rows, result["history"]):
        for name in ("train_loss", "mae", "ca3", "ca5"):
            np.testing.assert_allclose(entry[name], [row[name]], rtol=1e-6, err_msg=name)


def test_values_ride_a_vmapped_axis():
    """Two members with their own seed, learning rate and switches in one vmapped program take the step each takes
    alone (tests/one_step.py: the same loss, gradients, statistics and update, up to float32 rounding; a trained
    metric would add the CPU-dependent amplification of the two programs' rounding)."""
    # One step per epoch (16 examples, batch 16): an epoch is the step compared.
    config = config_lib.apply_overrides(ssrnet.get_config("smoke"), {"data.num_train": 16})
    trainer = make_train(config)
    keys = jax.random.split(jax.random.key(0), 2)
    members = {
        "learning_rate": jnp.array([1e-3, 3e-4], jnp.float32),
        "lambda_local": jnp.array([1.0, 0.0], jnp.float32),
        "lambda_d": jnp.array([1.0, 0.25], jnp.float32),
    }
    group = one_step(trainer, keys, members, b1=config.optim.b1)
    # The members really differ (different seeds, rates and switches)...
    assert abs(group["loss"][0] - group["loss"][1]) > 1e-2 * group["loss"][0]
    for index in range(2):
        alone = one_step(trainer, keys[index:index + 1], jax.tree.map(lambda x: x[index:index + 1], members),
                         b1=config.optim.b1)
        # ...and each takes its own step: its λ in the loss, its rate in the update.
        assert_same_step({name: values[index:index + 1] for name, values in group.items()}, alone, members=1,
                         learning_rate=float(members["learning_rate"][index]))


def test_a_large_group_is_evaluated_a_few_members_at_a_time_with_the_same_numbers(smoke):
    config, splits = smoke
    keys = jax.random.split(jax.random.key(0), 3)
    hparams = {"learning_rate": jnp.full(3, 1e-3), "lambda_local": jnp.array([1.0, 0.0, 0.5]),
               "lambda_d": jnp.array([1.0, 0.5, 0.0])}
    results, programs = {}, {}
    # 3 members: all at once (the default budget), or 64 // eval batch 32 = a chunk of 2 and a remainder of 1.
    for at_once in (config.train.eval_images_at_once, 64):
        trainer = make_train(config_lib.apply_overrides(config, {"train.eval_images_at_once": at_once}), splits)
        state = trainer.init(keys, hparams)
        results[at_once] = trainer.evaluate(state, hparams)
        programs[at_once] = trainer.jaxpr_text("evaluate", state, hparams, trainer.data)
    assert programs[64].count("scan[") > programs[config.train.eval_images_at_once].count("scan[")  # lax.map
    for name in ("mae", "ca3", "ca5", "count"):
        assert results[64][name].shape == (3,)
        # Untrained members: 1 + Δ near 0 makes some ages huge and ill-conditioned, hence not rtol 1e-6.
        np.testing.assert_allclose(results[64][name], results[config.train.eval_images_at_once][name], rtol=1e-3)
    assert len(set(np.asarray(results[64]["mae"]).round(4))) == 3  # the members differ

def test_run_directory_files_and_rerun(tmp_path, smoke, capsys):
    config, splits = smoke
    summary = train_and_evaluate(config, tmp_path / "run", splits=splits, overrides={"seed": 0})
    run = tmp_path / "run"
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["model"]["stages"] == [3, 3, 3] and record["overrides"] == {"seed": 0}
    assert record["packages"]["jax"] and "git_commit" in record
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert {"train_loss", "mae", "ca3", "ca5", "learning_rate", "images_per_s"} <= set(rows[0])
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["params"] == 40_915 and on_disk["mae"] == rows[-1]["mae"]
    for key in ("ca3", "ca5", "wall_s", "compile_s", "images_per_s", "mean_predictor_mae"):
        assert on_disk[key] is not None
    # MAE by decade of true age, over the whole split: the counts add up to it, the count-weighted mean is the MAE.
    counts, maes = on_disk["count_by_age"], on_disk["mae_by_age"]
    assert list(counts) == ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90-100"]
    assert sum(counts.values()) == on_disk["num_test"] and maes == rows[-1]["mae_by_age"]
    assert all((maes[group] is None) == (counts[group] == 0) for group in counts)
    weighted = sum(maes[group] * counts[group] for group in counts if counts[group]) / on_disk["num_test"]
    assert weighted == pytest.approx(on_disk["mae"], rel=1e-5)
    assert sorted(os.listdir(run / "checkpoint")) == ["4", "8"]  # 64 examples / batch 16 = 4 steps per epoch
    # The convolutions it ran, resolved before tracing for this backend, and where it ran (ssr_jax/environment.py).
    backend = jax.default_backend()
    assert on_disk["conv"] == {"train": resolve(config.model.conv, train=True, backend=backend),
                               "evaluate": resolve(config.model.conv, train=False, backend=backend)}
    where = on_disk["environment"]
    assert where["conv"] == on_disk["conv"] and where["versions"]["jax"] == jax.__version__
    assert where["dataset"] == environment.dataset_fingerprint(splits)
    assert where["devices"] == {jax.devices()[0].device_kind: 1} and where["git"]["commit"] == record["git_commit"]
    threads = onednn.training_threads() if on_disk["conv"]["train"] == "onednn" else None
    assert where["threads"]["onednn_training_threads"] == threads  # chosen with the kernels, passed into the model
    assert not [name for name in os.listdir(run) if name.startswith(".")]  # no temporary files left behind
    capsys.readouterr()
    assert train_and_evaluate(config, run, splits=splits) == summary
    assert "already finished" in capsys.readouterr().out


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path):
    overrides = {"data.num_train": 400, "train.batch_size": 20, "train.epochs": 4}
    flags = [f"--config.{key}={value}" for key, value in overrides.items()]
    command = [sys.executable, "-m", "ssr_jax", "train", "--config", "configs/ssrnet.py:smoke",
               "--workdir", str(tmp_path / "killed"), *flags]
    # The environment (conftest) carries the shared compilation cache.
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_checkpoint = tmp_path / "killed" / "checkpoint" / "20"
    deadline = time.time() + 180
    while not first_checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "summary.json").exists()
    # What a kill just before a checkpoint leaves: a TensorBoard file with epochs past it (other values), torn.
    tensorboard_log.RunLog(tmp_path, {}, [{"epoch": 1, "mae": -1.0}]).epoch({"epoch": 2, "mae": -1.0})
    (stale_file,) = tensorboard_log.event_files(tmp_path)
    stale_file.write_bytes(stale_file.read_bytes() + b"\x30\x00\x00\x00torn")
    stale_file.rename(tmp_path / "killed" / stale_file.name)

    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["resumed_from_epoch"] >= 1

    config = config_lib.apply_overrides(ssrnet.get_config("smoke"), overrides)
    uninterrupted = train_and_evaluate(config, tmp_path / "straight")
    np.testing.assert_allclose(summary["mae"], uninterrupted["mae"], rtol=1e-5)
    rows = lambda run: [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["epoch"] for r in rows("killed")] == [1, 2, 3, 4]
    # The run's wall time spans both invocations: the resumed rows carry on from the checkpoint's row, and the
    # summary counts both.
    elapsed, resumed_at = [r["elapsed_s"] for r in rows("killed")], summary["resumed_from_epoch"]
    assert elapsed[resumed_at] >= elapsed[resumed_at - 1] + summary["compile_s"] and elapsed == sorted(elapsed)
    assert summary["wall_s"] >= elapsed[-1]
    np.testing.assert_allclose([r["mae"] for r in rows("killed")], [r["mae"] for r in rows("straight")], rtol=1e-5)
    # TensorBoard shows each epoch once, with metrics.jsonl's values, in one event file per run.
    for run in ("killed", "straight"):
        assert len(tensorboard_log.event_files(tmp_path / run)) == 1
        assert_run_matches_its_files(tmp_path / run)
    assert [step for step, _ in scalars(tmp_path / "killed")["epoch/mae"]] == [1, 2, 3, 4]


def test_augmentation_runs_inside_the_training_step_and_not_at_evaluation(smoke):
    """Identity ranges take the un-augmented step (the two programs differ only by the identity transform, so up to
    float32 rounding: tests/one_step.py); the reference's ranges change what is trained on; evaluation of one state
    is the same whatever the augmentation settings."""
    config, splits = smoke
    one_step_config = config_lib.apply_overrides(config, {"data.num_train": config.train.batch_size})
    one_step_splits = (jax.tree.map(lambda rows: rows[: config.train.batch_size], splits[0]), *splits[1:])
    off = config_lib.apply_overrides(one_step_config, {"data.augment.enabled": False})
    identity = config_lib.apply_overrides(one_step_config, {
        "data.augment.flip": False, "data.augment.rotation_deg": 0.0, "data.augment.shear": 0.0,
        "data.augment.shift": 0.0, "data.augment.zoom": (1.0, 1.0)})
    keys, hparams = stack_members([config])
    outcomes = {}
    for name, variant in (("off", off), ("identity", identity), ("reference", one_step_config)):
        trainer = make_train(variant, one_step_splits)
        outcomes[name] = (one_step(trainer, keys, hparams, b1=config.optim.b1), trainer)
    assert_same_step(outcomes["identity"][0], outcomes["off"][0], members=1,
                     learning_rate=config.optim.learning_rate)
    assert abs(outcomes["reference"][0]["loss"][0] / outcomes["off"][0]["loss"][0] - 1) > 100 * LOSS_RTOL
    state, _ = outcomes["off"][1].train_epoch(outcomes["off"][1].init(keys, hparams), keys, hparams, 1)
    scores = [float(outcomes[name][1].evaluate(state, hparams)["mae"][0]) for name in ("off", "reference")]
    assert scores[0] == scores[1]  # the same evaluation program: exact


def test_init_from_starts_a_run_from_another_runs_weights(tmp_path):
    from ssr_jax import saved_model

    config = ssrnet.get_config("smoke")
    train_and_evaluate(config, tmp_path / "pretrained", progress=False)
    _, pretrained = saved_model.load(tmp_path / "pretrained")
    # Fine-tune with a vanishing learning rate: the run must end where it started, i.e. at the pretrained weights.
    tuned = config_lib.apply_overrides(config, {"init_from": str(tmp_path / "pretrained"), "seed": 7,
                                                "optim.learning_rate": 1e-12})
    train_and_evaluate(tuned, tmp_path / "tuned", progress=False)
    _, after = saved_model.load(tmp_path / "tuned")
    for start, end in zip(jax.tree.leaves(pretrained["params"]), jax.tree.leaves(after["params"])):
        np.testing.assert_allclose(end, start, atol=1e-6)
    scratch = config_lib.apply_overrides(config, {"seed": 7, "optim.learning_rate": 1e-12})
    train_and_evaluate(scratch, tmp_path / "scratch", progress=False)
    _, fresh = saved_model.load(tmp_path / "scratch")
    kernel = lambda variables: variables["params"]["stage1"]["p"]["kernel"]  # noqa: E731
    assert np.abs(kernel(fresh) - kernel(pretrained)).max() > 1e-3  # so the comparison above could fail


def test_init_from_a_different_architecture_names_the_first_differing_parameter(tmp_path):
    config = ssrnet.get_config("smoke")
    train_and_evaluate(config, tmp_path / "pretrained", progress=False)
    other = config_lib.apply_overrides(config, {"init_from": str(tmp_path / "pretrained"),
                                                "model.stages": (3, 3, 5)})
    with pytest.raises(config_lib.ConfigError, match=r"architecture mismatch: parameter params/stage3/eta/bias has "
                                                     r"shape \(3,\) in .*, this run needs \(5,\)"):
        train_and_evaluate(other, tmp_path / "other", progress=False)
    assert not (tmp_path / "other" / "checkpoint").exists()
    missing = config_lib.apply_overrides(config, {"init_from": str(tmp_path / "nowhere")})
    with pytest.raises(config_lib.ConfigError, match="not a model directory"):
        train_and_evaluate(missing, tmp_path / "missing", progress=False)


def test_chunked_feeding_trains_and_evaluates_exactly_like_the_resident_split():
    """data.device_chunk: the split stays on the host and goes to the device a chunk at a time."""
    config = config_lib.apply_overrides(
        ssrnet.get_config("smoke"), {"data.num_train": 256, "train.batch_size": 32, "train.epochs": 4}
    )
    train, test = load_splits(config.data)
    splits = (train, test, {name: array[:24] for name, array in train.items()})  # and a validation split
    chunked = config_lib.apply_overrides(config, {"data.device_chunk": 128})
    trainer = make_train(chunked, splits)
    assert trainer.chunked and isinstance(trainer.data.train["image"], np.ndarray)  # nothing resident
    assert trainer.data.chunks_per_epoch == 2 and trainer.steps_per_epoch == 8  # 2 chunks × 128 // 32 steps
    keys, hparams = stack_members([chunked])
    state = trainer.init(keys, hparams)
    trainer.compile(state, keys, hparams)
    losses = []
    for epoch in range(1, 5):
        state, metrics = trainer.train_epoch(state, keys, hparams, epoch)
        losses.append(float(metrics["train_loss"][0]))
    assert int(state.step[0]) == 32 and losses[-1] < 0.8 * losses[0], losses
    # The test split (40 examples, eval batch 32 → 2 padded batches) in chunks of one batch: exact metrics; the
    # validation split (24, padded as the test split) likewise.
    resident = make_train(config, splits)
    for split, count in (("test", 40), ("val", 24)):
        whole, pieces = resident.evaluate(state, hparams, split), trainer.evaluate(state, hparams, split)
        assert int(whole["count"][0]) == count
        for name in ("mae", "ca3", "ca5", "count", "age_abs_error", "age_count"):
            np.testing.assert_allclose(pieces[name], whole[name], rtol=1e-6)
    # Each epoch sees other chunks, and a rerun the same ones (resume).
    first, again, second = (next(trainer.data.train_chunks(e))["train"]["age"] for e in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)
