"""RESULTS.md quotes what `ssr-jax report` makes of the committed results: rerunning the report on each experiment's
`results/<experiment>/results.jsonl` (the sweep's own file, copied) reproduces RESULTS.md's tables character for
character, so a table there can always be traced to its runs."""
import pathlib

import pytest

from ssr_jax import report

REPO = pathlib.Path(__file__).resolve().parent.parent
# experiment → the `ssr-jax report` options RESULTS.md gives for it
REPORTS = {
    "dynamic_range": {"baseline": "lambda_d=1.0, lambda_local=1.0"},
    "dex_vs_ssr": {"baseline": "SSR-Net (3,3,3)"},
    "stages": {"baseline": "stages=(3, 3, 3)"},
    "table1": {"baseline": "SSR-Net (3,3,3)"},
    "lambda_grid": {"baseline": "lambda_d=1.0, lambda_local=1.0"},
    "utkface_splits": {},
}


@pytest.mark.parametrize("experiment", sorted(REPORTS))
def test_results_md_tables_are_the_reports_of_the_committed_results(experiment, tmp_path):
    written = report.write_tables(REPO / "results" / experiment, tmp_path, formats=["md"], **REPORTS[experiment])
    quoted = (REPO / "RESULTS.md").read_text()
    for name in ("results.md", "pivot.md"):
        if name in written:
            table = written[name].read_text().strip()
            assert table in quoted, f"RESULTS.md does not quote {experiment}'s {name}:\n{table}"
