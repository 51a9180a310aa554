"""Figures for `ssr-jax report --plot`, drawn with matplotlib from recorded results only.

Figures are `matplotlib.figure.Figure`s written straight to files, never through pyplot: no display is needed, and
the process's matplotlib backend (a notebook's inline one, say) is neither chosen nor changed.
"""
from __future__ import annotations

import io
import pathlib

import matplotlib
import matplotlib.transforms
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssr_jax import workdir as workdir_lib


def _figure(**options) -> tuple[Figure, matplotlib.axes.Axes]:
    """A figure on its own Agg canvas (files, and label sizes measured before saving) and its axes."""
    figure = Figure(**options)
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def _save(figure: Figure, path: pathlib.Path, dpi: int = 150) -> None:
    """The figure as a PNG of at most 256 colours: a plot of lines and flat colours loses nothing visible, and the
    file is a third of the size (figures are committed beside the results, ≤ 100 KB each)."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    image.save(path, format="png", optimize=True)


def replicates_said(counts) -> str:
    """"n = 3 seeds" / "one seed (n = 1)" / "n = 2–3 seeds": how many runs each point or cell averages."""
    low, high = int(min(counts)), int(max(counts))
    if high == 1:
        return "one run (n = 1)"
    return f"n = {low} runs" if low == high else f"n = {low}–{high} runs"


def heatmap(pivot: pd.DataFrame, path: pathlib.Path, counts: pd.DataFrame | None = None) -> None:
    """Mean MAE over a 2-D sweep (the λ grid), each cell annotated; `counts` (the pivot's shape: runs per cell)
    puts n in the colour bar's label."""
    figure, axes = _figure(figsize=(1.1 * len(pivot.columns) + 2, 0.8 * len(pivot.index) + 1.5))
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
    n = replicates_said(counts.to_numpy().ravel()) if counts is not None else "mean over runs"
    figure.colorbar(image, label=f"test MAE (years), {n}" if n.startswith("one") else f"test MAE (years), mean, {n}")
    figure.tight_layout()
    _save(figure, path)


# Where a point's label may go, in points from the point, tried in this order: beside it (right, left, above
# and below), then further out with a leader line.
_LABEL_OFFSETS = [(5, 3, "left"), (5, -9, "left"), (-5, 3, "right"), (-5, -9, "right"), (0, 7, "center"),
                  (0, -14, "center"), (18, 16, "left"), (18, -22, "left"), (-18, 16, "right"), (-18, -22, "right"),
                  (30, 28, "left"), (30, -34, "left"), (-30, 28, "right"), (-30, -34, "right")]


def _shared_key(labels) -> str | None:
    """"stages" when every label is one `stages=...` override (the stages sweep): the plot then shows the values."""
    keys = {label.split("=", 1)[0] for label in labels}
    return keys.pop() if len(keys) == 1 and all(label.count("=") == 1 for label in labels) else None


def mae_vs_params(table: pd.DataFrame, path: pathlib.Path):
    """One point per config with error bars over seeds (SD), parameters on a log axis where they span more than
    2×: the paper's Fig. 3 with MAE added. Each label goes to the first place (`_LABEL_OFFSETS`) where it covers
    no point and no label placed before it, so configs of nearly the same size and MAE stay readable. Returns
    ({label text: its box}, the points), in display coordinates (for tests)."""
    figure, axes = _figure(figsize=(6.5, 4.2))
    axes.errorbar(table["params"], table["mae_mean"], yerr=table["mae_std"].fillna(0), fmt="o", capsize=3)
    if table["params"].max() > 2 * table["params"].min():
        axes.set_xscale("log")
    key = _shared_key(list(table.index))
    n = replicates_said(table["n"])
    bars = "no bars" if n.startswith("one") else "mean ± SD (bars)"
    axes.set_title(f"{key + ': ' if key else ''}test MAE against parameters, {n}, {bars}", fontsize=9)
    axes.set_xlabel("parameters (trainable + BatchNorm statistics)")
    axes.set_ylabel("test MAE (years)")
    axes.margins(x=0.15, y=0.15)
    figure.tight_layout()
    renderer = figure.canvas.get_renderer()
    points = axes.transData.transform(table[["params", "mae_mean"]].to_numpy(dtype=float))
    placed = [matplotlib.transforms.Bbox.from_extents(x - 4, y - 4, x + 4, y + 4) for x, y in points]
    boxes = {}
    for label, row in table.sort_values("mae_mean").iterrows():
        text = label.split("=", 1)[1] if key else label

        def annotate(dx, dy, align):
            leader = {"arrowstyle": "-", "lw": 0.5, "color": "grey"} if abs(dx) > 5 or abs(dy) > 14 else None
            annotation = axes.annotate(text, (row["params"], row["mae_mean"]), textcoords="offset points",
                                       xytext=(dx, dy), fontsize=7, ha=align, arrowprops=leader)
            return annotation, annotation.get_window_extent(renderer)

        for offset in _LABEL_OFFSETS:
            annotation, box = annotate(*offset)
            inside = axes.bbox.contains(box.x0, box.y0) and axes.bbox.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in placed):
                break
            annotation.remove()
        else:  # nowhere free: the first place, overlapping
            annotation, box = annotate(*_LABEL_OFFSETS[0])
        placed.append(box)
        boxes[text] = box
    _save(figure, path)
    return boxes, points


