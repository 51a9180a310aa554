"""RESULTS.md quotes what `ssr-jax report` makes of the committed results, and every number in its prose is recomputed
from them.

Rerunning the report on each experiment's `results/<experiment>/results.jsonl` (the sweep's own file, copied)
reproduces RESULTS.md's tables character for character, so a table there can always be traced to its runs. Every
other number in RESULTS.md must lie inside the text of a claim `tests/results_claims.py` recomputes for its section
(from the same records, the configs, git, or a named constant of the literature), so that a one-digit edit of any
number anywhere fails a test here."""
import functools
import pathlib
import re
import subprocess

import pytest

import results_claims
from ssr_jax import report

REPO = pathlib.Path(__file__).resolve().parent.parent
# experiment → the `ssr-jax report` options RESULTS.md gives for it
REPORTS = {
    "dynamic_range": {"baseline": "lambda_d=1.0, lambda_local=1.0", "by_age": True,
                      "factorial": ["model.lambda_d", "model.lambda_local"]},
    "dex_vs_ssr": {"baseline": "SSR-Net (3,3,3)", "by_age": True},
    "stages": {"baseline": "stages=(3, 3, 3)"},
    "table1": {"baseline": "SSR-Net (3,3,3)"},
    "lambda_grid": {"baseline": "lambda_d=1.0, lambda_local=1.0"},
    "utkface_splits": {"by_age": True},
    "heads_utkface": {"baseline": "SSR-Net (3,3,3)", "by_age": True},
    "dynamic_range_utkface": {"baseline": "lambda_d=1.0, lambda_local=1.0", "by_age": True,
                              "factorial": ["model.lambda_d", "model.lambda_local"]},
}
TABLES = ("results.md", "contrasts.md", "factorial.md", "pivot.md", "by_age.md", "rereads.md")
# A number (digits with thousands separators and decimals), or a word with a digit in it ("MORPH2", "table1", a
# commit, "256²"): a word must be claimed like a number, or be a name `results_claims.IDENTIFIERS` lists, or a
# commit (which must exist: test_every_commit_results_md_cites_exists).
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?!\w)|(?<!\w)(?=\w*\d)\w+")
# Where a link points (an anchor repeats its heading, a path names a file): not prose.
LINK_TARGET = re.compile(r"\]\([^)]*\)")
COMMIT = re.compile(r"(?<![\w/.])(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?!\w)")


@functools.cache
def tables(experiment: str, directory: pathlib.Path) -> dict[str, str]:
    written = report.write_tables(REPO / "results" / experiment, directory, formats=["md"], **REPORTS[experiment])
    return {name: written[name].read_text().strip() for name in TABLES if name in written}


@pytest.fixture(scope="module")
def all_tables(tmp_path_factory) -> dict[str, dict[str, str]]:
    return {experiment: tables(experiment, tmp_path_factory.mktemp(experiment)) for experiment in REPORTS}


@pytest.mark.parametrize("experiment", sorted(REPORTS))
def test_results_md_tables_are_the_reports_of_the_committed_results(experiment, all_tables):
    quoted = (REPO / "RESULTS.md").read_text()
    for name, table in all_tables[experiment].items():
        assert table in quoted, f"RESULTS.md does not quote {experiment}'s {name}:\n{table}"


def sections(text: str) -> dict[str, str]:
    """{heading without "## ": its text, heading included}; the text before the first heading under ""."""
    parts = re.split(r"^(?=## )", text, flags=re.MULTILINE)
    return {("" if index == 0 else part.splitlines()[0][3:]): part for index, part in enumerate(parts)}


def claims_of(heading: str) -> list[str]:
    """The registered claims of a section: the longest registered prefix of its heading ("" only for the text
    before the first heading)."""
    prefixes = [prefix for prefix in results_claims.SECTIONS if prefix and heading.startswith(prefix)]
    prefix = max(prefixes, key=len) if heading else ""
    assert heading == "" or prefixes, (f"RESULTS.md's section {heading!r} has no claims: register a function in "
                                       "tests/results_claims.py with @section(its heading's first words)")
    return [" ".join(claim.split()) for claim in results_claims.SECTIONS[prefix]()]


def unclaimed_numbers(body: str, claims: list[str], quoted_tables: list[str],
                      names: list[str] = ()) -> tuple[list[str], list[str]]:
    """(claims whose text is not in `body`, numbers of `body` outside every claim, name and table)."""
    for table in quoted_tables:
        body = body.replace(table, " ")
    text = " ".join(LINK_TARGET.sub("]", body).split())
    missing = [claim for claim in claims if claim not in text]
    covered = [False] * len(text)
    for claim in [*claims, *names]:
        for match in re.finditer(re.escape(claim), text):
            covered[match.start():match.end()] = [True] * (match.end() - match.start())
    loose = [f"{match.group()!r} in …{text[max(0, match.start() - 40):match.end() + 20]}…"
             for match in NUMBER.finditer(text) if not all(covered[match.start():match.end()])
             and match.group() not in results_claims.IDENTIFIERS and not COMMIT.fullmatch(match.group())]
    return missing, loose


@pytest.mark.parametrize("heading", list(sections((REPO / "RESULTS.md").read_text())))
def test_every_number_in_a_section_is_recomputed_from_the_records(heading, all_tables):
    body = sections((REPO / "RESULTS.md").read_text())[heading]
    quoted = [table for experiment in all_tables.values() for table in experiment.values()]
    missing, loose = unclaimed_numbers(body, claims_of(heading), quoted, results_claims.names())
    assert not missing, f"section {heading!r}: these recomputed claims are not in its text:\n" + "\n".join(missing)
    assert not loose, f"section {heading!r}: numbers no claim or table accounts for:\n" + "\n".join(loose)


def test_a_one_digit_edit_of_a_claimed_number_fails():
    claims = ["MAE 7.42 years", "--seeds 3"]
    assert unclaimed_numbers("reaches MAE 7.42 years with --seeds 3.", claims, []) == ([], [])
    missing, loose = unclaimed_numbers("reaches MAE 7.43 years with --seeds 3.", claims, [])
    assert missing == ["MAE 7.42 years"] and loose and loose[0].startswith("'7.43'")
    assert unclaimed_numbers("| 7.41 |\nMAE 7.42 years, --seeds 3", claims, ["| 7.41 |"]) == ([], [])


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but "-" and "_" dropped, spaces to "-"."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_every_link_to_a_section_names_one():
    text = (REPO / "RESULTS.md").read_text()
    headings = {anchor(heading) for heading in sections(text) if heading}
    for target in re.findall(r"\]\(#([^)]*)\)", text):
        assert target in headings, f"RESULTS.md links to #{target}, which no heading makes"
    for target in re.findall(r"\]\((results/[^)#]*)\)", text):
        assert (REPO / target).exists(), f"RESULTS.md shows {target}, which is not committed"


def test_every_commit_results_md_cites_exists():
    for commit in set(COMMIT.findall((REPO / "RESULTS.md").read_text())):
        found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPO, capture_output=True)
        assert found.returncode == 0, f"RESULTS.md cites commit {commit}, which this repository does not have"
