"""Sweeps: expansion and validation, grouping by program, vmapped groups against single runs, resumption after
SIGKILL, a diverging member, a failing group, shards, and the command line end to end."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ssr_jax import config_lib, sweep, train
from ssr_jax.models.conv import resolve
from ssr_jax.state import stack_members
from ssr_jax.sweep import eta_text, product, zipit
from one_step import LOSS_RTOL, assert_same_step, one_step
from tensorboard_events import assert_run_matches_its_files, hparams

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment(tmp_path, sweep_body, config_changes="", name="experiment.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""
        from configs import ssrnet
        from ssr_jax.sweep import named, product, sweep, zipit

        def get_config(arg=None):
            config = ssrnet.get_config("smoke")
            {config_changes or "pass"}
            return config

        def get_sweep(arg=None):
            return {sweep_body}
    """))
    return str(path)


def results(workdir):
    return {row["run_id"]: row for row in map(json.loads, (workdir / "results.jsonl").read_text().splitlines())}


def test_sweep_helpers():
    lambdas = sweep.sweep("model.lambda_d", [0.0, 1.0])
    assert lambdas == [{"model.lambda_d": 0.0}, {"model.lambda_d": 1.0}]
    assert product(sweep.sweep("a", [1, 2]), sweep.sweep("b", ["x", "y"])) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert zipit(sweep.sweep("a", [1, 2]), sweep.sweep("b", ["x", "y"])) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(ValueError, match="equal length"):
        zipit(sweep.sweep("a", [1, 2]), sweep.sweep("b", ["x"]))


@pytest.mark.parametrize("body, message", [
    ('sweep("model.lambda_d", [0.5, 2.0])', r"run \{'model.lambda_d': 2.0, 'seed': 0\}: model.lambda_d=2.0: must lie"),
    ('sweep("model.stagez", [(3, 3)])', "unknown config key 'model.stagez'"),
    ('sweep("seed", [1, 2])', "seeds come from --seeds"),
    ('[{"model.v": 1.0}, {"model.v": 1.0}]', "lists .* twice"),
    ('[named("a", {"model.v": 1.0}), named("a", {"model.v": 2.0})]', "two sweep entries are named 'a'"),
    ('[named(3, {"model.v": 1.0})]', "name=3; a name is a string"),
])
def test_every_run_is_validated_before_anything_runs(tmp_path, body, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        sweep.run_sweep(experiment(tmp_path, body), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_name_covers_its_configs_replicates_but_not_two_configs(tmp_path):
    # A named config on the benchmark's five splits is one name over five runs; the same name on another config
    # stays an error even when the split differs too.
    body = '[named("a", {"model.v": 1.0, "data.split_index": k}) for k in range(2)]'
    runs = sweep.expand(experiment(tmp_path, body, 'config.data.name = "utkface"; config.data.protocol = '
                                   '"benchmark"; config.data.split_index = 0'), seeds=1)
    assert [(run.name, run.overrides["data.split_index"]) for run in runs] == [("a", 0), ("a", 1)]
    body = '[named("a", {"model.v": 1.0, "data.split_index": 0}), named("a", {"model.v": 2.0, "data.split_index": 1})]'
    with pytest.raises(config_lib.ConfigError, match="two sweep entries are named 'a'"):
        sweep.expand(experiment(tmp_path, body, 'config.data.name = "utkface"; config.data.protocol = '
                                '"benchmark"; config.data.split_index = 0', name="second.py"), seeds=1)


def test_the_dynamic_range_ablation_on_real_faces_is_four_cells_on_each_of_the_five_splits():
    runs = sweep.expand("experiments/dynamic_range.py:data=utkface,epochs=24", seeds=1)
    cells = {(run.config.model.lambda_d, run.config.model.lambda_local) for run in runs}
    assert cells == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)}
    assert sorted(run.config.data.split_index for run in runs) == sorted(list(range(5)) * 4)
    assert {(run.config.data.name, run.config.data.protocol, run.config.train.epochs) for run in runs} == {
        ("utkface", "benchmark", 24)}
    # λ are values, the split is structural: one program per split, its four cells vmapped.
    assert sorted(len(group) for group in sweep.group_runs(runs)) == [4] * 5


