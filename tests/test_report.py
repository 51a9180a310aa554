"""`ssr-jax report` checked cell by cell on a small results.jsonl written here (a 2 × 2 λ grid, two seeds each,
one diverged and one failed run), so every number in the tables can be worked out by hand."""
import io
import json

import pandas as pd
import pytest
from PIL import Image
from scipy import stats as scipy_stats

from ssr_jax import plots, report

STATIC = {"params": 40_915, "model_bytes": 163_660}  # 163,660 B = 159.8 KB


def row(lambda_local, lambda_d, seed, status="ok", **metrics):
    overrides = {"model.lambda_local": lambda_local, "model.lambda_d": lambda_d, "seed": seed}
    return {"run_id": f"r{lambda_local}{lambda_d}{seed}", "overrides": overrides, "seed": seed, "status": status,
            "group": "g", **STATIC, **metrics}


ROWS = [
    row(0.0, 0.0, 0, mae=5.0, ca3=0.2, ca5=0.5, wall_s=100.0),
    row(0.0, 0.0, 1, mae=7.0, ca3=0.4, ca5=0.7, wall_s=110.0),
    row(0.0, 1.0, 0, mae=4.0, ca3=0.5, ca5=0.95, wall_s=50.0),
    row(0.0, 1.0, 1, mae=4.0, ca3=0.5, ca5=0.95, wall_s=70.0),
    row(1.0, 0.0, 0, mae=3.0, ca3=0.6, ca5=0.9, wall_s=30.0),
    row(1.0, 0.0, 1, status="diverged", mae=None, ca3=0.0, ca5=0.0, wall_s=30.0),
    {"run_id": "r110", "overrides": {"model.lambda_local": 1.0, "model.lambda_d": 1.0, "seed": 0}, "seed": 0,
     "status": "failed", "traceback": "Traceback ...\nRuntimeError: boom"},
    row(1.0, 1.0, 1, mae=8.0, ca3=0.1, ca5=0.3, wall_s=80.0),
]
A, B, C, D = ("lambda_d=0.0, lambda_local=0.0", "lambda_d=1.0, lambda_local=0.0",
              "lambda_d=0.0, lambda_local=1.0", "lambda_d=1.0, lambda_local=1.0")


@pytest.fixture
def sweep_dir(tmp_path):
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return tmp_path


def markdown_cells(text: str) -> dict[str, dict[str, str]]:
    """{first cell: {header: cell}} from a pipe table."""
    lines = [line for line in text.strip().splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]
    split = lambda line: [cell.strip() for cell in line.strip().strip("|").split("|")]  # noqa: E731
    header = split(lines[0])
    return {cells[0]: dict(zip(header[1:], cells[1:])) for cells in map(split, lines[1:])}


def test_markdown_table_cell_by_cell(sweep_dir):
    written = report.write_tables(sweep_dir, formats=["md"], baseline=A)
    cells = markdown_cells(written["results.md"].read_text())
    assert list(cells) == [A, B, C, D]  # first-appearance order
    # 95 % t intervals by hand: t(0.975, df=1) = 12.706; A's MAE 6 ± 12.706 · 1.414/√2; B − A per seed: −1, −3,
    # mean −2, standard error 1, p = 2 · P(T₁ > 2) = 1 − 2·atan(2)/π = 0.295.
    assert cells[A] == {"MAE": "6.00 ± 1.41", "CA(3)": "0.300 ± 0.141", "CA(5)": "0.600 ± 0.141", "ΔMAE": "+0.00",
                        "MAE 95% CI": "[-6.71, 18.71]", "ΔMAE 95% CI": "baseline", "p": "–",
                        "n": "2", "diverged": "0", "failed": "0", "params": "40,915", "size (KB)": "159.8",
                        "train (s)": "105"}
    assert cells[B] == {"MAE": "4.00 ± 0.00", "CA(3)": "0.500 ± 0.000", "CA(5)": "0.950 ± 0.000", "ΔMAE": "-2.00",
                        "MAE 95% CI": "[4.00, 4.00]", "ΔMAE 95% CI": "[-14.71, +10.71]", "p": "0.295",
                        "n": "2", "diverged": "0", "failed": "0", "params": "40,915", "size (KB)": "159.8",
                        "train (s)": "60"}
    # One ok seed: a mean without a standard deviation; the diverged seed is counted, never averaged.
    assert cells[C] == {"MAE": "3.00", "CA(3)": "0.600", "CA(5)": "0.900", "ΔMAE": "-3.00", "n": "1",
                        "MAE 95% CI": "none (n = 1)", "ΔMAE 95% CI": "none (n = 1)", "p": "–",
                        "diverged": "1", "failed": "0", "params": "40,915", "size (KB)": "159.8", "train (s)": "30"}
    assert cells[D] == {"MAE": "8.00", "CA(3)": "0.100", "CA(5)": "0.300", "ΔMAE": "+2.00", "n": "1",
                        "MAE 95% CI": "none (n = 1)", "ΔMAE 95% CI": "none (n = 1)", "p": "–",
                        "diverged": "0", "failed": "1", "params": "40,915", "size (KB)": "159.8", "train (s)": "80"}
    # The only difference with a spread is B's: t(0.975, 3) · 1.414/√4 = 2.25 > 2, t(0.975, 4) · 1.414/√5 = 1.76 < 2.
    assert "ΔMAE -2.00 (lambda_d=1.0, lambda_local=0.0), would have a 95 % interval excluding 0 with 5 seeds" in (
        written["results.md"].read_text())


