"""How sure a sweep's numbers are: t-based 95 % intervals over seeds, differences against a baseline, seeds needed.

Pure numpy + scipy (no JAX, nothing of the project). Intervals are Student-t, not bootstrap: a sweep has 2–5 seeds per
config, where a bootstrap has only a handful of distinct resamples and its intervals come out too narrow, while the t
interval is exact for normal errors and honest about small n (t₀.₉₇₅ = 12.7 at n = 2).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

LEVEL = 0.95


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The t interval of the mean, x̄ ± t_{(1+level)/2, n−1} · s/√n (s the sample SD); (nan, nan) for n < 2."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    comparison = _t_test(float(values.mean()), [(float(values.var(ddof=1)), len(values))], level)
    return comparison.low, comparison.high


@dataclasses.dataclass(frozen=True)
class Comparison:
    """delta = mean(config) − mean(baseline), its interval [low, high] and two-sided p-value (nan when n < 2 on a
    side); test is "paired" or "welch"; sds are the spread the interval came from (the SD of the per-seed differences
    when paired, the two configs' SDs under Welch), kept for `seeds_needed`."""
    delta: float
    low: float
    high: float
    p: float
    test: str
    sds: tuple[float, ...] = ()

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (strictly: a zero difference has a symmetric interval around 0, never marked)."""
        return self.low > 0 or self.high < 0


def compare(values: Mapping[int, float], baseline: Mapping[int, float], level: float = LEVEL) -> Comparison:
    """A config's per-seed results ({seed: MAE}) against the baseline's.

    Paired t-test on the per-seed differences when both have exactly the same seeds: a seed fixes the initialisation
    and the data order for every config, so the seed-to-seed variation both share cancels in the difference and the
    test is more sensitive. Otherwise (a seed diverged or failed on one side, or the seeds differ) there is no pairing,
    and Welch's t-test compares the means without assuming equal variances (Welch–Satterthwaite degrees of freedom).
    """
    if set(values) == set(baseline):
        differences = np.array([values[seed] - baseline[seed] for seed in sorted(values)], dtype=float)
        sd = float(differences.std(ddof=1)) if len(differences) > 1 else math.nan
        return dataclasses.replace(_t_test(float(differences.mean()), [(sd**2, len(differences))], level),
                                   test="paired", sds=(sd,))
    x, b = np.array(list(values.values()), dtype=float), np.array(list(baseline.values()), dtype=float)
    sds = tuple(float(v.std(ddof=1)) if len(v) > 1 else math.nan for v in (x, b))
    terms = [(sd**2, len(v)) for sd, v in zip(sds, (x, b))]
    return dataclasses.replace(_t_test(float(x.mean() - b.mean()), terms, level), test="welch", sds=sds)


def _t_test(delta: float, terms: list[tuple[float, int]], level: float) -> Comparison:
    """delta with standard error se² = Σ varᵢ/nᵢ and Welch–Satterthwaite df = se⁴ / Σ (varᵢ/nᵢ)²/(nᵢ−1) (one term:
    df = n − 1, the one-sample and paired case). No interval when a side has n < 2. se = 0 (every seed gave the same
    value) gives the point interval [delta, delta], p = 0 unless delta = 0 (then p = 1)."""
    if any(n < 2 for _, n in terms):
        return Comparison(delta, math.nan, math.nan, math.nan, "")
    se = math.sqrt(sum(var / n for var, n in terms))
    if se == 0:
        return Comparison(delta, delta, delta, 1.0 if delta == 0 else 0.0, "")
    df = se**4 / sum((var / n) ** 2 / (n - 1) for var, n in terms)
    half = float(scipy_stats.t.ppf((1 + level) / 2, df)) * se
    p = float(2 * scipy_stats.t.sf(abs(delta) / se, df))
    return Comparison(delta, delta - half, delta + half, p, "")


def seeds_needed(comparison: Comparison, level: float = LEVEL, limit: int = 1000) -> int | None:
    """The smallest number of seeds per config at which `comparison.delta`, with the spread observed (`sds`), would
    have a t interval that excludes 0: t_{(1+level)/2, df(n)} · √(Σ sdᵢ²/n) < |delta|, df as in the test used.
    This is the n at which the observed difference is just significant (about 50 % power); 80 % power needs roughly
    twice as many ((1.96 + 0.84)² / 1.96² ≈ 2). None when delta is 0, the spread is unknown, or n > limit."""
    if comparison.delta == 0 or not comparison.sds or any(math.isnan(sd) for sd in comparison.sds):
        return None
    variances = [sd**2 for sd in comparison.sds]
    if sum(variances) == 0:
        return 2
    for n in range(2, limit + 1):
        df = sum(variances) ** 2 * (n - 1) / sum(v**2 for v in variances)
        if scipy_stats.t.ppf((1 + level) / 2, df) * math.sqrt(sum(variances) / n) < abs(comparison.delta):
            return n
    return None
