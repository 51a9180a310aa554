"""`ssr-jax report` checked cell by cell on a small results.jsonl written here (a 2 × 2 λ grid, two seeds each,
one diverged and one failed run), so every number in the tables can be worked out by hand."""
import io
import json

import pandas as pd
import pytest

from ssr_jax import report

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
    lines = [line for line in text.strip().splitlines() if not set(line) <= set("|-: ")]
    split = lambda line: [cell.strip() for cell in line.strip().strip("|").split("|")]  # noqa: E731
    header = split(lines[0])
    return {cells[0]: dict(zip(header[1:], cells[1:])) for cells in map(split, lines[1:])}


def test_markdown_table_cell_by_cell(sweep_dir):
    written = report.write_tables(sweep_dir, formats=["md"], baseline=A)
    cells = markdown_cells(written["results.md"].read_text())
    assert list(cells) == [A, B, C, D]  # first-appearance order
    assert cells[A] == {"MAE": "6.00 ± 1.41", "CA(3)": "0.300 ± 0.141", "CA(5)": "0.600 ± 0.141", "ΔMAE": "+0.00",
                        "n": "2", "diverged": "0", "failed": "0", "params": "40,915", "size (KB)": "159.8",
                        "train (s)": "105"}
    assert cells[B] == {"MAE": "4.00 ± 0.00", "CA(3)": "0.500 ± 0.000", "CA(5)": "0.950 ± 0.000", "ΔMAE": "-2.00",
                        "n": "2", "diverged": "0", "failed": "0", "params": "40,915", "size (KB)": "159.8",
                        "train (s)": "60"}
    # One ok seed: a mean without a standard deviation; the diverged seed is counted, never averaged.
    assert cells[C] == {"MAE": "3.00", "CA(3)": "0.600", "CA(5)": "0.900", "ΔMAE": "-3.00", "n": "1",
                        "diverged": "1", "failed": "0", "params": "40,915", "size (KB)": "159.8", "train (s)": "30"}
    assert cells[D] == {"MAE": "8.00", "CA(3)": "0.100", "CA(5)": "0.300", "ΔMAE": "+2.00", "n": "1",
                        "diverged": "0", "failed": "1", "params": "40,915", "size (KB)": "159.8", "train (s)": "80"}


def test_pivot_is_lambda_local_rows_by_lambda_d_columns(sweep_dir):
    written = report.write_tables(sweep_dir, formats=["md", "csv"])
    cells = markdown_cells(written["pivot.md"].read_text())
    assert cells == {"0": {"0": "6.00", "1": "4.00"}, "1": {"0": "3.00", "1": "8.00"}}
    assert "lambda_local \\ lambda_d" in written["pivot.md"].read_text()
    pivot = pd.read_csv(written["pivot.csv"], index_col=0)
    assert pivot.index.name == "lambda_local" and list(pivot.columns) == ["0", "1"]
    assert pivot.loc[1, "0"] == 3.0 and pivot.loc[0, "1"] == 4.0


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