def test_pivot_is_lambda_local_rows_by_lambda_d_columns(sweep_dir):
    written = report.write_tables(sweep_dir, formats=["md", "csv"])
    cells = markdown_cells(written["pivot.md"].read_text())
    assert cells == {"0": {"0": "6.00", "1": "4.00"}, "1": {"0": "3.00", "1": "8.00"}}
    assert "lambda_local \\ lambda_d" in written["pivot.md"].read_text()
    pivot = pd.read_csv(written["pivot.csv"], index_col=0)
    assert pivot.index.name == "lambda_local" and list(pivot.columns) == ["0", "1"]
    assert pivot.loc[1, "0"] == 3.0 and pivot.loc[0, "1"] == 4.0


def test_list_valued_overrides_are_tabulated_without_a_pivot(tmp_path):
    # experiments/dex_vs_ssr.py: DEX differs from SSR-Net in model.stages, a list once written to JSON.
    dex = {"model.head": "dex", "model.stages": [101], "model.with_eta": False, "seed": 0}
    rows = [{**ROWS[0], "overrides": {"model.head": "ssr", "seed": 0}}, {**ROWS[2], "overrides": dex}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = report.write_tables(tmp_path, formats=["md"])
    assert "pivot.md" not in written
    assert [cells["MAE"] for cells in markdown_cells(written["results.md"].read_text()).values()] == ["5.00", "4.00"]


def test_a_one_seed_sweep_has_no_columns_of_empty_intervals(tmp_path):
    """The λ grid at one seed: 25 rows whose interval and p cells could only say "none (n = 1)"."""
    rows = [{**row(local, d, 0, mae=5.0 + local + 2 * d, ca3=0.5, ca5=0.7, wall_s=60.0)}
            for local in (0.0, 0.5, 1.0) for d in (0.0, 0.5, 1.0)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = report.write_tables(tmp_path, formats=["md", "latex"], baseline="lambda_d=1.0, lambda_local=1.0")
    text = written["results.md"].read_text()
    cells = markdown_cells(text)
    assert len(cells) == 9
    assert list(cells["lambda_d=0.5, lambda_local=0.5"]) == ["MAE", "CA(3)", "CA(5)", "ΔMAE", "n", "params",
                                                            "size (KB)", "train (s)"]
    assert cells["lambda_d=0.5, lambda_local=0.5"]["ΔMAE"] == "-1.50"
    assert cells["lambda_d=1.0, lambda_local=1.0"]["ΔMAE"] == "+0.00"
    assert "none (n = 1)" not in text and "Seeds needed" not in text
    assert text.rstrip().endswith(report.ONE_SEED_NOTE)
    assert written["results.tex"].read_text().startswith(f"% {report.ONE_SEED_NOTE}\n")
    assert "95" not in written["results.tex"].read_text().split("\n", 1)[1]


def test_mae_vs_params_labels_cover_no_point_and_no_other_label(tmp_path):
    """The stages sweep's points: (4,4,4), (5,5,5) and (9,9) lie within 2,000 parameters and 0.04 years of each
    other; every label must still be readable and say only the value of the one key the sweep varies."""
    points = {(3, 3, 3): (40_915, 6.70), (2, 2, 2): (40_127, 7.91), (4, 4, 4): (41_739, 7.26),
              (5, 5, 5): (42_599, 7.22), (9, 9): (43_648, 7.26), (27,): (50_653, 7.56), (101,): (131_609, 7.11),
              (3, 3, 3, 3): (42_118, 7.08)}
    rows = [{"run_id": str(stages), "overrides": {"model.stages": list(stages), "seed": 0}, "seed": 0,
             "status": "ok", "mae": mae, "ca3": 0.3, "ca5": 0.4, "params": params, "model_bytes": 4 * params}
            for stages, (params, mae) in points.items()]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = report.aggregate(report.load_results(tmp_path))
    boxes, centres = plots.mae_vs_params(table, tmp_path / "plot.png")
    assert sorted(boxes) == sorted(report._value(list(stages)) for stages in points)  # "(4, 4, 4)", not "stages=…"
    placed = list(boxes.values())
    for index, box in enumerate(placed):
        assert not any(box.overlaps(other) for other in placed[index + 1:])
        assert not any(box.contains(x, y) for x, y in centres)
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    with Image.open(tmp_path / "plot.png") as image:  # a palette PNG (plots._save): the committed figures stay small
        assert image.mode == "P" and image.size == (975, 630)  # 6.5 × 4.2 inches at 150 dpi


def test_csv_keeps_full_precision_numbers(sweep_dir):
    written = report.write_tables(sweep_dir, formats=["csv"])
    table = pd.read_csv(written["results.csv"], index_col="config")
    assert table.loc[A, "mae_mean"] == 6.0
    assert table.loc[A, "mae_std"] == pytest.approx(2 ** 0.5, rel=1e-5)
    assert table.loc[B, "ca5_mean"] == 0.95 and table.loc[B, "ca5_std"] == 0.0
    assert pd.isna(table.loc[C, "mae_std"]) and table.loc[C, "diverged"] == 1
    assert table.loc[D, "failed"] == 1 and table.loc[D, "n"] == 1
    assert list(table["params"]) == [40_915] * 4


def test_latex_has_booktabs_and_the_best_value_of_each_column_in_bold(sweep_dir):
    text = report.write_tables(sweep_dir, formats=["latex"])["results.tex"].read_text()
    assert text.count("\\toprule") == text.count("\\midrule") == text.count("\\bottomrule") == 1
    lines = {line.split("&")[0].strip(): line for line in text.splitlines() if "&" in line}
    escaped = {label: label.replace("_", "\\_") for label in (A, B, C, D)}
    assert "\\textbf{3.00}" in lines[escaped[C]] and "\\textbf{0.600}" in lines[escaped[C]]  # lowest MAE, best CA(3)
    assert "\\textbf{0.950 $\\pm$ 0.000}" in lines[escaped[B]]  # best CA(5)
    assert "6.00 $\\pm$ 1.41" in lines[escaped[A]] and "\\textbf" not in lines[escaped[A]]
    assert sum(line.count("\\textbf") for line in lines.values()) == 3


def test_report_without_results_says_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="ssr-jax sweep"):
        report.write_tables(tmp_path)
    (tmp_path / "results.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    with pytest.raises(ValueError, match="--format: unknown \\['html'\\]"):
        report.write_tables(tmp_path, formats=["html"])
    with pytest.raises(ValueError, match="--baseline 'nope' matches 0 configs"):
        report.write_tables(tmp_path, baseline="nope")


def test_results_md_round_trips_through_pandas(sweep_dir):
    """The Markdown is a well-formed pipe table (what pastes into a README or a paper draft)."""
    text = report.write_tables(sweep_dir, formats=["md"])["results.md"].read_text()
    frame = pd.read_table(io.StringIO(text), sep="|", skiprows=[1], skipinitialspace=True).dropna(axis=1, how="all")
    assert len(frame) == 4


def test_cpu_inference_column_appears_when_runs_measured_it(tmp_path):
    rows = [{**ROWS[0], "inference_ms_per_image": 2.5}, {**ROWS[1], "inference_ms_per_image": 3.0}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cells = markdown_cells(report.write_tables(tmp_path, formats=["md"])["results.md"].read_text())
    assert cells[A]["CPU ms/image"] == "2.75"


def test_baseline_comparison_matches_scipy_and_marks_only_intervals_that_exclude_zero(tmp_path):
    """Three seeds each: `better` has the baseline's seeds (paired t), `same` equals the baseline seed by seed (a zero
    difference), `other` ran other seeds (Welch); intervals and p-values are scipy's."""
    base, better, same, other = [6.0, 6.3, 5.8], [5.0, 5.4, 4.7], [6.0, 6.3, 5.8], [7.0, 7.5, 6.4]
    rows = [{"run_id": f"{name}{seed}", "overrides": {"model.name": name, "seed": seed}, "seed": seed, "status": "ok",
             "mae": mae, "ca3": 0.5, "ca5": 0.5, "wall_s": 1.0}
            for name, seeds, maes in (("base", [0, 1, 2], base), ("better", [0, 1, 2], better),
                                      ("same", [0, 1, 2], same), ("other", [3, 4, 5], other))
            for seed, mae in zip(seeds, maes)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = report.write_tables(tmp_path, formats=["md", "latex", "csv"], baseline="name=base")
    table = pd.read_csv(written["results.csv"], index_col="config")
    paired = scipy_stats.ttest_rel(better, base)
    welch = scipy_stats.ttest_ind(other, base, equal_var=False)
    for label, result, test in (("name=better", paired, "paired"), ("name=other", welch, "welch")):
        interval = result.confidence_interval(0.95)
        assert table.loc[label, "delta_low"] == pytest.approx(interval.low, rel=1e-5)
        assert table.loc[label, "delta_high"] == pytest.approx(interval.high, rel=1e-5)
        assert table.loc[label, "delta_p"] == pytest.approx(result.pvalue, rel=1e-5)
        assert table.loc[label, "delta_test"] == test
    one_sample = scipy_stats.ttest_1samp(base, 0.0).confidence_interval(0.95)
    assert table.loc["name=base", "mae_ci_low"] == pytest.approx(one_sample.low, rel=1e-5)
    assert table.loc["name=base", "mae_ci_high"] == pytest.approx(one_sample.high, rel=1e-5)
    assert paired.confidence_interval(0.95).high < 0 < welch.confidence_interval(0.95).high  # better only
    assert table.loc["name=same", "delta_mae"] == 0 and table.loc["name=same", "delta_p"] == 1.0
    assert list(table["significant"]) == [False, True, False, False]
    cells = markdown_cells(written["results.md"].read_text())
    assert cells["name=better"]["ΔMAE"] == "-1.00 *" and cells["name=same"]["ΔMAE"] == "+0.00"
    assert cells["name=other"]["ΔMAE"] == "+0.93" and cells["name=better"]["p"] == f"{paired.pvalue:.3f}"
    latex_rows = [line for line in written["results.tex"].read_text().splitlines() if "&" in line]
    assert [line.split("&")[0].strip() for line in latex_rows if "$^{*}$" in line] == ["name=better"]


def test_mae_by_age_is_the_mean_over_seeds_per_config_and_group(tmp_path):
    groups = ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90-100"]

    def by_age(**maes):
        return {"mae_by_age": {group: maes.get(group.replace("-", "_")) for group in groups},
                "count_by_age": {group: {"0-9": 3, "10-19": 1}.get(group, 0) for group in groups}}

    rows = [row(0.0, 0.0, 0, mae=5.0, **by_age(**{"0_9": 2.0, "10_19": 4.0})),
            row(0.0, 0.0, 1, mae=7.0, **by_age(**{"0_9": 4.0, "10_19": 5.0})),
            row(0.0, 1.0, 0, mae=4.0, **by_age(**{"0_9": 1.0, "10_19": 8.0})),
            row(0.0, 1.0, 1, status="diverged", mae=None, **by_age(**{"0_9": 99.0, "10_19": 99.0})),
            row(1.0, 0.0, 0, mae=3.0)]  # recorded before MAE by age: left out
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = report.write_tables(tmp_path, formats=["md", "csv"], by_age=True)
    assert markdown_cells(written["by_age.md"].read_text()) == {
        "examples": {"0-9": "3", "10-19": "1"}, A: {"0-9": "3.00", "10-19": "4.50"},
        B: {"0-9": "1.00", "10-19": "8.00"}}
    assert written["by_age.csv"].read_text().splitlines() == [
        "config,0-9,10-19", "examples,3,1", f'"{A}",3,4.5', f'"{B}",1,8']
    plots.mae_by_age(report.by_age_table(report.load_results(tmp_path)), tmp_path / "by_age.png")
    assert (tmp_path / "by_age.png").stat().st_size > 0

    (tmp_path / "results.jsonl").write_text(json.dumps(rows[-1]) + "\n")
    with pytest.raises(ValueError, match="no finished run in .* recorded MAE by age"):
        report.write_tables(tmp_path, out_dir=tmp_path / "other", by_age=True)
    assert not (tmp_path / "other").exists()  # refused before anything is written


def test_benchmark_splits_are_replicates_with_validation_columns_and_pooled_age_counts(tmp_path, capfd):
    """Five benchmark splits of one config: one row, n = 5, its validation MAE and selected epochs; by age, the
    examples of the five test parts add up (each example is tested once)."""
    groups = ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90-100"]
    rows = []
    for split in range(5):
        counts = {group: {"0-9": 2 + split % 2, "10-19": 1}.get(group, 0) for group in groups}
        rows.append({"run_id": f"s{split}", "overrides": {"data.split_index": split, "seed": 0}, "seed": 0,
                     "status": "ok", "group": f"g{split}", **STATIC, "mae": 5.0 + split, "ca3": 0.5, "ca5": 0.7,
                     "val_mae": 4.0 + split, "selected_epoch": 10 + split, "wall_s": 10.0,
                     "mae_by_age": {group: (1.0 + split if counts[group] else None) for group in groups},
                     "count_by_age": counts})
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = report.write_tables(tmp_path, formats=["md"], by_age=True)
    (label, cells), = markdown_cells(written["results.md"].read_text()).items()
    interval = scipy_stats.t.interval(0.95, 4, loc=7.0, scale=scipy_stats.sem([5, 6, 7, 8, 9]))
    assert (label, cells["MAE"], cells["n"]) == ("base", "7.00 ± 1.58", "5")
    assert cells["MAE 95% CI"] == f"[{interval[0]:.2f}, {interval[1]:.2f}]"
    assert (cells["val MAE"], cells["epochs"]) == ("6.00 ± 1.58", "10, 11, 12, 13, 14")
    assert markdown_cells(written["by_age.md"].read_text()) == {
        "examples": {"0-9": "12", "10-19": "5"}, "base": {"0-9": "3.00", "10-19": "3.00"}}
    # A sweep still running: a second config has run on two of the splits so far. Its tables are written; by age,
    # where the two configs' test faces differ, is refused only when asked for, saying why.
    second = [{**row, "run_id": f"t{index}", "name": "other"} for index, row in enumerate(rows[:2])]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + second))
    written = report.write_tables(tmp_path, tmp_path / "running", formats=["md"], plot=True)
    assert set(markdown_cells(written["results.md"].read_text())) == {"base", "other"}
    assert "by_age.md" not in written and "mae_by_age.png" not in written
    assert "mae_by_age.png not drawn: the configs' finished runs were tested on different faces" in \
        capfd.readouterr().err
    with pytest.raises(ValueError, match="tested on different faces .* a sweep still running"):
        report.write_tables(tmp_path, tmp_path / "refused", formats=["md"], by_age=True)


def split_rows(name: str, maes, seed: int = 0) -> list[dict]:
    """One named config on the benchmark's splits 0, 1, … (one seed each), as `heads.py:data=…` records them."""
    return [{"run_id": f"{name}{split}", "name": name, "overrides": {"data.split_index": split, "seed": seed},
             "seed": seed, "status": "ok", **STATIC, "mae": mae, "ca3": 0.5, "ca5": 0.7, "wall_s": 1.0}
            for split, mae in enumerate(maes)]


def test_heads_on_the_benchmark_splits_pair_by_split_with_welch_holm_and_effect_sizes(tmp_path):
    """Three heads on four splits: paired split by split (the same test faces), Holm over the two contrasts,
    Welch beside each, ΔMAE as % of the baseline's MAE."""
    base, dex, regression = [8.0, 7.0, 9.0, 8.0], [6.0, 6.5, 5.0, 6.5], [7.5, 7.0, 8.0, 7.5]
    rows = split_rows("SSR", base) + split_rows("DEX", dex) + split_rows("regression", regression)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = report.write_tables(tmp_path, formats=["md", "latex", "csv"], baseline="SSR")
    table = pd.read_csv(written["contrasts.csv"], index_col="config")
    assert list(table.index) == ["DEX", "regression"]
    paired = {name: scipy_stats.ttest_rel(maes, base) for name, maes in (("DEX", dex), ("regression", regression))}
    unpaired = {name: scipy_stats.ttest_ind(maes, base, equal_var=False)
                for name, maes in (("DEX", dex), ("regression", regression))}
    assert list(table["delta_test"]) == ["paired", "paired"]
    # DEX − SSR per split: −2, −0.5, −4, −1.5 (mean −2); regression: −0.5, 0, −1, −0.5 (mean −0.5); base mean 8.
    assert list(table["delta_mae"]) == [-2.0, -0.5] and list(table["delta_pct"]) == [-25.0, -6.25]
    for name in ("DEX", "regression"):
        assert table.loc[name, "delta_p"] == pytest.approx(paired[name].pvalue, rel=1e-5)
        assert table.loc[name, "welch_p"] == pytest.approx(unpaired[name].pvalue, rel=1e-5)
        assert table.loc[name, "welch_low"] == pytest.approx(unpaired[name].confidence_interval(0.95).low, rel=1e-5)
    low, high = sorted(paired[name].pvalue for name in paired)
    holm = {p: value for p, value in ((low, 2 * low), (high, max(2 * low, high)))}
    assert table.loc["DEX", "holm_p"] == pytest.approx(holm[paired["DEX"].pvalue], rel=1e-5)
    assert table.loc["regression", "holm_p"] == pytest.approx(holm[paired["regression"].pvalue], rel=1e-5)
    r = scipy_stats.pearsonr(dex, base).statistic
    assert table.loc["DEX", "correlation"] == pytest.approx(r, rel=1e-5)
    cells = markdown_cells(written["contrasts.md"].read_text())
    assert cells["DEX"]["% of baseline"] == "-25.0 %" and cells["regression"]["% of baseline"] == "-6.2 %"
    assert cells["DEX"]["p (Holm)"] == f"{holm[paired['DEX'].pvalue]:.3f}" and cells["DEX"]["r"] == f"{r:+.2f}"
    assert "family of 2 contrasts" in written["contrasts.md"].read_text()
    assert "\\% of baseline" in written["contrasts.tex"].read_text()


def test_split_replicates_unpaired_when_the_splits_differ(tmp_path):
    rows = split_rows("SSR", [8.0, 7.0, 9.0]) + split_rows("DEX", [6.0, 6.5, 5.0])[:2]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = pd.read_csv(report.write_tables(tmp_path, formats=["csv"], baseline="SSR")["contrasts.csv"],
                        index_col="config")
    assert table.loc["DEX", "delta_test"] == "welch"


def test_factorial_gives_both_main_effects_and_the_interaction(tmp_path, capsys):
    """The 2 × 2 of λ_d and λ_local over two seeds; the numbers as in test_stats' factorial: replicate 0 has MAE
    8 / 7 / 7.5 / 6 at (λ_d, λ_local) = (0, 0) / (0, 1) / (1, 0) / (1, 1), replicate 1 9 / 7 / 8 / 7."""
    maes = {(0.0, 0.0): (8.0, 9.0), (0.0, 1.0): (7.0, 7.0), (1.0, 0.0): (7.5, 8.0), (1.0, 1.0): (6.0, 7.0)}
    rows = [row(local, d, seed, mae=mae, ca3=0.5, ca5=0.5, wall_s=1.0)
            for (d, local), pair in maes.items() for seed, mae in enumerate(pair)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = report.write_tables(tmp_path, formats=["md", "latex", "csv"],
                                  factorial=["model.lambda_d", "model.lambda_local"])
    cells = markdown_cells(written["factorial.md"].read_text())
    assert list(cells) == ["lambda_d 0.0→1.0 (main)", "lambda_local 0.0→1.0 (main)",
                           "lambda_d × lambda_local (interaction)"]
    # Reference cell (1, 1): mean MAE 6.5; −0.625 / 6.5 = −9.6 %.
    assert [c["ΔMAE"] for c in cells.values()] == ["-0.62", "-1.38", "+0.25"]
    assert [c["% of reference"] for c in cells.values()] == ["-9.6 %", "-21.2 %", "+3.8 %"]
    test = scipy_stats.ttest_1samp([-0.5, 1.0], 0.0)
    interaction = cells["lambda_d × lambda_local (interaction)"]
    assert interaction["p"] == f"{test.pvalue:.3f}" and interaction["n"] == "2"
    assert interaction["95% CI"] == "[{:+.2f}, {:+.2f}]".format(*test.confidence_interval(0.95))
    effects = pd.read_csv(written["factorial.csv"], index_col="effect")
    assert list(effects["estimate"]) == [-0.625, -1.375, 0.25]
    with pytest.raises(ValueError, match="exactly two values.*missing \\['model.nope'\\]"):
        report.write_tables(tmp_path, tmp_path / "other", factorial=["model.lambda_d", "model.nope"])
    for keys in (["model.lambda_d"], ["model.lambda_d", "seed"]):
        with pytest.raises(ValueError, match="two override keys other than the replicates"):
            report.write_tables(tmp_path, tmp_path / "other", factorial=keys)
    assert not (tmp_path / "other").exists()


def test_figures_say_how_many_runs_each_point_averages():
    assert plots.replicates_said([1, 1, 1]) == "one run (n = 1)"  # the λ grid's colour bar
    assert plots.replicates_said([3, 3]) == "n = 3 runs"
    assert plots.replicates_said([2, 3, 3]) == "n = 2–3 runs"


def test_learning_curves_record_is_written_where_the_runs_metrics_are(sweep_dir):
    """learning_curves.jsonl: per finished run and epoch, test and validation MAE, the learning rate, the training
    loss and the epoch's training seconds, read from the runs' metrics.jsonl — the record that keeps a learning
    curve's numbers checkable in results/."""
    assert "learning_curves.jsonl" not in report.write_tables(sweep_dir, formats=["md"])  # no run directories
    ok = [r["run_id"] for r in ROWS if r["status"] == "ok"]
    for number, run_id in enumerate(ok):
        (sweep_dir / "runs" / run_id).mkdir(parents=True)
        (sweep_dir / "runs" / run_id / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": epoch, "mae": 10.0 - epoch, "val_mae": 9.0 - epoch + number,
                        "learning_rate": 1e-3, "train_loss": 1.0 / epoch, "epoch_s": 20.0 + number,
                        "images_per_s": 100.0}) + "\n" for epoch in (1, 2)))
    written = report.write_tables(sweep_dir, tmp := sweep_dir / "out", formats=["md"])
    rows = [json.loads(line) for line in written["learning_curves.jsonl"].read_text().splitlines()]
    assert written["learning_curves.jsonl"].parent == tmp and len(rows) == 2 * len(ok)
    assert rows[0] == {"run_id": ok[0], "epoch": 1, "mae": 9.0, "val_mae": 8.0, "learning_rate": 1e-3,
                       "train_loss": 1.0, "epoch_s": 20.0}
    assert rows[-1] == {"run_id": ok[-1], "epoch": 2, "mae": 8.0, "val_mae": 7.0 + len(ok) - 1, "learning_rate": 1e-3,
                        "train_loss": 0.5, "epoch_s": 20.0 + len(ok) - 1}


