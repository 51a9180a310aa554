"""Sweeps: expand an experiment into runs, validate them all, group them by program, train each group vmapped.

An experiment file (`experiments/*.py`) defines `get_config(arg)` (the base config) and `get_sweep(arg)` (a list of
dotted-key override dicts, built with `sweep` / `product` / `zipit`). Each override dict × seed is a *run*, with a
run id that is a deterministic function of its overrides, so a rerun finds its directory again. An entry may also
carry `"name": "DEX"`, the row's name in reports (`named`); it is not an override and leaves the run id alone, so
renaming the rows of a finished sweep and rerunning its command renames them in results.jsonl and trains nothing.

Runs whose configs differ only in values (seed, λ_local, λ_d, learning rate — `state.VALUE_FIELDS`) share one
compiled program and train together as the members of a vmapped group (purejaxrl's `jit(vmap(train))`); a group
larger than `max_members` is split into chunks. Layout of a sweep directory:

  DIR/runs/<run_id>/     config.json, metrics.jsonl, summary.json, events.out.tfevents.*, checkpoint/ (one per run)
  DIR/groups/<group>/    checkpoint/ of the stacked member state, for resuming the group
  DIR/results.jsonl      one row per finished run in the experiment's order, rebuilt from the run directories after
                         every group
  DIR/events.out.tfevents.*  the HParams experiment (the keys the runs vary), for `tensorboard --logdir DIR`

A group trains only while its process holds the locks of its run and group directories, so a second sweep on the
same directory is refused at the first group the other one holds, before it writes anything there.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import json
import pathlib
import re
import sys
import time
import traceback
from typing import Any, Iterable, Sequence

import jax
import ml_collections
import tqdm

from ssr_jax import config_lib, parallel, tensorboard_log, validation, workdir as workdir_lib
from ssr_jax.data import load_splits
from ssr_jax.models import architecture_label
from ssr_jax.record import REPLICATE_KEYS, read_summary, record_config
from ssr_jax.state import program_signature
from ssr_jax.train import train_members

FINISHED = ("ok", "diverged")
# The sweep-entry key that names a row in reports instead of an override (see `named`).
NAME_KEY = "name"
# The most members one program trains together on an accelerator; see `default_max_members`.
ACCELERATOR_MAX_MEMBERS = 32


def default_max_members(runs: Sequence["Run"], backend: str | None = None) -> int:
    """Members trained together when `--max_members` is not given: on a CPU one run at a time, elsewhere up to
    `ACCELERATOR_MAX_MEMBERS`.

    On a CPU a vmapped group is slower than its runs one after another (benchmarks/README.md: the 25-run λ grid took
    0.61× the time one after another): two cores are already busy with one member's convolutions, and vmapped
    members lose the per-member oneDNN path. Runs of one program still compile once (`train.EXECUTABLES`). Runs
    that ask for member parallelism (`parallel.members` > 1) are grouped on any backend: the group is what is
    split over the devices.
    """
    backend = backend or jax.default_backend()
    if backend == "cpu" and all(run.config.parallel.members == 1 for run in runs):
        return 1
    return ACCELERATOR_MAX_MEMBERS


class SweepFailedError(RuntimeError):
    """Some runs of a sweep failed or diverged; the message is the one-line count."""


# ----------------------------------------------------------------------------------------------------------------
# Building sweeps (for experiment files)
# ----------------------------------------------------------------------------------------------------------------
def sweep(key: str, values: Iterable[Any]) -> list[dict]:
    """One axis: `sweep("model.lambda_d", [0, 1])` → `[{"model.lambda_d": 0}, {"model.lambda_d": 1}]`."""
    return [{key: value} for value in values]


def named(name: str, overrides: dict) -> dict:
    """A sweep entry whose report rows read `name` instead of its overrides, e.g. `named("DEX", dex_overrides)` for
    the six overrides that make DEX out of SSR-Net."""
    return {**overrides, NAME_KEY: name}


def product(*axes: Sequence[dict]) -> list[dict]:
    """Every combination of the axes' entries (the first axis varies slowest)."""
    return [{k: v for entry in combination for k, v in entry.items()} for combination in itertools.product(*axes)]


def zipit(*axes: Sequence[dict]) -> list[dict]:
    """Entries taken side by side; the axes must have equal lengths."""
    if len({len(axis) for axis in axes}) > 1:
        raise ValueError(f"zipit needs axes of equal length, got {[len(axis) for axis in axes]}")
    return [{k: v for entry in entries for k, v in entry.items()} for entries in zip(*axes)]


