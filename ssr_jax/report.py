"""Result tables (Markdown, LaTeX, CSV) and figures from a sweep's recorded results only.

Input is `DIR/results.jsonl` (one row per finished run, written by `ssr-jax sweep`); learning curves also read the
runs' own `metrics.jsonl`. A *config* is a run's overrides without its seed and benchmark split
(`REPLICATE_KEYS`), labelled by its sweep entry's name where it has one ("DEX"), else by those overrides; each table
row aggregates a config's runs over seeds and splits: mean ± sample standard deviation, n and the MAE's 95 % t
interval over runs with status "ok" (diverged and failed runs are counted in their own columns, never averaged).
Runs that selected their epoch on a validation split add its MAE and the selected epochs (`val MAE`, `epochs`).
With `--baseline` each config also gets ΔMAE with its
95 % interval and p-value (`stats.compare`: paired by replicate, the seed or the benchmark split, where both configs
have the same replicates, else Welch), a `*` where the interval excludes 0, and a "seeds needed" line under the
Markdown table; `contrasts.*` gives the family of contrasts against the baseline with their effect sizes (% of the
baseline's MAE), Holm's correction within the family and Welch's test beside the paired one. With `--factorial
KEY_A,KEY_B` (two overrides with two values each: the Δ/η ablation), `factorial.*` gives both main effects and the
interaction, each per replicate, with t intervals and Holm over the three (`stats.factorial_2x2`).

Outputs (in `--out`, default `DIR/report/`):
  results.md / results.tex / results.csv   one row per config
  pivot.md / pivot.tex / pivot.csv         2-D sweeps (two numeric override keys): mean MAE, rows × columns
  contrasts.md / .tex / .csv               with --baseline, where a config has two replicates: one row a contrast
  factorial.md / .tex / .csv               with --factorial: the 2 × 2's main effects and interaction
  by_age.md / by_age.csv                   with --by_age: mean MAE over seeds per config and decade of true age
  learning_curves.jsonl                    where the runs' metrics.jsonl are there: per run and epoch, test and
                                           validation MAE (`curve_rows`), to commit beside results.jsonl
  rereads.md / .tex / .csv, rereads.jsonl  where runs were re-read by another decision rule (`ssr-jax evaluate
                                           --decode`): MAE by rule, paired against the runs' own (`ssr_jax.rereads`)
  heatmap.png, mae_vs_params.png, learning_curves.png, mae_by_age.png    with --plot
"""
from __future__ import annotations

import json
import pathlib
import sys
from typing import Sequence

import numpy as np
import pandas as pd

from ssr_jax import environment, rereads, stats
from ssr_jax.record import REPLICATE_KEYS, finite
from ssr_jax import workdir as workdir_lib

METRICS = (("mae", "MAE", "min"), ("ca3", "CA(3)", "max"), ("ca5", "CA(5)", "max"))
NO_MAE = "ok without an MAE"
FORMATS = ("md", "latex", "csv")


def config_label(overrides: dict) -> str:
    """`{"model.lambda_d": 0.5, "seed": 1}` → `lambda_d=0.5` (`REPLICATE_KEYS` dropped, keys shortened to their last
    part)."""
    items = sorted((key, value) for key, value in overrides.items() if key not in REPLICATE_KEYS)
    if not items:
        return "base"
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={_value(value)}" for key, value in items)


def _value(value) -> str:
    return f"({', '.join(map(str, value))})" if isinstance(value, (list, tuple)) else str(value)


def load_results(sweep_dir: str | pathlib.Path) -> pd.DataFrame:
    """The rows of `DIR/results.jsonl`; a row that is not a run's result is a ValueError naming the file and line.
    Metrics a row lacks (a failed run has none) are NaN."""
    path = pathlib.Path(sweep_dir) / "results.jsonl"
    rows = workdir_lib.read_jsonl(path)
    if not rows:
        raise FileNotFoundError(f"no finished runs in {path}; run `ssr-jax sweep EXPERIMENT --workdir {sweep_dir}`")
    for number, row in enumerate(rows, start=1):
        problem = _row_problem(row)
        if problem:
            raise ValueError(f"{path}, line {number}: {problem}; rerun the sweep to rebuild the file")
    frame = pd.DataFrame(rows)
    for metric in [name for name, _, _ in METRICS] + ["wall_s"]:
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce") if metric in frame else np.nan
    # An "ok" run without a finite MAE (a hand-edited or foreign row) is never averaged: `failures` lists it.
    frame.loc[(frame["status"] == "ok") & frame["mae"].isna(), "status"] = NO_MAE
    frame["config"] = frame["overrides"].map(config_label)
    if "name" in frame:  # sweep entries with a display name (`sweep.named`)
        frame["config"] = frame["name"].where(frame["name"].notna() & (frame["name"] != ""), frame["config"])
    return frame