def test_runs_re_read_by_another_rule_are_tabulated_against_their_own_and_kept_in_a_record(tmp_path):
    """`ssr-jax evaluate --decode RULE RUN` leaves RUN/evaluations/<data>_test_<RULE>.json; the report pairs each
    rule's MAE with the runs' own (`ssr_jax.rereads`), and keeps the re-reads in rereads.jsonl, from which a copy of
    results/ without the run directories gives the same table."""
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "results.jsonl").write_text("".join(json.dumps({**r, "decode": "expectation"}) + "\n" for r in ROWS))
    medians = {"r0.00.00": 4.5, "r0.00.01": 6.0}  # A's two seeds (own MAEs 5 and 7)
    for run_id, mae in medians.items():
        evaluations = sweep_dir / "runs" / run_id / "evaluations"
        evaluations.mkdir(parents=True)
        summary = {"split": "test", "cap": 0, "decode": "median", "mae": mae, "ca3": 0.25, "ca5": 0.5}
        (evaluations / "utkface_test_median.json").write_text(json.dumps(summary))
        # Not re-reads of the run's test faces by another rule: ignored.
        (evaluations / "utkface_test_cap10_median.json").write_text(json.dumps({**summary, "cap": 10, "mae": 0.0}))
        (evaluations / "utkface_val_median.json").write_text(json.dumps({**summary, "split": "val", "mae": 0.0}))
        (evaluations / "utkface_test_expectation.json").write_text(json.dumps({**summary, "decode": "expectation"}))
    written = report.write_tables(sweep_dir, tmp_path / "out", formats=["md"])
    lines = [[cell.strip() for cell in line.strip("|").split("|")]
             for line in written["rereads.md"].read_text().splitlines() if line.startswith("| lambda")]
    # Paired by seed: differences −0.5 and −1.0, mean −0.75, SE 0.25, t(0.975, 1) = 12.706, p = 1 − 2·atan(3)/π.
    assert lines == [[A, "expectation", "6.00 ± 1.41", "0.300", "0.600", "own rule", "–", "–", "2"],
                     [A, "median", "5.25 ± 1.06", "0.250", "0.500", "-0.75", "[-3.93, +2.43]", "0.205", "2"]]
    record = [json.loads(line) for line in written["rereads.jsonl"].read_text().splitlines()]
    assert record == [{"run_id": run_id, "decode": "median", "mae": mae, "ca3": 0.25, "ca5": 0.5}
                      for run_id, mae in medians.items()]
    copy = tmp_path / "results"
    copy.mkdir()
    for name in ("results.jsonl", "rereads.jsonl"):
        (copy / name).write_text((sweep_dir / name if name == "results.jsonl" else written[name]).read_text())
    again = report.write_tables(copy, tmp_path / "again", formats=["md"])
    assert again["rereads.md"].read_text() == written["rereads.md"].read_text()
    (copy / "rereads.jsonl").unlink()  # no re-reads anywhere: no table, no record
    assert not {"rereads.md", "rereads.jsonl"} & set(report.write_tables(copy, tmp_path / "none", formats=["md"]))


def test_a_damaged_re_read_is_refused_with_its_file_and_the_command_that_writes_it_again(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "results.jsonl").write_text("".join(json.dumps({**r, "decode": "expectation"}) + "\n" for r in ROWS))
    evaluations = sweep_dir / "runs" / "r0.00.00" / "evaluations"
    evaluations.mkdir(parents=True)
    damaged = evaluations / "utkface_test_median.json"
    for text in ('{"split": "test", "decode": "med', "[1, 2]"):  # cut short; JSON but not a summary
        damaged.write_text(text)
        with pytest.raises(ValueError) as refused:
            report.write_tables(sweep_dir, tmp_path / "out", formats=["md"])
        assert str(damaged) in str(refused.value)
        assert f"ssr-jax evaluate --decode RULE {sweep_dir / 'runs' / 'r0.00.00'}" in str(refused.value)
    assert not (tmp_path / "out").exists()  # refused before any of the report was written