def test_expansion_run_ids_and_groups():
    runs = sweep.expand("experiments/dynamic_range.py:smoke", seeds=2)
    assert len(runs) == 8 and {run.seed for run in runs} == {0, 1}
    assert [run.run_id for run in runs] == [run.run_id for run in sweep.expand("experiments/dynamic_range.py:smoke",
                                                                                 seeds=2)]
    assert runs[0].run_id.startswith("lambda_d=0.0,lambda_local=0.0,seed=0-")
    assert len({run.run_id for run in runs}) == 8
    groups = sweep.group_runs(runs)
    assert len(groups) == 1 and len(groups[0]) == 8  # λ switches and seeds are values: one program
    chunks = sweep.group_runs(runs, max_members=3)
    assert [len(chunk) for chunk in chunks] == [3, 3, 2] and len({chunk[0].group for chunk in chunks}) == 3
    stage_groups = sweep.group_runs(sweep.expand("experiments/stages.py:smoke", seeds=1))
    assert len(stage_groups) == 8  # every stage layout is its own program


def test_set_overrides_every_run_and_is_checked():
    common = config_lib.parse_overrides(["train.eval_batch_size=8", "model.stages=(2, 2)"])
    assert common == {"train.eval_batch_size": 8, "model.stages": (2, 2)}
    runs = sweep.expand("experiments/dynamic_range.py:smoke", seeds=1, common=common)
    assert len(runs) == 4 and {run.config.train.eval_batch_size for run in runs} == {8}
    assert {tuple(run.config.model.stages) for run in runs} == {(2, 2)}
    assert all("eval_batch_size=8" in run.run_id and run.overrides["model.lambda_d"] in (0.0, 1.0) for run in runs)
    with pytest.raises(config_lib.ConfigError, match="sweeps model.lambda_d itself"):
        sweep.expand("experiments/dynamic_range.py:smoke", common={"model.lambda_d": 0.5})
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'train.eval_batch'"):
        sweep.expand("experiments/dynamic_range.py:smoke", common={"train.eval_batch": 8})
    with pytest.raises(config_lib.ConfigError, match="use key=value"):
        config_lib.parse_overrides(["parallel.members"])


def test_shards_partition_the_runs():
    runs = sweep.expand("experiments/lambda_grid.py:smoke", seeds=1)
    shards = [sweep.shard(runs, f"{index}/3") for index in range(3)]
    ids = [run.run_id for part in shards for run in part]
    assert sorted(ids) == sorted(run.run_id for run in runs) and len(set(ids)) == 25
    with pytest.raises(config_lib.ConfigError, match="--shard=3/3"):
        sweep.shard(runs, "3/3")


def test_a_group_compiles_once_and_its_members_step_as_they_would_alone(tmp_path, monkeypatch):
    trainers = []
    make_train = train.make_train
    monkeypatch.setattr(train, "make_train", lambda *a, **k: trainers.append(make_train(*a, **k)) or trainers[-1])
    # One step per epoch (16 examples, batch 16), so a member's first epoch is the single step compared below.
    spec = experiment(tmp_path, 'product(sweep("model.lambda_local", [0.0, 1.0]), sweep("model.lambda_d", [0.0, 1.0]))',
                      "config.data.num_train = config.train.batch_size")
    # A vmapped group, as on an accelerator (a CPU trains one run at a time by default).
    rows = sweep.run_sweep(spec, tmp_path / "sweep", seeds=2, max_members=sweep.ACCELERATOR_MAX_MEMBERS)
    assert len(rows) == 8 and {row["status"] for row in rows} == {"ok"}
    assert len(trainers) == 1 and trainers[0].compiles("train_epoch") == 1
    assert {row["group_members"] for row in rows} == {8}
    # Every row names the convolutions its group ran: vmapped members convolve as patches (conv.resolve).
    assert all(row["conv"] == row["environment"]["conv"] == {"train": "patches", "evaluate": "patches"}
               for row in rows)

    # The group's program against each member's own, one step from the same initial state (tests/one_step.py): a
    # metric after training would add the CPU-dependent amplification of the two layouts' rounding.
    runs = sweep.expand(spec, seeds=2)
    group = one_step(trainers[0], *stack_members([run.config for run in runs]), b1=runs[0].config.optim.b1)
    for index, run in list(enumerate(runs))[::3]:
        # The group's members convolve as patches (`conv.resolve`, vmapped); alone, with the same implementation,
        # only the vmapping differs.
        alone_config = config_lib.apply_overrides(run.config, {"model.conv": "patches"})
        alone = one_step(make_train(alone_config), *stack_members([alone_config]), b1=alone_config.optim.b1)
        member = {name: values[index:index + 1] for name, values in group.items()}
        assert_same_step(member, alone, members=1, learning_rate=alone_config.optim.learning_rate)
        # What the sweep recorded for the member is that step's loss.
        recorded = json.loads((tmp_path / "sweep" / "runs" / run.run_id / "metrics.jsonl").read_text().splitlines()[0])
        np.testing.assert_allclose(recorded["train_loss"], alone["loss"][0], rtol=LOSS_RTOL)
    # A rerun finds every run finished and trains nothing.
    trainers.clear()
    assert len(sweep.run_sweep(spec, tmp_path / "sweep", seeds=2)) == 8 and not trainers


