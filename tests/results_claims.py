"""The numbers RESULTS.md's prose quotes, each recomputed from the committed records, section by section.

`tests/test_results.py` checks every section of RESULTS.md (text under a `## ` heading; the text before the first one
is the section ""): each claim's text must appear in it, and every number in it must lie inside a claim's text or a
table the report regenerates (which the table test checks character for character). So a one-digit edit anywhere
fails: a table cell stops matching its report, a claimed number its recomputation, and a number no claim accounts for
is refused.

A claim is a string as RESULTS.md writes it ("7.97 against 7.60", "--seeds 3"), built from
- the records: `results/<experiment>/results.jsonl` and each run's fields there (`rows`, `by_config`, `contrast`),
  and `results/<experiment>/learning_curves.jsonl` (per run and epoch, written by `ssr-jax report`);
- the recipe and schedule the runs used (configs/base.py, configs/utkface.py; the records name the schedule's sizes);
- git: a commit RESULTS.md cites must exist (the test checks every hash), a date is a cited commit's day;
- named constants for what no record holds, each saying where it comes from: the literature (`PAPER`, `BENCHMARK`,
  `DATASET`), the definitions the statistics rest on (`DEFINED`), and the few facts only the sessions' notes hold
  (`SESSION`).

A section's registered function returns the claims its text must contain; `names()` are names any section may
use (the model's, the metrics', …) without having to.

Adding a section (the real-face heads, say): write a function that returns its claims and register it with
`@section("the heading's first words")`. Build each claim from the records with the helpers here (`rows`,
`by_config`, `contrast`, `span`, `signed`, `commit_day`); quote a table with `ssr-jax report` and add its options to
`tests/test_results.py`'s REPORTS. A section of RESULTS.md no registered function claims fails the test.
"""
from __future__ import annotations

import functools
import json
import math
import pathlib
import subprocess
from typing import Callable

import numpy as np
import pandas as pd

from configs import base, dex, utkface
from ssr_jax import report, rereads, stats

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"

# The literature: SSR-Net (Yang et al., IJCAI 2018), MORPH2 MAEs and model sizes of its Table 1, its stage-layout
# figure, and its one numeric ablation ("without the soft dynamic range: 9.29").
PAPER = {"ssr": "3.16", "densenet": "5.05", "mobilenet": "6.50", "sizes": "0.32 / 1.1 / 1.0 MB",
         "without dynamic range": "9.29", "table": "Table 1", "figure": "Fig. 3", "lambda": "λ = 1",
         "dex backbone": "VGG-16"}
# Paplham & Franc's benchmark (CVPR 2024): its UTKFace is the full aligned set at 256² on an IMDB-pretrained
# ResNet-50.
BENCHMARK = {"venue": "CVPR 2024", "faces": "23,708 faces", "resolution": "256²", "backbone": "ResNet-50"}
# Its UTKFace MAEs (the heads on that ResNet-50, and its best model, FaRL features with an MLP on top),
# each beside the head here that trains with the same loss ("" where none does: the DEX here is L1-trained).
BENCHMARK_MAE = {"cross-entropy": ("4.38", ""), "regression": ("4.72", "regression"), "OR-CNN": ("4.40", "OR-CNN"),
                 "DLDL": ("4.39", "DLDL"), "mean-variance": ("4.42", "mean-variance"), "SORD": ("4.36", "SORD"),
                 "DLDL-v2": ("4.42", "DLDL-v2"), "unimodal": ("4.47", ""), "FaRL + MLP": ("3.87", "")}
# The datasets: MORPH2's age range; UTKFace crop_part1's file count (prepared: the records count the faces kept).
DATASET = {"morph2 ages": "MORPH2 (16–77)", "crop_part1 files": "9,780 files"}
# What the statistics are defined as: the power at which `stats.seeds_needed`'s n makes a difference just
# significant (its docstring); the difference every test's null hypothesis names.
DEFINED = {"power": "about 50 % power", "null": ["excluding 0", "excludes 0", "past 0"]}
# Facts only the sessions' notes hold (the runs predate the `environment` record), checked where git can: the
# sweeps before commit 5dc5c23 ran every oneDNN call on both cores, which OMP_NUM_THREADS=2 gives back (checked on
# `make demo` to the last digit; `threads_at`); the λ grid's shards ran single-threaded.
SESSION = {"two threads": "OMP_NUM_THREADS=2", "one thread": "OMP_NUM_THREADS=1", "one thread per call": "5dc5c23",
           # CORAL's 100 trained biases, read from split 2's checkpoint (runs/heads_utkface, not committed).
           "coral biases": "span −0.91 to +0.96 (split 2)"}

# Names with a digit in them that are no quantity: the experiments (their results/ folders and experiments/*.py),
# a dataset's name and folder, the reference's weight files.
IDENTIFIERS = {path.name for path in RESULTS.iterdir()} | {"MORPH2", "crop_part1", "h5"}

SECTIONS: dict[str, Callable[[], list[str]]] = {}


def section(heading: str):
    """Registers a function returning the claims of the RESULTS.md section whose heading starts with `heading`."""
    def register(function):
        SECTIONS[heading] = function
        return function
    return register


# ------------------------------------------------------------------------------------------------ records

@functools.cache
def rows(experiment: str) -> tuple[dict, ...]:
    return tuple(json.loads(line) for line in (RESULTS / experiment / "results.jsonl").read_text().splitlines())


@functools.cache
def frame(experiment: str) -> pd.DataFrame:
    return report.load_results(RESULTS / experiment)


def by_config(experiment: str) -> dict[str, dict]:
    """{config label (as the report names it): {replicate: row}} of the "ok" runs."""
    data = frame(experiment)
    ok = data[data["status"] == "ok"]
    keys = report.replicates(ok)
    raw = rows(experiment)
    return {config: {keys[index]: raw[index] for index in group.index}
            for config, group in ok.groupby("config", sort=False)}


def maes(experiment: str, config: str) -> dict:
    return {key: row["mae"] for key, row in by_config(experiment)[config].items()}


def mean_mae(experiment: str, config: str) -> float:
    return float(np.mean(list(maes(experiment, config).values())))


def contrast(experiment: str, config: str, baseline: str) -> pd.Series:
    """The report's row for `config` against `baseline` (`report.with_baseline`'s columns)."""
    data = frame(experiment)
    return report.with_baseline(report.aggregate(data), data, baseline).loc[config]