# ----------------------------------------------------------------------------------------------------------------
# Expanding and validating
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Run:
    run_id: str
    overrides: dict  # dotted key → value, including "seed"
    config: ml_collections.ConfigDict
    group: str  # id of the compiled program (and member chunk) this run trains in; set by `group_runs`
    name: str = ""  # the entry's display name ("DEX"); "" = reports label the run by its overrides

    @property
    def seed(self) -> int:
        return self.config.seed


def _digest(obj: Any, length: int = 8) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def run_id(overrides: dict) -> str:
    """Readable and deterministic: `lambda_d=0,lambda_local=0.25,seed=1-3f9a0c1e` (the hash covers all overrides,
    the readable part is cut at 64 characters)."""
    parts = [f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in sorted(overrides.items()) if key != "seed"]
    readable = re.sub(r"[^A-Za-z0-9=.,_+-]", "", ",".join(parts))[:64]
    seed = f",seed={overrides['seed']}" if "seed" in overrides else ""
    return f"{readable}{seed}-{_digest(config_lib.jsonable(overrides))}".lstrip(",")


def _short(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(str(item) for item in value)
    return str(value)


def load_experiment(spec: str):
    """`experiments/name.py[:arg]` → (module, arg)."""
    path, _, arg = spec.partition(":")
    module = config_lib.load_module(path, what="experiment file", example="experiments/dynamic_range.py")
    for name in ("get_config", "get_sweep"):
        if not hasattr(module, name):
            raise config_lib.ConfigError(f"{path} defines no {name}(arg); an experiment needs get_config and get_sweep")
    return module, arg or None


def expand(spec: str, *, seeds: int | None = None, common: dict | None = None) -> list[Run]:
    """All runs of an experiment, each validated; raises `ConfigError` naming the first bad override.

    `common` (`--set key=value`) overrides every run, e.g. `parallel.members` or `train.eval_batch_size`; it is part
    of each run's overrides and so of its id. It may not set a key the sweep itself varies.
    """
    module, arg = load_experiment(spec)
    path = spec.partition(":")[0]
    base = config_lib.call_user(path, module.get_config, arg, returns=ml_collections.ConfigDict, what="get_config")
    entries = config_lib.call_user(path, module.get_sweep, arg, returns=(list, tuple), what="get_sweep")
    if not entries:
        raise config_lib.ConfigError(f"{spec}: get_sweep returned no entries, so the sweep has no runs; return a list "
                                     "of override dicts, e.g. sweep(\"model.lambda_d\", [0.0, 1.0])")
    bad = [entry for entry in entries if not isinstance(entry, dict)]
    if bad:
        raise config_lib.ConfigError(f"{spec}: get_sweep returned the entry {bad[0]!r}; each entry is a dict of "
                                     "overrides, e.g. {\"model.lambda_d\": 0.0}")
    common = dict(common or {})
    if "seed" in common:
        raise config_lib.ConfigError("--set seed=...: seeds come from --seeds")
    seeds = seeds if seeds is not None else getattr(module, "DEFAULT_SEEDS", 1)
    if seeds < 1:
        raise config_lib.ConfigError(f"--seeds={seeds}: needs at least one seed")
    runs, seen, names = [], set(), {}
    for entry in entries:
        entry = dict(entry)
        name = entry.pop(NAME_KEY, "")
        if not isinstance(name, str):
            raise config_lib.ConfigError(f"{spec}: sweep entry {entry} has {NAME_KEY}={name!r}; a name is a string, "
                                         f"e.g. named(\"DEX\", overrides)")
        # One name per config: its replicates (the benchmark's splits) share it, like seeds.
        defining = {key: value for key, value in entry.items() if key not in REPLICATE_KEYS}
        if name and names.setdefault(name, defining) != defining:
            raise config_lib.ConfigError(f"{spec}: two sweep entries are named {name!r} ({names[name]} and "
                                         f"{defining}); give each its own name")
        if "seed" in entry:
            raise config_lib.ConfigError(f"{spec}: sweep entry {entry} sets 'seed'; seeds come from --seeds")
        clash = sorted(set(common) & set(entry))
        if clash:
            raise config_lib.ConfigError(f"--set {clash[0]}=...: {spec} sweeps {clash[0]} itself; drop it from --set")
        for seed in range(seeds):
            overrides = {**common, **entry, "seed": seed}
            try:
                config = config_lib.apply_overrides(base, overrides)
                validation.validate(config)
            except config_lib.ConfigError as error:
                raise config_lib.ConfigError(f"{spec}: run {overrides}: {error}") from None
            identifier = run_id(overrides)
            if identifier in seen:
                raise config_lib.ConfigError(f"{spec}: the sweep lists {overrides} twice")
            seen.add(identifier)
            runs.append(Run(identifier, overrides, config, group="", name=name))
    return runs


def group_runs(runs: Sequence[Run], *, max_members: int = ACCELERATOR_MAX_MEMBERS) -> list[list[Run]]:
    """Runs sharing a program signature, split into chunks of at most `max_members`, in a deterministic order.

    A chunk's id names its program and its members, so a chunk with other members never resumes its checkpoint.
    """
    by_program: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda run: run.run_id):
        by_program.setdefault(_digest(program_signature(run.config), 10), []).append(run)
    groups = []
    for program, members in sorted(by_program.items()):
        config = members[0].config
        label = f"{architecture_label(config.model)}-{program}"
        for start in range(0, len(members), max_members):
            chunk = members[start:start + max_members]
            group = f"{label}-{_digest([run.run_id for run in chunk], 6)}"
            groups.append([dataclasses.replace(run, group=group) for run in chunk])
    return groups


