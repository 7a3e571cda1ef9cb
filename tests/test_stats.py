"""Specification of camlab.stats: intervals that cover what they should, agree with scipy.stats where scipy has
the same thing, are seeded without touching global random state, and refuse bad input with a clear message."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from camlab.stats import Estimate, bootstrap_ci, paired_comparison, proportion, sign_test, wilson_interval


# ------------------------------------------------------------------------------------------ printing
def test_an_estimate_prints_value_interval_and_n():
    e = Estimate(0.7412, 0.6601, 0.8123, 120)
    assert str(e) == "0.74 [0.66, 0.81], n=120"
    assert f"{e:.3f}" == "0.741 [0.660, 0.812], n=120"
    assert f"{e:.0%}" == "74% [66%, 81%], n=120"
    assert e.contains(0.6601) and e.contains(0.8123) and not e.contains(0.66) and not e.contains(0.82)


def test_a_paired_comparison_prints_the_signed_difference_and_the_test():
    a = np.arange(10.0) + 1.0
    text = str(paired_comparison(a, a - 0.5))
    assert text.startswith("+0.50 [0.50, 0.50], n=10, sign test p=")


# ---------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_interval_of_a_bernoulli_sample_contains_p():
    """120 draws with p = 0.7: the 95% interval of the mean must contain 0.7 and be about
    2 * 1.96 * sqrt(0.7 * 0.3 / 120) = 0.16 wide."""
    sample = (np.random.default_rng(7).random(120) < 0.7).astype(float)
    e = bootstrap_ci(sample, seed=1)
    assert e.n == 120 and e.value == pytest.approx(sample.mean())
    assert e.contains(0.7)
    assert 0.12 < e.high - e.low < 0.20


def test_bootstrap_is_seeded_and_leaves_global_random_state_alone():
    x = np.random.default_rng(0).normal(size=50)
    np.random.seed(123)
    torch.manual_seed(123)
    before_np, before_torch = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    first, second = bootstrap_ci(x, seed=5), bootstrap_ci(x, seed=5)
    other = bootstrap_ci(x, seed=6)
    assert first == second and first != other
    assert np.array_equal(np.random.get_state()[1], before_np) and torch.equal(torch.get_rng_state(), before_torch)


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("statistic", [np.mean, np.median])
def test_bootstrap_agrees_with_scipy_bootstrap(method, statistic):
    """Different random draws, so the ends agree to Monte-Carlo error (well under a tenth of the width)."""
    x = np.random.default_rng(3).exponential(size=80)
    ours = bootstrap_ci(x, statistic, n_resamples=20_000, method=method, seed=0)
    theirs = stats.bootstrap((x,), statistic, n_resamples=20_000, method="BCa" if method == "bca" else method,
                             rng=np.random.default_rng(1)).confidence_interval
    tol = 0.1 * (theirs.high - theirs.low)
    assert ours.low == pytest.approx(theirs.low, abs=tol) and ours.high == pytest.approx(theirs.high, abs=tol)


def test_bca_shifts_the_interval_of_a_skewed_sample_upwards():
    """For a right-skewed sample BCa moves both ends up relative to the percentile interval."""
    x = np.random.default_rng(4).lognormal(sigma=1.0, size=60)
    pct, bca = bootstrap_ci(x, method="percentile"), bootstrap_ci(x, method="bca")
    assert bca.low > pct.low and bca.high > pct.high


def test_bootstrap_accepts_a_statistic_without_an_axis_argument():
    x = [1.0, 2.0, 3.0, 10.0]
    e = bootstrap_ci(x, lambda v: float(max(v) - min(v)), n_resamples=500)
    assert e.value == 9.0 and 0.0 <= e.low <= e.high <= 9.0


def test_all_equal_values_give_a_zero_width_interval():
    for method in ("percentile", "bca"):
        e = bootstrap_ci([0.25] * 30, method=method)
        assert (e.value, e.low, e.high, e.n) == (0.25, 0.25, 0.25, 30)
    assert bootstrap_ci(torch.ones(1)).low == 1.0  # a single case, given as a tensor


# ------------------------------------------------------------------------------------- paired tests
def test_paired_comparison_recovers_a_known_shift():
    """b = a - 0.1 + small noise on 150 cases: the difference interval holds 0.1 and excludes 0; a wins far more
    often than b, so the p-value is tiny. The spread of a itself (sd 1) cancels in the pairs."""
    rng = np.random.default_rng(11)
    a = rng.normal(size=150)
    b = a - 0.1 + 0.05 * rng.normal(size=150)
    for test in ("sign", "wilcoxon"):
        c = paired_comparison(a, b, test=test)
        assert c.difference.contains(0.1) and c.difference.low > 0
        assert c.difference.high - c.difference.low < 0.03
        assert c.p_value < 1e-10 and c.wins_a + c.wins_b + c.ties == 150 and c.wins_a > 130


def test_identical_methods_give_difference_zero_and_p_one():
    a = np.linspace(0, 1, 101)
    c = paired_comparison(a, a.copy(), test="wilcoxon")
    assert (c.difference.value, c.difference.low, c.difference.high, c.p_value, c.ties) == (0, 0, 0, 1.0, 101)
    assert paired_comparison(a, a).p_value == 1.0


def test_sign_test_worked_example():
    """8 positive, 2 negative, 1 zero (dropped): p = 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 * 56 / 1024."""
    d = [1, 2, 3, 4, 5, 6, 7, 8, -1, -2, 0]
    assert sign_test(d) == pytest.approx(112 / 1024)


@pytest.mark.parametrize("k, m", [(0, 5), (3, 10), (50, 100), (61, 120), (120, 120)])
def test_sign_test_agrees_with_scipy_binomtest(k, m):
    d = np.array([1.0] * k + [-1.0] * (m - k))
    assert sign_test(d) == pytest.approx(stats.binomtest(k, m, 0.5).pvalue, rel=1e-9)


def test_wilcoxon_p_value_is_scipys():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=40), rng.normal(0.3, size=40)
    assert paired_comparison(a, b, test="wilcoxon").p_value == pytest.approx(stats.wilcoxon(a - b).pvalue)


# -------------------------------------------------------------------------------------- proportions
@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (37, 120), (100, 100), (512, 1000)])
def test_wilson_interval_agrees_with_scipy(k, n):
    e = wilson_interval(k, n)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert e.value == k / n and e.n == n
    assert e.low == pytest.approx(ci.low, abs=1e-12) and e.high == pytest.approx(ci.high, abs=1e-12)


def test_wilson_interval_worked_example():
    """8 of 10, z = 1.96: centre (0.8 + 0.192) / 1.384 = 0.7168, half 1.96 / 1.384 * sqrt(0.016 + 0.00960)
    = 0.2266, so [0.490, 0.943]."""
    e = wilson_interval(8, 10)
    assert e.low == pytest.approx(0.4902, abs=1e-3) and e.high == pytest.approx(0.9433, abs=1e-3)


def test_proportion_of_booleans_is_the_wilson_interval():
    outcomes = torch.tensor([True] * 90 + [False] * 30)
    assert proportion(outcomes) == wilson_interval(90, 120)
    assert str(proportion(outcomes)) == "0.75 [0.67, 0.82], n=120"


def test_a_sure_outcome_still_has_an_interval_of_positive_width():
    e = proportion([1] * 100)
    assert e.value == 1.0 and e.high == 1.0 and 0.95 < e.low < 1.0


# ---------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, message", [
    (lambda: bootstrap_ci([]), "empty"),
    (lambda: bootstrap_ci([1.0, float("nan")]), "NaN"),
    (lambda: bootstrap_ci(np.ones((3, 3))), "1-D"),
    (lambda: bootstrap_ci(["a", "b"]), "numbers"),
    (lambda: bootstrap_ci([1.0, 2.0], level=95), "such as 0.95"),
    (lambda: bootstrap_ci([1.0, 2.0], n_resamples=0), "positive"),
    (lambda: bootstrap_ci([1.0, 2.0], method="bc"), "'percentile' or 'bca'"),
    (lambda: paired_comparison([1.0, 2.0], [1.0]), "one value of a and of b per case"),
    (lambda: paired_comparison([1.0], [1.0], test="t"), "sign"),
    (lambda: wilson_interval(11, 10), "successes <= n"),
    (lambda: wilson_interval(1, 0), "n >= 1"),
    (lambda: wilson_interval(1.5, 10), "whole numbers"),
    (lambda: proportion([0.2, 0.8]), "booleans or 0/1"),
])
def test_bad_input_is_refused_with_a_message_saying_what_is_right(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_interval_width_shrinks_like_one_over_root_n():
    """Quadrupling n (same share) halves the Wilson interval's width, to within a few percent."""
    w100, w400 = (wilson_interval(k, n) for k, n in ((30, 100), (120, 400)))
    ratio = (w100.high - w100.low) / (w400.high - w400.low)
    assert ratio == pytest.approx(2.0, rel=0.05) and math.isfinite(ratio)