def test_a_cpu_sweep_trains_one_run_at_a_time_and_traces_and_compiles_each_program_once(tmp_path, monkeypatch):
    trainers = []
    make_train = train.make_train
    monkeypatch.setattr(train, "make_train", lambda *a, **k: trainers.append(make_train(*a, **k)) or trainers[-1])
    monkeypatch.setattr(train, "EXECUTABLES", train.ExecutableCache())  # count this sweep's compilations only
    monkeypatch.setattr(train, "TRACED", train.TracedPrograms())  # and its traces
    spec = experiment(tmp_path, 'sweep("model.lambda_d", [0.0, 0.5, 1.0])')
    rows = sweep.run_sweep(spec, tmp_path / "sweep", progress=False)
    assert len(rows) == 3 and {row["status"] for row in rows} == {"ok"} and len({row["group"] for row in rows}) == 3
    assert {row["group_members"] for row in rows} == {1} and len(trainers) == 3
    alone = {"train": resolve("auto", train=True), "evaluate": resolve("auto", train=False)}
    assert all(row["environment"]["conv"] == alone and row["environment"]["dataset"] == rows[0]["environment"][
        "dataset"] for row in rows)  # one run at a time: each with the run's own convolutions, all on the same data
    # The runs differ only in λ_d, an argument of the programs: init, train_epoch and evaluate are traced and
    # compiled once, for the first run's trainer.
    assert train.EXECUTABLES.compiled == 3 and train.TRACED.traced == 1
    assert len({row["mae"] for row in rows}) == 3  # yet each run trained its own λ_d


@pytest.mark.parametrize("max_members", [0, -2])
def test_a_group_size_below_one_is_refused_before_anything_is_written(tmp_path, max_members):
    spec = experiment(tmp_path, 'sweep("model.lambda_d", [0.0, 1.0])')
    with pytest.raises(config_lib.ConfigError, match=f"--max_members={max_members}: must be at least 1"):
        sweep.run_sweep(spec, tmp_path / "out", max_members=max_members)
    assert not (tmp_path / "out").exists()


def test_default_group_size_is_one_run_on_a_cpu_and_a_group_elsewhere():
    runs = sweep.expand("experiments/dynamic_range.py:smoke", seeds=1)
    assert sweep.default_max_members(runs, "cpu") == 1
    assert sweep.default_max_members(runs, "gpu") == sweep.default_max_members(runs, "tpu") == 32
    split = sweep.expand("experiments/dynamic_range.py:smoke", seeds=1, common={"parallel.members": 2})
    assert sweep.default_max_members(split, "cpu") == 32  # member parallelism needs the group it splits