def shard(runs: Sequence[Run], spec: str | None) -> list[Run]:
    """`i/n` → the runs whose position in run-id order is ≡ i (mod n); deterministic across machines."""
    if not spec:
        return list(runs)
    match = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not match or not int(match[1]) < int(match[2]):
        raise config_lib.ConfigError(f"--shard={spec}: use i/n with 0 <= i < n, e.g. --shard 0/4")
    index, count = int(match[1]), int(match[2])
    return [run for position, run in enumerate(sorted(runs, key=lambda r: r.run_id)) if position % count == index]


# ----------------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------------
def _result_rows(workdir: pathlib.Path, runs: Sequence[Run] = ()) -> list[dict]:
    """A `results.jsonl` row for every run directory with a readable summary and config record: first `runs`' in
    their order (the experiment's: entry by entry, seeds within), then any others in the workdir by run id. A run's
    "name" is its `Run.name` where `runs` has it (the experiment file as it is now), else the one config.json
    recorded."""
    names = {run.run_id: run.name for run in runs}
    position = {run_id: index for index, run_id in enumerate(names)}
    run_dirs = sorted((workdir / "runs").glob("*/"), key=lambda path: (position.get(path.name, len(position)),
                                                                         path.name))
    rows = []
    for run_dir in run_dirs:
        summary, record = read_summary(run_dir), run_dir / "config.json"
        if summary is not None and record.exists():
            try:
                recorded = workdir_lib.read_json(record)
                overrides = recorded["overrides"]
            except (ValueError, KeyError, TypeError):
                print(f"warning: {record} is unreadable; {run_dir.name} is left out of the results", file=sys.stderr)
                continue
            name = names.get(run_dir.name, recorded.get("name"))
            rows.append({"run_id": run_dir.name, "overrides": overrides, **({"name": name} if name else {}),
                         "seed": overrides.get("seed"), **summary})
    return rows


