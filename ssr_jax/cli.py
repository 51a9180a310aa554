"""`ssr-jax` (or `python -m ssr_jax`): one entry point, one subcommand per job, each with its own flags
(`ssr-jax COMMAND --help` lists them; `ssr-jax --help` lists the commands).

MODEL_DIR is a training workdir, a sweep run directory or a convert-keras output. NAME is a dataset (morph2, imdb,
wiki, megaage_asian, utkface, synthetic_faces), optionally with its split protocol: morph2/subject.

Config files and `--config.x=value` overrides are parsed by ml_collections' `config_flags`, as in the Flax examples.
A bad config, override, flag or workdir ends the command with one line on stderr and exit status 2, before anything
compiles. Every error a user can meet ends with one line on stderr, not a traceback (`_user_errors`): exit status 2
for a refusal (a bad value, a busy, damaged or unwritable directory, a full disk), 1 for a sweep with failed or
diverged runs or a train whose run diverged, 130 for Ctrl-C and 143 for SIGTERM (rerunning the same command
resumes).
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import sys
import textwrap
import threading
from typing import Callable

from absl import app, flags, logging
from ml_collections import config_flags

from ssr_jax import host_memory


# ----------------------------------------------------------------------------------------------------------------
# Flags: each subcommand defines its own into a fresh `flags.FlagValues` (absl's global FLAGS stays empty of them),
# so `--out` means one thing per command and a flag another command takes is refused.
# ----------------------------------------------------------------------------------------------------------------
Define = Callable[[flags.FlagValues, list], None]


def flag(define: Callable, name: str, default, help_text: str) -> Define:
    """A flag definition for a subcommand: `define` is an absl `DEFINE_*`."""
    return lambda values, argv: define(name, default, help_text, flag_values=values)


def config_flag(help_text: str = "Config file, `path.py[:arg]`; --config.x=value overrides a field.") -> Define:
    # config_flags finds the --config.x overrides in the argv it is given.
    return lambda values, argv: config_flags.DEFINE_config_file("config", None, help_text, flag_values=values,
                                                                lock_config=True, sys_argv=argv)


def json_flag(what: str = "the result") -> Define:
    return flag(flags.DEFINE_bool, "json", False, f"Print {what} as JSON instead of a table.")


def out_flag(what: str) -> Define:
    return flag(flags.DEFINE_string, "out", None, what)


DATA_DIR = flag(flags.DEFINE_string, "data_dir", None, "Where prepared datasets live (default $SSR_JAX_DATA_DIR or "
                "~/ssr_jax_data).")
DATASET = [flag(flags.DEFINE_string, "data", None, "Dataset name (synthetic or a prepared dataset)."),
           flag(flags.DEFINE_string, "split", "test", "Dataset split."), DATA_DIR,
           flag(flags.DEFINE_integer, "cap", None, "Use only the first N examples of the split.")]


@dataclasses.dataclass(frozen=True)
class Command:
    run: Callable[[list[str], flags.FlagValues], None]  # (positional arguments, this command's parsed flags)
    usage: str
    flags: tuple[Define, ...]


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, *defines: Define) -> Callable:
    """Registers the decorated function as subcommand `name` with its own flags."""
    def register(run):
        COMMANDS[name] = Command(run, usage, tuple(defines))
        return run

    return register


def _exit_with(message: str):
    """Exit status 2 with `message` on stderr, its last line (the error itself) prefixed "error: " and printed last;
    lines before it (a dataset's expected layout, a preparation's skip summary) are its context."""
    *context, last = message.strip().splitlines() or [""]
    for line in context:
        print(line, file=sys.stderr)
    print(f"error: {last}", file=sys.stderr)
    sys.exit(2)


def _config_and_overrides(values: flags.FlagValues):
    import ml_collections

    from ssr_jax import validation

    if values.config is None:
        _exit_with("--config is required, e.g. --config configs/ssrnet.py")
    if not isinstance(values.config, ml_collections.ConfigDict):
        _exit_with(f"{values['config'].config_filename.split(':', 1)[0]}: get_config returned "
                   f"{type(values.config).__name__}; it must return an ml_collections.ConfigDict")
    validation.validate(values.config)
    return values.config, config_flags.get_override_values(values["config"])


def _no_positional(args):
    if args:
        _exit_with(f"unexpected arguments {args}; see `ssr-jax COMMAND --help`")


# ----------------------------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------------------------
@command("train", "ssr-jax train --config configs/ssrnet.py[:arg] --workdir DIR [--config.model.stages=5,5,5 ...]",
         config_flag(), flag(flags.DEFINE_string, "workdir", None, "The run directory (created; a rerun resumes it)."))
def _train(args, values):
    _no_positional(args)
    from ssr_jax import workdir
    from ssr_jax.train import train_and_evaluate

    if not values.workdir:
        _exit_with("--workdir is required, e.g. --workdir runs/ssrnet")
    config, overrides = _config_and_overrides(values)
    summary = train_and_evaluate(config, values.workdir, overrides=overrides)
    print(workdir.dumps(summary, indent=2))
    if summary["status"] != "ok":  # as a sweep with a diverged run: exit status 1
        print(f"error: {values.workdir}: the run {summary['status']} by epoch {summary['epochs']} (its training loss "
              f"is not finite); lower optim.learning_rate (now {config.optim.learning_rate:g}) or check the weights "
              f"it starts from, then train in a new --workdir", file=sys.stderr)
        sys.exit(1)


@command("info", "ssr-jax info --config configs/ssrnet.py[:arg] [--config.x=...] [--json]",
         config_flag(), json_flag("the parameter counts"))
def _info(args, values):
    _no_positional(args)
    from ssr_jax.models import abstract_variables, count_parameters, describe, head_parameter_counts

    config, _ = _config_and_overrides(values)
    counts = count_parameters(abstract_variables(config.model, config.data.image_size))
    if values.json:
        print(json.dumps(counts))
        return
    print(f"model       {describe(config.model)}")
    print(f"trainable   {counts['trainable']:,}")
    print(f"batch_stats {counts['batch_stats']:,}")
    print(f"total       {counts['total']:,}")
    print(f"bytes       {counts['bytes']:,} (float32)")
    print(f"each head on {config.model.backbone} (total parameters; --config.model.head=NAME):")
    for head, (stages, total) in head_parameter_counts(config.model, config.data.image_size).items():
        print(f"  {head:<14}{total:>10,}  stages={stages}")


@command("build-kernels", "ssr-jax build-kernels   (compiles the oneDNN convolutions for this machine, once)")
def _build_kernels(args, values):
    _no_positional(args)
    from ssr_jax.models import onednn

    if reason := onednn.unavailable():
        _exit_with(f"{reason}; model.conv=auto uses XLA's convolutions on this machine")
    print(f"oneDNN convolutions built and loaded: {onednn.loaded()}")


@command("demo", "ssr-jax demo [--workdir runs/demo]",
         flag(flags.DEFINE_string, "workdir", "runs/demo", "Where the demo's runs and its table go."))
def _demo(args, values):
    _no_positional(args)
    from configs import dex, ssrnet
    from ssr_jax import demo

    demo.main(values.workdir, [("SSR-Net (3,3,3)", "ssrnet", ssrnet.get_config("demo")),
                               ("DEX (101 bins)", "dex", dex.get_config("demo"))])


@command("sweep", "ssr-jax sweep EXPERIMENT[:arg] --workdir DIR [--seeds N] [--dry_run] [--shard i/n] "
         "[--max_members M] [--launcher local|slurm|submitit_local] [--job timeout_min=600,...] [--wait] "
         "[--set key=value ...]",
         flag(flags.DEFINE_string, "workdir", None, "The sweep directory (runs/, groups/, results.jsonl)."),
         flag(flags.DEFINE_integer, "seeds", None, "Seeds per configuration (default: the experiment's)."),
         flag(flags.DEFINE_bool, "dry_run", False, "Print the runs and their groups, train nothing."),
         flag(flags.DEFINE_string, "shard", None, "Run only the deterministic subset i/n."),
         flag(flags.DEFINE_integer, "max_members", None, "Most members trained together in one program (default: "
              "1 on a CPU, where runs one after another are faster; 32 on accelerators)."),
         flag(flags.DEFINE_string, "launcher", "local", "local (this process), slurm (one submitit job per group) "
              "or submitit_local (the job path, as local processes)."),
         flag(flags.DEFINE_list, "job", [], "submitit job parameters key=value (timeout_min, gpus_per_node, "
              "cpus_per_task, mem_gb, slurm_partition, slurm_account, ...)."),
         flag(flags.DEFINE_bool, "wait", False, "With a job launcher, wait for the jobs and then write results."),
         flag(flags.DEFINE_multi_string, "set", [], "key=value config override for every run (repeatable), e.g. "
              "--set parallel.members=8 --set train.eval_batch_size=100."))
def _sweep(args, values):
    if len(args) != 1:
        _exit_with("sweep takes one experiment, e.g. ssr-jax sweep experiments/dynamic_range.py:smoke --workdir DIR")
    if not values.workdir and not values.dry_run:
        _exit_with("--workdir is required, e.g. --workdir runs/dynamic_range")
    from ssr_jax import config_lib, launch, sweep

    try:  # --max_members unset (None): the engine's default, sweep.default_max_members
        launch.run_sweep(args[0], values.workdir, seeds=values.seeds, shard_spec=values.shard,
                         dry_run=values.dry_run, launcher=values.launcher,
                         job_parameters=launch.parse_job_parameters(values.job), wait=values.wait,
                         common=config_lib.parse_overrides(values.set), check=True, max_members=values.max_members)
    except sweep.SweepFailedError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


@command("report", "ssr-jax report DIR [--format md,latex,csv] [--out DIR] [--plot] [--baseline CONFIG] [--by_age] "
         "[--factorial KEY_A,KEY_B]",
         flag(flags.DEFINE_list, "format", ["md", "latex", "csv"], "Table formats."),
         out_flag("Output directory (default DIR/report)."),
         flag(flags.DEFINE_bool, "plot", False, "Also draw the figures (PNG)."),
         flag(flags.DEFINE_string, "baseline", None, "Config label (or part of one) for the ΔMAE column."),
         flag(flags.DEFINE_bool, "by_age", False, "Also the MAE per decade of true age, per config."),
         flag(flags.DEFINE_list, "factorial", None, "Two override keys with two values each (e.g. "
              "model.lambda_d,model.lambda_local): the 2 × 2's main effects and interaction, per replicate."))
def _report(args, values):
    from ssr_jax import report

    if len(args) != 1:
        _exit_with("report takes one sweep directory, e.g. ssr-jax report runs/dynamic_range")
    try:
        written = report.write_tables(args[0], values.out, formats=values.format, baseline=values.baseline,
                                      plot=values.plot, by_age=values.by_age, factorial=values.factorial)
    except (FileNotFoundError, ValueError) as error:
        _exit_with(str(error))
    if "results.md" in written:
        print(written["results.md"].read_text())
    for name in ("contrasts.md", "factorial.md", "pivot.md"):
        if name in written:
            print(written[name].read_text())
    if "by_age.md" in written:
        print("MAE by true age (mean over seeds and splits):\n" + written["by_age.md"].read_text())
    print("written: " + ", ".join(str(path) for path in written.values()))
    for line in report.failures(args[0]):
        print(line, file=sys.stderr)


@command("convert-keras", "ssr-jax convert-keras FILE.h5 --out MODEL_DIR [--config configs/ssrnet.py]",
         out_flag("The new model directory (new or empty)."),
         config_flag("The recipe recorded with the weights (default configs/ssrnet.py; model fields are pinned)."))
def _convert_keras(args, values):
    from configs import ssrnet
    from ssr_jax import keras_import

    if len(args) != 1 or not values.out:
        _exit_with("usage: ssr-jax convert-keras FILE.h5 --out MODEL_DIR")
    recipe = values.config if values.config is not None else ssrnet.get_config()
    try:
        directory = keras_import.convert_keras(args[0], values.out, recipe)
    except (FileNotFoundError, ValueError) as error:
        _exit_with(str(error))
    print(f"{args[0]} → {directory} (SSR-Net (3,3,3), λ_local = λ_d = 1; expects 64×64 BGR raw 0–255 input)")


def _model_dir(args, usage: str) -> str:
    if not args:
        _exit_with(f"usage: {usage}")
    if not os.path.isfile(os.path.join(args[0], "config.json")):
        _exit_with(f"{args[0]} is not a model directory (no config.json): pass a training workdir, a sweep run "
                   "directory or a convert-keras output")
    return args[0]


@command("predict", "ssr-jax predict MODEL_DIR IMAGE_OR_FOLDER... [--json]", json_flag("the ages"))
def _predict(args, values):
    from ssr_jax import predict, workdir
    from ssr_jax.data import images

    model_dir = _model_dir(args, COMMANDS["predict"].usage)
    paths = images.expand_image_paths(args[1:])
    if not paths:
        _exit_with("no images given: pass image files or folders of images after MODEL_DIR")
    results = predict.predict_files(model_dir, paths)
    if values.json:
        print(workdir.dumps(results, indent=2))
    else:
        for row in results:
            print(f"{row['age']:7.2f}  {row['file']}" if "age" in row else f"  error  {row['file']}: {row['error']}")
    if any("error" in row for row in results):
        print(f"{sum('error' in row for row in results)} of {len(results)} files could not be read", file=sys.stderr)
        sys.exit(1)


@command("export", "ssr-jax export MODEL_DIR --format onnx --out FILE.onnx [--overwrite] [--decode RULE]",
         flag(flags.DEFINE_string, "format", "onnx", "What to write: onnx (needs the extra: pip install -e "
              "'.[export]')."),
         out_flag("The file to write (refused if it exists, unless --overwrite)."),
         flag(flags.DEFINE_bool, "overwrite", False, "Replace an existing --out file."),
         flag(flags.DEFINE_string, "decode", None, "Decision rule the graph reads the ages by (expectation, median, "
              "mode; default: the run's model.decode)."))
def _export(args, values):
    from ssr_jax import export

    model_dir = _model_dir(args, COMMANDS["export"].usage)
    if len(args) != 1 or not values.out:
        _exit_with(f"usage: {COMMANDS['export'].usage}")
    try:
        result = export.export(model_dir, values.out, format=values.format, overwrite=values.overwrite,
                               decode=values.decode)
    except (FileNotFoundError, ValueError) as error:
        _exit_with(str(error))
    print(export.summary(result))


def _dataset_split(model_dir: str, values: flags.FlagValues) -> dict:
    """The `--data`/`--split` arrays; a synthetic split is regenerated from the model's own `config.data`."""
    from ssr_jax import data, saved_model

    config = saved_model.read_config(model_dir)
    if values.cap is not None and values.cap < 1:  # Python slicing would take all but the last |cap| examples
        _exit_with(f"--cap={values.cap}: the number of examples to use, at least 1 (leave it out for the whole split)")
    try:
        return data.load_split(values.data, values.split, data_config=config.data, data_dir=values.data_dir,
                               cap=values.cap)
    except (FileNotFoundError, ValueError) as error:
        _exit_with(str(error))


