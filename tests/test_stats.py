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