def test_a_diverging_member_does_not_stop_the_others(tmp_path):
    # Four seeds make one vmapped group of eight, the program of
    # test_a_group_compiles_once_and_its_members_step_as_they_would_alone (compiled once).
    spec = experiment(tmp_path, 'sweep("optim.learning_rate", [1e-3, 1e4])',
                      "config.data.num_train = config.train.batch_size")
    rows = sweep.run_sweep(spec, tmp_path / "out", seeds=4, max_members=sweep.ACCELERATOR_MAX_MEMBERS)
    assert len(rows) == 8 and {row["group_members"] for row in rows} == {8}
    for row in rows:
        if row["overrides"]["optim.learning_rate"] == 1e4:
            assert row["status"] == "diverged"
        else:
            assert row["status"] == "ok" and np.isfinite(row["mae"]) and row["epochs"] == 2


def test_a_failing_group_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    spec = experiment(tmp_path, 'sweep("model.stages", [(3, 3, 3), (2, 2, 2)])')
    train_members = sweep.train_members

    def broken_for_two_stages(configs, *args, **kwargs):
        if tuple(configs[0].model.stages) == (2, 2, 2):
            raise RuntimeError("simulated out-of-memory")
        return train_members(configs, *args, **kwargs)

    monkeypatch.setattr(sweep, "train_members", broken_for_two_stages)
    rows = {tuple(row["overrides"]["model.stages"]): row for row in sweep.run_sweep(spec, tmp_path / "out")}
    assert rows[(3, 3, 3)]["status"] == "ok"
    assert rows[(2, 2, 2)]["status"] == "failed" and "simulated out-of-memory" in rows[(2, 2, 2)]["traceback"]
    monkeypatch.setattr(sweep, "train_members", train_members)
    rows = {tuple(row["overrides"]["model.stages"]): row for row in sweep.run_sweep(spec, tmp_path / "out")}
    assert rows[(2, 2, 2)]["status"] == "ok"  # failed runs are retried


def test_sigkilled_sweep_resumes_to_the_uninterrupted_result(tmp_path):
    # One member on the shapes of test_train's SIGKILL test: the two share their compiled programs (cache).
    spec = experiment(tmp_path, 'sweep("model.lambda_d", [0.5])',
                      "config.data.num_train, config.train.batch_size, config.train.epochs = 400, 20, 4")
    command = [sys.executable, "-m", "ssr_jax", "sweep", spec, "--workdir", str(tmp_path / "killed")]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while process.poll() is None and time.time() < deadline:
        if list((tmp_path / "killed" / "groups").glob("*/checkpoint/20")):  # epoch 1 of 4 saved
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the sweep ended before it could be killed"
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr

    sweep.run_sweep(spec, tmp_path / "straight")
    killed, straight = results(tmp_path / "killed"), results(tmp_path / "straight")
    assert killed.keys() == straight.keys() and len(killed) == 1
    for run_id, row in killed.items():
        assert row["resumed_from_epoch"] >= 1 and row["status"] == "ok"
        np.testing.assert_allclose(row["mae"], straight[run_id]["mae"], rtol=1e-5)
        assert_run_matches_its_files(tmp_path / "killed" / "runs" / run_id)  # TensorBoard: each epoch once


