"""TensorBoard event files for runs and sweeps, written without TensorFlow: one TensorBoard run per run directory
(per epoch the fields of its metrics.jsonl row, at the end its summary) and the run's overrides as HParams, so that
`tensorboard --logdir DIR` shows a sweep's configs in the HParams dashboard.

Why tensorboardX (its synchronous `EventsWriter` and its copies of TensorBoard's protos): it needs only protobuf and
numpy (`tensorboard` itself brings grpcio, werkzeug and a data server, and its own writer is not a public API), it
is maintained, and it writes the records TensorFlow's writer writes. Synchronous: each epoch's events are on disk
when `epoch` returns, and no writer thread outlives a group that fails. `tensorboard` itself (to view, and for the
tests that read event files back) is the optional extra `.[tensorboard]`, part of `.[test]`.

Layout and tags (the step is the epoch):

  RUN_DIR/events.out.tfevents.*   epoch/<field> for every number of a metrics.jsonl row (train_loss, mae, ca3, ca5,
                                  learning_rate, images_per_s, epoch_s, mae_by_age/0-9, …); final/<field> for every
                                  number of summary.json at the last epoch; the HParams session (start: the
                                  overrides; end: ok → success, anything else → failure)
  SWEEP_DIR/events.out.tfevents.* the HParams experiment: the keys whose values differ between the sweep's runs (with
                                  their values as discrete domains) and final/mae, final/ca3, final/ca5 as metrics

Exactly once per epoch, whatever killed the run: metrics.jsonl is the run's history (a resumed run keeps the rows up
to its checkpoint and replays the rest), so every start of a run, at its first epoch, deletes the run's event files
and writes a new one from those rows before logging on. A SIGKILL can leave epochs past the checkpoint, or a torn
record, in the old file; neither survives. The new file opens with a SessionLog START at step 1, which tells a
TensorBoard still holding the old file's points to drop them (TensorBoard's purge on restart) instead of showing the
replayed epochs twice.
"""
from __future__ import annotations

import math
import os
import pathlib
import time
from typing import Any, Iterable, Mapping

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import api_pb2, event_pb2, plugin_hparams_pb2, summary_pb2

# The HParams plugin's tags and plugin-data version (tensorboard/plugins/hparams/metadata.py).
_PLUGIN, _VERSION = "hparams", 0
_EXPERIMENT_TAG = "_hparams_/experiment"
_SESSION_START_TAG = "_hparams_/session_start_info"
_SESSION_END_TAG = "_hparams_/session_end_info"
FINAL_METRICS = ("final/mae", "final/ca3", "final/ca5")


def event_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """The event files directly in `directory` (not in its subdirectories, which are other runs)."""
    return sorted(directory.glob("events.out.tfevents.*"))


# Summary fields that describe where a run ran (ssr_jax.environment), not how it did: no scalars of theirs.
NOT_METRICS = ("environment",)


def numbers(row: Mapping[str, Any]) -> dict[str, float]:
    """The numeric fields of a metrics row or summary, those of a nested dict as `name/key` (`mae_by_age/0-9`); a
    null (a non-finite number in strict JSON) as NaN. `NOT_METRICS` are left out."""
    found = {}
    for name, value in row.items():
        if name in NOT_METRICS:
            continue
        if isinstance(value, Mapping):
            found.update({f"{name}/{key}": number for key, number in numbers(value).items()})
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            found[name] = math.nan if value is None else float(value)
    return found


def _plugin_summary(tag: str, data: plugin_hparams_pb2.HParamsPluginData) -> summary_pb2.Summary:
    data.version = _VERSION
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name=_PLUGIN, content=data.SerializeToString()))
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=metadata)])


