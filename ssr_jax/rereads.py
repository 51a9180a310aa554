"""A sweep's runs re-read by other decision rules: the expectation of a head's distribution against its median (or
mode), on the same weights and the same test faces.

`ssr-jax evaluate --decode RULE RUN` re-reads a finished run's own test split without retraining and writes
`RUN/evaluations/<dataset>_test_<RULE>.json`; `ssr-jax report` collects those files (`reread_rows`) into
`rereads.jsonl` — the small record to commit beside results.jsonl, which the report reads back where the run
directories are gone — and tabulates them (`rereads_table`): per config and rule, the MAE over the replicates and its
difference from the rule the runs were trained and reported with, paired by replicate (the same run, so the same
weights and faces).
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd

from ssr_jax import stats
from ssr_jax import workdir as workdir_lib

RECORD = "rereads.jsonl"
FIELDS = ("mae", "ca3", "ca5")


def reread_rows(sweep_dir, frame: pd.DataFrame) -> list[dict] | None:
    """Per finished run and rule other than its own: {run_id, decode, mae, ca3, ca5}, from the runs' evaluations of
    their own test split (`RUN/evaluations/*_test_<rule>.json`), or else from the sweep directory's `rereads.jsonl`.
    None where there are none."""
    sweep_dir = pathlib.Path(sweep_dir)
    ok = frame[frame["status"] == "ok"]
    rows = []
    for run_id, own_rule in zip(ok["run_id"], ok["decode"] if "decode" in ok else [None] * len(ok)):
        for path in sorted((sweep_dir / "runs" / run_id / "evaluations").glob("*_test_*.json")):
            evaluation = _read_evaluation(path)
            rule = evaluation.get("decode")
            if evaluation.get("split") != "test" or evaluation.get("cap") or rule in (None, own_rule):
                continue  # another split, a capped evaluation, or the run's own reading again
            if not path.stem.endswith(f"_test_{rule}"):
                continue
            rows.append({"run_id": run_id, "decode": rule, **{name: evaluation[name] for name in FIELDS}})
    if rows:
        return rows
    record = sweep_dir / RECORD
    return workdir_lib.read_jsonl(record) if record.exists() else None


def _read_evaluation(path: pathlib.Path) -> dict:
    """An evaluation summary; a file that is not one (cut short, edited by hand) is a ValueError naming it and the
    command that writes it again."""
    try:
        evaluation = json.loads(path.read_text(errors="replace"))
    except json.JSONDecodeError as error:
        evaluation = error
    if not isinstance(evaluation, dict):
        problem = f"not JSON ({evaluation})" if isinstance(evaluation, Exception) else "not a JSON object"
        run = path.parent.parent
        raise ValueError(f"{path}: {problem}; write it again with `ssr-jax evaluate --decode RULE {run}` "
                         "(RULE as in its name), or delete it to leave that re-read out of the report")
    return evaluation


def rereads_table(frame: pd.DataFrame, rows: list[dict], replicates: pd.Series) -> pd.DataFrame:
    """Per config with re-read runs, one row per rule: the runs' own rule first (their recorded metrics), then each
    other rule: MAE (mean ± SD over replicates), CA(3), CA(5), and the MAE's difference from the own rule, paired
    by replicate, with its 95 % t interval and p. `replicates`: each row of `frame`'s replicate key."""
    ok = frame[frame["status"] == "ok"]
    by_run = {row["run_id"]: row for row in ok.to_dict("records")}
    replicate_of = dict(zip(ok["run_id"], replicates[ok.index]))
    reread = pd.DataFrame(rows)
    reread = reread[reread["run_id"].isin(by_run)]
    lines = []
    for config, runs in ok.groupby("config", sort=False):
        mine = reread[reread["run_id"].isin(runs["run_id"])]
        if mine.empty:
            continue
        own = {replicate_of[run_id]: by_run[run_id] for run_id in runs["run_id"]}
        own_rule = runs["decode"].iloc[0]
        lines.append(_line(config, own_rule, own, None))
        for rule, rule_rows in mine.groupby("decode", sort=True):
            other = {replicate_of[row["run_id"]]: row for row in rule_rows.to_dict("records")}
            lines.append(_line(config, rule, other, own))
    return pd.DataFrame(lines).set_index(["config", "decode"])


def _line(config: str, rule: str, runs: dict, own: dict | None) -> dict:
    maes = {key: run["mae"] for key, run in runs.items()}
    values = list(maes.values())
    line = {"config": config, "decode": rule, "n": len(values), "mae": float(np.mean(values)),
            "mae_std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
            **{name: float(np.mean([run[name] for run in runs.values()])) for name in ("ca3", "ca5")}}
    if own is None:
        return {**line, "own": True, "delta_mae": 0.0, "delta_low": float("nan"), "delta_high": float("nan"),
                "delta_p": float("nan")}
    paired = {key: own[key]["mae"] for key in maes if key in own}
    comparison = stats.compare({key: maes[key] for key in paired}, paired)
    return {**line, "own": False, "delta_mae": comparison.delta, "delta_low": comparison.low,
            "delta_high": comparison.high, "delta_p": comparison.p}


NOTE = ("Each run re-read by another decision rule (`ssr-jax evaluate --decode RULE RUN`: the same weights, the run's "
        "own test faces); ΔMAE: that rule's MAE minus the MAE of the rule the runs were trained and reported with, "
        "paired by replicate, with its 95 % t interval.")