def curves(experiment: str) -> pd.DataFrame:
    return pd.read_json(RESULTS / experiment / "learning_curves.jsonl", lines=True)


def at_level(experiment: str, key: str, value) -> dict:
    """{(replicate, config): row} of the finished runs whose override `key` is `value`: one level of a factor,
    pooled over the others (η on: `at_level(experiment, "model.lambda_local", 1.0)`, as `eta_age_parts` does)."""
    return {(replicate, config): row for config, runs in by_config(experiment).items()
            for replicate, row in runs.items() if row["overrides"][key] == value}


def eta_age_parts(experiment: str) -> pd.Series:
    """Per age group, its part of what switching η off (λ_local 1 → 0) costs, pooled over the other factor."""
    return age_parts(at_level(experiment, "model.lambda_local", 1.0), at_level(experiment, "model.lambda_local", 0.0))


def age_parts(better: dict, worse: dict) -> pd.Series:
    """Per age group, its part of the MAE difference mean(worse) − mean(better) over runs (the parts sum to it): a
    run's test MAE is Σ_g count_g · MAE_g / N over its own test faces (another split's differ), so the difference
    splits exactly over the age groups, run by run."""
    def parts(row) -> pd.Series:
        counts = pd.Series(row["count_by_age"], dtype=float)
        return pd.Series(row["mae_by_age"], dtype=float).fillna(0.0) * counts / counts.sum()

    means = [pd.DataFrame([parts(row) for row in runs.values()]).mean() for runs in (better, worse)]
    return means[1] - means[0]


# ------------------------------------------------------------------------------------------------ formats

def signed(value: float, digits: int = 2) -> str:
    """"+0.36", "−0.26" (the prose's minus sign)."""
    return f"{value:+.{digits}f}".replace("-", "−")


def span(values, digits: int = 0, thousands: bool = False) -> str:
    """"148–175": the smallest and largest of `values`, rounded."""
    form = f"{{:{',' if thousands else ''}.{digits}f}}"
    return f"{form.format(min(values))}–{form.format(max(values))}"


def interval(low: float, high: float) -> str:
    return f"[{signed(low)}, {signed(high)}]"


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %"


def minutes(seconds) -> str:
    return f"{sum(seconds) / 60:.0f}"


def stage_name(stages) -> str:
    return f"({','.join(map(str, stages))})"


def threads_at(commit: str) -> str:
    """The thread setting that gives back the order a sweep at `commit` summed in: OMP_NUM_THREADS=2 before commit
    5dc5c23 (every oneDNN call on both cores then; one per training-step call since)."""
    before = subprocess.run(["git", "merge-base", "--is-ancestor", commit, SESSION["one thread per call"]], cwd=REPO)
    assert before.returncode == 0, f"{commit} is not before {SESSION['one thread per call']}: which setting then?"
    return SESSION["two threads"]