def hparam_value(value: Any) -> bool | float | str:
    """An override's value as the HParams plugin holds it: bools and numbers as they are, anything else (stage
    tuples, names) as its string."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return str(tuple(value)) if isinstance(value, list) else str(value)


def _set_value(target, value: Any) -> None:
    value = hparam_value(value)
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, float):
        target.number_value = value
    else:
        target.string_value = value


def _open(directory: pathlib.Path) -> EventsWriter:
    """A new event file in `directory`, after deleting the ones there. Its name never repeats an earlier one's
    (TensorBoard keeps reading a file it knows from where it stopped)."""
    for path in event_files(directory):
        path.unlink()
    return EventsWriter(str(directory / "events"), filename_suffix=f".{os.getpid()}.{time.time_ns()}")


def _write(writer: EventsWriter, summary: summary_pb2.Summary, step: int) -> None:
    writer.write_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))


def _scalars(writer: EventsWriter, prefix: str, row: Mapping[str, Any], step: int) -> None:
    for name, value in numbers(row).items():
        _write(writer, summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=f"{prefix}/{name}",
                                                                            simple_value=value)]), step)


def _epoch_scalars(writer: EventsWriter, row: Mapping[str, Any]) -> None:
    _scalars(writer, "epoch", {name: value for name, value in row.items() if name != "epoch"}, row["epoch"])


class RunLog:
    """The TensorBoard run of one run directory, rebuilt from `history` (its metrics.jsonl rows so far).

    `epoch(row)` after each metrics.jsonl row, `finish(summary)` after summary.json (it closes the file). The file is
    written at the first call, so a run that fails before it has logged anything leaves none; every call leaves its
    events on disk, so a run that ends otherwise loses nothing."""

    def __init__(self, run_dir: pathlib.Path, hparams: Mapping[str, Any], history: Iterable[Mapping[str, Any]]):
        self._run_dir, self._hparams, self._history = run_dir, dict(hparams), list(history)
        self._writer: EventsWriter | None = None

    def _open(self) -> EventsWriter:
        if self._writer is None:
            self._writer = _open(self._run_dir)
            self._writer.write_event(event_pb2.Event(wall_time=time.time(), step=1, session_log=event_pb2.SessionLog(
                status=event_pb2.SessionLog.START)))
            start = plugin_hparams_pb2.SessionStartInfo()
            for name, value in self._hparams.items():
                if value is not None:
                    _set_value(start.hparams[name], value)
            _write(self._writer, _plugin_summary(_SESSION_START_TAG, plugin_hparams_pb2.HParamsPluginData(
                session_start_info=start)), 0)
            for row in self._history:
                _epoch_scalars(self._writer, row)
        return self._writer

    def epoch(self, row: Mapping[str, Any]) -> None:
        """One metrics.jsonl row (with its "epoch"), flushed so that a running TensorBoard sees it."""
        writer = self._open()
        _epoch_scalars(writer, row)
        writer.flush()

    def finish(self, summary: Mapping[str, Any]) -> None:
        """The summary's numbers as final/<field> at its last epoch, and the end of the HParams session."""
        writer = self._open()
        _scalars(writer, "final", summary, summary["epochs"])
        status = api_pb2.STATUS_SUCCESS if summary["status"] == "ok" else api_pb2.STATUS_FAILURE
        _write(writer, _plugin_summary(_SESSION_END_TAG, plugin_hparams_pb2.HParamsPluginData(
            session_end_info=plugin_hparams_pb2.SessionEndInfo(status=status))), summary["epochs"])
        writer.close()


def varied_keys(overrides: Iterable[Mapping[str, Any]]) -> dict[str, list]:
    """{key: its distinct values} for the keys whose values differ between runs (absent counts as a value)."""
    overrides = list(overrides)
    keys = sorted({key for entry in overrides for key in entry})
    varied = {}
    for key in keys:
        values = [hparam_value(entry[key]) if key in entry else None for entry in overrides]
        if len(set(values)) > 1:
            varied[key] = sorted({value for value in values if value is not None}, key=lambda v: (str(type(v)), v))
    return varied


def write_experiment(sweep_dir: pathlib.Path, overrides: Iterable[Mapping[str, Any]]) -> None:
    """The sweep's HParams experiment in `sweep_dir` (replacing an earlier one): the varied keys of `overrides` (one
    dict per run) as hparams with their values, and `FINAL_METRICS` as metrics."""
    infos = []
    for key, values in varied_keys(overrides).items():
        info = api_pb2.HParamInfo(name=key)
        kinds = {type(value) for value in values}
        info.type = (api_pb2.DATA_TYPE_BOOL if kinds == {bool} else api_pb2.DATA_TYPE_FLOAT64 if kinds == {float}
                     else api_pb2.DATA_TYPE_STRING)
        for value in values:
            as_type = value if info.type != api_pb2.DATA_TYPE_STRING else str(value)
            _set_value(info.domain_discrete.values.add(), as_type)
        infos.append(info)
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=[
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in FINAL_METRICS])
    writer = _open(sweep_dir)
    _write(writer, _plugin_summary(_EXPERIMENT_TAG, plugin_hparams_pb2.HParamsPluginData(experiment=experiment)), 0)
    writer.close()
