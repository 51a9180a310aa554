"""The failure paths, as a hostile but realistic user meets them: every refusal is one line on stderr (its last
line) with a non-zero exit status, nothing already recorded is lost or silently changed, and damaged state is either
survived (a resumed run ends with the uninterrupted numbers) or named with what to delete."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from configs import ssrnet
from conftest import REPO, run_cli
from ssr_jax import config_lib, sweep, workdir as workdir_lib
from ssr_jax.train import train_and_evaluate

SMOKE = ("--config", "configs/ssrnet.py:smoke")


def refused(*args, code: int = 2, patch: str = "") -> str:
    """Runs `ssr-jax ARGS` (after the Python statements `patch`, e.g. a simulated full disk); asserts the exit
    status and that no traceback was printed; returns stderr's last line."""
    if patch:
        command = [sys.executable, "-c", f"{patch}\nfrom ssr_jax import cli\ncli.main(['ssr-jax', *{list(map(str, args))!r}])"]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    else:
        result = run_cli(*args, check=False)
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def experiment(tmp_path, body: str) -> str:
    path = tmp_path / "experiment.py"
    path.write_text(textwrap.dedent(f"""
        from configs import ssrnet
        from ssr_jax.sweep import sweep

        def get_config(arg=None):
            return ssrnet.get_config("smoke")

        def get_sweep(arg=None):
            return {body}
    """))
    return str(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(workdir, summary) of a finished smoke run (2 epochs, checkpoints at steps 4 and 8)."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    return workdir, train_and_evaluate(ssrnet.get_config("smoke"), workdir, progress=False)


def copy_run(finished, tmp_path, *remove: str):
    run = tmp_path / "run"
    shutil.copytree(finished[0], run)
    for name in remove:
        (run / name).unlink()
    return run


# ----------------------------------------------------------------------------------------------------------------
# A workdir belongs to one run
# ----------------------------------------------------------------------------------------------------------------
def test_a_finished_run_refuses_another_config(finished):
    workdir, _ = finished
    before = {name: (workdir / name).read_bytes() for name in ("config.json", "summary.json", "metrics.jsonl")}
    assert "holds a run of another config" in refused("train", "--config", "configs/dex.py:smoke",
                                                      "--workdir", workdir)
    assert "holds a run of another config (optim.learning_rate: 0.001 in its config.json, 0.05 now)" in refused(
        "train", *SMOKE, "--workdir", workdir, "--config.optim.learning_rate=0.05")
    assert {name: (workdir / name).read_bytes() for name in before} == before


def test_convert_keras_writes_only_into_a_new_or_empty_directory(finished, tmp_path):
    import h5py

    workdir, _ = finished
    config = (workdir / "config.json").read_bytes()
    line = refused("convert-keras", tmp_path / "weights.h5", "--out", workdir)
    assert f"{workdir} exists and is not an empty directory" in line
    assert (workdir / "config.json").read_bytes() == config and sorted(os.listdir(workdir / "checkpoint")) == ["4", "8"]
    # A truncated .h5 file: one line naming it, no model directory written.
    with h5py.File(tmp_path / "weights.h5", "w") as file:
        file.create_dataset("conv2d_1/conv2d_1/kernel:0", data=np.ones((3, 3, 3, 32), np.float32))
    data = (tmp_path / "weights.h5").read_bytes()
    (tmp_path / "weights.h5").write_bytes(data[:len(data) // 2])
    line = refused("convert-keras", tmp_path / "weights.h5", "--out", tmp_path / "model")
    assert f"{tmp_path / 'weights.h5'} cannot be read" in line and "damaged or truncated" in line
    assert not (tmp_path / "model").exists()


def test_a_checkpoint_without_its_config_is_refused(finished, tmp_path):
    run = copy_run(finished, tmp_path, "config.json", "summary.json")
    line = refused("train", *SMOKE, "--workdir", run, "--config.optim.learning_rate=0.05")
    assert f"{run / 'config.json'} is missing beside {run / 'checkpoint'}" in line and f"delete {run}" in line
    assert not (run / "config.json").exists()


def test_one_process_at_a_time_per_workdir(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    with workdir_lib.exclusive(busy, what="the test"):
        line = refused("train", *SMOKE, "--workdir", busy)
        assert f"{busy} is in use by pid {os.getpid()} on " in line and "(the test)" in line
        with pytest.raises(workdir_lib.WorkdirBusyError):  # a second holder in this process is refused too
            with workdir_lib.exclusive(busy):
                pass
    assert os.listdir(busy) == []  # the lock file goes with its holder
    with workdir_lib.exclusive(busy):
        pass


# ----------------------------------------------------------------------------------------------------------------
# Exit status tells the truth
# ----------------------------------------------------------------------------------------------------------------
def test_a_sweep_whose_groups_fail_exits_non_zero_and_report_lists_the_failures(tmp_path):
    spec = experiment(tmp_path, 'sweep("model.lambda_d", [0.0, 1.0])')
    full_disk = ("import errno, ssr_jax.sweep as s\n"
                 "def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')\n"
                 "s.train_members = full")
    line = refused("sweep", spec, "--workdir", tmp_path / "out", code=1, patch=full_disk)
    assert line.startswith("error: 2 runs: 2 failed — see ") and str(tmp_path / "out" / "results.jsonl") in line
    reported = run_cli("report", tmp_path / "out")
    assert "Traceback" not in reported.stderr
    failures = reported.stderr.strip().splitlines()
    assert len(failures) == 2 and all(line.startswith("failed: lambda_d=") and "No space left on device" in line
                                      for line in failures)
    assert "lambda_d=0.0" in reported.stdout and (tmp_path / "out" / "report" / "results.csv").exists()


def test_the_loser_of_two_sweeps_is_refused_and_writes_nothing_into_the_others_runs(tmp_path):
    spec = experiment(tmp_path, 'sweep("model.lambda_d", [1.0])')
    (run,) = sweep.expand(spec)
    run_dir = tmp_path / "out" / "runs" / run.run_id
    run_dir.mkdir(parents=True)
    with workdir_lib.exclusive(run_dir, what="the other sweep"):  # the other sweep trains this run
        line = refused("sweep", spec, "--workdir", tmp_path / "out")
        assert f"{run_dir} is in use by pid {os.getpid()}" in line
        assert os.listdir(run_dir) == [workdir_lib.LOCK_NAME]


# ----------------------------------------------------------------------------------------------------------------
# Damaged state is survived or named
# ----------------------------------------------------------------------------------------------------------------
def test_a_damaged_newest_checkpoint_and_a_torn_log_line_are_survived(finished, tmp_path, capfd):
    run = copy_run(finished, tmp_path, "summary.json")
    for data in (run / "checkpoint" / "8").rglob("d/*"):  # truncate step 8's array files
        data.write_bytes(data.read_bytes()[:10])
    with open(run / "metrics.jsonl", "a") as log:
        log.write('{"epoch": 3, "mae": 1')  # the last line of a write cut short
    summary = train_and_evaluate(ssrnet.get_config("smoke"), run, progress=False)
    stderr = capfd.readouterr().err
    assert stderr.count("step 8 is unreadable") == 1 and "using step 4" in stderr
    assert f"{run / 'metrics.jsonl'}: dropped the torn last line 3" in stderr
    assert summary["resumed_from_epoch"] == 1 and summary["status"] == "ok"
    np.testing.assert_allclose(summary["mae"], finished[1]["mae"], rtol=1e-6)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert sorted(os.listdir(run / "checkpoint")) == ["4", "8"]


def test_no_intact_checkpoint_names_the_directory_to_delete(finished, tmp_path):
    from PIL import Image

    run = copy_run(finished, tmp_path, "summary.json")
    for step in ("4", "8"):
        (run / "checkpoint" / step / "default" / "_METADATA").write_text("")
    line = refused("train", *SMOKE, "--workdir", run)
    assert f"no readable checkpoint in {run / 'checkpoint'}" in line and f"delete {run / 'checkpoint'}" in line
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "face.png")
    assert f"delete {run / 'checkpoint'}" in refused("predict", run, tmp_path / "face.png")


def test_an_unreadable_summary_marks_its_run_to_redo(tmp_path, capfd):
    spec = experiment(tmp_path, 'sweep("model.lambda_d", [1.0])')
    (first,) = sweep.run_sweep(spec, tmp_path / "out", progress=False)
    (tmp_path / "out" / "runs" / first["run_id"] / "summary.json").write_text("")
    capfd.readouterr()
    (again,) = sweep.run_sweep(spec, tmp_path / "out", progress=False)
    assert "summary.json is not valid JSON" in capfd.readouterr().err
    assert again["status"] == "ok" and again["mae"] == first["mae"]


def test_a_checkpoint_without_its_metrics_history_is_refused_in_one_line(finished, tmp_path):
    run = copy_run(finished, tmp_path, "summary.json", "metrics.jsonl")
    line = refused("train", *SMOKE, "--workdir", run)
    assert line == (f"error: {run / 'metrics.jsonl'} has no row for epoch 2, where the checkpoint is: the run's history "
                    f"cannot be rebuilt; delete {run} to train it again")
    assert sorted(os.listdir(run)) == sorted(set(os.listdir(finished[0])) - {"summary.json", "metrics.jsonl"})


# ----------------------------------------------------------------------------------------------------------------
# One line, not a traceback
# ----------------------------------------------------------------------------------------------------------------
def test_ctrl_c_exits_130_and_the_rerun_ends_with_the_uninterrupted_numbers(finished, tmp_path):
    # A real SIGINT, sent by the process to itself as it is about to log epoch 2 (epoch 1 is checkpointed).
    # SIGINT's Python handler is installed explicitly: a suite started in the background by a non-interactive shell
    # hands its children SIGINT ignored, where a terminal's Ctrl-C would reach the default handler.
    interrupt = ("import os, signal\n"
                 "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                 "from ssr_jax import workdir\n"
                 "write_jsonl = workdir.write_jsonl\n"
                 "def interrupting(path, rows):\n"
                 "    if str(path).endswith('metrics.jsonl') and len(rows) == 2:\n"
                 "        os.kill(os.getpid(), signal.SIGINT)\n"
                 "    return write_jsonl(path, rows)\n"
                 "workdir.write_jsonl = interrupting")
    run = tmp_path / "run"
    line = refused("train", *SMOKE, "--workdir", run, code=130, patch=interrupt)
    assert line.startswith("error: interrupted: rerun the same command to resume from epoch 1 (its checkpoint is in "
                           f"{run / 'checkpoint'})")
    run_cli("train", *SMOKE, "--workdir", run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from_epoch"] == 1
    np.testing.assert_allclose(summary["mae"], finished[1]["mae"], rtol=1e-6)


def test_a_full_disk_is_one_line_and_loses_nothing(finished, tmp_path):
    full_disk = ("import errno, os\n"
                 "fsync = os.fsync\n"
                 "def full(fd):\n"
                 "    if 'metrics.jsonl' in os.readlink(f'/proc/self/fd/{fd}'):\n"
                 "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
                 "    return fsync(fd)\n"
                 "os.fsync = full")
    run = tmp_path / "run"
    line = refused("train", *SMOKE, "--workdir", run, patch=full_disk)
    assert f"no space left on the device while writing {run / 'metrics.jsonl'}; nothing written before is lost" in line
    assert sorted(os.listdir(run)) == ["config.json"]  # no temporary file left behind
    run_cli("train", *SMOKE, "--workdir", run)
    np.testing.assert_allclose(json.loads((run / "summary.json").read_text())["mae"], finished[1]["mae"], rtol=1e-6)


def test_unwritable_outputs_and_targets_that_are_not_regular_files(tmp_path):
    assert "workdir /proc/version/run is not writable" in refused("train", *SMOKE, "--workdir", "/proc/version/run")
    (tmp_path / "out").mkdir()
    with pytest.raises(workdir_lib.WorkdirError, match="exists and is not a regular file"):
        workdir_lib.write_text_atomic(tmp_path / "out", "text")
    with pytest.raises(workdir_lib.WorkdirError, match=f"cannot write {tmp_path / 'missing' / 'file.json'}"):
        workdir_lib.write_json(tmp_path / "missing" / "file.json", {})
    assert os.listdir(tmp_path) == ["out"] and os.listdir(tmp_path / "out") == []


def test_bad_set_values_are_refused_like_config_overrides(tmp_path):
    line = refused("sweep", "experiments/dynamic_range.py:smoke", "--workdir", tmp_path / "out",
                   "--set", "train.epochs=abc")
    assert "train.epochs='abc': must be of type int" in line
    assert "--config.train.epochs=abc" in refused("train", *SMOKE, "--workdir", tmp_path / "run",
                                                  "--config.train.epochs=abc")
    assert "optim.learning_rate=inf: must be positive and finite" in refused(
        "train", *SMOKE, "--workdir", tmp_path / "run", "--config.optim.learning_rate=inf")
    assert "optim.learning_rate=inf: must be positive and finite" in refused(
        "sweep", "experiments/dynamic_range.py:smoke", "--workdir", tmp_path / "out", "--set", "optim.learning_rate=inf")
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()
    from ssr_jax import validation

    for key in ("model.v", "model.mobilenet_alpha"):  # other positive sizes: inf refused like nan
        with pytest.raises(config_lib.ConfigError, match=f"{key}=inf"):
            validation.validate(config_lib.apply_overrides(ssrnet.get_config("smoke"), {key: float("inf")}))


def test_malformed_result_files_name_the_file_and_the_line(tmp_path):
    good = {"run_id": "a", "overrides": {"model.lambda_d": 1.0, "seed": 0}, "status": "ok", "mae": 5.0}
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(good) + "\n{broken\n" + json.dumps(good) + "\n")
    assert f"{results}, line 2: not valid JSON" in refused("report", tmp_path)
    results.write_text(json.dumps({**good, "mae": "abc"}) + "\n")
    assert f"{results}, line 1: mae='abc' is not a number" in refused("report", tmp_path)
    results.write_text(json.dumps(good) + "\n" + json.dumps(good)[:20])  # a torn last line: dropped, said so
    reported = run_cli("report", tmp_path)
    assert f"{results}: dropped the torn last line 2" in reported.stderr and "5.00" in reported.stdout


# ----------------------------------------------------------------------------------------------------------------
# Strict JSON, values as meant
# ----------------------------------------------------------------------------------------------------------------
def test_a_diverged_run_writes_strict_json_and_its_train_exits_1(tmp_path, capsys):
    config = config_lib.apply_overrides(ssrnet.get_config("smoke"), {"optim.learning_rate": 1e4})
    train_and_evaluate(config, tmp_path / "run", progress=False)
    code, line = cli_exit(capsys, "train", *SMOKE, "--workdir", tmp_path / "run", "--config.optim.learning_rate=1e4")
    assert code == 1 and line.startswith(f"error: {tmp_path / 'run'}: the run diverged by epoch ")
    assert "lower optim.learning_rate (now 10000)" in line

    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")

    for name in ("summary.json", "metrics.jsonl"):
        for line in (tmp_path / "run" / name).read_text().splitlines() if name.endswith("l") else [
                (tmp_path / "run" / name).read_text()]:
            json.loads(line, parse_constant=refuse)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] is None  # non-finite: null, and the summary's status says why


def test_images_that_are_not_8_bit_are_scaled_or_refused(tmp_path):
    from PIL import Image

    from ssr_jax.data.images import read_rgb

    grey = np.array([[0, 257, 32896, 65535]], np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    np.testing.assert_array_equal(read_rgb(tmp_path / "grey16.png")[0], [[0] * 3, [1] * 3, [128] * 3, [255] * 3])
    Image.fromarray(grey.astype(np.int32) * 1000).save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=f"{tmp_path / 'wide.tif'}: I .*no known 0–255 scale"):
        read_rgb(tmp_path / "wide.tif")


def test_a_full_disk_during_a_checkpoint_save_names_the_step(tmp_path, monkeypatch):
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from ssr_jax import checkpoint

    def full(*args, **kwargs):  # what TensorStore raises on ENOSPC (seen on a 200 KB tmpfs)
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "a/0" in OCDBT database: Failed to write 84612 bytes to '
                         "file 7: No space left on device [os_error_code='28']")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
    with pytest.raises(workdir_lib.WorkdirError, match=f"no space left on the device while writing checkpoint "
                                                       f"{tmp_path / 'checkpoint' / '4'}; nothing written before"):
        checkpoint.save(tmp_path / "checkpoint", 4, {"a": jnp.zeros(3)})


def test_after_a_failed_save_closed_event_loop_noise_is_dropped_and_other_unraisables_kept():
    """A full disk under Orbax: its TensorStore callbacks then print hundreds of "Event loop is closed" tracebacks
    (seen on a 400 KB tmpfs); the command's one line must stay the last."""
    import types

    from ssr_jax import cli

    seen = []
    hook = cli._without_closed_event_loops(seen.append)
    closed = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"))
    other = types.SimpleNamespace(exc_value=RuntimeError("something else"))
    hook(closed)
    hook(other)
    assert seen == [other]


# ----------------------------------------------------------------------------------------------------------------
# Nothing wrong reported as success; one line before anything is written (in-process: no compile, no subprocess)
# ----------------------------------------------------------------------------------------------------------------
def cli_exit(capsys, *args) -> tuple[int, str]:
    """`ssr-jax ARGS` in this process: (exit status, stderr's last line); no traceback printed."""
    from ssr_jax import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["ssr-jax", *map(str, args)])
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    return exit_.value.code or 0, lines[-1] if lines else ""


