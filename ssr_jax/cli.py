"""`ssr-jax` (or `python -m ssr_jax`): one entry point, one subcommand per job.

  ssr-jax train --config configs/ssrnet.py[:arg] --workdir DIR [--config.model.stages=5,5,5 ...]
  ssr-jax info  --config configs/ssrnet.py[:arg] [--config.x=...] [--json]
  ssr-jax demo  [--workdir runs/demo]
  ssr-jax sweep EXPERIMENT[:arg] --workdir DIR [--seeds N] [--dry_run] [--shard i/n] [--max_members M]
                [--launcher local|slurm|submitit_local] [--job timeout_min=600,slurm_partition=gpu,...] [--wait]
                [--set key=value ...]
  ssr-jax report DIR [--format md,latex,csv] [--out DIR] [--plot] [--baseline CONFIG]
  ssr-jax convert-keras FILE.h5 --out MODEL_DIR
  ssr-jax predict MODEL_DIR IMAGE_OR_FOLDER... [--json]
  ssr-jax evaluate MODEL_DIR --data NAME [--split test] [--data_dir DIR] [--cap N] [--out FILE.json]
  ssr-jax inspect MODEL_DIR (IMAGE_OR_FOLDER... | --data NAME [--split test]) [--out DIR] [--json]

  ssr-jax bench --config configs/ssrnet.py[:arg] [--config.x=...] [--members M] [--sequential] [--json]
                [--out FILE.json]

  ssr-jax data prepare NAME [--manual_dir DIR] [--data_dir DIR] [--strict]
  ssr-jax data info NAME [--data_dir DIR] [--out FILE.png]
  ssr-jax data export-npz NAME --split S|all --out FILE.npz [--data_dir DIR]

MODEL_DIR is a training workdir, a sweep run directory or a convert-keras output. NAME is a dataset (morph2, imdb,
wiki, megaage_asian, utkface, synthetic_faces), optionally with its split protocol: morph2/subject.

Config files and `--config.x=value` overrides are parsed by ml_collections' `config_flags`, as in the Flax examples.
A bad config, override or workdir ends the command with one line on stderr and exit status 2, before anything
compiles. Every error a user can meet ends with one line on stderr, not a traceback (`_user_errors`): exit status 2
for a refusal (a bad value, a busy, damaged or unwritable directory, a full disk), 1 for a sweep with failed or
diverged runs, 130 for Ctrl-C (rerunning the same command resumes).
"""
from __future__ import annotations