@command("evaluate", "ssr-jax evaluate MODEL_DIR (--data NAME [--split test] [--data_dir DIR] [--cap N] | "
         "--decode RULE) [--decode RULE] [--out FILE.json] [--json]",
         *DATASET, out_flag("The summary file (default MODEL_DIR/evaluations/NAME_SPLIT[_RULE].json)."),
         flag(flags.DEFINE_string, "decode", None, "Decision rule to read the ages by (expectation, median, mode; "
              "default: the run's model.decode). Without --data: the run's own test split, re-read without "
              "retraining."),
         json_flag("the summary"))
def _evaluate(args, values):
    from ssr_jax import checkpoint, data, predict, saved_model, workdir

    model_dir = _model_dir(args, COMMANDS["evaluate"].usage)
    if len(args) != 1 or not (values.data or values.decode):
        _exit_with(f"usage: {COMMANDS['evaluate'].usage}")
    training = workdir.holder(model_dir)
    if training is not None:  # its checkpoint is an intermediate epoch's, and the next one may replace it mid-read
        _exit_with(f"{model_dir} is still training ({training}); evaluate it once that run has ended")
    if values.data:
        split, dataset = _dataset_split(model_dir, values), values.data
    else:  # the split the run was tested on, whatever its protocol
        run_data = saved_model.read_config(model_dir).data
        split, dataset, values.split = data.load_splits(run_data)[1], data.prepared_name(run_data), "test"
    summary = {**predict.evaluate_split(model_dir, split, decode=values.decode),
               "model_dir": model_dir, "data": dataset, "split": values.split, "cap": values.cap,
               "checkpoint_step": checkpoint.latest_step(os.path.join(model_dir, "checkpoint"))}
    # A capped evaluation, or one by another rule, is a file of its own: it never replaces the whole split's.
    name = (f"{dataset}_{values.split}" + (f"_cap{values.cap}" if values.cap else "")
            + (f"_{values.decode}" if values.decode else ""))
    out = values.out or os.path.join(model_dir, "evaluations", f"{name}.json")
    workdir.prepare(os.path.dirname(os.path.abspath(out)), flag="--out")
    workdir.write_json(out, summary)
    if values.json:
        print(workdir.dumps(summary, indent=2))
    else:
        print(f"{model_dir} on {dataset}/{values.split} ({summary['num_test']} images), decode {summary['decode']}: "
              f"MAE {summary['mae']:.3f}, CA(3) {summary['ca3']:.3f}, CA(5) {summary['ca5']:.3f}")
        print(f"written: {out}")