def machine_note(frame: pd.DataFrame) -> str | None:
    """"Machine: …" under the tables when every run that recorded its `environment` gives the same
    `environment.machine_line` (CPU, threads, versions, convolutions); a count when they differ; None when no row
    recorded one."""
    recorded = frame["environment"] if "environment" in frame else []
    lines = {environment.machine_line(value) for value in recorded if isinstance(value, dict)} - {None}
    if len(lines) > 1:
        return f"Machines: {len(lines)} different (each row's `environment` in results.jsonl names its own)."
    return f"Machine: {lines.pop()}." if lines else None


def _row_problem(row: dict) -> str | None:
    if not isinstance(row.get("overrides"), dict):
        return "no overrides object"
    if not isinstance(row.get("status"), str):
        return "no status"
    for name in (name for name, _, _ in METRICS):
        value = row.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{name}={value!r} is not a number"
    return None


def failures(sweep_dir: str | pathlib.Path) -> list[str]:
    """One line per run that did not end "ok": `failed: <run id>: <the error's last line>` (or `diverged: ...`), and
    per "ok" run whose MAE is missing or not finite (left out of every table)."""
    lines = []
    for row in workdir_lib.read_jsonl(pathlib.Path(sweep_dir) / "results.jsonl"):
        if row.get("status") == "ok" and not finite(row.get("mae")):
            lines.append(f"warning: {row.get('run_id')} is ok but its mae is {row.get('mae')!r}: left out of the "
                         "tables; rerun the sweep to rebuild results.jsonl")
        elif row.get("status") != "ok":
            trace = (row.get("traceback") or "").strip().splitlines()
            reason = f": {trace[-1]}" if trace else ""
            lines.append(f"{row.get('status')}: {row.get('run_id')}{reason}")
    return lines


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per config (first-appearance order): metric means, stds, 95 % t intervals (`{metric}_ci_low/high`,
    nan for n < 2), n, and the runs' static figures."""
    ok = frame[frame["status"] == "ok"]
    grouped = ok.groupby("config", sort=False)
    table = pd.DataFrame(index=pd.Index(frame["config"].unique(), name="config"))
    for metric, _, _ in METRICS:
        table[f"{metric}_mean"] = grouped[metric].mean()
        table[f"{metric}_std"] = grouped[metric].std(ddof=1)
        intervals = {config: stats.mean_interval(values.dropna()) for config, values in grouped[metric]}
        table[f"{metric}_ci_low"] = pd.Series({config: low for config, (low, _) in intervals.items()}, dtype=float)
        table[f"{metric}_ci_high"] = pd.Series({config: high for config, (_, high) in intervals.items()}, dtype=float)
    table["n"] = grouped.size().reindex(table.index, fill_value=0).astype(int)
    for status in ("diverged", "failed"):
        table[status] = (frame["status"] == status).groupby(frame["config"]).sum().reindex(table.index).astype(int)
    static = frame.groupby("config", sort=False)
    table["params"] = static["params"].first() if "params" in frame else np.nan
    table["size_kb"] = static["model_bytes"].first() / 1024 if "model_bytes" in frame else np.nan
    table["train_s"] = grouped["wall_s"].mean()
    if "inference_ms_per_image" in frame:  # runs with train.measure_inference (Table 1)
        table["cpu_ms"] = grouped["inference_ms_per_image"].mean()
    if {"head", "decode"} <= set(frame) and (frame["head"].nunique() > 1 or frame["decode"].nunique() > 1):
        for key in ("head", "decode"):  # a sweep over heads or decision rules (summary.json records both)
            table[key] = static[key].first()
    if "val_mae" in frame:  # runs that selected their epoch on a validation split
        table["val_mae_mean"] = grouped["val_mae"].mean()
        table["val_mae_std"] = grouped["val_mae"].std(ddof=1)
        table["selected_epochs"] = grouped["selected_epoch"].agg(lambda epochs: ", ".join(
            str(int(epoch)) for epoch in epochs if pd.notna(epoch)))
    return table