import errno
import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, `path.py[:arg]`.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (train) or output directory (demo).")
_JSON = flags.DEFINE_bool("json", False, "info, predict, evaluate, inspect: print JSON instead of a table.")
_SEEDS = flags.DEFINE_integer("seeds", None, "sweep: seeds per configuration (default: the experiment's).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "sweep: print the runs and their groups, train nothing.")
_SHARD = flags.DEFINE_string("shard", None, "sweep: run only the deterministic subset i/n.")
_MAX_MEMBERS = flags.DEFINE_integer("max_members", None, "sweep: most members trained together in one program "
                                     "(default: the sweep engine's).")
_LAUNCHER = flags.DEFINE_string("launcher", "local", "sweep: local (this process), slurm (one submitit job per "
                                "group) or submitit_local (the job path, as local processes).")
_JOB = flags.DEFINE_list("job", [], "sweep: submitit job parameters key=value (timeout_min, gpus_per_node, "
                         "cpus_per_task, mem_gb, slurm_partition, slurm_account, ...).")
_WAIT = flags.DEFINE_bool("wait", False, "sweep: with a job launcher, wait for the jobs and then write results.")
_SET = flags.DEFINE_multi_string("set", [], "sweep: key=value config override for every run (repeatable), e.g. "
                                 "--set parallel.members=8 --set train.eval_batch_size=100.")
_FORMAT = flags.DEFINE_list("format", ["md", "latex", "csv"], "report: table formats.")
_OUT = flags.DEFINE_string(
    "out", None, "report, inspect: output directory (default DIR/report, MODEL_DIR/inspect); convert-keras: the new "
    "model directory; evaluate: the summary file (default MODEL_DIR/evaluations/NAME_SPLIT.json); bench: also "
    "write the result as JSON to this file.")
_PLOT = flags.DEFINE_bool("plot", False, "report: also draw the figures (PNG).")
_BASELINE = flags.DEFINE_string("baseline", None, "report: config label (or part of one) for the ΔMAE column.")
_DATA = flags.DEFINE_string("data", None, "evaluate, inspect: dataset name (synthetic or a prepared dataset).")
_SPLIT = flags.DEFINE_string("split", "test", "evaluate, inspect: dataset split.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "where prepared datasets live (default $SSR_JAX_DATA_DIR or "
                                "~/ssr_jax_data).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "data prepare: the folder holding the dataset's files as "
                                  "downloaded (see the builder's instructions in the error when they are missing).")
_STRICT = flags.DEFINE_bool("strict", False, "data prepare: stop at the first unreadable or misnamed image instead "
                            "of skipping and counting it.")
_MEMBERS = flags.DEFINE_integer("members", 1, "bench: members of the vmapped group (seeds and λ spread over them).")
_SEQUENTIAL = flags.DEFINE_bool("sequential", False, "bench: time max(M, 2) runs one after another against one "
                                "vmapped group of them, and extrapolate both to the config's epochs.")
_CAP = flags.DEFINE_integer("cap", None, "evaluate, inspect: use only the first N examples of the split.")


def _exit_with(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _config_and_overrides():
    from ssr_jax import validation

    if _CONFIG.value is None:
        _exit_with("--config is required, e.g. --config configs/ssrnet.py")
    config = _CONFIG.value
    validation.validate(config)
    return config, config_flags.get_override_values(flags.FLAGS["config"])


def _train(args):
    _no_positional(args)
    from ssr_jax import workdir
    from ssr_jax.train import train_and_evaluate

    if not _WORKDIR.value:
        _exit_with("--workdir is required, e.g. --workdir runs/ssrnet")
    config, overrides = _config_and_overrides()
    summary = train_and_evaluate(config, _WORKDIR.value, overrides=overrides)
    print(workdir.dumps(summary, indent=2))


def _info(args):
    _no_positional(args)
    from ssr_jax.models import abstract_variables, count_parameters

    config, _ = _config_and_overrides()
    counts = count_parameters(abstract_variables(config.model, config.data.image_size))
    if _JSON.value:
        print(json.dumps(counts))
        return
    model = config.model
    if model.family == "mobilenet":
        print(f"model       mobilenet alpha={model.mobilenet_alpha} (regression head)")
    elif model.family == "densenet":
        print(f"model       densenet depth={model.densenet_depth} (regression head)")
    else:
        heads = f" delta={model.with_delta} eta={model.with_eta}" if model.family == "ssr" else ""
        print(f"model       {model.family} stages={tuple(model.stages)} p={model.p_activation}{heads}")
    print(f"trainable   {counts['trainable']:,}")
    print(f"batch_stats {counts['batch_stats']:,}")
    print(f"total       {counts['total']:,}")
    print(f"bytes       {counts['bytes']:,} (float32)")


def _demo(args):
    _no_positional(args)
    from configs import dex, ssrnet
    from ssr_jax import demo

    demo.main(_WORKDIR.value or "runs/demo", [("SSR-Net (3,3,3)", "ssrnet", ssrnet.get_config("demo")),
                                               ("DEX (101 bins)", "dex", dex.get_config("demo"))])


def _sweep(args):
    if len(args) != 1:
        _exit_with("sweep takes one experiment, e.g. ssr-jax sweep experiments/dynamic_range.py:smoke --workdir DIR")
    if not _WORKDIR.value and not _DRY_RUN.value:
        _exit_with("--workdir is required, e.g. --workdir runs/dynamic_range")
    from ssr_jax import config_lib, launch, sweep

    # --max_members unset: the engine's own default (sweep.DEFAULT_MAX_MEMBERS), stated once.
    sizes = {} if _MAX_MEMBERS.value is None else {"max_members": _MAX_MEMBERS.value}
    try:
        launch.run_sweep(args[0], _WORKDIR.value, seeds=_SEEDS.value, shard_spec=_SHARD.value,
                         dry_run=_DRY_RUN.value, launcher=_LAUNCHER.value,
                         job_parameters=launch.parse_job_parameters(_JOB.value), wait=_WAIT.value,
                         common=config_lib.parse_overrides(_SET.value), check=True, **sizes)
    except sweep.SweepFailedError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def _report(args):
    from ssr_jax import report

    if len(args) != 1:
        _exit_with("report takes one sweep directory, e.g. ssr-jax report runs/dynamic_range")
    try:
        written = report.write_tables(args[0], _OUT.value, formats=_FORMAT.value, baseline=_BASELINE.value,
                                      plot=_PLOT.value)
    except (FileNotFoundError, ValueError) as error:
        _exit_with(str(error))
    if "results.md" in written:
        print(written["results.md"].read_text())
    if "pivot.md" in written:
        print(written["pivot.md"].read_text())
    print("written: " + ", ".join(str(path) for path in written.values()))
    for line in report.failures(args[0]):
        print(line, file=sys.stderr)


def _convert_keras(args):
    from configs import ssrnet
    from ssr_jax import keras_import

    if len(args) != 1 or not _OUT.value:
        _exit_with("usage: ssr-jax convert-keras FILE.h5 --out MODEL_DIR")
    # The recipe recorded with the weights: --config's, else the shipped SSR-Net config (model fields are pinned).
    recipe = _CONFIG.value if _CONFIG.value is not None else ssrnet.get_config()
    try:
        directory = keras_import.convert_keras(args[0], _OUT.value, recipe)
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


def _predict(args):
    from ssr_jax import predict, workdir
    from ssr_jax.data import images

    model_dir = _model_dir(args, "ssr-jax predict MODEL_DIR IMAGE_OR_FOLDER... [--json]")
    paths = images.expand_image_paths(args[1:])
    if not paths:
        _exit_with("no images given: pass image files or folders of images after MODEL_DIR")
    results = predict.predict_files(model_dir, paths)
    if _JSON.value:
        print(workdir.dumps(results, indent=2))
    else:
        for row in results:
            print(f"{row['age']:7.2f}  {row['file']}" if "age" in row else f"  error  {row['file']}: {row['error']}")
    if any("error" in row for row in results):
        print(f"{sum('error' in row for row in results)} of {len(results)} files could not be read", file=sys.stderr)
        sys.exit(1)


def _dataset_split(model_dir: str) -> dict:
    """The `--data`/`--split` arrays; a synthetic split is regenerated from the model's own `config.data`."""
    from ssr_jax import data, saved_model

    config = saved_model.read_config(model_dir)
    try:
        return data.load_split(_DATA.value, _SPLIT.value, data_config=config.data, data_dir=_DATA_DIR.value,
                               cap=_CAP.value)
    except (FileNotFoundError, ValueError) as error:
        _exit_with(str(error))


def _evaluate(args):
    from ssr_jax import predict, workdir

    usage = "ssr-jax evaluate MODEL_DIR --data NAME [--split test] [--data_dir DIR] [--out FILE.json]"
    model_dir = _model_dir(args, usage)
    if len(args) != 1 or not _DATA.value:
        _exit_with(f"usage: {usage}")
    summary = {**predict.evaluate_split(model_dir, _dataset_split(model_dir)),
               "model_dir": model_dir, "data": _DATA.value, "split": _SPLIT.value}
    out = _OUT.value or os.path.join(model_dir, "evaluations", f"{_DATA.value}_{_SPLIT.value}.json")
    workdir.prepare(os.path.dirname(os.path.abspath(out)))
    workdir.write_json(out, summary)
    if _JSON.value:
        print(workdir.dumps(summary, indent=2))
    else:
        print(f"{model_dir} on {_DATA.value}/{_SPLIT.value} ({summary['num_test']} images): MAE {summary['mae']:.3f}, "
              f"CA(3) {summary['ca3']:.3f}, CA(5) {summary['ca5']:.3f}")
        print(f"written: {out}")


def _inspect(args):
    import numpy as np

    from ssr_jax import inspect_model, saved_model, workdir
    from ssr_jax.data.images import expand_image_paths, fit_images, read_images

    usage = "ssr-jax inspect MODEL_DIR (IMAGE_OR_FOLDER... | --data NAME [--split test]) [--out DIR] [--json]"
    model_dir = _model_dir(args, usage)
    if bool(args[1:]) == bool(_DATA.value):
        _exit_with(f"inspect reads either images or --data, not both or neither; usage: {usage}")
    if _DATA.value:
        split = _dataset_split(model_dir)
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
    out = workdir.prepare(_OUT.value or os.path.join(model_dir, "inspect"))
    workdir.write_json(out / "inspect.json", result)
    inspect_model.plot(result, out / "inspect.png")
    if _JSON.value:
        print(workdir.dumps({key: value for key, value in result.items() if key != "predictions"}, indent=2))
    else:
        print(inspect_model.format_table(result))
        print(f"\nwritten: {out / 'inspect.json'}, {out / 'inspect.png'}")


DATA_USAGE = ("usage: ssr-jax data prepare NAME [--manual_dir DIR] | data info NAME | "
              "data export-npz NAME --split S|all --out FILE.npz   (each with [--data_dir DIR])")


def _data(args):
    from ssr_jax.data import prepared
    from ssr_jax.data.builders.base import ManualFilesError

    if len(args) != 2 or args[0] not in ("prepare", "info", "export-npz"):
        _exit_with(DATA_USAGE)
    action, name = args
    try:
        if action == "prepare":
            prepared.prepare(name, manual_dir=_MANUAL_DIR.value, data_dir=_DATA_DIR.value, strict=_STRICT.value,
                             progress=True)
        elif action == "info":
            png = _OUT.value or prepared.dataset_dir(name, data_dir=_DATA_DIR.value) / "ages.png"
            result = prepared.info(name, data_dir=_DATA_DIR.value, png_path=png)
            if _JSON.value:
                print(json.dumps({key: value for key, value in result.items() if key != "table"}, indent=2))
            else:
                print(result["table"])
                print(f"\nage histogram: {png}")
        else:
            if not _OUT.value:
                _exit_with("data export-npz needs --out FILE.npz (and --split S, or --split all)")
            path = prepared.export_npz(name, _SPLIT.value, _OUT.value, data_dir=_DATA_DIR.value)
            print(f"written: {path}")
    except (ManualFilesError, FileNotFoundError, ValueError) as error:
        _exit_with(str(error))


def _bench(args):
    _no_positional(args)
    from ssr_jax import bench, workdir

    config, _ = _config_and_overrides()
    if _MEMBERS.value < 1:
        _exit_with(f"--members must be at least 1, got {_MEMBERS.value}")
    if _SEQUENTIAL.value:
        result = bench.sequential_vs_vmapped(config, max(_MEMBERS.value, 2))
    else:
        result = bench.run_benchmark(config, members=_MEMBERS.value)
    text = workdir.dumps(result, indent=2)
    if _OUT.value:
        workdir.write_text_atomic(_OUT.value, text + "\n")
    print(text if _JSON.value else bench.format_table(result))


def _no_positional(args):
    if args:
        _exit_with(f"unexpected arguments {args}; see `ssr-jax --help`")


COMMANDS = {"train": _train, "info": _info, "demo": _demo, "sweep": _sweep, "report": _report,
            "convert-keras": _convert_keras, "predict": _predict, "evaluate": _evaluate, "inspect": _inspect,
            "bench": _bench, "data": _data}


def _config_file(argv) -> str | None:
    for index, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def _parse_flags(argv):
    """absl's parser, with a missing config file or a bad `--config.x=value` turned into one line of error."""
    spec = _config_file(argv)
    if spec is not None and not os.path.isfile(spec.split(":", 1)[0]):
        _exit_with(f"config file {spec.split(':', 1)[0]} does not exist; pass e.g. --config configs/ssrnet.py")
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as error:
        text = str(error).replace("\\n", "\n")
        lines = [line.strip(" '\"\\") for line in text.splitlines() if line.strip(" '\"\\")]
        if any(line.startswith("Did you mean") for line in lines):
            reason = f"unknown config key {lines[0]!r} ({lines[-1]})"
        else:
            reason = lines[-1]
        _exit_with(f"bad command line: {reason}")


def _user_errors(command, args) -> None:
    """Runs `command`; an error a user can meet (and fix) ends it with one line on stderr and an exit status."""
    from ssr_jax.config_lib import ConfigError

    sys.unraisablehook = _without_closed_event_loops(sys.unraisablehook)
    try:
        command(args)
    except KeyboardInterrupt as error:  # train.Interrupted says from which epoch a rerun resumes
        print(f"error: {error or 'interrupted: rerun the same command to carry on'}", file=sys.stderr)
        sys.exit(130)
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


def _as_absl_main(command):
    def main(argv):
        logging.set_verbosity(logging.WARNING)
        if command in (_train, _sweep):
            from ssr_jax import parallel

            parallel.initialize_distributed()  # a multi-host job (Slurm with several tasks); else nothing
        _user_errors(command, argv[1:])

    return main


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        wants_help = len(argv) > 1 and argv[1] in ("-h", "--help", "help")
        print(__doc__, file=sys.stdout if wants_help else sys.stderr)
        sys.exit(0 if wants_help else 2)
    name = argv[1]
    app.run(_as_absl_main(COMMANDS[name]), argv=[f"ssr-jax {name}", *argv[2:]], flags_parser=_parse_flags)


if __name__ == "__main__":
    main()
