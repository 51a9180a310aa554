"""What a run directory records: `config.json` (what the run trains), `metrics.jsonl` (one row per epoch) and
`summary.json` (how it ended), and TensorBoard's copy of the last two (`ssr_jax.tensorboard_log`). Its checkpoint is
`ssr_jax.checkpoint`'s.

`record_config` and `read_summary` are the checks every command makes before it trains a run directory; a
`Recorder` is one run's record while it trains — the one place its per-epoch rows and its summary are written.
"""
from __future__ import annotations

import math
import pathlib
import sys

from ssr_jax import config_lib, tensorboard_log, workdir as workdir_lib

# A run directory holding any of these has trained: without its config.json, what it was trained with is unknown.
RUN_FILES = ("checkpoint", "metrics.jsonl", "summary.json")
# Overrides that repeat a config rather than define one: the seed, and the benchmark protocol's split (its five
# splits test disjoint parts of one dataset, and the protocol reports their mean). A sweep entry's name covers its
# replicates; reports average over them.
REPLICATE_KEYS = ("seed", "data.split_index")


def record_config(run_dir: pathlib.Path, config, overrides: dict | None, *, name: str = "") -> None:
    """Writes config.json, or checks that an existing one describes the same run. `name`: the sweep entry's display
    name (`sweep.named`), recorded when given.

    A run directory with a run's files but no readable config.json is refused (`ConfigError`): it cannot tell what
    its checkpoint was trained with, so resuming it under `config` could record a config it never trained with. A
    config.json with none of the run's files beside it (a start that failed before training) is rewritten.
    """
    path, resolved = run_dir / "config.json", config_lib.to_json(config)
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if path.exists() and found:  # else nothing was trained: a start that failed early left only its config.json
        try:
            recorded = workdir_lib.read_json(path)["config"]
        except (ValueError, KeyError, TypeError):
            raise config_lib.ConfigError(f"{path} is unreadable, so what {run_dir} was trained with cannot be told; "
                                         f"restore it, or delete {run_dir} to start over") from None
        # A config.json written before keys were added to the configs is read with their defaults. (Imported here:
        # saved_model brings JAX, Flax and Orbax, which reading and reporting results never need.)
        from ssr_jax import saved_model

        current = recorded if recorded == resolved else config_lib.to_json(saved_model.as_current(recorded)[0])
        if current != resolved:
            difference = first_difference(current, resolved, recorded)
            raise config_lib.ConfigError(f"{run_dir} holds a run of another config ({difference}); resume with the "
                                         "same config or pick a new --workdir")
        return
    if found:
        raise config_lib.ConfigError(f"{path} is missing beside {run_dir / found[0]}, so what that run was trained "
                                     f"with cannot be told; restore config.json, or delete {run_dir} to start over")
    record = {"config": resolved, "overrides": config_lib.jsonable(dict(overrides or {})),
              **({"name": name} if name else {}), **workdir_lib.provenance()}
    workdir_lib.write_json(path, record)


_ABSENT = object()


def first_difference(current: dict, resolved: dict, recorded: dict, prefix: str = "") -> str:
    """The first key (in sorted dotted order) where a run's config as read now (`current`) differs from the one
    asked for, said as "key: was, now"; `was` is what its config.json (`recorded`) holds, or that it lacks the key
    (written before the key existed)."""
    for key in sorted(set(current) | set(resolved)):
        was, now = current.get(key, _ABSENT), resolved.get(key, _ABSENT)
        raw = recorded.get(key, _ABSENT) if isinstance(recorded, dict) else _ABSENT
        if isinstance(was, dict) and isinstance(now, dict):
            found = first_difference(was, now, raw, f"{prefix}{key}.")
            if found:
                return found
        elif was != now:
            was_text = "absent from its config.json (written before the key existed)" if raw is _ABSENT else \
                f"{raw!r} in its config.json"
            return f"{prefix}{key}: {was_text}, {'no such key' if now is _ABSENT else repr(now)} now"
    return ""


def read_summary(run_dir: pathlib.Path) -> dict | None:
    """The run's summary.json; None when there is none, or (with a warning) when it cannot be read: the run is
    then redone (it resumes from its checkpoint, so a finished one only rewrites its summary)."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    try:
        summary = workdir_lib.read_json(path)
    except (ValueError, OSError) as error:
        print(f"warning: {error}; the run is redone", file=sys.stderr, flush=True)
        return None
    if not isinstance(summary, dict) or "status" not in summary:
        print(f"warning: {path} holds no status; the run is redone", file=sys.stderr, flush=True)
        return None
    return summary


def finite(value) -> bool:
    """Whether a recorded number is finite (a non-finite one is recorded as null, read back as None)."""
    return value is not None and math.isfinite(value)


class Recorder:
    """One run's record while it trains: its metrics history, written to `run_dir/metrics.jsonl` row by row, and
    its summary. Only a recorder with `write` (process 0 of several hosts) touches files; every process keeps the
    history, so every process takes the same decisions from it.

    Rows are dicts of JSON numbers: `epoch`, `train_loss`, `mae`, `ca3`, `ca5`, `learning_rate`, `images_per_s`,
    `epoch_s`, `elapsed_s` (the run's wall time through this epoch, across resumes), and `mae_by_age` /
    `count_by_age` ({age group: number}) (`ssr_jax.train` makes them). Every row and
    the summary also go to the run's TensorBoard file, with the overrides of its config.json as HParams.
    """

    def __init__(self, run_dir: pathlib.Path, *, write: bool = True):
        self.run_dir, self.write = run_dir, write
        self.history: list[dict] = []
        self.tensorboard = tensorboard_log.RunLog(run_dir, self._overrides(), [])

    def _overrides(self) -> dict:
        path = self.run_dir / "config.json"  # recorded (and checked) by the caller before training
        return workdir_lib.read_json(path).get("overrides", {}) if self.write and path.exists() else {}

    @property
    def metrics_path(self) -> pathlib.Path:
        return self.run_dir / "metrics.jsonl"

    def resume(self, epoch: int) -> None:
        """Takes up the recorded history at `epoch`, the checkpoint's (0: a fresh run).

        Rows logged after it (a kill between the two writes) are replayed by the resumed run, so they are dropped.
        A history without the checkpoint's own row cannot be rebuilt: `WorkdirError` naming the file and the fix.
        """
        rows = [row for row in workdir_lib.read_jsonl(self.metrics_path) if row["epoch"] <= epoch]
        if epoch and not any(row["epoch"] == epoch for row in rows):
            raise workdir_lib.WorkdirError(
                f"{self.metrics_path} has no row for epoch {epoch}, where the checkpoint is: the run's history cannot "
                f"be rebuilt; delete {self.run_dir} to train it again")
        self.history = rows
        # Rebuilt from the kept rows, so that TensorBoard, too, has each epoch once.
        self.tensorboard = tensorboard_log.RunLog(self.run_dir, self._overrides(), rows)

    @property
    def diverged(self) -> bool:
        """Whether a training loss turned non-finite (then no row follows it)."""
        return any(not finite(row["train_loss"]) for row in self.history)

    def epoch(self, row: dict) -> None:
        """Records one epoch's row: appended to the history and written (the whole file, atomically)."""
        self.history.append(row)
        if self.write:
            workdir_lib.write_jsonl(self.metrics_path, self.history)
            self.tensorboard.epoch(row)

    def summary(self, summary: dict) -> None:
        """Writes summary.json, which marks the run finished."""
        if self.write:
            workdir_lib.write_json(self.run_dir / "summary.json", summary)
            self.tensorboard.finish(summary)