def with_baseline(table: pd.DataFrame, frame: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """Adds each config's MAE against the baseline's (`stats.compare` on the per-seed MAEs of "ok" runs): `delta_mae`,
    its 95 % interval `delta_low`/`delta_high`, `delta_p`, `delta_test` (paired / welch), `significant` (the interval
    excludes 0), `delta_spread` (√Σ SD² behind the interval) and `seeds_needed` (`stats.seeds_needed`).
    `baseline` is a config label or a substring of one."""
    if baseline is None:
        return table
    matches = [label for label in table.index if label == baseline] or [l for l in table.index if baseline in l]
    if len(matches) != 1:
        raise ValueError(f"--baseline {baseline!r} matches {len(matches)} configs; pick one of {list(table.index)}")
    per_replicate = replicate_maes(frame)
    table = table.copy()
    table["baseline"] = table.index == matches[0]
    base = per_replicate.get(matches[0])
    comparisons = {config: stats.compare(per_replicate[config], base) for config in table.index
                   if config in per_replicate and base is not None}
    welch = {config: stats.welch(per_replicate[config], base) for config in comparisons}
    for column, value in (("delta_mae", lambda c: c.delta), ("delta_low", lambda c: c.low),
                          ("delta_high", lambda c: c.high), ("delta_p", lambda c: c.p),
                          ("delta_spread", lambda c: float(np.sqrt(np.sum(np.square(c.sds)))))):
        table[column] = pd.Series({config: value(c) for config, c in comparisons.items()}, dtype=float)
    for column, value in (("welch_low", lambda c: c.low), ("welch_high", lambda c: c.high),
                          ("welch_p", lambda c: c.p)):
        table[column] = pd.Series({config: value(c) for config, c in welch.items()}, dtype=float)
    table["delta_pct"] = 100 * table["delta_mae"] / table.loc[matches[0], "mae_mean"]
    table["correlation"] = pd.Series({config: stats.correlation(per_replicate[config], base)
                                      for config in comparisons}, dtype=float)
    # The family: every contrast against the baseline in this table (the baseline's own is no contrast).
    family = table["delta_p"].where(~table["baseline"])
    table["holm_p"] = pd.Series(stats.holm(family.tolist()), index=table.index, dtype=float)
    table["welch_holm_p"] = pd.Series(stats.holm(table["welch_p"].where(~table["baseline"]).tolist()),
                                      index=table.index, dtype=float)
    table["delta_test"] = pd.Series({config: c.test for config, c in comparisons.items()}, dtype=object)
    table["significant"] = pd.Series({config: c.significant for config, c in comparisons.items()}).reindex(
        table.index, fill_value=False).astype(bool)
    table["seeds_needed"] = pd.Series({config: stats.seeds_needed(c) for config, c in comparisons.items()},
                                      dtype="Int64")
    return table


def replicates(frame: pd.DataFrame) -> pd.Series:
    """Each run's replicate of its config, for pairing runs across configs: its seed, or (seed, split) for runs on a
    benchmark split, so that two configs on the same five splits pair split by split (the same test faces)."""
    def replicate(overrides: dict):
        seed = overrides.get("seed")
        return seed if "data.split_index" not in overrides else (seed, overrides["data.split_index"])

    return frame["overrides"].map(replicate)


def replicate_maes(frame: pd.DataFrame) -> dict[str, dict]:
    """{config: {replicate: MAE}} over the runs with status "ok" (`replicates`)."""
    ok = frame[frame["status"] == "ok"]
    keys = replicates(ok)
    return {config: dict(zip(keys[rows.index], rows["mae"])) for config, rows in ok.groupby("config", sort=False)}


def contrasts_table(table: pd.DataFrame) -> pd.DataFrame | None:
    """The family of contrasts against the baseline (`with_baseline`'s columns), one display row per config other
    than the baseline: ΔMAE, as % of the baseline's MAE, the test used with its 95 % interval and p, Holm's p over
    the family, Pearson's r of the paired replicates, and Welch's interval and p beside it (with Holm's over the
    family of Welch tests). None without a baseline
    or when no config has two replicates (nothing to test)."""
    if "holm_p" not in table or one_seed_only(table):
        return None
    rows = table[~table["baseline"]]
    signed = lambda low, high: _interval(low, high, 0, "+")  # noqa: E731
    return pd.DataFrame({
        "ΔMAE": [f"{value:+.2f}" for value in rows["delta_mae"]],
        "% of baseline": [f"{value:+.1f} %" if pd.notna(value) else "–" for value in rows["delta_pct"]],
        "test": rows["delta_test"].fillna("–").replace("", "–"),
        "95% CI": [signed(low, high) for low, high in zip(rows["delta_low"], rows["delta_high"])],
        "p": rows["delta_p"].map(_p_value),
        "p (Holm)": rows["holm_p"].map(_p_value),
        "r": [f"{value:+.2f}" if pd.notna(value) else "–" for value in rows["correlation"]],
        "Welch 95% CI": [signed(low, high) for low, high in zip(rows["welch_low"], rows["welch_high"])],
        "Welch p": rows["welch_p"].map(_p_value),
        "Welch p (Holm)": rows["welch_holm_p"].map(_p_value),
        "n": rows["n"].astype(str),
    }, index=rows.index)


def contrasts_note(table: pd.DataFrame) -> str:
    """The line under the contrasts: the family's size and what survives Holm's correction at 5 %."""
    rows = table[~table["baseline"] & table["holm_p"].notna()]
    survivors = [label for label, p in rows["holm_p"].items() if p < 0.05]
    verdict = ("significant after it: " + ", ".join(survivors)) if survivors else "none is significant after it"
    return (f"Holm's correction within this table's family of {len(rows)} contrasts against the baseline: "
            f"{verdict}. % of baseline: ΔMAE over the baseline's mean MAE. r: correlation of the paired per-replicate "
            "MAEs (negative r widens the paired interval); Welch: the same runs unpaired, the sensitivity check.")


def factorial_table(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """`stats.factorial_2x2` on the per-replicate MAEs of a sweep over two overrides with two values each (low,
    high: sorted); other overrides must not vary. One row per effect (both main effects, then the interaction):
    estimate, 95 % interval, p, Holm's p over the three, n, and the estimate as % of the MAE with both factors high
    (the reference model in the Δ/η ablation). A ValueError says what is missing."""
    if len(keys) != 2 or set(keys) & set(REPLICATE_KEYS):
        raise ValueError(f"--factorial takes two override keys other than the replicates {REPLICATE_KEYS}, e.g. "
                         f"model.lambda_d,model.lambda_local; got {list(keys)}")
    ok = frame[frame["status"] == "ok"]
    overrides = pd.DataFrame(ok["overrides"].tolist(), index=ok.index)
    missing = [key for key in keys if key not in overrides]
    levels = {key: sorted(overrides[key].unique()) for key in keys if key not in missing}
    if missing or any(len(values) != 2 for values in levels.values()):
        raise ValueError(f"--factorial {','.join(keys)}: each key must take exactly two values in the finished runs; "
                         f"found {levels}{f', missing {missing}' if missing else ''}")
    others = overrides.drop(columns=[*keys, *REPLICATE_KEYS], errors="ignore")
    if any(others[key].astype(str).nunique() > 1 for key in others):
        raise ValueError(f"--factorial {','.join(keys)}: other overrides vary too ({list(others)}); a 2 × 2 needs "
                         "the rest fixed")
    cell = lambda key, row: levels[key].index(row[key])  # noqa: E731
    reps = replicates(ok)
    cells = {(a, b): {} for a in (0, 1) for b in (0, 1)}
    for index, row in overrides.iterrows():
        cells[cell(keys[0], row), cell(keys[1], row)][reps[index]] = ok.at[index, "mae"]
    short = [key.rsplit(".", 1)[-1] for key in keys]
    effects = stats.factorial_2x2(cells, names=tuple(short))
    reference = float(np.mean(list(cells[1, 1].values()))) if cells[1, 1] else np.nan
    labels = [f"{short[0]} {_value(levels[keys[0]][0])}→{_value(levels[keys[0]][1])} (main)",
              f"{short[1]} {_value(levels[keys[1]][0])}→{_value(levels[keys[1]][1])} (main)",
              f"{short[0]} × {short[1]} (interaction)"]
    result = pd.DataFrame([{"estimate": e.estimate, "low": e.low, "high": e.high, "p": e.p, "holm_p": e.holm_p,
                            "n": e.n, "pct": 100 * e.estimate / reference} for e in effects],
                          index=pd.Index(labels, name="effect"))
    result.attrs["reference"] = (", ".join(f"{name}={_value(levels[key][1])}" for name, key in zip(short, keys)),
                                 reference)
    return result


def _factorial_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "ΔMAE": [f"{value:+.2f}" for value in table["estimate"]],
        "95% CI": [_interval(low, high, n, "+") for low, high, n in zip(table["low"], table["high"], table["n"])],
        "% of reference": [f"{value:+.1f} %" if pd.notna(value) else "–" for value in table["pct"]],
        "p": table["p"].map(_p_value),
        "p (Holm)": table["holm_p"].map(_p_value),
        "n": table["n"].astype(str),
    }, index=table.index)


