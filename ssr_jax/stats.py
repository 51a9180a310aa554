"""How sure a sweep's numbers are: t-based 95 % intervals over replicates, differences against a baseline (paired,
with Welch beside it), Holm's correction over a family of contrasts, a 2 × 2 factorial's effects, seeds needed.

Pure numpy + scipy (no JAX, nothing of the project). A replicate is what repeats a config: a seed on synthetic faces,
a benchmark split on real ones (`record.REPLICATE_KEYS`). Intervals are Student-t, not bootstrap: a sweep has 2–5
replicates per config, where a bootstrap has only a handful of distinct resamples and its intervals come out too
narrow, while the t interval is exact for normal errors and honest about small n (t₀.₉₇₅ = 12.7 at n = 2).
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


def compare(values: Mapping, baseline: Mapping, level: float = LEVEL) -> Comparison:
    """A config's per-replicate results ({replicate: MAE}) against the baseline's.

    Paired t-test on the per-replicate differences when both have exactly the same replicates: a seed fixes the
    initialisation and the data order for every config, a split the test faces, so the variation both share cancels
    in the difference and the test is more sensitive. Otherwise (a run diverged or failed on one side, or the
    replicates differ) there is no pairing, and `welch` compares the means.
    """
    if set(values) == set(baseline):
        differences = np.array([values[key] - baseline[key] for key in sorted(values)], dtype=float)
        sd = float(differences.std(ddof=1)) if len(differences) > 1 else math.nan
        return dataclasses.replace(_t_test(float(differences.mean()), [(sd**2, len(differences))], level),
                                   test="paired", sds=(sd,))
    return welch(values, baseline, level)


def welch(values: Mapping, baseline: Mapping, level: float = LEVEL) -> Comparison:
    """Welch's t-test of mean(values) − mean(baseline), replicates ignored: no equal variances assumed
    (Welch–Satterthwaite degrees of freedom). Beside a paired result it is the sensitivity check: where per-replicate
    results of two configs are negatively correlated (two heads that each favour other seeds), the pairing adds the
    two spreads up instead of cancelling them, and Welch's interval is the narrower one."""
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


def correlation(values: Mapping, baseline: Mapping) -> float:
    """Pearson's r of the per-replicate results of a config and the baseline over their shared replicates (nan with
    fewer than 3 or no spread): negative r is what makes a paired interval wider than Welch's, since
    var(x − b) = var(x) + var(b) − 2 r sd(x) sd(b)."""
    shared = sorted(set(values) & set(baseline))
    x = np.array([values[key] for key in shared], dtype=float)
    b = np.array([baseline[key] for key in shared], dtype=float)
    if len(shared) < 3 or x.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(x, b)[0, 1])


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: sorted ascending p₍₁₎ ≤ … ≤ p₍ₘ₎, the adjusted
    p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1) p₍ⱼ₎). A contrast is significant at level α after the correction when
    p̃ < α; this controls the chance of any false positive in the family at α without assuming independence. nan
    entries (contrasts without a test) stay nan and do not count in m."""
    p = np.asarray(p_values, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (len(tested) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


@dataclasses.dataclass(frozen=True)
class Effect:
    """One effect of a 2 × 2 factorial: its mean over replicates, t interval [low, high], two-sided p, Holm-adjusted
    p over the three effects, and n (replicates with all four cells)."""
    name: str
    estimate: float
    low: float
    high: float
    p: float
    holm_p: float
    n: int


def factorial_2x2(cells: Mapping[tuple[int, int], Mapping], names: tuple[str, str] = ("A", "B"),
                  level: float = LEVEL) -> list[Effect]:
    """Both main effects and the interaction of two two-level factors, from {(a, b): {replicate: y}} with a, b ∈
    {0, 1} (low, high). Per replicate r holding all four cells:

        main A = (y₁₀ + y₁₁)/2 − (y₀₀ + y₀₁)/2        (A low → high, averaged over B)
        main B = (y₀₁ + y₁₁)/2 − (y₀₀ + y₁₀)/2
        A × B  = (y₁₁ − y₀₁) − (y₁₀ − y₀₀)            (A's effect with B high minus with B low)

    Each is then a one-sample t interval over the replicates (the contrasts, not the cells, are what is paired) and
    its p-value; Holm over the three. Three contrasts of one 2 × 2, not three comparisons against one cell: the
    interaction says whether the two switches add up."""
    shared = sorted(set.intersection(*(set(cells[a, b]) for a in (0, 1) for b in (0, 1))))
    y = {key: np.array([cells[key][r] for r in shared], dtype=float) for key in cells}
    contrasts = {
        names[0]: (y[1, 0] + y[1, 1]) / 2 - (y[0, 0] + y[0, 1]) / 2,
        names[1]: (y[0, 1] + y[1, 1]) / 2 - (y[0, 0] + y[1, 0]) / 2,
        f"{names[0]} × {names[1]}": (y[1, 1] - y[0, 1]) - (y[1, 0] - y[0, 0]),
    }
    tests = {name: _t_test(float(values.mean()) if len(values) else math.nan,
                           [(float(values.var(ddof=1)) if len(values) > 1 else math.nan, len(values))], level)
             for name, values in contrasts.items()}
    adjusted = holm([test.p for test in tests.values()])
    return [Effect(name, test.delta, test.low, test.high, test.p, holm_p, len(shared))
            for (name, test), holm_p in zip(tests.items(), adjusted)]