@command("inspect", "ssr-jax inspect MODEL_DIR (IMAGE_OR_FOLDER... | --data NAME [--split test]) [--out DIR] "
         "[--json]",
         *DATASET, out_flag("Output directory (default MODEL_DIR/inspect)."), json_flag("the analysis"))
def _inspect(args, values):
    import numpy as np

    from ssr_jax import inspect_model, saved_model, workdir
    from ssr_jax.data.images import expand_image_paths, fit_images, read_images

    usage = COMMANDS["inspect"].usage
    model_dir = _model_dir(args, usage)
    if bool(args[1:]) == bool(values.data):
        _exit_with(f"inspect reads either images or --data, not both or neither; usage: {usage}")
    if values.data:
        split = _dataset_split(model_dir, values)
        images = fit_images(split["image"], saved_model.read_config(model_dir).data.image_size)
        ages = split["age"]
    else:
        results, readable = read_images(expand_image_paths(args[1:]),
                                        saved_model.read_config(model_dir).data.image_size)
        for row in results:
            if "error" in row:
                print(f"skipped {row['file']}: {row['error']}", file=sys.stderr)
        if not readable:
            _exit_with("none of the given images could be read")
        images, ages = np.stack([image for _, image in readable]), None
    try:
        result = inspect_model.inspect(model_dir, images, ages)
    except ValueError as error:
        _exit_with(str(error))
    out = workdir.prepare(values.out or os.path.join(model_dir, "inspect"), flag="--out")
    workdir.write_json(out / "inspect.json", result)
    inspect_model.plot(result, out / "inspect.png")
    if values.json:
        print(workdir.dumps({key: value for key, value in result.items() if key != "predictions"}, indent=2))
    else:
        print(inspect_model.format_table(result))
        print(f"\nwritten: {out / 'inspect.json'}, {out / 'inspect.png'}")


