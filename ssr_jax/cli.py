"""`ssr-jax` (or `python -m ssr_jax`): one entry point, one subcommand per job.

  ssr-jax train --config configs/ssrnet.py[:arg] --workdir DIR [--config.model.stages=5,5,5 ...]
  ssr-jax info  --config configs/ssrnet.py[:arg] [--config.x=...] [--json]
  ssr-jax demo  [--workdir runs/demo]
  ssr-jax sweep EXPERIMENT[:arg] --workdir DIR [--seeds N] [--dry_run] [--shard i/n] [--max_members M]
  ssr-jax report DIR [--format md,latex,csv] [--out DIR] [--plot] [--baseline CONFIG]

Config files and `--config.x=value` overrides are parsed by ml_collections' `config_flags`, as in the Flax examples.
A bad config, override or workdir ends the command with one line on stderr and exit status 2, before anything
compiles.
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, `path.py[:arg]`.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (train) or output directory (demo).")
_JSON = flags.DEFINE_bool("json", False, "info: print one JSON object instead of a table.")
_SEEDS = flags.DEFINE_integer("seeds", None, "sweep: seeds per configuration (default: the experiment's).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "sweep: print the runs and their groups, train nothing.")
_SHARD = flags.DEFINE_string("shard", None, "sweep: run only the deterministic subset i/n.")
_MAX_MEMBERS = flags.DEFINE_integer("max_members", 32, "sweep: most members trained together in one program.")
_FORMAT = flags.DEFINE_list("format", ["md", "latex", "csv"], "report: table formats.")
_OUT = flags.DEFINE_string("out", None, "report: output directory (default DIR/report).")
_PLOT = flags.DEFINE_bool("plot", False, "report: also draw the figures (PNG).")
_BASELINE = flags.DEFINE_string("baseline", None, "report: config label (or part of one) for the ΔMAE column.")


def _exit_with(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _config_and_overrides():
    from ssr_jax import config_lib

    if _CONFIG.value is None:
        _exit_with("--config is required, e.g. --config configs/ssrnet.py")
    config = _CONFIG.value
    config_lib.validate(config)
    return config, config_flags.get_override_values(flags.FLAGS["config"])


def _train(args):
    _no_positional(args)
    from ssr_jax.train import train_and_evaluate

    if not _WORKDIR.value:
        _exit_with("--workdir is required, e.g. --workdir runs/ssrnet")
    config, overrides = _config_and_overrides()
    summary = train_and_evaluate(config, _WORKDIR.value, overrides=overrides)
    print(json.dumps(summary, indent=2, sort_keys=True))


def _info(args):
    _no_positional(args)
    from ssr_jax.models import abstract_variables, count_parameters

    config, _ = _config_and_overrides()
    counts = count_parameters(abstract_variables(config.model, config.data.image_size))
    if _JSON.value:
        print(json.dumps(counts))
        return
    model = config.model
    heads = "" if model.family == "dex" else f" delta={model.with_delta} eta={model.with_eta}"
    print(f"model       {model.family} stages={tuple(model.stages)} p={model.p_activation}{heads}")
    print(f"trainable   {counts['trainable']:,}")
    print(f"batch_stats {counts['batch_stats']:,}")
    print(f"total       {counts['total']:,}")
    print(f"bytes       {counts['bytes']:,} (float32)")


def _demo(args):
    _no_positional(args)
    from ssr_jax import demo

    demo.main(_WORKDIR.value or "runs/demo")


def _sweep(args):
    from ssr_jax import sweep

    if len(args) != 1:
        _exit_with("sweep takes one experiment, e.g. ssr-jax sweep experiments/dynamic_range.py:smoke --workdir DIR")
    if not _WORKDIR.value and not _DRY_RUN.value:
        _exit_with("--workdir is required, e.g. --workdir runs/dynamic_range")
    sweep.run_sweep(args[0], _WORKDIR.value, seeds=_SEEDS.value, shard_spec=_SHARD.value,
                    max_members=_MAX_MEMBERS.value, dry_run=_DRY_RUN.value)


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


def _no_positional(args):
    if args:
        _exit_with(f"unexpected arguments {args}; see `ssr-jax --help`")


COMMANDS = {"train": _train, "info": _info, "demo": _demo, "sweep": _sweep, "report": _report}


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


def _as_absl_main(command):
    def main(argv):
        from ssr_jax.config_lib import ConfigError
        from ssr_jax.workdir import WorkdirError

        logging.set_verbosity(logging.WARNING)
        try:
            command(argv[1:])
        except (ConfigError, WorkdirError) as error:
            _exit_with(str(error))

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