def test_on_hit_or_miss_outcomes_the_paired_test_is_exact_mcnemar():
    """100 cases: both hit 60, only A 15, only B 5, both miss 20. Only the 20 discordant cases count:
    p = binomtest(15, 20).pvalue; the difference of hit rates is (15 - 5) / 100 = 0.10."""
    a = np.array([1] * 60 + [1] * 15 + [0] * 5 + [0] * 20)
    b = np.array([1] * 60 + [0] * 15 + [1] * 5 + [0] * 20)
    c = paired_comparison(a, b)
    assert c.p_value == pytest.approx(stats.binomtest(15, 20).pvalue, rel=1e-9)
    assert c.difference.value == pytest.approx(0.10) and (c.wins_a, c.wins_b, c.ties) == (15, 5, 80)


# ------------------------------------------------------------------------------------------- verdict
from camlab.stats import VERDICT_WORDS, verdict  # noqa: E402


def _shifted(shift: float, n: int = 150, noise: float = 0.05, seed: int = 1):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.3, 0.7, n)
    return a + shift + rng.normal(0.0, noise, n), a


@pytest.mark.parametrize("shift, word", [(0.1, "higher"), (-0.1, "lower"), (0.0, "equivalent")])
def test_a_clear_shift_or_none_gives_the_matching_word(shift, word):
    a, b = _shifted(shift)
    v = verdict(a, b, delta=0.05)
    assert v.word == word
    assert v.n == 150 and not v.disagreement