@command("data", "ssr-jax data prepare NAME [--manual_dir DIR] [--strict] | data info NAME [--out FILE.png] [--json] "
         "| data export-npz NAME --split S|all --out FILE.npz | data export-folds NAME --out FILE.csv   (each with "
         "[--data_dir DIR])",
         DATA_DIR,
         flag(flags.DEFINE_string, "manual_dir", None, "prepare: the folder holding the dataset's files as "
              "downloaded (see the builder's instructions in the error when they are missing)."),
         flag(flags.DEFINE_bool, "strict", False, "prepare: stop at the first unreadable or misnamed image instead "
              "of skipping and counting it."),
         out_flag("info: the age histogram (default DATA_DIR/NAME/ages.png); export-npz: the .npz file; "
                  "export-folds: the fold file (file,fold per example, for --config.data.fold_file)."),
         flag(flags.DEFINE_string, "split", "test", "export-npz: the split to export, or all."),
         json_flag("info's counts"))
def _data(args, values):
    from ssr_jax.data import prepared
    from ssr_jax.data.builders.base import ManualFilesError

    if len(args) != 2 or args[0] not in ("prepare", "info", "export-npz", "export-folds"):
        _exit_with(f"usage: {COMMANDS['data'].usage}")
    action, name = args
    try:
        if action == "prepare":
            prepared.prepare(name, manual_dir=values.manual_dir, data_dir=values.data_dir, strict=values.strict,
                             progress=True)
        elif action == "info":
            png = values.out or prepared.dataset_dir(name, data_dir=values.data_dir) / "ages.png"
            if not values.out and not os.access(png.parent, os.W_OK):
                _exit_with(f"{png.parent} is not writable (a shared, read-only data directory?), so the age histogram "
                           "cannot go there: pass --out FILE.png")
            result = prepared.info(name, data_dir=values.data_dir, png_path=png)
            if values.json:
                print(json.dumps({key: value for key, value in result.items() if key != "table"}, indent=2))
            else:
                print(result["table"])
                print(f"\nage histogram: {png}")
        elif action == "export-folds":
            if not values.out:
                _exit_with("data export-folds needs --out FILE.csv")
            print(f"written: {prepared.export_folds(name, values.out, data_dir=values.data_dir)}")
        else:
            if not values.out:
                _exit_with("data export-npz needs --out FILE.npz (and --split S, or --split all)")
            path = prepared.export_npz(name, values.split, values.out, data_dir=values.data_dir)
            print(f"written: {path}")
    except (ManualFilesError, FileNotFoundError, ValueError) as error:
        _exit_with(str(error))