def learning_curves(sweep_dir: pathlib.Path, frame: pd.DataFrame, path: pathlib.Path) -> None:
    """Test MAE per epoch (solid) and, where the split has a validation part, validation MAE (dashed), each the mean
    over a config's finished runs (from the runs' metrics.jsonl); the legend gives each config's n."""
    figure, axes = _figure(figsize=(7, 4.5))
    configs = list(frame[frame["status"] == "ok"].groupby("config", sort=False))
    # One colour per config, its test and validation curves alike (tab20 past ten configs).
    colours = matplotlib.colormaps["tab10" if len(configs) <= 10 else "tab20"]
    styles = {"mae": ("-", "test"), "val_mae": ("--", "validation")}
    drawn = set()
    for index, (config, runs) in enumerate(configs):
        rows = [pd.DataFrame(workdir_lib.read_jsonl(sweep_dir / "runs" / run_id / "metrics.jsonl")).set_index("epoch")
                for run_id in runs["run_id"]]
        for column, (style, _) in styles.items():
            if all(column in row for row in rows):
                mean = pd.concat([row[column] for row in rows], axis=1).mean(axis=1)
                label = f"{config} (n = {len(rows)})" if column == "mae" else None
                axes.plot(mean.index, mean.to_numpy(), style, color=colours(index % colours.N), linewidth=1,
                          label=label)
                drawn.add(column)
    for column in [column for column in styles if column in drawn]:  # which line is which: black samples
        axes.plot([], [], styles[column][0], color="black", linewidth=1, label=styles[column][1])
    axes.set_xlabel("epoch")
    axes.set_ylabel("MAE (years), mean over runs, no bars")
    axes.set_yscale("log")
    axes.legend(fontsize=6, loc="upper right", ncol=2 if len(configs) > 6 else 1)
    figure.tight_layout()
    _save(figure, path)


def mae_by_age(ages: pd.DataFrame, path: pathlib.Path, counts: dict | None = None) -> None:
    """MAE against decade of true age, one line per config (`report.by_age_table`: mean over its runs, n in the
    legend when `counts` ({config: runs}) is given)."""
    figure, axes = _figure(figsize=(7, 4.5))
    for config, maes in ages.drop(index="examples").iterrows():
        label = f"{config} (n = {counts[config]})" if counts and config in counts else config
        axes.plot(range(len(ages.columns)), maes.to_numpy(dtype=float), marker="o", label=label)
    axes.set_xticks(range(len(ages.columns)),
                    [f"{group}\n({int(count):,})" for group, count in ages.loc["examples"].items()], fontsize=7)
    axes.set_xlabel("true age (examples in the test split)")
    axes.set_ylabel("test MAE (years), mean over runs, no bars")
    axes.legend(fontsize=6)
    figure.tight_layout()
    _save(figure, path)


def write_figures(sweep_dir, frame: pd.DataFrame, table: pd.DataFrame, pivot, out: pathlib.Path,
                  ages: pd.DataFrame | None = None, counts: pd.DataFrame | None = None) -> dict:
    """The figures the records allow; `counts`: runs per pivot cell. The learning curves only where the runs'
    metrics.jsonl are there (a sweep's workdir, not a results.jsonl committed alone)."""
    written = {}
    if ages is not None:
        mae_by_age(ages, out / "mae_by_age.png", table["n"].to_dict())
        written["mae_by_age.png"] = out / "mae_by_age.png"
    if pivot is not None:
        heatmap(pivot, out / "heatmap.png", counts)
        written["heatmap.png"] = out / "heatmap.png"
    if table["params"].nunique() > 1:
        mae_vs_params(table, out / "mae_vs_params.png")
        written["mae_vs_params.png"] = out / "mae_vs_params.png"
    runs = pathlib.Path(sweep_dir) / "runs"
    if all((runs / run_id / "metrics.jsonl").exists() for run_id in frame.loc[frame["status"] == "ok", "run_id"]):
        learning_curves(pathlib.Path(sweep_dir), frame, out / "learning_curves.png")
        written["learning_curves.png"] = out / "learning_curves.png"
    return written
