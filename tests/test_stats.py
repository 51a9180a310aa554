"""`ssr_jax.stats` against hand-computed values and scipy: t intervals, paired / Welch comparisons, seeds needed."""
import math

import pytest
from scipy import stats as scipy_stats

from ssr_jax import stats


def test_mean_interval_is_the_t_interval_and_none_for_one_seed():
    # [5, 7]: mean 6, standard error 1, t(0.975, 1) = 12.706.
    assert stats.mean_interval([5.0, 7.0]) == pytest.approx((6 - 12.7062, 6 + 12.7062), abs=1e-4)
    assert all(math.isnan(bound) for bound in stats.mean_interval([3.0]))


def test_zero_difference_is_never_significant():
    for values, baseline in (({0: 5.0, 1: 5.0}, {0: 5.0, 1: 5.0}),  # paired, no spread
                             ({0: 5.0, 1: 6.0}, {0: 5.0, 1: 6.0}),  # paired
                             ({0: 5.0, 1: 6.0}, {2: 6.0, 3: 5.0}),  # Welch
                             ({0: 5.0, 1: 5.0}, {2: 5.0, 3: 5.0})):  # Welch, no spread
        comparison = stats.compare(values, baseline)
        assert comparison.delta == 0 and not comparison.significant and comparison.p == 1.0
        assert stats.seeds_needed(comparison) is None


def test_paired_only_on_the_same_seeds():
    assert stats.compare({0: 4.0, 1: 4.0}, {0: 5.0, 1: 7.0}).test == "paired"
    welch = stats.compare({0: 4.0, 2: 4.5}, {0: 5.0, 1: 7.0})
    expected = scipy_stats.ttest_ind([4.0, 4.5], [5.0, 7.0], equal_var=False)
    assert welch.test == "welch" and welch.p == pytest.approx(expected.pvalue, rel=1e-9)
    one_seed = stats.compare({0: 3.0}, {0: 5.0, 1: 7.0})
    assert one_seed.delta == -3.0 and math.isnan(one_seed.low) and not one_seed.significant


def test_seeds_needed_is_the_first_n_whose_interval_excludes_zero():
    # Differences −1, −3: SD √2. n = 4: t(0.975, 3) · √2/2 = 2.25 ≥ 2; n = 5: t(0.975, 4) · √2/√5 = 1.76 < 2.
    assert stats.seeds_needed(stats.compare({0: 4.0, 1: 4.0}, {0: 5.0, 1: 7.0})) == 5
    # Welch, SDs √2 and √2, equal n: se = 2/√n, df = 2(n − 1); n = 8: t(0.975, 14) · 2/√8 = 1.52 ≥ 1.5;
    # n = 9: t(0.975, 16) · 2/3 = 1.41 < 1.5.
    assert stats.seeds_needed(stats.compare({0: 4.0, 1: 6.0}, {2: 5.5, 3: 7.5})) == 9


def test_holm_steps_down_in_the_input_order_and_skips_untested_contrasts():
    # Sorted 0.01, 0.03, 0.04 of m = 3: 3·0.01 = 0.03, max(0.03, 2·0.03) = 0.06, max(0.06, 1·0.04) = 0.06.
    assert stats.holm([0.04, 0.01, math.nan, 0.03]) == pytest.approx([0.06, 0.03, math.nan, 0.06], nan_ok=True)
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([]) == []


def test_welch_beside_a_paired_comparison_of_negatively_correlated_replicates():
    # Config 4, 6, 5 and baseline 7, 5, 6 per seed: r = −1, so the paired differences −3, +1, −1 (SD 2) spread
    # more than either side (SD 1); Welch: se = √(1/3 + 1/3), df = 4.
    values, baseline = {0: 4.0, 1: 6.0, 2: 5.0}, {0: 7.0, 1: 5.0, 2: 6.0}
    paired, welch = stats.compare(values, baseline), stats.welch(values, baseline)
    assert paired.test == "paired" and welch.test == "welch" and paired.delta == welch.delta == -1.0
    assert paired.p == pytest.approx(scipy_stats.ttest_rel([4, 6, 5], [7, 5, 6]).pvalue, rel=1e-9)
    assert welch.p == pytest.approx(2 * scipy_stats.t.sf(1 / math.sqrt(2 / 3), 4), rel=1e-9)
    assert welch.high - welch.low < paired.high - paired.low
    assert stats.correlation(values, baseline) == pytest.approx(-1.0)
    assert math.isnan(stats.correlation({0: 1.0, 1: 2.0}, {0: 1.0, 1: 3.0}))  # two pairs: no r


def test_factorial_effects_are_per_replicate_contrasts_with_holm_over_three():
    # Two replicates; cells (a, b). Replicate 0: y00 = 8, y01 = 7, y10 = 7.5, y11 = 6 → A = (7.5 + 6)/2 − (8 + 7)/2
    # = −0.75, B = (7 + 6)/2 − (8 + 7.5)/2 = −1.25, A × B = (6 − 7) − (7.5 − 8) = −0.5. Replicate 1: y00 = 9,
    # y01 = 7, y10 = 8, y11 = 7 → A = −0.5, B = −1.5, A × B = 1. Replicate 2 lacks a cell and is left out.
    cells = {(0, 0): {0: 8.0, 1: 9.0, 2: 1.0}, (0, 1): {0: 7.0, 1: 7.0}, (1, 0): {0: 7.5, 1: 8.0},
             (1, 1): {0: 6.0, 1: 7.0, 2: 1.0}}
    main_a, main_b, interaction = stats.factorial_2x2(cells, names=("d", "local"))
    assert [e.name for e in (main_a, main_b, interaction)] == ["d", "local", "d × local"]
    assert (main_a.estimate, main_b.estimate, interaction.estimate) == (-0.625, -1.375, 0.25)
    assert main_a.n == main_b.n == interaction.n == 2
    for effect, pair in ((main_a, [-0.75, -0.5]), (main_b, [-1.25, -1.5]), (interaction, [-0.5, 1.0])):
        test = scipy_stats.ttest_1samp(pair, 0.0)
        interval = test.confidence_interval(0.95)
        assert (effect.low, effect.high, effect.p) == pytest.approx((interval.low, interval.high, test.pvalue))
    assert [e.holm_p for e in (main_a, main_b, interaction)] == pytest.approx(
        stats.holm([main_a.p, main_b.p, interaction.p]))
