"""Figures for `ssr-jax report --plot`, drawn with matplotlib from recorded results only (Agg: no display)."""
from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ssr_jax import workdir as workdir_lib  # noqa: E402


def heatmap(pivot: pd.DataFrame, path: pathlib.Path) -> None:
    """Mean MAE over a 2-D sweep (the λ grid), each cell annotated."""
    figure, axes = plt.subplots(figsize=(1.1 * len(pivot.columns) + 2, 0.8 * len(pivot.index) + 1.5))
    values = pivot.to_numpy(dtype=float)
    image = axes.imshow(values, cmap="viridis_r", aspect="auto")
    low, high = image.get_clim()
    axes.set_xticks(range(len(pivot.columns)), [f"{c:g}" for c in pivot.columns])
    axes.set_yticks(range(len(pivot.index)), [f"{r:g}" for r in pivot.index])
    axes.set_xlabel(pivot.columns.name)
    axes.set_ylabel(pivot.index.name)
    for row in range(len(pivot.index)):
        for column in range(len(pivot.columns)):
            value = pivot.iat[row, column]
            if pd.notna(value):
                # viridis_r is bright at low MAE and dark at high MAE: pick the readable text colour.
                dark_cell = high > low and (value - low) / (high - low) > 0.5
                axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                          color="white" if dark_cell else "black")
    figure.colorbar(image, label="MAE (mean over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def mae_vs_params(table: pd.DataFrame, path: pathlib.Path) -> None:
    """One point per config with error bars over seeds: the paper's Fig. 3 with MAE added."""
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.errorbar(table["params"], table["mae_mean"], yerr=table["mae_std"].fillna(0), fmt="o", capsize=3)
    for label, row in table.iterrows():
        axes.annotate(label, (row["params"], row["mae_mean"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set_xlabel("parameters (trainable + BatchNorm statistics)")
    axes.set_ylabel("MAE (years)")
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def learning_curves(sweep_dir: pathlib.Path, frame: pd.DataFrame, path: pathlib.Path) -> None:
    """Validation MAE per epoch, mean over each config's finished runs (from the runs' metrics.jsonl)."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for config, runs in frame[frame["status"] == "ok"].groupby("config", sort=False):
        curves = [pd.DataFrame(workdir_lib.read_jsonl(sweep_dir / "runs" / run_id / "metrics.jsonl"))
                  .set_index("epoch")["mae"] for run_id in runs["run_id"]]
        mean = pd.concat(curves, axis=1).mean(axis=1)
        axes.plot(mean.index, mean.to_numpy(), label=config)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation MAE (years)")
    axes.set_yscale("log")
    axes.legend(fontsize=6, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def mae_by_age(ages: pd.DataFrame, path: pathlib.Path) -> None:
    """MAE against decade of true age, one line per config (`report.by_age_table`: mean over seeds)."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for config, maes in ages.drop(index="examples").iterrows():
        axes.plot(range(len(ages.columns)), maes.to_numpy(dtype=float), marker="o", label=config)
    axes.set_xticks(range(len(ages.columns)),
                    [f"{group}\n({int(count):,})" for group, count in ages.loc["examples"].items()], fontsize=7)
    axes.set_xlabel("true age (examples in the test split)")
    axes.set_ylabel("MAE (years), mean over seeds")
    axes.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def write_figures(sweep_dir, frame: pd.DataFrame, table: pd.DataFrame, pivot, out: pathlib.Path,
                  ages: pd.DataFrame | None = None) -> dict:
    written = {}
    if ages is not None:
        mae_by_age(ages, out / "mae_by_age.png")
        written["mae_by_age.png"] = out / "mae_by_age.png"
    if pivot is not None:
        heatmap(pivot, out / "heatmap.png")
        written["heatmap.png"] = out / "heatmap.png"
    if table["params"].nunique() > 1:
        mae_vs_params(table, out / "mae_vs_params.png")
        written["mae_vs_params.png"] = out / "mae_vs_params.png"
    learning_curves(pathlib.Path(sweep_dir), frame, out / "learning_curves.png")
    written["learning_curves.png"] = out / "learning_curves.png"
    return written