def factorial_note(table: pd.DataFrame) -> str:
    label, mae = table.attrs["reference"]
    return ("Each effect is computed per replicate (main: mean MAE at the second value minus at the first, averaged "
            "over the other factor; interaction: the first factor's effect with the second at its second value minus "
            "with it at its first), then a t interval over the replicates; Holm over the three. % of reference: of "
            f"the MAE at {label} ({mae:.2f}).")


def seeds_needed_line(table: pd.DataFrame) -> str | None:
    """One line for under the table: how many seeds per config would make the smallest non-zero ΔMAE (among configs
    whose spread is known) significant, by `stats.seeds_needed`; None without a baseline."""
    if "seeds_needed" not in table:
        return None
    candidates = table[~table["baseline"] & (table["delta_mae"] != 0) & table["delta_spread"].notna()]
    if candidates.empty:
        return ("Seeds needed: unknown; no config differs from the baseline with two or more seeds on both sides "
                "to measure the spread.")
    label = candidates["delta_mae"].abs().idxmin()
    row = candidates.loc[label]
    spread = ("SD of the per-seed differences" if row["delta_test"] == "paired"
              else "Welch, √(SD² + baseline SD²)")
    needed = "more than 1000" if pd.isna(row["seeds_needed"]) else str(row["seeds_needed"])
    return (f"Seeds needed: the smallest difference, ΔMAE {row['delta_mae']:+.2f} ({label}), would have a 95 % "
            f"interval excluding 0 with {needed} seeds per config, if the spread stays as observed ({spread} "
            f"{row['delta_spread']:.2f}); that is about 50 % power, 80 % needs about twice as many.")