def test_user_config_and_experiment_files_that_fail_name_their_file_and_line(tmp_path, capsys):
    files = {
        "raises.py": ("def get_config(arg=None):\n    return 1 / 0\n", ", line 2: ZeroDivisionError: division by zero"),
        "syntax.py": ("def get_config(arg=None)\n    return 1\n", ", line 1: SyntaxError: expected ':'"),
        "imports.py": ("import no_such_module_xyz\n", ", line 1: ModuleNotFoundError: No module named "
                                                      "'no_such_module_xyz'"),
        "dict.py": ("def get_config(arg=None):\n    return {'a': 1}\n", ": get_config returned dict; it must return "
                                                                         "an ml_collections.ConfigDict"),
    }
    for name, (text, message) in files.items():
        (tmp_path / name).write_text(text)
        assert cli_exit(capsys, "train", "--config", tmp_path / name, "--workdir", tmp_path / "run") == (
            2, f"error: {tmp_path / name}{message}")
    sweeps = {"None": "get_sweep returned NoneType None; it must return a list or tuple",
              "{'a': 1}": "get_sweep returned dict {'a': 1}; it must return a list or tuple",
              "['model.lambda_d=0']": "get_sweep returned the entry 'model.lambda_d=0'; each entry is a dict",
              "[]": "get_sweep returned no entries, so the sweep has no runs",
              "[][0]": ", line 9: IndexError: list index out of range"}
    for body, message in sweeps.items():
        code, line = cli_exit(capsys, "sweep", experiment(tmp_path, body), "--workdir", tmp_path / "out")
        assert code == 2 and line.startswith(f"error: {tmp_path / 'experiment.py'}") and message in line, line
    assert sorted(os.listdir(tmp_path)) == sorted([*files, "experiment.py"])  # nothing written