def test_command_line_sweep_then_report(tmp_path):
    workdir = tmp_path / "dynamic_range"
    swept = subprocess.run([sys.executable, "-m", "ssr_jax", "sweep", "experiments/dynamic_range.py:smoke",
                            "--workdir", str(workdir), "--seeds", "1"], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert swept.returncode == 0, swept.stderr
    assert len(results(workdir)) == 4
    # TensorBoard: one run per vmapped member with its overrides as HParams; the experiment names the varied keys.
    for row in results(workdir).values():
        assert_run_matches_its_files(workdir / "runs" / row["run_id"])
        start = hparams(workdir / "runs" / row["run_id"])["_hparams_/session_start_info"].session_start_info
        assert {name: value.number_value for name, value in start.hparams.items()} == row["overrides"]
    experiment = hparams(workdir)["_hparams_/experiment"].experiment
    assert [info.name for info in experiment.hparam_infos] == ["model.lambda_d", "model.lambda_local"]
    reported = subprocess.run([sys.executable, "-m", "ssr_jax", "report", str(workdir), "--plot", "--by_age"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert reported.returncode == 0, reported.stderr
    assert "lambda_d=0.0, lambda_local=1.0" in reported.stdout
    assert "MAE by true age (mean over seeds and splits):\n| config " in reported.stdout
    assert "| examples " in reported.stdout
    for name in ("results.md", "results.tex", "results.csv", "pivot.md", "heatmap.png", "learning_curves.png",
                 "by_age.md", "mae_by_age.png"):
        assert (workdir / "report" / name).stat().st_size > 0


def test_eta_is_the_rate_so_far_times_the_work_left():
    assert eta_text(0.0, 0, 10) == "unknown" and eta_text(0.0, 0, 0) == "0 s"
    assert eta_text(10.0, 5, 5) == "0 min 10 s"
    assert eta_text(90.0, 1, 2) == "3 min 00 s"
    assert eta_text(3600.0, 1, 2) == "2 h 00 min"


def test_job_launcher_trains_each_group_as_a_job_with_the_local_numbers(tmp_path):
    """--launcher submitit_local is the --launcher slurm path (one submitit job per group) on this machine."""
    # The stage layouts of test_a_failing_group_is_recorded_and_the_sweep_goes_on: the jobs find its compiled
    # training programs in the cache.
    spec = experiment(tmp_path, 'sweep("model.stages", [(3, 3, 3), (2, 2, 2)])')
    command = [sys.executable, "-m", "ssr_jax", "sweep", spec, "--workdir", str(tmp_path / "jobs"),
               "--launcher", "submitit_local", "--job", "timeout_min=10,cpus_per_task=1", "--wait",
               "--set", "train.eval_batch_size=10"]  # the jobs must see --set too
    submitted = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert submitted.returncode == 0, submitted.stderr
    jobs = [json.loads(line) for line in (tmp_path / "jobs" / "jobs.jsonl").read_text().splitlines()]
    assert len(jobs) == 2 and submitted.stdout.count("submitted group") == 2
    assert sorted(len(job["runs"]) for job in jobs) == [1, 1]

    sweep.run_sweep(spec, tmp_path / "local", progress=False, common={"train.eval_batch_size": 10})
    by_job, local = results(tmp_path / "jobs"), results(tmp_path / "local")
    assert by_job.keys() == local.keys() and len(by_job) == 2
    for run_id, row in by_job.items():
        assert row["status"] == "ok" and row["group"] == local[run_id]["group"]
        np.testing.assert_allclose(row["mae"], local[run_id]["mae"], rtol=1e-5)

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to submit" in again.stdout


def test_job_parameters_are_parsed_and_checked_before_submission(tmp_path):
    from ssr_jax import launch

    assert launch.parse_job_parameters(["timeout_min=90", "mem_gb=7.5", "slurm_partition=gpu"]) == {
        "timeout_min": 90, "mem_gb": 7.5, "slurm_partition": "gpu"}
    with pytest.raises(config_lib.ConfigError, match="use key=value"):
        launch.parse_job_parameters(["gpu"])
    with pytest.raises(config_lib.ConfigError, match="--job: .*gpus_per_nod"):
        launch.make_executor("submitit_local", tmp_path, {"gpus_per_nod": 1})
    with pytest.raises(config_lib.ConfigError, match="--launcher=pbs: choose one of local, slurm, submitit_local"):
        launch.run_sweep(experiment(tmp_path, 'sweep("model.lambda_d", [0.0])'), tmp_path / "w", launcher="pbs")


def record_finished(workdir, runs, maes):
    """Run directories as a sweep leaves its finished runs: config.json and an "ok" summary."""
    from ssr_jax import record

    for mae, run in zip(maes, runs):
        run_dir = workdir / "runs" / run.run_id
        run_dir.mkdir(parents=True)
        record.record_config(run_dir, run.config, run.overrides, name=run.name)
        (run_dir / "summary.json").write_text(json.dumps({"status": "ok", "mae": mae, "ca3": 0.1, "ca5": 0.2}))


def test_shards_sharing_a_workdir_write_every_run_in_the_experiments_order(tmp_path):
    spec = experiment(tmp_path, 'sweep("model.lambda_d", [1.0, 0.5, 0.0, 0.75])')
    first, pending, workdir, every_run = sweep.plan(spec, tmp_path / "w", seeds=1, shard_spec="0/2")
    second, *_ = sweep.plan(spec, tmp_path / "w", seeds=1, shard_spec="1/2")
    assert [run.run_id for run in every_run] == [run.run_id for run in sweep.expand(spec, seeds=1)]
    assert len(first) == len(second) == 2 and {r.run_id for r in first + second} == {r.run_id for r in every_run}
    record_finished(workdir, every_run, [5.0, 6.0, 7.0, 8.0])
    rows = sweep.write_results(workdir, every_run)
    assert [(row["overrides"]["model.lambda_d"], row["mae"]) for row in rows] == [(1.0, 5.0), (0.5, 6.0),
                                                                                    (0.0, 7.0), (0.75, 8.0)]


def test_a_named_entry_labels_its_report_rows_and_keeps_its_run_ids(tmp_path):
    from ssr_jax import report

    plain = sweep.expand(experiment(tmp_path, 'sweep("model.lambda_d", [0.5, 1.0])', name="plain.py"), seeds=2)
    spec = experiment(tmp_path, '[named("half λ_d", {"model.lambda_d": 0.5}), {"model.lambda_d": 1.0}]')
    runs = sweep.expand(spec, seeds=2)
    assert [run.run_id for run in runs] == [run.run_id for run in plain]
    assert [run.name for run in runs] == ["half λ_d", "half λ_d", "", ""]
    assert all("name" not in run.overrides for run in runs)
    record_finished(tmp_path, runs, [7.0, 8.0, 9.0, 10.0])
    rows = sweep.write_results(tmp_path)  # no names given: the recorded ones
    assert [row.get("name") for row in rows] == ["half λ_d", "half λ_d", None, None]
    table = report.aggregate(report.load_results(tmp_path))
    assert list(table.index) == ["half λ_d", "lambda_d=1.0"]
    assert table["mae_mean"].tolist() == [7.5, 9.5]
    # Renamed and reordered in the experiment file: its names win over the recorded ones and its order is the
    # rows' (and so the table's); nothing retrains.
    renamed = [dataclasses.replace(run, name="Δ/2" if run.name else "") for run in runs]
    rows = sweep.write_results(tmp_path, renamed[::-1])
    assert [row["run_id"] for row in rows] == [run.run_id for run in runs[::-1]]
    assert list(report.aggregate(report.load_results(tmp_path)).index) == ["lambda_d=1.0", "Δ/2"]


def test_table1_rows_are_the_papers_models_with_their_parameter_counts():
    from ssr_jax.models import abstract_variables, count_parameters

    groups = sweep.group_runs(sweep.expand(os.path.join(REPO, "experiments", "table1.py:smoke"), seeds=1))
    totals = {(members[0].config.model.backbone, members[0].config.model.head): count_parameters(abstract_variables(
        members[0].config.model, 64))["total"] for members in groups}
    assert totals == {("ssrnet", "ssr"): 40_915, ("mobilenet", "regression"): 226_309,
                      ("densenet", "regression"): 242_009, ("ssrnet", "dex"): 110_945}
    assert sorted(members[0].name for members in groups) == ["DEX", "DenseNet-19", "MobileNet-0.25", "SSR-Net (3,3,3)"]
    assert all(members[0].config.train.measure_inference for members in groups)


def test_only_process_zero_writes_sweep_files(tmp_path, monkeypatch):
    """On several hosts every process runs the sweep; the others read what process 0 writes."""
    from ssr_jax import parallel, workdir as workdir_lib

    run_dir = tmp_path / "runs" / "lambda_d=0.0,seed=0-abc"
    run_dir.mkdir(parents=True)
    workdir_lib.write_json(run_dir / "config.json", {"overrides": {"model.lambda_d": 0.0, "seed": 0}})
    workdir_lib.write_json(run_dir / "summary.json", {"status": "ok", "mae": 7.5})
    monkeypatch.setattr(parallel, "is_writer", lambda: False)
    rows = sweep.write_results(tmp_path)
    assert rows == [{"run_id": run_dir.name, "overrides": {"model.lambda_d": 0.0, "seed": 0}, "seed": 0,
                     "status": "ok", "mae": 7.5}]
    assert not (tmp_path / "results.jsonl").exists()
    monkeypatch.setattr(parallel, "is_writer", lambda: True)
    assert sweep.write_results(tmp_path) == rows and len(results(tmp_path)) == 1