@command("bench", "ssr-jax bench --config configs/ssrnet.py[:arg] [--config.x=...] [--members M] [--sequential] "
         "[--json] [--out FILE.json]",
         config_flag(),
         flag(flags.DEFINE_integer, "members", 1, "Members of the vmapped group (seeds and λ spread over them)."),
         flag(flags.DEFINE_bool, "sequential", False, "Time max(M, 2) runs one after another against one vmapped "
              "group of them, and extrapolate both to the config's epochs."),
         out_flag("Also write the result as JSON to this file."), json_flag())
def _bench(args, values):
    _no_positional(args)
    from ssr_jax import bench, workdir

    config, _ = _config_and_overrides(values)
    if values.members < 1:
        _exit_with(f"--members must be at least 1, got {values.members}")
    if values.sequential:
        result = bench.sequential_vs_vmapped(config, max(values.members, 2))
    else:
        result = bench.run_benchmark(config, members=values.members)
    text = workdir.dumps(result, indent=2)
    if values.out:
        workdir.write_text_atomic(values.out, text + "\n")
    print(text if values.json else bench.format_table(result))


# ----------------------------------------------------------------------------------------------------------------
# Parsing, errors, entry point
# ----------------------------------------------------------------------------------------------------------------
HELP = ("-h", "--help", "--helpshort", "--helpfull")


