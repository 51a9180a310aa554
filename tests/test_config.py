"""Bad input fails in one line that names the field and the fix, before anything compiles or is written."""
import os

import pytest

from conftest import run_cli
from configs import dex, regression, ssrnet
from ssr_jax import config_lib, validation
from ssr_jax.train import train_and_evaluate
from ssr_jax.workdir import WorkdirError



@pytest.mark.parametrize("overrides, field", [
    ({"model.stages": ()}, "model.stages"),
    ({"model.stages": (3, 0, 3)}, "model.stages"),
    ({"model.stages": (3, 2.5)}, "model.stages"),
    ({"model.stages": (3, 3, 3, 3, 3)}, "model.stages"),
    ({"model.v": 0.0}, "model.v"),
    ({"model.lambda_local": -0.1}, "model.lambda_local"),
    ({"model.lambda_d": 1.5}, "model.lambda_d"),
    ({"model.p_activation": "sigmoid"}, "model.p_activation"),
    ({"train.batch_size": 65}, "train.batch_size"),  # the smoke split has 64 examples
    ({"data.name": "morph3"}, "data.name"),
    ({"optim.learning_rate": 0.0}, "optim.learning_rate"),
    ({"parallel.data": 2, "parallel.shard_data": True, "train.eval_batch_size": 31}, "train.eval_batch_size"),
    ({"parallel.shard_data": True, "data.device_chunk": 32}, "parallel.shard_data"),
])
def test_bad_values_name_the_field(overrides, field, tmp_path):
    config = config_lib.apply_overrides(ssrnet.get_config("smoke"), overrides)
    with pytest.raises(config_lib.ConfigError, match=field) as error:
        train_and_evaluate(config, tmp_path / "run")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()  # validated before the workdir was even created


def test_dex_needs_one_stage():
    config = config_lib.apply_overrides(dex.get_config(), {"model.stages": (10, 10)})
    with pytest.raises(config_lib.ConfigError, match="the dex head has one stage"):
        validation.validate(config)


def test_regression_needs_one_stage():
    config = config_lib.apply_overrides(regression.get_config(), {"model.stages": (3, 3)})
    with pytest.raises(config_lib.ConfigError, match="the regression head has one stage"):
        validation.validate(config)


def test_unknown_keys_are_rejected():
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'model.stagez'"):
        config_lib.apply_overrides(ssrnet.get_config(), {"model.stagez": (3, 3)})
    with pytest.raises(config_lib.ConfigError, match="unknown config argument 'smok'"):
        ssrnet.get_config("smok")


def test_schedules_change_sizes_only_and_one_at_a_time():
    from configs import base, mobilenet

    full, medium = ssrnet.get_config(), ssrnet.get_config("medium")
    assert (medium.data.num_train, medium.data.num_test, medium.train.epochs) == (5_000, 2_500, 20)
    assert config_lib.differences(full, medium) == {"data.num_train": 5_000, "train.epochs": 20}  # test: 2,500 both
    assert mobilenet.get_config("medium,alpha=0.5").train.epochs == 20
    assert config_lib.differences(full, ssrnet.get_config("smoke"))["model.bn_momentum"] == 0.8  # smoke_model
    with pytest.raises(config_lib.ConfigError, match="choose one schedule of smoke, demo, medium"):
        ssrnet.get_config("smoke,medium")
    assert set(base.SCHEDULES) == {"smoke", "demo", "medium"}


def test_unwritable_workdir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permission bits; a path under a regular file fails for anyone
        locked = tmp_path / "file"
        locked.write_text("")
    with pytest.raises(WorkdirError, match="not writable.*pass a writable --workdir"):
        train_and_evaluate(ssrnet.get_config("smoke"), locked / "run")


@pytest.mark.parametrize("args, message", [
    (["--config.model.stagez=3"], "unknown config key 'stagez'"),
    (["--config.model.stages=0,3"], "model.stages=(0, 3): needs 1 to 4 positive integers"),
    (["--config.train.batch_size=many"], "--config.train.batch_size=many"),
])
def test_cli_errors_are_one_line(args, message):
    result = run_cli("info", "--config", "configs/ssrnet.py", *args, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_cli_info_json():
    import json

    result = run_cli("info", "--config", "configs/ssrnet.py", "--config.model.stages=5,5,5", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"trainable": 42_215, "batch_stats": 384, "total": 42_599,
                                         "bytes": 170_396}


def test_each_subcommand_has_its_own_flags():
    report = run_cli("report", "--help").stdout
    assert report.startswith("usage: ssr-jax report DIR") and "--baseline" in report and "--format" in report
    assert "--workdir" not in report and "--config" not in report and "--members" not in report
    train = run_cli("train", "--help").stdout
    assert {line.split(":")[0].strip() for line in train.split("flags:\n")[1].splitlines()
            if line.startswith("  --")} == {"--config", "--workdir"}
    # `--out` is one flag per command, with that command's meaning.
    assert "--out: The new model directory" in run_cli("convert-keras", "--help").stdout
    result = run_cli("train", "--config", "configs/ssrnet.py", "--workdir", "runs/x", "--json", check=False)
    assert result.returncode == 2 and result.stderr == (
        "error: bad command line: ssr-jax train takes no flag --json; `ssr-jax train --help` lists its flags\n")