def test_a_start_refused_for_devices_or_memory_writes_nothing_and_an_early_failure_does_not_poison(tmp_path, capsys):
    run = tmp_path / "run"
    code, line = cli_exit(capsys, "train", *SMOKE, "--workdir", run, "--config.parallel.members=3")
    assert code == 2 and "parallel.members × parallel.data = 3 × 1 devices requested, 1 cpu device(s)" in line
    code, line = cli_exit(capsys, "train", *SMOKE, "--workdir", run, "--config.train.eval_batch_size=100000")
    assert code == 2 and "train.eval_batch_size=100000: more images than train.eval_images_at_once" in line
    code, line = cli_exit(capsys, "sweep", experiment(tmp_path, 'sweep("model.lambda_d", [1.0])'), "--workdir",
                          tmp_path / "out", "--set", "parallel.members=2")
    assert code == 2 and "2 × 1 devices requested" in line
    assert not run.exists() and not (tmp_path / "out").exists()
    # A start that failed after writing config.json (nothing trained) does not hold its directory against the fix.
    from ssr_jax.record import record_config

    run.mkdir()
    record_config(run, config_lib.apply_overrides(ssrnet.get_config("smoke"), {"parallel.members": 3}), {})
    record_config(run, ssrnet.get_config("smoke"), {})
    assert workdir_lib.read_json(run / "config.json")["config"]["parallel"]["members"] == 1