def _config_file(argv) -> str | None:
    for index, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def _flag_help(values: flags.FlagValues, names: list[str]) -> str:
    lines = []
    for name in names:
        item = values[name]
        spelled = f"--[no]{name}" if item.boolean else f"--{name}"
        default = "" if item.default in (None, [], "") else f" (default: {item.default})"
        text = " ".join(f"{spelled}: {item.help}{default}".split())
        lines.append(textwrap.fill(text, 116, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


def _parse_flags(argv, name: str, values: flags.FlagValues):
    """The subcommand's own flags parsed into `values` (with --help: its usage and flags, then exit 0); a missing
    config file or a bad flag or `--config.x=value` becomes one line of error."""
    if any(arg in HELP for arg in argv[1:]):
        usage = textwrap.fill(COMMANDS[name].usage, 116, subsequent_indent="    ")
        print(f"usage: {usage}\n\nflags:\n{_flag_help(values, list(values))}")
        sys.exit(0)
    spec = _config_file(argv)
    if spec is not None and not os.path.isfile(spec.split(":", 1)[0]):
        _exit_with(f"config file {spec.split(':', 1)[0]} does not exist; pass e.g. --config configs/ssrnet.py")
    try:
        remaining = values(argv)
    except flags.UnrecognizedFlagError as error:
        if not error.flagname.startswith("config."):
            _exit_with(f"bad command line: ssr-jax {name} takes no flag --{error.flagname}; `ssr-jax {name} --help` "
                       "lists its flags")
        _exit_with(_flag_error_line(error))
    except Exception as error:  # noqa: BLE001 -- the config file is the user's code: it may raise anything
        from ssr_jax.config_lib import user_code_error

        line = user_code_error(error, spec.split(":", 1)[0]) if spec is not None else None
        if line is not None:
            _exit_with(line)
        if not isinstance(error, (flags.Error, AttributeError, KeyError, ValueError, TypeError)):
            raise
        _exit_with(_flag_error_line(error))
    flags.FLAGS(argv[:1])  # absl's app needs its global FLAGS parsed; they hold only absl's own flags
    return remaining, values


def _flag_error_line(error: Exception) -> str:
    """absl's and config_flags' parse errors (several lines, quoted) as one line."""
    text = str(error).replace("\\n", "\n")
    lines = [line.strip(" '\"\\") for line in text.splitlines() if line.strip(" '\"\\")]
    if any(line.startswith("Did you mean") for line in lines):
        return f"bad command line: unknown config key {lines[0]!r} ({lines[-1]})"
    return f"bad command line: {lines[-1]}"


def _user_errors(run, args, values) -> None:
    """Runs a command; an error a user can meet (and fix) ends it with one line on stderr and an exit status."""
    from ssr_jax.config_lib import ConfigError

    sys.unraisablehook = _without_closed_event_loops(sys.unraisablehook)
    try:
        run(args, values)
    except ConfigError as error:
        _exit_with(str(error))
    except OSError as error:  # WorkdirError, a dataset to prepare, a damaged checkpoint, a full disk, ...
        _exit_with(_os_error_line(error))


def _without_closed_event_loops(hook):
    """`hook`, minus "Event loop is closed": TensorStore callbacks still arriving after a failed Orbax save (hundreds
    of tracebacks after a full disk) whose error the save has raised and the command reports in one line."""
    def filtered(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
            hook(unraisable)

    return filtered


def _os_error_line(error: OSError) -> str:
    from ssr_jax.workdir import write_error

    if error.errno is None:  # raised by ssr_jax with a whole sentence (WorkdirError, FileNotFoundError(message))
        return str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return str(write_error(error.filename or "a file", error))
    return f"{error.filename}: {error.strerror}" if error.filename else str(error.strerror or error)


def _as_absl_main(command: Command):
    def main(parsed):
        args, values = parsed
        logging.set_verbosity(logging.WARNING)
        if command.run in (_train, _sweep):
            from ssr_jax import parallel

            parallel.initialize_distributed()  # a multi-host job (Slurm with several tasks); else nothing
        _user_errors(command.run, args[1:], values)

    return main


def _overview() -> str:
    usages = [textwrap.fill(command.usage, 116, initial_indent="  ", subsequent_indent="      ")
              for command in COMMANDS.values()]
    return "\n".join(["usage: ssr-jax COMMAND ...   (ssr-jax COMMAND --help: that command's flags)", "", *usages, "",
                      __doc__])


RESUME = "rerun the same command to carry on from what it saved"
# An interrupt that has not ended the command this long after it arrived was caught where it could not stop it
# (inside a compiler or library callback): the command then ends as SIGKILL would, which every command survives.
INTERRUPT_GRACE_S = 10.0


def _interrupt_line(signum: int, text: str = "") -> str:
    """The last line of an interrupted command; `text` is `train.Interrupted`'s (from which epoch a rerun resumes)."""
    cause = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    text = text or f"interrupted: {RESUME}"
    return f"error: {text.replace('interrupted', cause, 1) if text.startswith('interrupted') else text}"


def _hard_exit(code: int, line: str = "") -> None:
    """Ends the process now: `line` on stderr, then `os._exit` without the interpreter's teardown, where threads still
    running (XLA compilation, Orbax and TensorStore callbacks) crashed it or printed pages after the last line."""
    if line:
        print(line, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _interrupts(real: bool) -> tuple[list[int], Callable[[], None]]:
    """Installs SIGINT and SIGTERM handlers that raise `KeyboardInterrupt` (Slurm sends SIGTERM before it preempts a
    job, so a job log says how to resume), leaving a signal the caller's shell ignores ignored. Returns the list of
    signals received and a function restoring the previous handlers. In the program itself (`real`), a second
    signal, or one the command has not ended on within `INTERRUPT_GRACE_S`, ends the process with the line."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        if real and len(received) > 1:
            _hard_exit(128 + signum, _interrupt_line(signum))
        if real:
            threading.Timer(INTERRUPT_GRACE_S, _hard_exit, (128 + signum, _interrupt_line(signum))).start()
        raise KeyboardInterrupt

    previous = {}
    main_thread = threading.current_thread() is threading.main_thread()  # where alone handlers can be installed
    for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if main_thread and signal.getsignal(signum) is default:
            previous[signum] = signal.signal(signum, handler)
    return received, lambda: [signal.signal(signum, old) for signum, old in previous.items()]


def main(argv: list[str] | None = None) -> None:
    """The program (`argv` None: `sys.argv`, and a failing command ends the process at once, `_hard_exit`), or one
    command in this process (`argv` given, as the tests do: `SystemExit` is raised)."""
    # The program's process-wide settings, first: before XLA starts its threads (importing ssr_jax sets nothing).
    host_memory.reuse_freed_memory()
    real = argv is None
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        wants_help = len(argv) > 1 and argv[1] in ("-h", "--help", "help")
        print(_overview(), file=sys.stdout if wants_help else sys.stderr)
        sys.exit(0 if wants_help else 2)
    name, command_argv = argv[1], [f"ssr-jax {argv[1]}", *argv[2:]]
    received, restore = _interrupts(real)
    try:
        values = flags.FlagValues()
        for define in COMMANDS[name].flags:
            define(values, command_argv)
        app.run(_as_absl_main(COMMANDS[name]), argv=command_argv,
                flags_parser=lambda argv: _parse_flags(argv, name, values))
    except KeyboardInterrupt as error:  # train.Interrupted says from which epoch a rerun resumes
        signum = received[0] if received else signal.SIGINT
        if real:
            _hard_exit(128 + signum, _interrupt_line(signum, str(error)))
        print(_interrupt_line(signum, str(error)), file=sys.stderr)
        sys.exit(128 + signum)
    except SystemExit as error:
        if real and error.code not in (0, None):
            code = isinstance(error.code, int)
            _hard_exit(error.code if code else 1, "" if code else str(error.code))
        raise
    finally:
        restore()


if __name__ == "__main__":
    main()