def _mean_std(mean: float, std: float, digits: int, plus_minus: str) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} {plus_minus} {std:.{digits}f}"


def _interval(low: float, high: float, n: int, sign: str = "") -> str:
    if pd.isna(low):
        return "none (n = 1)" if n == 1 else "–"
    return f"[{low:{sign}.2f}, {high:{sign}.2f}]"


def _p_value(p: float) -> str:
    return "–" if pd.isna(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


# Under a table in which no config has two seeds: why it has no interval or p columns.
ONE_SEED_NOTE = ("One seed per config (n = 1): no 95 % intervals, p-values or spreads; `ssr-jax sweep ... --seeds 3` "
                 "gives them.")


def one_seed_only(table: pd.DataFrame) -> bool:
    return bool((table["n"] < 2).all())


def display_table(table: pd.DataFrame, *, plus_minus: str = "±", mark: str = " *") -> pd.DataFrame:
    """Strings for Markdown / LaTeX: "mean ± std" per metric, the MAE's 95 % interval, counts and sizes; with a
    baseline ΔMAE (`mark` appended where significant), its 95 % interval and p. Where no config has two seeds
    (`one_seed_only`), the interval and p columns would hold nothing but "none (n = 1)" in every row (25 of them in
    the λ grid) and are left out; `ONE_SEED_NOTE` says so under the table."""
    shown = pd.DataFrame(index=table.index)
    for key in ("head", "decode"):
        if key in table:
            shown[key] = table[key].fillna("–")
    for metric, title, _ in METRICS:
        digits = 2 if metric == "mae" else 3
        shown[title] = [_mean_std(m, s, digits, plus_minus)
                        for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_std"])]
        if metric == "mae":
            shown["MAE 95% CI"] = [_interval(low, high, n) for low, high, n in
                                   zip(table["mae_ci_low"], table["mae_ci_high"], table["n"])]
    if "delta_mae" in table:
        shown["ΔMAE"] = [f"{value:+.2f}{mark if significant else ''}" if pd.notna(value) else "–"
                         for value, significant in zip(table["delta_mae"], table["significant"])]
        # n = 1 on either side leaves no interval: the smaller n is the one that says why.
        smaller_n = np.minimum(table["n"], table.loc[table["baseline"], "n"].iloc[0])
        shown["ΔMAE 95% CI"] = ["baseline" if is_baseline else _interval(low, high, n, "+") for low, high, n,
                               is_baseline in zip(table["delta_low"], table["delta_high"], smaller_n,
                                                  table["baseline"])]
        shown["p"] = ["–" if is_baseline else _p_value(p) for p, is_baseline in zip(table["delta_p"],
                                                                                  table["baseline"])]
    shown["n"] = table["n"].astype(str)
    if (table["diverged"] + table["failed"]).any():
        shown["diverged"] = table["diverged"].astype(str)
        shown["failed"] = table["failed"].astype(str)
    shown["params"] = [f"{int(p):,}" if pd.notna(p) else "–" for p in table["params"]]
    shown["size (KB)"] = [f"{s:.1f}" if pd.notna(s) else "–" for s in table["size_kb"]]
    shown["train (s)"] = [f"{t:.0f}" if pd.notna(t) else "–" for t in table["train_s"]]
    if "cpu_ms" in table:
        shown["CPU ms/image"] = [f"{t:.2f}" if pd.notna(t) else "–" for t in table["cpu_ms"]]
    if "val_mae_mean" in table:
        shown["val MAE"] = [_mean_std(m, s, 2, plus_minus) for m, s in zip(table["val_mae_mean"],
                                                                           table["val_mae_std"])]
        shown["epochs"] = table["selected_epochs"].fillna("–")
    if one_seed_only(table):
        shown = shown.drop(columns=["MAE 95% CI", "ΔMAE 95% CI", "p"], errors="ignore")
    return shown


def best_configs(table: pd.DataFrame) -> dict[str, object]:
    """The config with the best mean per metric (lowest MAE, highest CA)."""
    best = {}
    for metric, title, direction in METRICS:
        column = table[f"{metric}_mean"].dropna()
        if not column.empty:
            best[title] = column.idxmin() if direction == "min" else column.idxmax()
    return best


def to_latex(table: pd.DataFrame) -> str:
    """booktabs rules, the best value of each metric column in bold, LaTeX-escaped labels, $^{*}$ on a significant
    ΔMAE."""
    columns = {"ΔMAE": r"$\Delta$MAE", "MAE 95% CI": r"MAE 95\% CI", "ΔMAE 95% CI": r"$\Delta$MAE 95\% CI"}
    shown = display_table(table, plus_minus=r"$\pm$", mark=r"$^{*}$").rename(columns=columns).reset_index()
    positions = {label: position for position, label in enumerate(shown["config"])}
    labels = ["config", *(key for key in ("head", "decode") if key in shown)]  # head names hold underscores
    styler = shown.style.hide(axis="index").format(escape="latex", subset=labels)
    for title, label in best_configs(table).items():
        styler = styler.apply(
            lambda column, row=positions[label]: ["textbf:--rwrap;" if i == row else "" for i in column.index],
            subset=[title],
        )
    latex = styler.to_latex(hrules=True, column_format="l" + "r" * (len(shown.columns) - 1))
    return f"% {ONE_SEED_NOTE}\n{latex}" if one_seed_only(table) else latex


def numeric_pivot(frame: pd.DataFrame, aggregate: str = "mean") -> pd.DataFrame | None:
    """Mean MAE as rows × columns when exactly two override keys vary and both are numbers (the λ grid);
    `aggregate="count"`: the runs behind each cell instead."""
    overrides = pd.DataFrame(frame["overrides"].tolist()).drop(columns=list(REPLICATE_KEYS), errors="ignore")
    # As text: an override may be a list (model.stages), which pandas cannot count as it is.
    varying = [key for key in overrides if overrides[key].astype(str).nunique() > 1]
    if len(varying) != 2 or not all(pd.api.types.is_numeric_dtype(overrides[key]) for key in varying):
        return None
    rows, columns = varying if "lambda_local" in varying[0] or "lambda_d" not in varying[0] else varying[::-1]
    data = overrides[[rows, columns]].assign(mae=frame["mae"].where(frame["status"] == "ok"))
    pivot = data.pivot_table(index=rows, columns=columns, values="mae", aggfunc=aggregate)
    pivot.index.name, pivot.columns.name = rows.rsplit(".", 1)[-1], columns.rsplit(".", 1)[-1]
    return pivot


def by_age_table(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Per config ("ok" runs), the mean over seeds and splits of each age group's MAE (the runs' `mae_by_age`),
    columns in the runs' group order (`evaluate.AGE_GROUPS`), groups without examples left out; the first row,
    "examples", is each group's count in the test split (summed over the benchmark's splits, whose test parts
    together are the dataset). None when no run recorded MAE by age. Configs compared on other test examples cannot
    share a count: such a sweep is refused (ValueError)."""
    ok = frame[frame["status"] == "ok"]
    ok = ok[ok["mae_by_age"].map(lambda value: isinstance(value, dict))] if "mae_by_age" in ok else ok.iloc[:0]
    if ok.empty:
        return None
    counts = pd.DataFrame(ok["count_by_age"].tolist(), index=ok.index)
    seeds = ok["overrides"].map(lambda overrides: overrides.get("seed"))
    counts = counts.groupby([ok["config"], seeds], sort=False, dropna=False).sum()
    if (counts.nunique() > 1).any():
        raise ValueError("--by_age: the configs' finished runs were tested on different faces (different age "
                         "counts: a sweep still running, with configs on different splits so far, or a sweep over "
                         "several datasets); report --by_age once every config has run on the same splits")
    groups = [group for group in counts.columns if counts[group].iloc[0] > 0]
    maes = pd.DataFrame(ok["mae_by_age"].tolist(), index=ok["config"].to_numpy(), dtype=float)
    means = maes.reindex(columns=groups).groupby(level=0, sort=False).mean()
    table = pd.concat([counts[groups].iloc[:1].set_axis(["examples"]).astype(float), means])
    table.index.name = "config"
    return table


def _by_age_display(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.map(lambda value: "–" if pd.isna(value) else f"{value:.2f}")
    shown.loc["examples"] = [f"{int(count):,}" for count in table.loc["examples"]]
    return shown


def _pivot_display(pivot: pd.DataFrame) -> pd.DataFrame:
    """The pivot with its row key as the first column, headed "rows \\ columns", and compact value labels."""
    shown = pivot.copy()
    shown.index = [f"{value:g}" for value in pivot.index]
    shown.columns = [f"{value:g}" for value in pivot.columns]
    return shown.rename_axis(f"{pivot.index.name} \\ {pivot.columns.name}").reset_index()


def curve_rows(sweep_dir, frame: pd.DataFrame) -> list[dict] | None:
    """Per finished run and epoch, from the runs' metrics.jsonl: run_id, epoch, test `mae`, `val_mae` (None without a
    validation part), `learning_rate`, `train_loss` and `epoch_s` (the epoch's training seconds: unlike a run's
    `wall_s`, it leaves out time the process spent stopped or compiling) — the small record (learning_curves.jsonl)
    that keeps a learning curve's numbers checkable once the run directories are gone. None where a run's
    metrics.jsonl is missing."""
    runs = pathlib.Path(sweep_dir) / "runs"
    run_ids = frame.loc[frame["status"] == "ok", "run_id"]
    if run_ids.empty or not all((runs / run_id / "metrics.jsonl").exists() for run_id in run_ids):
        return None
    return [{"run_id": run_id, "epoch": row["epoch"], "mae": row.get("mae"), "val_mae": row.get("val_mae"),
             "learning_rate": row.get("learning_rate"), "train_loss": row.get("train_loss"),
             "epoch_s": row.get("epoch_s")}
            for run_id in run_ids for row in workdir_lib.read_jsonl(runs / run_id / "metrics.jsonl")]


def _rereads_display(table: pd.DataFrame) -> pd.DataFrame:
    """`rereads.rereads_table`'s cells as text: MAE ± SD, CA(3), CA(5), ΔMAE against the runs' own rule with its
    interval and p."""
    own = table["own"].astype(bool)
    return pd.DataFrame({
        "decode": table.index.get_level_values("decode"),
        "MAE": [_mean_std(mean, std, 2, "±") for mean, std in zip(table["mae"], table["mae_std"])],
        "CA(3)": [f"{value:.3f}" for value in table["ca3"]],
        "CA(5)": [f"{value:.3f}" for value in table["ca5"]],
        "ΔMAE": ["own rule" if mine else f"{delta:+.2f}" for mine, delta in zip(own, table["delta_mae"])],
        "95% CI": ["–" if mine else _interval(low, high, 0, "+")
                   for mine, low, high in zip(own, table["delta_low"], table["delta_high"])],
        "p": ["–" if mine else _p_value(p) for mine, p in zip(own, table["delta_p"])],
        "n": table["n"].astype(str).to_numpy(),
    }, index=pd.Index(table.index.get_level_values("config"), name="config"))


def _emit_table(emit, name: str, shown: pd.DataFrame, note: str, formats: Sequence[str], numbers: pd.DataFrame):
    """`name`.md (the table and its note), .tex (booktabs, the note as a comment) and .csv (full precision)."""
    if "md" in formats:
        emit(f"{name}.md", shown.to_markdown(disable_numparse=True) + f"\n\n{note}\n")
    if "latex" in formats:
        styler = shown.reset_index().style.hide(axis="index").format(escape="latex")
        emit(f"{name}.tex", f"% {note}\n" + styler.format_index(escape="latex", axis=1).to_latex(hrules=True))
    if "csv" in formats:
        emit(f"{name}.csv", numbers.to_csv(float_format="%.6g"))


def write_tables(sweep_dir, out_dir=None, *, formats: Sequence[str] = FORMATS, baseline: str | None = None,
                 plot: bool = False, by_age: bool = False,
                 factorial: Sequence[str] | None = None) -> dict[str, pathlib.Path]:
    """Writes the report files; returns {name: path}. `factorial`: two override keys (`factorial_table`)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"--format: unknown {sorted(unknown)}; choose from {','.join(FORMATS)}")
    frame = load_results(sweep_dir)
    table = with_baseline(aggregate(frame), frame, baseline)
    try:
        ages = by_age_table(frame)
    except ValueError:
        if by_age:
            raise
        ages = None  # configs tested on different faces so far: nothing asked for the table; the figure says why
        if plot:
            print("report: mae_by_age.png not drawn: the configs' finished runs were tested on different faces so "
                  "far (different age counts); report again once every config has run on the same splits",
                  file=sys.stderr)
    if by_age and ages is None:
        raise ValueError(f"--by_age: no finished run in {sweep_dir} recorded MAE by age (runs trained before it "
                         "was recorded); drop --by_age, or train the sweep again in a new directory")
    effects = factorial_table(frame, factorial) if factorial else None
    # Read before anything is written: a damaged run file refuses the report without leaving half of it.
    curves, reread = curve_rows(sweep_dir, frame), rereads.reread_rows(sweep_dir, frame)
    out = workdir_lib.prepare(out_dir or pathlib.Path(sweep_dir) / "report", flag="--out")
    written = {}

    def emit(name: str, text: str):
        workdir_lib.write_text_atomic(out / name, text)
        written[name] = out / name

    if "md" in formats:
        # The cells are already formatted strings: tabulate must not re-parse "+0.00" or "0.950 ± 0.000" as numbers.
        notes = ["ΔMAE marked *: its 95 % interval excludes 0 (t-based: paired by seed where both configs have the "
                 "same seeds, else Welch; not corrected for multiple contrasts: see contrasts.md).",
                 seeds_needed_line(table)] if baseline is not None else []
        notes = [ONE_SEED_NOTE] if one_seed_only(table) else notes
        notes += [note] if (note := machine_note(frame)) else []
        emit("results.md", "\n\n".join([display_table(table).to_markdown(disable_numparse=True)] + notes) + "\n")
    if "latex" in formats:
        emit("results.tex", to_latex(table))
    if "csv" in formats:
        emit("results.csv", table.to_csv(float_format="%.6g"))
    contrasts = contrasts_table(table)
    if contrasts is not None:
        _emit_table(emit, "contrasts", contrasts, contrasts_note(table), formats,
                    table[~table["baseline"]].drop(columns=["baseline"]))
    if effects is not None:
        _emit_table(emit, "factorial", _factorial_display(effects), factorial_note(effects), formats, effects)
    if curves is not None:
        emit("learning_curves.jsonl", "".join(json.dumps(row) + "\n" for row in curves))
    if reread is not None:
        emit(rereads.RECORD, "".join(json.dumps(row) + "\n" for row in reread))
        table_of_rereads = rereads.rereads_table(frame, reread, replicates(frame))
        _emit_table(emit, "rereads", _rereads_display(table_of_rereads), rereads.NOTE, formats, table_of_rereads)
    pivot = numeric_pivot(frame)
    if pivot is not None:
        if "md" in formats:
            emit("pivot.md", _pivot_display(pivot).to_markdown(index=False, floatfmt=".2f") + "\n")
        if "latex" in formats:
            styler = _pivot_display(pivot).style.hide(axis="index").format(precision=2)
            emit("pivot.tex", styler.format_index(escape="latex", axis=1).to_latex(hrules=True))
        if "csv" in formats:
            emit("pivot.csv", pivot.to_csv(float_format="%.6g"))
    if by_age:
        if "md" in formats:
            emit("by_age.md", _by_age_display(ages).to_markdown(disable_numparse=True) + "\n")
        if "csv" in formats:
            emit("by_age.csv", ages.to_csv(float_format="%.6g"))
    if plot:
        from ssr_jax import plots

        written.update(plots.write_figures(sweep_dir, frame, table, pivot, out, ages,
                                           numeric_pivot(frame, "count")))
    return written