def test_launcher_slurm_without_slurm_and_a_looping_workdir_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    code, line = cli_exit(capsys, "sweep", experiment(tmp_path, 'sweep("model.lambda_d", [1.0])'), "--workdir",
                          tmp_path / "out", "--launcher", "slurm")
    assert code == 2 and "--launcher slurm: this machine has no Slurm (no sbatch on PATH)" in line
    assert not (tmp_path / "out").exists()
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    code, line = cli_exit(capsys, "train", *SMOKE, "--workdir", tmp_path / "loop" / "run")
    assert code == 2 and "loop" in line and "--workdir" in line, line


def test_evaluate_refuses_a_run_still_training_and_a_cap_below_1(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    with workdir_lib.exclusive(run, what="ssr-jax train"):
        code, line = cli_exit(capsys, "evaluate", run, "--data", "synthetic")
    assert code == 2 and f"{run} is still training (pid {os.getpid()} on " in line and "once that run has ended" in line
    for cap in (-3, 0):
        assert cli_exit(capsys, "evaluate", run, "--data", "synthetic", "--cap", cap) == (
            2, f"error: --cap={cap}: the number of examples to use, at least 1 (leave it out for the whole split)")
    assert not (run / "evaluations").exists()
    assert workdir_lib.holder(run) is None


def test_an_old_config_json_reads_with_the_defaults_of_newer_keys(finished, tmp_path, capsys):
    from ssr_jax import saved_model

    run = copy_run(finished, tmp_path)
    record = workdir_lib.read_json(run / "config.json")
    del record["config"]["model"]["conv"], record["config"]["train"]["eval_images_at_once"]
    workdir_lib.write_json(run / "config.json", record)
    config = saved_model.read_config(run)
    assert config.model.conv == ssrnet.get_config().model.conv and config.train.eval_images_at_once >= 1
    config, _ = saved_model.load(run)
    assert capsys.readouterr().err.count("predates model.conv, train.eval_images_at_once: read with the defaults") == 1


def test_interrupt_lines_are_never_empty():
    import signal

    from ssr_jax import cli

    assert cli._interrupt_line(signal.SIGINT) == f"error: interrupted: {cli.RESUME}"
    assert cli._interrupt_line(signal.SIGTERM, "interrupted: rerun the same command to resume from epoch 3") == (
        "error: terminated (SIGTERM): rerun the same command to resume from epoch 3")


def program(patch: str, *args) -> subprocess.CompletedProcess:
    """`ssr-jax ARGS` as the program itself (`cli.main()` on sys.argv: failures end in `os._exit`), after `patch`."""
    code = (f"{patch}\nimport sys\nfrom ssr_jax import cli\nsys.argv = ['ssr-jax', *{list(map(str, args))!r}]\n"
            "cli.main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_sigterm_says_how_to_resume_and_a_swallowed_interrupt_still_ends_the_command(tmp_path):
    # SIGTERM (Slurm's before preemption) as epoch 2 is about to be logged: exit 143, the job log's last line says how.
    terminate = ("import os, signal\n"
                 "from ssr_jax import workdir\n"
                 "write_jsonl = workdir.write_jsonl\n"
                 "def terminating(path, rows):\n"
                 "    if str(path).endswith('metrics.jsonl') and len(rows) == 2:\n"
                 "        os.kill(os.getpid(), signal.SIGTERM)\n"
                 "    return write_jsonl(path, rows)\n"
                 "workdir.write_jsonl = terminating")
    result = program(terminate, "train", *SMOKE, "--workdir", tmp_path / "run")
    assert result.returncode == 143 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: terminated (SIGTERM): rerun the same command to resume from epoch 1")
    # Ctrl-C caught where it cannot stop the command (here: by code that swallows it while the data loads).
    swallow = ("import os, signal\n"
               "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
               "from ssr_jax import cli, train\n"
               "cli.INTERRUPT_GRACE_S = 0.5\n"
               "load_splits = train.load_splits\n"
               "def swallowing(*args, **kwargs):\n"
               "    try:\n"
               "        os.kill(os.getpid(), signal.SIGINT)\n"
               "    except KeyboardInterrupt:\n"
               "        pass\n"
               "    import time; time.sleep(30)\n"
               "train.load_splits = swallowing")
    result = program(swallow, "train", *SMOKE, "--workdir", tmp_path / "other")
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "error: interrupted: rerun the same command to carry on from " \
                                                     "what it saved"
    # Ctrl-C before the first epoch, while the program compiles: one line and 130 (it crashed, or was lost, before).
    early = swallow.replace("    try:\n        os.kill(os.getpid(), signal.SIGINT)\n    except KeyboardInterrupt:\n"
                            "        pass\n", "    os.kill(os.getpid(), signal.SIGINT)\n")
    assert early != swallow
    result = program(early, "train", *SMOKE, "--workdir", tmp_path / "early")
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "error: interrupted: rerun the same command to carry on from " \
                                                     "what it saved"


def test_report_leaves_an_ok_run_without_an_mae_out_and_says_so(tmp_path, capsys):
    rows = [{"run_id": f"a-{seed}", "overrides": {"model.lambda_d": 1.0, "seed": seed}, "status": "ok", "mae": mae}
            for seed, mae in ((0, 5.0), (1, None))]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    from ssr_jax import report

    table = report.aggregate(report.load_results(tmp_path))
    assert table.loc["lambda_d=1.0", "n"] == 1 and table.loc["lambda_d=1.0", "mae_mean"] == 5.0
    code, line = cli_exit(capsys, "report", tmp_path, "--format", "csv")
    assert code == 0 and line == ("warning: a-1 is ok but its mae is None: left out of the tables; rerun the sweep to "
                                  "rebuild results.jsonl")


def keras_file(path, variables) -> None:
    """`variables` (SSR-Net (3,3,3)) written as the reference's Keras `save_weights` file."""
    import h5py

    from ssr_jax import keras_import

    with h5py.File(path, "w") as file:
        for layer, (module_path, weights) in keras_import.layer_map().items():
            for keras_name, (collection, leaf) in weights.items():
                node = variables[collection]
                for name in module_path:
                    node = node[name]
                file.create_dataset(f"{layer}/{layer}/{keras_name}:0", data=node[leaf])


def test_convert_keras_checks_the_weights_are_finite_and_sane(tmp_path, capsys):
    import jax

    from ssr_jax import keras_import
    from ssr_jax.models import abstract_variables

    shapes = abstract_variables(keras_import.reference_config(ssrnet.get_config()).model, 64)
    good = jax.tree.map(lambda leaf: np.full(leaf.shape, 0.5, np.float32), shapes)
    keras_file(tmp_path / "good.h5", good)
    assert keras_import.read_keras_weights(tmp_path / "good.h5", ssrnet.get_config()) is not None
    for what, path, value, message in (
            ("beta NaN", ("params", "x_stream", "bn2", "bias"), np.nan,
             "params/x_stream/bn2/bias holds 1 non-finite value(s) (NaN or infinity)"),
            ("variance 0", ("batch_stats", "s_stream", "bn1", "var"), 0.0,
             "batch_stats/s_stream/bn1/var holds a moving variance of 0"),
            ("noise", ("params", "stage2", "fused", "kernel"), 3.4e38,
             "params/stage2/fused/kernel holds 3.4e+38, beyond ±1000")):
        damaged = jax.tree.map(np.copy, good)
        node = damaged
        for name in path[:-1]:
            node = node[name]
        node[path[-1]].flat[0] = value
        keras_file(tmp_path / "bad.h5", damaged)
        code, line = cli_exit(capsys, "convert-keras", tmp_path / "bad.h5", "--out", tmp_path / "model")
        assert code == 2 and message in line and "the file is damaged: download it again" in line, (what, line)
        assert not (tmp_path / "model").exists()


def test_a_config_json_that_no_longer_fits_its_checkpoint_is_one_line(random_model, tmp_path, capsys):
    from PIL import Image

    model = tmp_path / "model"
    shutil.copytree(random_model[0], model)
    record = workdir_lib.read_json(model / "config.json")
    record["config"]["model"]["stages"] = [3, 3, 3]
    workdir_lib.write_json(model / "config.json", record)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "face.png")
    code, line = cli_exit(capsys, "predict", model, tmp_path / "face.png")
    assert code == 2 and line.startswith(f"error: {model}: its config.json does not describe its weights (")
    assert line.endswith("restore the config.json written with them, or train or convert the model again")


def test_data_cap_applies_to_the_synthetic_dataset_too():
    from ssr_jax import data

    config = config_lib.apply_overrides(ssrnet.get_config("smoke"), {"data.cap": 5})
    train, test = data.load_splits(config.data)
    assert len(train["age"]) == len(train["image"]) == len(test["age"]) == 5


def test_a_load_killed_mid_write_leaves_a_cache_directory_the_next_load_removes(tmp_path):
    import socket

    from ssr_jax.data import prepared

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    names = {f".train.{dead.pid}@{host}.k1ll3d": False, ".train.old_name": False,  # killed: removed
             f".train.{os.getpid()}@{host}.l1v3": True, f".train.{dead.pid}@elsewhere.x.y.z": True,  # in progress
             ".test.other_split": True, "train": True}
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "image.npy").write_bytes(b"half")
    prepared._remove_dead_loads(tmp_path, "train")
    assert sorted(os.listdir(tmp_path)) == sorted(name for name, kept in names.items() if kept)