def commit_day(commit: str) -> str:
    return subprocess.run(["git", "show", "-s", "--format=%ad", "--date=short", commit], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()


def first_recorded(experiment: str) -> str:
    """The commit that first committed the experiment's results.jsonl (made after its sweep ended)."""
    commits = subprocess.run(["git", "log", "--format=%h", "--", f"results/{experiment}/results.jsonl"], cwd=REPO,
                             check=True, capture_output=True, text=True).stdout.split()
    return commits[-1]


# The names every section uses, each recomputed: SSR-Net's stage layout, the metric titles, the level.
SSR = f"SSR-Net {stage_name(base.get_config().model.stages)}"
LEVEL = f"{stats.LEVEL:.0%}".replace("%", " %")
METRIC_TITLES = [title for _, title, _ in report.METRICS if title != "MAE"]
BOTH_ON = "lambda_d=1.0, lambda_local=1.0"


def names() -> list[str]:
    """Names any section may use, each recomputed, none required: the model's, the metrics', the confidence level,
    the synthetic schedule's length, MORPH2's ages, the youngest age group."""
    return [SSR, *METRIC_TITLES, LEVEL, f"{rows('dex_vs_ssr')[0]['epochs']}-epoch", f"{steps():,} steps",
            DATASET["morph2 ages"], "0–9", "AVX-512", PAPER["table"], *DEFINED["null"]]


def steps() -> int:
    row = rows("dex_vs_ssr")[0]
    return row["num_train"] // base.get_config().train.batch_size * row["epochs"]


def synthetic_ok(rows_) -> None:
    """The claims quote one schedule for every synthetic sweep: every synthetic row must have the same sizes and
    epochs."""
    assert len({(row["num_train"], row["num_test"], row["epochs"]) for row in rows_}) == 1


def count(number: int, word: str) -> str:
    """"1 seed", "3 seeds"."""
    return f"{number} {word}{'' if number == 1 else 's'}"


def status(experiment: str, noun: str, replicate: str) -> str:
    """"4 configs × 3 seeds": the experiment's configs and the replicates of its first."""
    configs = by_config(experiment)
    return f"{count(len(configs), noun)} × {count(len(next(iter(configs.values()))), replicate)}"


# ------------------------------------------------------------------------------------------------ sections

@section("")
def preamble() -> list[str]:
    config, row = base.get_config(), rows("dex_vs_ssr")[0]
    synthetic_ok([row for experiment in ("dynamic_range", "dex_vs_ssr", "stages", "table1", "lambda_grid")
                  for row in rows(experiment)])
    fractions = [f"{round(f * 3)}/3" for f in config.optim.decay_fractions]
    environment = rows("utkface_splits")[0]["environment"]
    amd, intel = maes("dynamic_range", BOTH_ON), maes("dex_vs_ssr", "SSR-Net (3,3,3)")
    others = [abs(amd[seed] - intel[seed]) for seed in amd if seed != 0]
    dex_r = contrast("dex_vs_ssr", "DEX", "SSR-Net (3,3,3)")["correlation"]
    statuses = [status("dynamic_range", "config", "seed"), status("dex_vs_ssr", "config", "seed"),
                status("stages", "layout", "seed"), status("table1", "model", "seed"),
                status("lambda_grid", "config", "seed"), status("utkface_splits", "config", "split"),
                status("heads_utkface", "head", "split"), status("dynamic_range_utkface", "config", "split")]
    extensions = environment["cpu"]["extensions"]
    assert any(name.startswith("avx512") for name in extensions)
    return [*statuses, f"r = {signed(dex_r)}", "2 × 2", "model.lambda_d,model.lambda_local",
            f"{config.data.image_size}×{config.data.image_size}", f"ages {config.data.age_min}–{config.data.age_max}",
            f"{row['num_train']:,} training and {row['num_test']:,} test",
            f"{row['epochs']} epochs of batch {config.train.batch_size} ({steps():,} steps)",
            f"Adam {config.optim.learning_rate:.0e}".replace("e-03", "e-3"),
            f"×{config.optim.decay_factor} at {fractions[0]} and {fractions[1]} of training",
            f"momentum {config.model.bn_momentum}", f"dropout {config.model.dropout_rate}",
            f"MAE {row['mean_predictor_mae']:.2f}",
            "within {} and {} years".format(*(title[len("CA("):-1] for title in METRIC_TITLES)),
            f"{environment['cpu']['cores']}-core",
            "AVX-512", f"jax {environment['versions']['jax']}",
            f"seed 0 ended at MAE {amd[0]:.2f} on the AMD machine and {intel[0]:.2f} on the Intel one",
            f"seeds 1 and 2 agree within {max(others):.2f}", SESSION["two threads"], SESSION["one thread"]]


@section("Dynamic range")
def dynamic_range() -> list[str]:
    experiment, runs = "dynamic_range", rows("dynamic_range")
    off = "lambda_d=0.0, lambda_local=0.0"
    both = contrast(experiment, off, BOTH_ON)
    differences = [maes(experiment, off)[seed] - maes(experiment, BOTH_ON)[seed] for seed in range(3)]
    uninterrupted = [row["wall_s"] for row in runs if row["resumed_from_epoch"] == 0]
    resumed = sorted(row["resumed_from_epoch"] for row in runs if row["resumed_from_epoch"])
    effects = report.factorial_table(frame(experiment), ["model.lambda_d", "model.lambda_local"])
    delta, eta, interaction = (effects.iloc[i] for i in range(3))
    parts = eta_age_parts(experiment)
    total, young = parts.sum(), parts["0-9"]
    assert math.isclose(total, -eta["estimate"], abs_tol=1e-4)  # the by-age split adds up to the main effect
    counts = runs[0]["count_by_age"]
    ages = pd.DataFrame([row["mae_by_age"] for row in runs], index=frame(experiment)["config"])
    ages = ages.groupby(level=0).mean()
    seeds_needed = stats.seeds_needed(stats.compare(maes(experiment, off), maes(experiment, BOTH_ON)))
    only = ["lambda_d=0.0, lambda_local=1.0", "lambda_d=1.0, lambda_local=0.0"]
    return ["--seeds 3", threads_at("69b5f4c"), commit_day("69b5f4c"), "2 × 2", f'--baseline "{BOTH_ON}"',
            f"the both-on config's seed 0 ends at {maes(experiment, BOTH_ON)[0]:.2f} here and at "
            f"{maes('dex_vs_ssr', 'SSR-Net (3,3,3)')[0]:.2f}",
            f"{len(runs)} runs, {span(uninterrupted)} s each uninterrupted",
            f"about {len(runs) * np.mean(uninterrupted) / 60:.0f} minutes",
            f"from epochs {resumed[0]}, {resumed[1]} and {resumed[2]}",
            f"{both['delta_mae']:.2f} years ({both['delta_pct']:.1f} %)",
            f"({mean_mae(experiment, off):.2f} against {mean_mae(experiment, BOTH_ON):.2f})",
            "by {:.2f}, {:.2f} and {:.2f}".format(*differences),
            f"(interval {interval(both['delta_low'], both['delta_high'])}, p = {both['delta_p']:.2f}; "
            f"{both['holm_p']:.2f} after Holm",
            f"(SD {both['delta_spread']:.2f}) {seeds_needed} seeds per config", DEFINED["power"],
            "λ_d = λ_local = 0", "(λ_d = 0)", "(λ_local = 0)",
            "by {} and {}".format(*(signed(contrast(experiment, label, BOTH_ON)["delta_mae"]) for label in only)),
            f"switching η on changes the MAE by {signed(eta['estimate'])} {interval(eta['low'], eta['high'])}",
            f"switching Δ on by {signed(delta['estimate'])} {interval(delta['low'], delta['high'])}",
            f"interaction is {signed(interaction['estimate'])} {interval(interaction['low'], interaction['high'])}",
            f"Of η's {total:.2f} years, {young:.2f} ({percent(young, total)})",
            f"({percent(counts['0-9'], sum(counts.values()))} of them)",
            f"({span(ages['0-9'], 2)} against {span(ages.drop(columns='0-9').to_numpy().ravel(), 2)}",
            f"{PAPER['without dynamic range']} against {PAPER['ssr']}",
            f"+{both['delta_mae']:.2f} years with an interval reaching from {signed(both['delta_low'])} to "
            f"{signed(both['delta_high'])}"]


@section("DEX vs SSR-Net")
def dex_vs_ssr() -> list[str]:
    experiment, runs, baseline = "dex_vs_ssr", rows("dex_vs_ssr"), "SSR-Net (3,3,3)"
    dex, regression = (contrast(experiment, name, baseline) for name in ("DEX", "regression"))
    ahead = [maes(experiment, baseline)[seed] - maes(experiment, "DEX")[seed] for seed in range(3)]
    wall = {name: np.mean([row["wall_s"] for row in runs if row["name"] == name]) for name in by_config(experiment)}
    params = {row["name"]: row["params"] for row in runs}
    configs = by_config(experiment)
    parts = age_parts(configs["DEX"], configs[baseline])
    gap, young = parts.sum(), parts["0-9"]
    ages = pd.DataFrame([row["mae_by_age"] for row in runs], index=[row["name"] for row in runs])
    ages = ages.groupby(level=0).mean()
    counts = runs[0]["count_by_age"]
    return ["--seeds 3", threads_at("00aac99"), commit_day("00aac99"),
            f"{len(runs)} runs, {span([row['wall_s'] for row in runs])} s each",
            f"(DEX ≈{wall['DEX']:.0f} s, the regression head ≈{wall['regression']:.0f} s, "
            f"SSR-Net ≈{wall[baseline]:.0f} s)",
            f"{minutes(row['wall_s'] for row in runs)} minutes of runs in all",
            f"{configs['DEX'][0]['overrides']['model.stages'][0]}-way",
            f"MAE {mean_mae(experiment, 'DEX'):.2f} and SSR-Net (3,3,3) {mean_mae(experiment, baseline):.2f}",
            f"ahead by {-dex['delta_mae']:.2f} years ({-dex['delta_pct']:.1f} % of SSR-Net's MAE)",
            "by {:.2f}, {:.2f} and {:.2f}".format(*ahead),
            f"({interval(dex['delta_low'], dex['delta_high'])}, p = {dex['delta_p']:.2f}; "
            f"{dex['holm_p']:.2f} after Holm",
            f"(r = {signed(dex['correlation'])})",
            f"gives {interval(dex['welch_low'], dex['welch_high'])}, p = {dex['welch_p']:.3f} "
            f"({dex['welch_holm_p']:.3f} after Holm)",
            f"between them ({mean_mae(experiment, 'regression'):.2f})",
            f"{params[baseline] / params['DEX']:.2f}× DEX's parameters "
            f"({params[baseline]:,} against {params['DEX']:,})",
            f"≈{100 * (wall[baseline] / wall['DEX'] - 1):.0f} % slower",
            f"of the {gap:.2f} years, {young:.2f} ({percent(young, gap)})",
            f"({percent(counts['0-9'], sum(counts.values()))} of them)",
            f"errs by {ages.loc[baseline, '0-9']:.2f} years and DEX by {ages.loc['DEX', '0-9']:.2f}",
            PAPER["dex backbone"], f"full {base.get_config().train.epochs}-epoch schedule"]


@section("Stages")
def stages() -> list[str]:
    experiment, runs = "stages", rows("stages")
    reference = runs[0]
    assert reference["overrides"]["model.stages"] == [3, 3, 3]
    worse = {stage_name(row["overrides"]["model.stages"]): row["mae"] - reference["mae"] for row in runs[1:]}
    ssr_seeds = maes("dex_vs_ssr", "SSR-Net (3,3,3)")
    sd = float(np.std(list(ssr_seeds.values()), ddof=1))
    assert reference["mae"] == ssr_seeds[0] == min(ssr_seeds.values())  # the luckiest of the three seeds
    in_sd = {name: value / sd for name, value in worse.items()}
    within = [value for name, value in in_sd.items() if value < 1]
    assert sorted(in_sd, key=in_sd.get)[-2:] == ["(27)", "(2,2,2)"]
    params = {stage_name(row["overrides"]["model.stages"]): row["params"] for row in runs}
    small = [value for name, value in params.items() if name not in ("(27)", "(101)")]
    wall = [row["wall_s"] for row in runs]
    recorded = first_recorded(experiment)  # the run's own commit is not recorded
    return ["--seeds 1", threads_at(recorded), commit_day(recorded),
            f"{len(runs)} runs of {span(wall)} s, {minutes(wall)} minutes of runs in all",
            "λ_d = λ_local = {:g}".format(base.get_config().model.lambda_d), f"lowest MAE ({reference['mae']:.2f})",
            f"{min(worse.values()):.2f} to {max(worse.values()):.2f} years worse", "is seed 0",
            f'--baseline "{report.config_label(reference["overrides"])}"',
            f"({span(small, thousands=True)})", f"((27): {params['(27)']:,}", f"(101): {params['(101)']:,}",
            "({:.2f} against {:.2f} and {:.2f}; SD {:.2f})".format(ssr_seeds[0], ssr_seeds[1], ssr_seeds[2], sd),
            f"(2,2,2) is {in_sd['(2,2,2)']:.2f} worse and (27) {in_sd['(27)']:.2f}",
            f"({min(within):.2f} to {max(within):.2f})", "`--seeds 3`",
            f"({len(runs)} × 3 runs, ≈{round(len(runs) * 3 * np.mean(wall) / 60, -1):.0f} minutes here)",
            PAPER["figure"], "(3,3,3)"]


@section("Table 1")
def table1() -> list[str]:
    experiment, runs = "table1", rows("table1")
    named = {row["name"]: row for row in runs}
    ssr, dense, mobile, dex = (named[name] for name in ("SSR-Net (3,3,3)", "DenseNet-19", "MobileNet-0.25", "DEX"))
    others = [row["images_per_s"] for row in runs if row is not dense]
    gaps = [dense["mae"] - ssr["mae"], dex["mae"] - ssr["mae"]]
    sd = float(np.std(list(maes("dex_vs_ssr", "SSR-Net (3,3,3)").values()), ddof=1))
    in_sd = max(abs(gap) / sd for gap in gaps)
    config = base.get_config()
    sizes = [row["model_bytes"] / 1024 for row in runs if row is not ssr]
    assert ssr["mae"] == maes("dex_vs_ssr", "SSR-Net (3,3,3)")[ssr["seed"]]  # the same run, trained again
    return ["--seeds 1", threads_at("f092995"), commit_day("f092995"),
            f"{len(runs)} runs, {minutes(row['wall_s'] for row in runs)} minutes of runs in all, "
            f"{dense['wall_s'] / 60:.0f} of them DenseNet-19's, which trained at {dense['images_per_s']:.0f} images/s "
            f"against {round(min(others), -1):.0f}–{round(max(others), -1):.0f}",
            f"{config.data.image_size}×{config.data.image_size}", "batch 1",
            f"MobileNet α = {config.model.mobilenet_alpha}", f"DenseNet depth {config.model.densenet_depth}",
            f"{mobile['params']:,} and {dense['params']:,} parameters",
            "DenseNet-19", "MobileNet-0.25", PAPER["table"],
            f"MAE {dense['mae']:.2f} and {dex['mae']:.2f}, SSR-Net (3,3,3) {ssr['mae']:.2f} and MobileNet-0.25 "
            f"{mobile['mae']:.2f}", "ahead of SSR-Net by {:.2f} and {:.2f} years".format(*(-gap for gap in gaps)),
            f"MobileNet is {mobile['mae'] - ssr['mae']:.1f} behind",
            f"({ssr['model_bytes'] / 1024:.0f} KB against {span(sizes)} KB)",
            f"infers in {ssr['inference_ms_per_image']:.2f} ms against "
            f"DenseNet's {dense['inference_ms_per_image']:.2f}",
            f"(MobileNet {mobile['inference_ms_per_image']:.2f}, DEX {dex['inference_ms_per_image']:.2f})",
            f"`dex_vs_ssr`'s seed {ssr['seed']} again (same config and seed: {ssr['mae']:.2f})",
            f"SSR-Net averaged {mean_mae('dex_vs_ssr', 'SSR-Net (3,3,3)'):.2f}",
            f"SSR-Net {PAPER['ssr']}, DenseNet {PAPER['densenet']}, MobileNet {PAPER['mobilenet']}; {PAPER['sizes']}",
            f"at {ssr['epochs']} epochs", f"within {math.ceil(in_sd * 2) / 2} SDs"]


@section("The λ grid")
def lambda_grid() -> list[str]:
    experiment, runs = "lambda_grid", rows("lambda_grid")
    data = pd.DataFrame([{**row["overrides"], "mae": row["mae"]} for row in runs])
    grid = data.pivot_table(index="model.lambda_local", columns="model.lambda_d", values="mae")
    rows_mean, columns_mean = grid.mean(axis=1), grid.mean(axis=0)
    beats = grid.loc[0.0] - grid.loc[1.0]
    cost = grid.loc[0.0] - grid.loc[1.0, 1.0]
    wall = sorted(row["wall_s"] for row in runs)
    stages_reference = rows("stages")[0]["wall_s"]
    parts = eta_age_parts(experiment)
    total, young = parts.sum(), parts["0-9"]
    assert math.isclose(total, beats.mean(), abs_tol=1e-4)
    best = data.loc[data["mae"].idxmin()]
    dynamic = [contrast("dynamic_range", label, BOTH_ON)["delta_mae"] for label in
               ("lambda_d=1.0, lambda_local=0.0", "lambda_d=0.0, lambda_local=1.0", "lambda_d=0.0, lambda_local=0.0")]
    levels = [f"{value:g}" for value in grid.index]
    return ["for i in 0 1; do", SESSION["one thread"], "--seeds 1 --shard $i/2", "--seeds 1",
            commit_day("03c87e0"), f'--baseline "{BOTH_ON}"', "is seed 0 of the config",
            f"the {len(runs)} runs' own times add up to {minutes(wall)} minutes",
            f"about {sum(wall) / 120:.0f} minutes a core", f"{span(wall[:-1])} s on its one core",
            f"(one took {wall[-1]:.0f} s", f"at the {stages_reference:.0f} s of the stages' (3,3,3) run",
            f"≈{len(runs) * stages_reference / 60:.0f} minutes", "(λ_d = λ_local = 1)",
            f"ends at {grid.loc[1.0, 1.0]:.2f} here, not {rows('stages')[0]['mae']:.2f}",
            "fall from {:.2f} at λ_local = 0 to {:.2f}, {:.2f}, {:.2f} and {:.2f}".format(*rows_mean),
            f"at {levels[1]}, {levels[2]}, {levels[3]} and {levels[4]}", "λ_local = 1 beats λ_local = 0",
            f"(by {beats.min():.2f} to {beats.max():.2f} years)",
            "({:.2f}, {:.2f}, {:.2f}, {:.2f}, {:.2f})".format(*columns_mean),
            f"within {columns_mean.max() - columns_mean.min():.2f} of one another",
            f"by {total:.2f} years, and {young:.2f} of them ({percent(young, total)})",
            "(removing η: {}, removing Δ: {}, both: {})".format(*(signed(value) for value in dynamic)),
            f"(λ_local = 0 costs {cost.min():.2f} to {cost.max():.2f}",
            f"(SD {np.std(list(maes('dex_vs_ssr', 'SSR-Net (3,3,3)').values()), ddof=1):.2f}",
            f"(λ_d = {best['model.lambda_d']:g}, λ_local = {best['model.lambda_local']:g}: {best['mae']:.2f})",
            f"the reference's ({grid.loc[1.0, 1.0]:.2f})", PAPER["lambda"]]


@section("Real faces: SSR-Net (3,3,3) on UTKFace")
def utkface_splits() -> list[str]:
    experiment, runs = "utkface_splits", rows("utkface_splits")
    parts = {part: [row[f"num_{part}"] for row in runs] for part in ("train", "val", "test")}
    recipe = utkface.get_config("split=0")
    decays = [round(fraction * runs[0]["epochs"]) for fraction in recipe.optim.decay_fractions]
    recorded = [row["overrides"]["data.split_index"] for row in runs if "environment" in row]
    unrecorded = [row["overrides"]["data.split_index"] for row in runs if "environment" not in row]
    environment = next(row["environment"] for row in runs if "environment" in row)
    assert environment["threads"]["omp_num_threads"] is None and environment["cpu"]["model"] == "AMD EPYC"
    quiet = [row["wall_s"] for row in runs[:2]]
    maes_ = [row["mae"] for row in runs]
    low, high = stats.mean_interval(maes_)
    ages = report.by_age_table(frame(experiment))
    counts = ages.loc["examples"]
    learning = curves(experiment)
    last = learning[learning["epoch"] >= learning["epoch"].max() - 5].set_index("epoch")
    moves = last.groupby("run_id")["val_mae"].agg(lambda values: values.max() - values.min())
    split_of = {row["run_id"]: row["overrides"]["data.split_index"] for row in runs}
    fastest = moves.idxmax()
    improving = last[last["run_id"] == fastest]["val_mae"]
    assert math.isclose(improving.iloc[0] - improving.iloc[-1], moves.max())  # that split still improving
    kept = {row["num_train"] + row["num_val"] + row["num_test"] for row in runs}
    assert len(kept) == 1  # every split partitions the same prepared faces
    return ["crop_part1", DATASET["crop_part1 files"], f"{kept.pop():,} kept",
            BENCHMARK["venue"], f"({span(parts['train'], thousands=True)} faces)",
            f"on two ({span(parts['val'], thousands=True)})", f"other two ({span(parts['test'], thousands=True)})",
            f"over {runs[0]['epochs']} epochs (Adam {recipe.optim.learning_rate:.0e}".replace("e-03", "e-3"),
            f"×{recipe.optim.decay_factor} at epochs {decays[0]} and {decays[1]}, batch {recipe.train.batch_size}",
            f"{recipe.data.image_size}×{recipe.data.image_size}", f"seed {runs[0]['seed']}",
            f"the {environment['cpu']['cores']}-core AMD EPYC (AVX-512), {commit_day(environment['git']['commit'])}",
            "Runs of splits {}, {} and {} record it".format(*recorded),
            "splits {} and {} ran before".format(*unrecorded),
            "Splits 0 and 1 took {:.0f} and {:.0f} s".format(*quiet),
            f"MAE {np.mean([row['mean_predictor_mae'] for row in runs]):.1f} on each test part",
            f"averages the same {np.mean([row['last_mae'] for row in runs]):.2f}",
            f"learning rate is {recipe.optim.learning_rate:.0e}".replace("e-03", "e-3"),
            f"from epoch {last.index.min()} to {last.index.max()} the validation MAE moves by at most "
            f"{moves.max():.2f}",
            f"(split {split_of[fastest]} still improving",
            f"reaches {np.mean(maes_):.2f} years [{low:.2f}, {high:.2f}]",
            f"(0–9, {percent(counts['0-9'], counts.sum())} of crop_part1) at {ages.iloc[1]['0-9']:.1f}",
            f"to {ages.iloc[1]['90-100']:.0f} years at 90–100", f"MORPH2 {PAPER['ssr']}",
            BENCHMARK["faces"], BENCHMARK["resolution"], BENCHMARK["backbone"]]


# ------------------------------------------------------------------------------------------------ real-face heads

HEADS_BASELINE = "SSR-Net (3,3,3)"
# The commit that made runs record the code their process loaded (environment.loaded_code); rows recorded before
# it name the checkout's HEAD when they ended, not the code they ran, which was the shards' start (`SHARDS_START`).
LOADED_CODE_FIX, SHARDS_START = "34aae19", "1ba372f"


def is_before(commit: str, later: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", commit, later], cwd=REPO).returncode == 0 and \
        not subprocess.run(["git", "merge-base", "--is-ancestor", later, commit], cwd=REPO).returncode == 0


def inference_ms() -> dict:
    return json.loads((RESULTS / "heads_utkface" / "inference_ms.json").read_text())


def inference_table() -> str:
    """The CPU milliseconds per image of each head (benchmarks/inference_by_head.py's medians), as RESULTS.md shows
    them: one row per head, in the heads table's order."""
    heads = inference_ms()["heads"]
    rounds = len(next(iter(heads.values()))["ms_per_image_rounds"])
    lines = [f"| head | params | CPU ms/image (median of {rounds} rounds) | rounds |", "|:--|--:|--:|:--|"]
    lines += [f"| {name} | {head['params']:,} | {head['ms_per_image']:.2f} | "
              f"{span(head['ms_per_image_rounds'], 2)} |" for name, head in heads.items()]
    return "\n".join(lines)


def benchmark_table(experiment: str) -> str:
    """The benchmark's UTKFace MAEs beside this sweep's head of the same loss (mean over the splits)."""
    lines = ["| head | benchmark's UTKFace MAE | here (crop_part1, 64², from scratch) |", "|:--|--:|--:|"]
    for name, (theirs, ours) in BENCHMARK_MAE.items():
        mine = f"{mean_mae(experiment, ours):.2f}" if ours else "–"
        lines.append(f"| {name} | {theirs} | {mine} |")
    return "\n".join(lines)


def epoch_seconds(experiment: str) -> pd.Series:
    """Each run's median epoch (its own training seconds per epoch, robust to the epochs a pause fell into)."""
    return curves(experiment).groupby("run_id")["epoch_s"].median()


@section("Heads on real faces")
def heads_utkface() -> list[str]:
    experiment, runs = "heads_utkface", rows("heads_utkface")
    configs = by_config(experiment)
    splits = len(next(iter(configs.values())))
    assert len(runs) == len(configs) * splits  # every run finished
    recipe, epochs = utkface.get_config("split=0"), runs[0]["epochs"]
    decays = [round(fraction * epochs) for fraction in recipe.optim.decay_fractions]
    environments = [row["environment"] for row in runs]
    assert {(e["cpu"]["model"], e["threads"]["omp_num_threads"], e["threads"]["usable_cpus"], e["conv"]["train"])
            for e in environments} == {("AMD EPYC", "1", 1, "onednn")}
    # Every head trained and was tested on the same faces of each split (the fingerprint of the run's parts).
    assert len({(row["overrides"]["data.split_index"], row["environment"]["dataset"]) for row in runs}) == splits
    recorded = [e["git"]["commit"][:7] for e in environments]
    before_fix = sorted(commit for commit in set(recorded) if is_before(commit, LOADED_CODE_FIX))
    after_fix = sorted(set(recorded) - set(before_fix))
    # The schedule, from the 30-epoch learning curves of utkface_splits (decays at 10 and 20).
    thirty = curves("utkface_splits").groupby("epoch")["val_mae"].mean()
    second_decay = round(recipe.optim.decay_fractions[1] * thirty.index.max())
    settled = (thirty.loc[second_decay + 2:] - thirty.iloc[-1]).abs().max()
    seconds = epoch_seconds(experiment)
    ablation = 4 * splits  # the dynamic-range 2 × 2 on the same splits
    budget = [(len(runs) + ablation) * seconds.median() * length / 2 / 3600 for length in (thirty.index.max(), epochs)]
    maes_ = {config: mean_mae(experiment, config) for config in configs}
    best = min(maes_, key=maes_.get)
    table = report.with_baseline(report.aggregate(frame(experiment)), frame(experiment), HEADS_BASELINE)
    others = table[~table["baseline"]]
    better = others[(others["holm_p"] < 0.05) & (others["delta_mae"] < 0)]
    low, high = stats.mean_interval(list(maes(experiment, best).values()))
    regression = others.loc["regression"]
    coral = others.loc["CORAL"]
    reread = rereads.rereads_table(frame(experiment), rereads.reread_rows(RESULTS / experiment, frame(experiment)),
                                   report.replicates(frame(experiment)))
    coral_expectation = reread.loc[("CORAL", "expectation")]
    median_moves = sorted(reread.loc[(name, "median"), "delta_mae"] for name in ("mean-variance", "DLDL", "DLDL-v2",
                                                                                 "SORD"))
    dex_median = reread.loc[("DEX", "median")]
    steps = min(row["num_train"] for row in runs) // recipe.train.batch_size
    phases = [decays[0], decays[1] - decays[0], epochs - decays[1]]
    bias_bound = sum(steps * length * recipe.optim.learning_rate * recipe.optim.decay_factor ** phase
                     for phase, length in enumerate(phases))
    thirty_epochs = maes("utkface_splits", "base")
    schedule = stats.compare(maes(experiment, HEADS_BASELINE), thirty_epochs)
    ms = {name: head["ms_per_image"] for name, head in inference_ms()["heads"].items()}
    params = {row["name"]: row["params"] for row in runs}
    behind = [mean_mae(experiment, ours) - float(theirs) for theirs, ours in BENCHMARK_MAE.values() if ours]
    dex_recipe = dex.get_config()
    assert dex_recipe.model.dex_loss == "l1"
    timing = inference_ms()
    return [f"{recipe.data.image_size}×{recipe.data.image_size}", "crop_part1", *configs,
            f"batch {recipe.train.batch_size}", "with L1 on the expectation", f"at batch {timing['batch']}",
            f"{len(next(iter(timing['heads'].values()))['ms_per_image_rounds'])} rounds of {timing['repeats']} calls",
            f"its {dex_recipe.model.stages[0] - 1} biases",
            f"data=utkface,epochs={epochs}", "for i in 0 1; do", SESSION["one thread"], "--seeds 1 --shard $i/2",
            f"**Schedule: {epochs} epochs**, ×{recipe.optim.decay_factor} at epochs {decays[0]} and {decays[1]}",
            "1/3 and 2/3", f"{thirty.index.max()}-epoch",
            f"{thirty.loc[second_decay + 1]:.2f} one epoch after the second decay",
            f"within {settled:.2f} of its final {thirty.iloc[-1]:.2f}",
            f"median epoch of {seconds.median():.1f} s", f"the {len(runs)} runs here and the {ablation} of the",
            f"≈{budget[0]:.1f} hours of the two cores at {thirty.index.max()} epochs and ≈{budget[1]:.1f} at {epochs}",
            f"{len(configs)} heads × {splits} splits", f"median epoch {span(seconds, 1)} s",
            f"{seconds.mul(epochs).sum() / 3600:.1f} core-hours of training",
            f"started at {SHARDS_START} on {commit_day(SHARDS_START)}",
            f"{sum(commit in before_fix for commit in recorded)} rows record {', '.join(before_fix[:-1])} or "
            f"{before_fix[-1]}", LOADED_CODE_FIX, SHARDS_START, " or ".join(after_fix),
            f"{len(better)} of the {len(others)} other heads beat {HEADS_BASELINE} ({maes_[HEADS_BASELINE]:.2f})",
            f"by {span(-better['delta_mae'], 2)} years ({percent(-better['delta_mae'].max(), maes_[HEADS_BASELINE])}"
            f" to {percent(-better['delta_mae'].min(), maes_[HEADS_BASELINE])} of its MAE)",
            f"{best} at {maes_[best]:.2f} [{low:.2f}, {high:.2f}]",
            f"regression head ({maes_['regression']:.2f}, {signed(regression['delta_mae'])}, p = "
            f"{regression['delta_p']:.2f})",
            f"CORAL is {coral['delta_mae']:.2f} years behind", f"read by the expectation it scores "
            f"{coral_expectation['mae']:.2f}", f"at most ≈{bias_bound:.2f}", SESSION["coral biases"],
            f"DEX read by the median loses {dex_median['delta_mae']:.2f}",
            f"CORN read by the expectation loses {reread.loc[('CORN', 'expectation'), 'delta_mae']:.2f}",
            "read by the median move by {} to {}".format(*map(signed, median_moves[::len(median_moves) - 1])),
            f"{span(ms.values(), 2)} ms per image", f"{params[HEADS_BASELINE]:,} parameters",
            f"{params[HEADS_BASELINE] / params['DEX']:.2f}× DEX's",
            f"{maes_[HEADS_BASELINE]:.2f} at {epochs} epochs against {mean_mae('utkface_splits', 'base'):.2f} at "
            f"{thirty.index.max()}", f"{signed(schedule.delta)} {interval(schedule.low, schedule.high)}",
            f"{span(behind, 1)} years behind", inference_table(), benchmark_table(experiment),
            BENCHMARK["faces"], BENCHMARK["resolution"], BENCHMARK["backbone"], BENCHMARK["venue"]]


@section("Real faces by age")
def heads_by_age() -> list[str]:
    experiment = "heads_utkface"
    configs = by_config(experiment)
    ages = report.by_age_table(frame(experiment))
    counts = ages.loc["examples"]
    old = ("60-69", "70-79", "80-89", "90-100")

    share = age_parts(configs["DEX"], configs[HEADS_BASELINE])  # SSR-Net's MAE minus DEX's, by age group
    gap = share.sum()
    from_old = sum(share[group] for group in old)
    ssr, dex, regression = (ages.loc[name] for name in (HEADS_BASELINE, "DEX", "regression"))
    best_old = ages.drop(index="examples")[list(old)].mean(axis=1)
    return [f"{percent(counts['0-9'], counts.sum())} of the test faces",
            f"of SSR-Net's {gap:.2f} years behind DEX, {from_old:.2f} ({percent(from_old, gap)}) come from the "
            f"faces aged 60 and over ({percent(sum(counts[group] for group in old), counts.sum())} of them) and "
            f"{share['10-19']:.2f} ({percent(share['10-19'], gap)}) from those aged 10–19, only {share['0-9']:.2f} "
            f"from ages 0–9",
            f"SSR-Net errs by {ssr['0-9']:.2f} there, DEX by {dex['0-9']:.2f} and the regression head by "
            f"{regression['0-9']:.2f}",
            f"at 90–100 ({int(counts['90-100'])} faces): {ssr['90-100']:.1f}, {dex['90-100']:.1f} and "
            f"{regression['90-100']:.1f}",
            f"{best_old.idxmin()} ({best_old.min():.1f} averaged over the four oldest decades, against "
            f"{best_old[HEADS_BASELINE]:.1f} for SSR-Net)",
            DATASET["morph2 ages"], "0–9"]


@section("Dynamic range on real faces")
def dynamic_range_utkface() -> list[str]:
    experiment, runs = "dynamic_range_utkface", rows("dynamic_range_utkface")
    configs = by_config(experiment)
    splits = len(next(iter(configs.values())))
    assert len(configs) == 4 and len(runs) == 4 * splits  # every run finished
    environments = [row["environment"] for row in runs]
    assert {(e["cpu"]["model"], e["threads"]["omp_num_threads"], e["threads"]["usable_cpus"], e["conv"]["train"])
            for e in environments} == {("AMD EPYC", "1", 1, "onednn")}
    # The heads' schedule and test faces, split by split (the fingerprint of each split's parts).
    heads = rows("heads_utkface")
    recipe, epochs = utkface.get_config("split=0"), runs[0]["epochs"]
    assert {row["epochs"] for row in runs} == {heads[0]["epochs"]}
    decays = [round(fraction * epochs) for fraction in recipe.optim.decay_fractions]
    faces = {row["overrides"]["data.split_index"]: row["environment"]["dataset"] for row in heads}
    assert all(faces[row["overrides"]["data.split_index"]] == row["environment"]["dataset"] for row in runs)
    # The both-on runs are the heads table's SSR-Net runs again: the same test MAE, bit for bit, split by split.
    again, before = maes(experiment, BOTH_ON), maes("heads_utkface", HEADS_BASELINE)
    assert again.keys() == before.keys()
    identical = sum(again[key] == before[key] for key in again)
    heads_commits = sorted({row["environment"]["git"]["commit"][:7] for row in heads if row["name"] == HEADS_BASELINE})
    commits = sorted({e["git"]["commit"][:7] for e in environments})
    dirty_splits = {row["overrides"]["data.split_index"] for row in runs if row["environment"]["git"]["dirty"]}
    assert len(dirty_splits) == 1
    off = "lambda_d=0.0, lambda_local=0.0"
    resumed = {(row["overrides"]["data.split_index"], row["overrides"]["model.lambda_d"],
                row["overrides"]["model.lambda_local"]): row["resumed_from_epoch"]
               for row in runs if row["resumed_from_epoch"]}
    resumed_split = {split for split, _, _ in resumed}
    assert len(resumed_split) == 1 and set(resumed) == {(*resumed_split, 0.0, 0.0), (*resumed_split, 0.0, 1.0)}
    split = resumed_split.pop()
    seconds = epoch_seconds(experiment)
    both = contrast(experiment, off, BOTH_ON)
    differences = [maes(experiment, off)[key] - again[key] for key in again]
    assert min(differences) > 0  # worse on every split
    effects = report.factorial_table(frame(experiment), ["model.lambda_d", "model.lambda_local"])
    delta, eta, interaction = (effects.iloc[i] for i in range(3))
    assert eta["holm_p"] < 0.05 <= min(delta["holm_p"], interaction["holm_p"]) and both["holm_p"] >= 0.05
    old = ["60-69", "70-79", "80-89", "90-100"]
    parts = eta_age_parts(experiment)
    total, from_old, children = parts.sum(), parts[old].sum(), parts["0-9"]
    assert math.isclose(total, -eta["estimate"], abs_tol=1e-4)  # the by-age split adds up to the main effect
    counts = pd.DataFrame([row["count_by_age"] for row in configs[BOTH_ON].values()]).sum()  # the five test parts
    synthetic = eta_age_parts("dynamic_range")
    assert synthetic["0-9"] > synthetic.sum() / 2  # "more than half of it came from ages 0–9"
    synthetic_both = contrast("dynamic_range", off, BOTH_ON)
    assert synthetic_both["delta_low"] < 0  # "an interval reaching past 0"
    return [f"{PAPER['without dynamic range']} against {PAPER['ssr']}", "2 × 2",
            f"{epochs} epochs, ×{recipe.optim.decay_factor} at epochs {decays[0]} and {decays[1]}",
            f"data=utkface,epochs={epochs}", "for i in 0 1; do", SESSION["one thread"], "--seeds 1 --shard $i/2",
            f'--baseline "{BOTH_ON}"', "--factorial model.lambda_d,model.lambda_local",
            f"trained the {len(runs)} runs one after another on {commit_day(commits[0])}",
            f"(split {split}'s both-off run from epoch {resumed[(split, 0.0, 0.0)]}, its η-only run from epoch "
            f"{resumed[(split, 0.0, 1.0)]})",
            f"Median epoch {seconds.median():.1f} s, {seconds.mul(epochs).sum() / 3600:.1f} core-hours",
            f"The rows record {' and '.join(commits)}, the split-{dirty_splits.pop()} runs with a dirty tree",
            f"(which record {', '.join(heads_commits[:-1])} and {heads_commits[-1]})",
            f"all {identical} of the {len(again)} test MAEs",
            f"{both['delta_mae']:.2f} years ({both['delta_pct']:.1f} %)",
            f"({mean_mae(experiment, off):.2f} against {mean_mae(experiment, BOTH_ON):.2f})",
            f"worse on every split (by {min(differences):.2f} to {max(differences):.2f})",
            f"interval {interval(both['delta_low'], both['delta_high'])}, p = {both['delta_p']:.2f}",
            f"{both['holm_p']:.2f} after Holm",
            f"switching η on changes the MAE by {signed(eta['estimate'])} {interval(eta['low'], eta['high'])}",
            f"significant after Holm over the three (p = {eta['holm_p']:.2f})",
            f"switching Δ on by {signed(delta['estimate'])} {interval(delta['low'], delta['high'])}",
            f"interaction is {signed(interaction['estimate'])} {interval(interaction['low'], interaction['high'])}",
            f"{percent(from_old, total)} of η's {total:.2f} years come from the faces aged 60 and over "
            f"({percent(sum(counts[group] for group in old), counts.sum())} of them)",
            f"children (0–9) give {children:.2f}",
            f"({synthetic_both['delta_mae']:.2f} years there", DEFINED["null"][2],
            f"cost {both['delta_pct']:.1f} % of the MAE",
            f"{recipe.data.image_size}×{recipe.data.image_size}"]
