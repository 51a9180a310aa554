"""Event files read back with TensorBoard's own reader (`EventAccumulator`), for the tests."""
import json
import math
import pathlib

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from ssr_jax import tensorboard_log


def read(directory: pathlib.Path) -> event_accumulator.EventAccumulator:
    """Everything TensorBoard loads from the event files directly in `directory` (one run)."""
    accumulator = event_accumulator.EventAccumulator(str(directory), size_guidance={event_accumulator.SCALARS: 0})
    return accumulator.Reload()


def scalars(directory: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), …]} as TensorBoard shows them."""
    run = read(directory)
    return {tag: [(event.step, event.value) for event in run.Scalars(tag)] for tag in run.Tags()["scalars"]}


def hparams(directory: pathlib.Path) -> dict[str, plugin_data_pb2.HParamsPluginData]:
    """{HParams tag: its plugin data} of the run in `directory`."""
    contents = read(directory).PluginTagToContent("hparams")
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(content) for tag, content in contents.items()}


def as_stored(value) -> float:
    """A metrics.jsonl / summary.json number as an event's float32 holds it (null: NaN)."""
    return math.nan if value is None else float(np.float32(value))


def assert_run_matches_its_files(run_dir: pathlib.Path) -> None:
    """Every epoch/<field> scalar equals metrics.jsonl, each epoch once, and every final/<field> summary.json."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = {f"epoch/{name}": [(row["epoch"], as_stored(value)) for row in rows
                                  for field, value in tensorboard_log.numbers(row).items() if field == name]
                for name in tensorboard_log.numbers(rows[0]) if name != "epoch"}
    expected.update({f"final/{name}": [(summary["epochs"], as_stored(value))]
                     for name, value in tensorboard_log.numbers(summary).items()})
    np.testing.assert_equal(scalars(run_dir), expected)