def test_a_full_disk_during_data_prepare_is_one_line(tmp_path, capsys, monkeypatch):
    from ssr_jax.data import synthetic
    from ssr_jax.data.builders.base import FaceBuilder

    faces = synthetic.generate(10, seed=1)
    (tmp_path / "manual").mkdir()
    np.savez(tmp_path / "manual" / "morph2_db_align.npz", image=faces["image"], age=faces["age"],
             gender=np.arange(10) % 2, img_size=np.int64(64))

    def full(*args, **kwargs):  # what array_record's writer raised on a 300 KB tmpfs
        raise RuntimeError('Failed to finalize writing of split "train": write() failed: No space left on device; '
                           "writing …/morph2-train.array_record-00000-of-00001; at byte 299008; Failed to close")

    monkeypatch.setattr(FaceBuilder, "download_and_prepare", full)
    code, line = cli_exit(capsys, "data", "prepare", "morph2", "--manual_dir", tmp_path / "manual", "--data_dir",
                          tmp_path / "data")
    assert code == 2 and line == (f"error: no space left on the device while writing {tmp_path / 'data' / 'morph2'}"
                                  "/random; nothing written before is lost: free some space and rerun the same "
                                  "command to carry on from there")


def test_a_cache_file_reserves_its_blocks_so_a_full_disk_is_an_error_not_a_bus_error(tmp_path, monkeypatch):
    import errno

    from ssr_jax.data import prepared

    (tmp_path / "image.npy").write_bytes(b"\0" * 100)

    def fallocate(code):
        def refuse(fd, offset, length):
            raise OSError(code, os.strerror(code))
        return refuse

    monkeypatch.setattr(os, "posix_fallocate", fallocate(errno.EOPNOTSUPP))  # a filesystem without it: fine
    prepared._reserve(tmp_path / "image.npy")
    monkeypatch.setattr(os, "posix_fallocate", fallocate(errno.ENOSPC))
    with pytest.raises(OSError, match="No space left on device") as error:
        prepared._reserve(tmp_path / "image.npy")
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "image.npy")