def write_results(workdir: pathlib.Path, runs: Sequence[Run] = ()) -> list[dict]:
    """Rebuilds `results.jsonl` from every run directory with a summary (shards and cluster jobs may share one
    workdir: the lock keeps a slower rebuild from replacing a newer one that saw more finished runs). On several
    hosts only process 0 writes, as for every run file, and the others read the run directories once it has: every
    process returns the same rows. `runs`: the experiment's runs, for the rows' order and names (`_result_rows`)."""
    if not parallel.is_writer():
        parallel.wait_for_writer("sweep results written")
        return _result_rows(workdir, runs)
    with open(workdir / ".results.lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        rows = _result_rows(workdir, runs)
        workdir_lib.write_jsonl(workdir / "results.jsonl", rows)
    parallel.wait_for_writer("sweep results written")
    return rows


def describe(groups: list[list[Run]]) -> str:
    """The plan `--dry-run` prints: groups, their members and what varies inside each."""
    lines = []
    for members in groups:
        config = members[0].config
        lines.append(f"group {members[0].group}: {len(members)} member(s), {architecture_label(config.model)}, "
                     f"batch {config.train.batch_size}, "
                     f"{config.train.epochs} epochs")
        lines.extend(f"  {run.run_id}" for run in members)
    return "\n".join(lines)


def run_group(members: list[Run], workdir: pathlib.Path, splits, progress) -> None:
    """Trains one group; an exception marks every member `failed` with its traceback and is not re-raised.

    The group first takes the locks of its run and group directories: `WorkdirBusyError` (another process trains
    them) is raised before anything is written there, as is a `ConfigError` from a run directory of another config.
    """
    run_dirs = [workdir_lib.prepare(workdir / "runs" / run.run_id) for run in members]
    group_dir = workdir_lib.prepare(workdir / "groups" / members[0].group)
    writer = parallel.is_writer()  # on several hosts only process 0 writes run files
    with contextlib.ExitStack() as locks:
        for directory in [*run_dirs, group_dir] if writer else ():
            locks.enter_context(workdir_lib.exclusive(directory, what=f"ssr-jax sweep, group {members[0].group}"))
        for run, run_dir in zip(members, run_dirs):  # first, so that even a group that fails has its runs on record
            if writer:
                record_config(run_dir, run.config, run.overrides, name=run.name)
        try:
            train_members([run.config for run in members], run_dirs, group_dir, splits=splits, progress=progress,
                          name=members[0].group)
        except Exception as error:  # noqa: BLE001 — one broken group must not stop the sweep
            trace = traceback.format_exc()
            where = run_dirs[0] / "summary.json"
            print(f"group {members[0].group} failed: {type(error).__name__}: {_first_line(error)} (traceback in "
                  f"{where})", file=sys.stderr, flush=True)
            for run_dir in run_dirs if writer else ():
                try:
                    workdir_lib.write_json(run_dir / "summary.json", {"status": "failed", "traceback": trace})
                except OSError as write_error:  # e.g. the full disk that failed the group: the run stays pending
                    print(f"warning: {write_error}", file=sys.stderr, flush=True)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


def tally(workdir: pathlib.Path, runs: Sequence[Run]) -> tuple[str, bool]:
    """("25 runs: 22 ok, 1 diverged, 2 failed — see DIR/results.jsonl", all ok?) over `runs`; a run without a
    readable summary counts as failed."""
    counts = collections.Counter()
    for run in runs:
        summary = read_summary(workdir / "runs" / run.run_id)
        counts[summary["status"] if summary is not None else "failed"] += 1
    parts = [f"{counts[status]} {status}" for status in ("ok", "diverged", "failed") if counts[status]]
    parts += [f"{count} {status}" for status, count in sorted(counts.items()) if status not in ("ok", "diverged",
                                                                                                   "failed")]
    all_ok = counts["ok"] == len(runs)
    line = f"{len(runs)} runs: {', '.join(parts) or 'none'}"
    return (line if all_ok else f"{line} — see {workdir / 'results.jsonl'} and `ssr-jax report {workdir}`"), all_ok


def plan(spec: str, workdir: str | pathlib.Path | None, *, seeds: int | None = None, shard_spec: str | None = None,
         max_members: int | None = None, dry_run: bool = False, common: dict | None = None,
         backend: str | None = None) -> tuple[list[Run], list[list[Run]], pathlib.Path | None, list[Run]]:
    """Expands, validates and groups an experiment; returns (this shard's runs, its unfinished ones regrouped,
    workdir, every run of the experiment in its order — for the rows of results.jsonl, which cover all shards).
    `max_members` unset: `default_max_members` for `backend` (default: this process's).

    Writes `DIR/sweep.json`; with `dry_run` it prints the groups instead and returns no pending groups and no
    workdir. Finished runs (status ok or diverged) are left out; failed ones are pending again.
    """
    every_run = expand(spec, seeds=seeds, common=common)
    runs = shard(every_run, shard_spec)
    if max_members is None:
        max_members = default_max_members(runs, backend)
    elif max_members < 1:  # range() would make no groups of a negative size, and fail on 0
        raise config_lib.ConfigError(f"--max_members={max_members}: must be at least 1, e.g. --max_members 1")
    groups = group_runs(runs, max_members=max_members)
    if dry_run:
        print(f"{len(runs)} runs in {len(groups)} group(s)\n{describe(groups)}")
        return runs, [], None, every_run
    if backend is None:  # trained on this machine: its devices must hold every run's mesh
        for run in runs:
            parallel.check_devices(run.config.parallel.members, run.config.parallel.data)
    workdir = workdir_lib.prepare(workdir)
    if parallel.is_writer():
        workdir_lib.write_json(workdir / "sweep.json", {"experiment": spec, "seeds": seeds, "shard": shard_spec,
                                                       "set": common or {}, "runs": [run.run_id for run in runs]})
        # Of every run, so that the shards of one sweep write the same experiment.
        tensorboard_log.write_experiment(workdir, [run.overrides for run in every_run])

    def finished(run: Run) -> bool:
        summary = read_summary(workdir / "runs" / run.run_id)
        return summary is not None and summary["status"] in FINISHED

    pending = [[run for run in members if not finished(run)] for members in groups]
    # Regroup what is left: a group whose members all finished disappears, a partly finished one (a new seed
    # added, say) becomes a new chunk with its own id.
    return (runs, group_runs([run for members in pending for run in members], max_members=max_members), workdir,
            every_run)


def run_sweep(spec: str, workdir: str | pathlib.Path | None, *, seeds: int | None = None,
              shard_spec: str | None = None, max_members: int | None = None, dry_run: bool = False,
              progress: bool | None = None, common: dict | None = None, check: bool = False) -> list[dict]:
    """Plans an experiment (`plan`) and trains its pending groups in this process; returns the rows of
    `results.jsonl`. An interrupted group resumes from its checkpoint. (Cluster jobs: `ssr_jax.launch`.)

    The last line printed counts the outcomes of this sweep's runs (`report_tally`); with `check`, a sweep with
    failed or diverged runs raises `SweepFailedError` with that line instead (the command's exit status).
    """
    runs, pending, workdir, every_run = plan(spec, workdir, seeds=seeds, shard_spec=shard_spec,
                                             max_members=max_members, dry_run=dry_run, common=common)
    if workdir is None:
        return []
    total = sum(run.config.train.epochs for run in runs)
    done = total - sum(run.config.train.epochs for members in pending for run in members)
    runs_done = len(runs) - sum(map(len, pending))
    show_bar = sys.stderr.isatty() if progress is None else progress
    print(f"{len(runs)} runs, {runs_done} already finished, {len(pending)} group(s) to train", flush=True)
    splits_by_data: dict[str, Any] = {}
    start, done_at_start = time.perf_counter(), done
    with tqdm.tqdm(total=total, initial=done, unit="member-epoch", disable=not show_bar) as bar:
        for index, members in enumerate(pending, start=1):
            data_config = members[0].config.data
            key = json.dumps(data_config.to_dict(), sort_keys=True)
            if key not in splits_by_data:
                splits_by_data = {key: load_splits(data_config)}  # keep one dataset in memory at a time
            status = (f"runs {runs_done}/{len(runs)} done · group {index}/{len(pending)} {members[0].group} "
                      f"({len(members)} member(s))")
            bar.set_description(status)
            if bar.disable:
                eta = eta_text(time.perf_counter() - start, done - done_at_start, total - done)
                print(f"{status} · ETA {eta}", flush=True)
            run_group(members, workdir, splits_by_data[key], bar)
            runs_done += len(members)
            done += sum(run.config.train.epochs for run in members)
            write_results(workdir, every_run)
    print(f"runs {runs_done}/{len(runs)} done in {time.perf_counter() - start:.0f} s", flush=True)
    rows = write_results(workdir, every_run)
    report_tally(workdir, runs, check)
    return rows


def report_tally(workdir: pathlib.Path, runs: Sequence[Run], check: bool) -> None:
    """Prints `tally`'s line (stderr unless all runs are ok); with `check`, raises `SweepFailedError` instead."""
    line, all_ok = tally(workdir, runs)
    if check and not all_ok:
        raise SweepFailedError(line)
    print(line, file=sys.stdout if all_ok else sys.stderr, flush=True)


def eta_text(elapsed_s: float, work_done: float, work_left: float) -> str:
    """Time left at the rate seen so far in this invocation ('unknown' before any work has finished)."""
    if work_done <= 0:
        return "unknown" if work_left else "0 s"
    seconds = elapsed_s / work_done * work_left
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"