def test_too_few_cases_for_a_decision_are_inconclusive_never_no_difference():
    a, b = _shifted(0.0, n=12, noise=0.3)
    v = verdict(a, b, delta=0.05)
    assert v.word == "inconclusive"
    assert v.difference.low < 0 < v.difference.high and (v.difference.low < -0.05 or v.difference.high > 0.05)


def test_a_real_but_negligible_difference_is_equivalent_and_shows_its_size():
    """d = 0.002 ± 0.0005 on 150 cases: the interval excludes 0, the sign test rejects, and yet the whole interval
    lies inside ±0.01, the declared smallest effect of interest."""
    a, b = _shifted(0.002, noise=0.0005)
    v = verdict(a, b, delta=0.01)
    assert v.word == "equivalent" and v.negligible
    assert v.difference.low > 0 and v.p_value < 0.05
    assert str(v).startswith("equivalent within ±0.01: +0.00")


def test_differences_alone_give_the_same_verdict_as_the_pairs():
    a, b = _shifted(0.1)
    assert verdict(a - b, delta=0.05) == verdict(a, b, delta=0.05)


def test_hit_or_miss_outcomes_use_the_exact_mcnemar_test():
    a = np.array([1] * 40 + [0] * 60, dtype=float)
    b = np.array([0] * 40 + [0] * 60, dtype=float)
    v = verdict(a, b, delta=0.05)
    assert v.comparison.test == "McNemar (exact)"
    assert v.word == "higher" and v.p_value == pytest.approx(2 * 0.5 ** 40)


def test_interval_and_test_that_disagree_are_flagged():
    """Eighteen small losses and two large wins: the sign test (2 against 18) says B is higher, while the mean
    difference is +0.091 and its bootstrap interval reaches above 0. The flag is set exactly when one of the two
    says "different" and the other does not, and the printed verdict says so."""
    d = np.array([-0.01] * 18 + [1.0] * 2)  # mean +0.091; sign test 2 vs 18: p = 4e-4
    v = verdict(d, delta=0.05)
    excludes_zero = v.difference.low > 0 or v.difference.high < 0
    assert v.disagreement == (excludes_zero != (v.p_value < 0.05))
    assert v.p_value < 0.05 and v.disagreement and "disagree" in str(v)


def test_every_verdict_word_is_one_of_the_four():
    rng = np.random.default_rng(3)
    for _ in range(20):
        assert verdict(rng.normal(rng.normal(), 1, 30), delta=0.2).word in VERDICT_WORDS


@pytest.mark.parametrize("delta", [0, -0.1, float("nan"), float("inf"), None, True])
def test_delta_must_be_a_positive_number(delta):
    with pytest.raises(ValueError, match="smallest effect of interest"):
        verdict([0.1, 0.2], [0.0, 0.1], delta=delta)


def test_a_value_that_rounds_to_zero_prints_without_a_sign():
    assert str(Estimate(-1e-9, -2e-9, 1e-9, 10)) == "0.00 [0.00, 0.00], n=10"
    assert str(Estimate(-0.004, -0.006, -0.001, 10)) == "0.00 [-0.01, 0.00], n=10"