def test_an_interrupted_wait_for_local_jobs_stops_them(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) on `sweep --launcher submitit_local --wait`: its jobs are its children, and an orphan
    would train on and record its run after the command said it failed."""
    import contextlib

    from ssr_jax import launch

    class Job:
        job_id, cancelled = "7", False

        def result(self):
            raise KeyboardInterrupt

        def cancel(self, check=True):
            self.cancelled = True

    submitted = []

    class Executor:
        def batch(self):
            return contextlib.nullcontext()

        def submit(self, *args):
            submitted.append(Job())
            return submitted[-1]

    monkeypatch.setattr(launch, "make_executor", lambda *args: Executor())
    runs = sweep.expand(experiment(tmp_path, 'sweep("model.lambda_d", [0.0, 1.0])'))
    groups = [[run] for run in runs]
    with pytest.raises(KeyboardInterrupt, match=r"stopped the 2 local job\(s\); rerun the same command"):
        launch.submit_groups(str(tmp_path / "experiment.py"), tmp_path, groups, seeds=None,
                             launcher="submitit_local", parameters={}, wait=True)
    assert [job.cancelled for job in submitted] == [True, True]
    with pytest.raises(KeyboardInterrupt, match="the jobs go on; rerun the same command once they have ended"):
        launch.submit_groups(str(tmp_path / "experiment.py"), tmp_path, groups, seeds=None, launcher="slurm",
                             parameters={}, wait=True)
    assert [job.cancelled for job in submitted[2:]] == [False, False]


def test_a_preparation_error_ends_with_the_error_after_its_context(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    code, line = cli_exit(capsys, "data", "prepare", "morph2", "--manual_dir", tmp_path / "empty", "--data_dir",
                          tmp_path / "data")
    assert code == 2 and line == (f"error: morph2: found neither morph2_db_align.npz nor any .JPG file in the manual "
                                  f"directory {tmp_path / 'empty'}; put the files there as described above")
    (tmp_path / "one").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "one" / "000001_00M30.JPG")
    code, line = cli_exit(capsys, "data", "prepare", "morph2", "--manual_dir", tmp_path / "one", "--data_dir",
                          tmp_path / "data")
    assert code == 2 and line.startswith("error: morph2: no usable examples for split ") and \
        line.endswith("(too few inputs, or all skipped: the summary above says why)")


def test_an_image_too_large_to_decode_is_an_error_row_and_the_others_are_read(tmp_path, monkeypatch):
    from PIL import Image

    from ssr_jax.data import images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 20000×20000 file, at the scale of a test
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "huge.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "face.png")
    results, readable = images.read_images([tmp_path / "huge.png", tmp_path / "face.png"], 64)
    assert results[0]["error"].startswith("DecompressionBombError: Image size (10000 pixels) exceeds limit")
    assert results[1] == {"file": str(tmp_path / "face.png")} and [index for index, _ in readable] == [1]


def test_a_file_name_that_is_not_utf8_is_skipped_with_its_reason(tmp_path):
    from PIL import Image

    from ssr_jax.data import prepared

    manual = tmp_path / "morph2"
    manual.mkdir()
    for i in range(10):
        Image.fromarray(np.full((64, 64, 3), 20 * i, np.uint8)).save(manual / f"{i:06d}_00M{20 + i}.JPG")
    os.rename(manual / "000003_00M23.JPG", os.path.join(os.fsencode(manual), b"00000\xff_00M23.JPG"))
    report = prepared.prepare("morph2", manual_dir=manual, data_dir=tmp_path / "data", progress=False)
    assert sum(report.kept.values()) == 9 and report.skipped == {"file name not in the expected pattern": 1}
    assert "its name is not UTF-8; rename it" in str(report.skipped_examples)


def test_errors_name_the_flag_the_command_has(tmp_path, capsys):
    row = {"run_id": "a", "overrides": {"model.lambda_d": 1.0, "seed": 0}, "status": "ok", "mae": 5.0}
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    code, line = cli_exit(capsys, "report", tmp_path, "--out", "/proc/version/report")
    assert code == 2 and line.startswith("error: directory /proc/version/report is not writable (") and \
        line.endswith("pass a writable --out")


def test_init_from_weights_that_are_not_finite_is_refused(random_model, tmp_path):
    import jax

    from ssr_jax import saved_model

    _, config, variables = random_model
    broken = jax.tree.map(np.array, variables)
    broken["params"]["x_stream"]["bn1"]["bias"][0] = np.nan
    saved_model.save(tmp_path / "nan", config, broken)
    with pytest.raises(config_lib.ConfigError, match=r"its weights are not finite \(params/x_stream/bn1/bias holds "
                                                     r"NaN or infinity: a diverged run\?\)"):
        saved_model.init_from(config_lib.apply_overrides(config, {"init_from": str(tmp_path / "nan")}))


def test_a_local_job_ends_with_the_command_that_started_it():
    """SIGKILL of `sweep --launcher submitit_local`: its jobs (`launch.stop_with` its pid) stop instead of training
    on as orphans."""
    controller = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    job = subprocess.Popen([sys.executable, "-c", f"import time\nfrom ssr_jax import launch\n"
                            f"launch.stop_with({controller.pid}, poll_s=0.1)\ntime.sleep(60)\nprint('trained on')"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    controller.wait()  # reaped, as its shell would: a zombie still answers kill(pid, 0)
    stdout, stderr = job.communicate(timeout=120)
    assert job.returncode == 1 and "trained on" not in stdout
    assert stderr.strip().splitlines()[-1] == (f"the sweep command (pid {controller.pid}) that started this job has "
                                               "ended: stopping; rerun the sweep to resume")


def test_a_run_whose_config_json_predates_a_key_is_still_its_run(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    record = workdir_lib.read_json(run / "config.json")
    del record["config"]["train"]["eval_images_at_once"]  # written before the key existed; its default is the same
    workdir_lib.write_json(run / "config.json", record)
    assert cli_exit(capsys, "train", *SMOKE, "--workdir", run)[0] == 0  # "already finished", not refused
    code, line = cli_exit(capsys, "train", *SMOKE, "--workdir", run, "--config.train.eval_images_at_once=64")
    assert code == 2 and ("holds a run of another config (train.eval_images_at_once: absent from its config.json "
                          "(written before the key existed), 64 now)") in line
