"""TensorBoard event files, read back with TensorBoard's own reader: every scalar as metrics.jsonl / summary.json
hold it, the overrides as HParams, each epoch once after a kill, and a sweep's experiment naming its varied keys.
(End to end — a real run, a SIGKILLed run, a vmapped sweep — in test_train and test_sweep.)"""
import json
import math

import numpy as np
import pytest
from tensorboard.plugins.hparams import api_pb2

from ssr_jax import tensorboard_log
from tensorboard_events import assert_run_matches_its_files, hparams, scalars


def row(epoch, mae):
    return {"epoch": epoch, "train_loss": 10.0 - epoch, "mae": mae, "ca3": 0.25, "ca5": 0.5,
            "learning_rate": 1e-3, "images_per_s": 1234.5678, "epoch_s": 0.1}


def test_every_number_of_the_run_files_is_a_scalar_and_the_overrides_are_hparams(tmp_path):
    rows = [row(1, 9.123456789), row(2, None)]  # None: a non-finite MAE, recorded as null
    summary = {"status": "ok", "mae": None, "ca3": 0.25, "ca5": 0.5, "epochs": 2, "params": 40915, "group": "g"}
    log = tensorboard_log.RunLog(tmp_path, {"model.lambda_d": 0.5, "model.stages": (3, 3), "data.augment": False,
                                            "seed": 2}, rows[:1])
    log.epoch(rows[1])
    log.finish(summary)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert_run_matches_its_files(tmp_path)
    found = scalars(tmp_path)
    assert found["epoch/mae"][0] == (1, np.float32(9.123456789)) and math.isnan(found["epoch/mae"][1][1])
    assert found["final/params"] == [(2, 40915.0)] and "final/group" not in found and "final/status" not in found

    session = hparams(tmp_path)
    start = session["_hparams_/session_start_info"].session_start_info.hparams
    assert {name: value.WhichOneof("kind") for name, value in start.items()} == {
        "model.lambda_d": "number_value", "model.stages": "string_value", "data.augment": "bool_value",
        "seed": "number_value"}
    assert (start["model.lambda_d"].number_value, start["model.stages"].string_value, start["seed"].number_value) \
        == (0.5, "(3, 3)", 2.0)
    assert session["_hparams_/session_end_info"].session_end_info.status == api_pb2.STATUS_SUCCESS


def test_a_restart_rewrites_the_run_from_the_kept_rows_so_each_epoch_is_there_once(tmp_path):
    # The killed process had logged epochs 1–3, then died mid-record; its checkpoint was at epoch 2, so the
    # restart keeps rows 1–2 (metrics.jsonl) and replays epoch 3, with other images/s.
    killed = tensorboard_log.RunLog(tmp_path, {"seed": 0}, [row(1, 9.0), row(2, 8.0)])
    killed.epoch(row(3, 7.5))
    (old,) = tensorboard_log.event_files(tmp_path)
    with open(old, "ab") as file:
        file.write(b"\x30\x00\x00\x00\x00\x00\x00\x00torn")

    rows = [row(1, 9.0), row(2, 8.0), {**row(3, 7.0), "images_per_s": 999.0}, row(4, 6.0)]
    log = tensorboard_log.RunLog(tmp_path, {"seed": 0}, rows[:2])
    assert tensorboard_log.event_files(tmp_path) == [old]  # until the restarted run logs its first epoch
    for replayed in rows[2:]:
        log.epoch(replayed)
    summary = {"status": "diverged", "mae": 6.0, "epochs": 4}
    log.finish(summary)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "summary.json").write_text(json.dumps(summary))

    assert tensorboard_log.event_files(tmp_path) != [old] and len(tensorboard_log.event_files(tmp_path)) == 1
    assert_run_matches_its_files(tmp_path)
    assert scalars(tmp_path)["epoch/mae"] == [(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0)]
    assert hparams(tmp_path)["_hparams_/session_end_info"].session_end_info.status == api_pb2.STATUS_FAILURE


def test_a_run_that_logs_nothing_leaves_no_file(tmp_path):
    tensorboard_log.RunLog(tmp_path, {"seed": 0}, [row(1, 9.0)])
    assert tensorboard_log.event_files(tmp_path) == []


def test_the_sweep_experiment_names_the_keys_its_runs_vary(tmp_path):
    runs = [{"train.eval_batch_size": 100, "model.lambda_local": local, "model.lambda_d": d, "model.stages": stages,
             "seed": seed} for local in (0.0, 1.0) for d in (0.0, 1.0) for seed in (0, 1, 2)
            for stages in [(3, 3, 3)]]
    runs[0] = {**runs[0], "model.stages": [2, 2]}  # as read back from JSON: a list
    assert tensorboard_log.varied_keys(runs) == {"model.lambda_d": [0.0, 1.0], "model.lambda_local": [0.0, 1.0],
                                                 "model.stages": ["(2, 2)", "(3, 3, 3)"], "seed": [0.0, 1.0, 2.0]}
    tensorboard_log.write_experiment(tmp_path, runs)
    tensorboard_log.write_experiment(tmp_path, runs[3:6])  # a rerun replaces the experiment
    assert len(tensorboard_log.event_files(tmp_path)) == 1
    experiment = hparams(tmp_path)["_hparams_/experiment"].experiment
    assert [(info.name, info.type, [v.number_value for v in info.domain_discrete.values])
            for info in experiment.hparam_infos] == [("seed", api_pb2.DATA_TYPE_FLOAT64, [0.0, 1.0, 2.0])]
    tensorboard_log.write_experiment(tmp_path, runs)
    experiment = hparams(tmp_path)["_hparams_/experiment"].experiment
    assert [info.name for info in experiment.hparam_infos] == ["model.lambda_d", "model.lambda_local",
                                                               "model.stages", "seed"]
    assert experiment.hparam_infos[2].type == api_pb2.DATA_TYPE_STRING
    assert [v.string_value for v in experiment.hparam_infos[2].domain_discrete.values] == ["(2, 2)", "(3, 3, 3)"]
    assert [info.name.tag for info in experiment.metric_infos] == ["final/mae", "final/ca3", "final/ca5"]


@pytest.mark.parametrize("value, expected", [(True, True), (3, 3.0), (0.5, 0.5), ((3, 3), "(3, 3)"),
                                             ([3, 3], "(3, 3)"), ("dex", "dex")])
def test_hparam_values(value, expected):
    assert tensorboard_log.hparam_value(value) == expected and type(tensorboard_log.hparam_value(value)) is type(
        expected)
