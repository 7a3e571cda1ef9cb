r"""Small, seeded statistics for the course's comparative claims: every number comes with n and a 95% interval.

* :func:`bootstrap_ci` - a statistic of one sample with a bootstrap interval (percentile, or BCa).
* :func:`paired_comparison` - two methods measured on the *same* cases: the mean difference with a paired
  bootstrap interval and a p-value (exact sign test by default, or the Wilcoxon signed-rank test).
* :func:`proportion` / :func:`wilson_interval` - a share of successes with the Wilson score interval.
* :func:`sign_test` - the exact two-sided sign test.
* :func:`verdict` - a paired comparison turned into the one word a sentence may use: ``"higher"``, ``"lower"``,
  ``"equivalent"`` (within a declared smallest effect of interest) or ``"inconclusive"``.

Results are :class:`Estimate` objects that print like ``0.74 [0.66, 0.81], n=120``. Every random draw comes from
a ``numpy.random.Generator`` built from ``seed``; the global NumPy / torch random states are never used or changed.

The bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993): draw ``n`` cases with replacement
``B`` times, compute the statistic :math:`\hat\theta^*_b` on each resample; the percentile interval is the
:math:`\alpha/2` and :math:`1-\alpha/2` quantiles of :math:`\{\hat\theta^*_b\}`. BCa (Efron 1987) shifts those
quantiles to :math:`\Phi\big(z_0 + \frac{z_0 + z_q}{1 - a (z_0 + z_q)}\big)`, with the bias correction
:math:`z_0 = \Phi^{-1}(\#\{\hat\theta^*_b < \hat\theta\} / B)` and the acceleration :math:`a` from the jackknife.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from scipy import special

__all__ = ["Estimate", "PairedComparison", "Verdict", "bootstrap_ci", "paired_comparison", "proportion", "sign_test",
           "verdict", "wilson_interval"]

_CHUNK = 2_000_000  # resampled values held in memory at once


def _fmt(x: float, spec: str) -> str:
    """``format(x, spec)`` without the sign of a value that rounds to zero ("-0.00" is "0.00"): a sum's last bit
    differs between CPUs, and the printed text must not."""
    text = format(x, spec)
    if text.startswith("-") and not any(ch in "123456789" for ch in text.split("e")[0]):
        text = text[1:]
    return text


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval: ``value`` in ``[low, high]`` at confidence ``level`` from ``n`` cases.

    ``str(e)`` gives ``"0.74 [0.66, 0.81], n=120"``; a format spec sets the digits (``f"{e:.3f}"``) or prints
    percent (``f"{e:.0%}"`` gives ``"74% [66%, 81%], n=120"``).
    """

    value: float
    low: float
    high: float
    n: int
    level: float = 0.95
    method: str = ""

    def __format__(self, spec: str) -> str:
        spec = spec or ".2f"
        return f"{_fmt(self.value, spec)} [{_fmt(self.low, spec)}, {_fmt(self.high, spec)}], n={self.n}"

    def __str__(self) -> str:
        return format(self)

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies in the closed interval ``[low, high]``."""
        return self.low <= x <= self.high


@dataclass(frozen=True)
class PairedComparison:
    """A − B on the same cases: ``difference`` (mean of a − b, paired bootstrap interval), ``p_value`` of
    ``test`` (two-sided), and how many cases favour each side (``wins_a``: a > b, ``wins_b``, ``ties``)."""

    difference: Estimate
    p_value: float
    test: str
    wins_a: int
    wins_b: int
    ties: int

    def __format__(self, spec: str) -> str:
        spec = spec or ".2f"
        d = self.difference
        sign = "" if _fmt(d.value, spec).startswith("-") else "+"
        return f"{sign}{format(d, spec)}, {self.test} p={self.p_value:.2g}"

    def __str__(self) -> str:
        return format(self)


# ------------------------------------------------------------------------------------------ checks
def _sample(values, name: str = "values") -> np.ndarray:
    """A finite, non-empty 1-D float array, or a ``ValueError`` saying what was wrong."""
    try:
        arr = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got {type(values).__name__}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one number per case), got shape {arr.shape}; flatten it first")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; an interval needs at least one case")
    if not np.isfinite(arr).all():
        where = np.flatnonzero(~np.isfinite(arr))[:5].tolist()
        raise ValueError(f"{name} contains NaN or infinity at positions {where}; drop or fix those cases first")
    return arr


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a confidence level in (0, 1), such as 0.95; got {level}")
    return float(level)


# ---------------------------------------------------------------------------------------- bootstrap
def _apply(statistic: Callable, samples: np.ndarray) -> np.ndarray:
    """``statistic`` on each row of ``samples`` (vectorised with ``axis=-1`` when the statistic accepts it)."""
    try:
        out = np.asarray(statistic(samples, axis=-1), dtype=np.float64)
        if out.shape == samples.shape[:1]:
            return out
    except TypeError:
        pass
    return np.array([float(statistic(row)) for row in samples])


def _resampled_statistics(data: np.ndarray, statistic: Callable, n_resamples: int,
                          rng: np.random.Generator) -> np.ndarray:
    n = data.size
    rows = max(1, _CHUNK // n)
    out = []
    for start in range(0, n_resamples, rows):
        idx = rng.integers(0, n, size=(min(rows, n_resamples - start), n))
        out.append(_apply(statistic, data[idx]))
    return np.concatenate(out)


def _bca_quantiles(data: np.ndarray, statistic: Callable, theta: float, boot: np.ndarray,
                   alpha: float) -> tuple[float, float]:
    """BCa's adjusted quantile levels for the lower and upper end (Efron 1987)."""
    z0 = special.ndtri((np.count_nonzero(boot < theta) + 0.5 * np.count_nonzero(boot == theta)) / boot.size)
    n = data.size
    rows = max(1, _CHUNK // n)  # leave-one-out samples held in memory at once (BCa costs n^2 values in all)
    jack = np.concatenate([_apply(statistic, np.stack([np.delete(data, i) for i in range(s, min(s + rows, n))]))
                           for s in range(0, n, rows)]) if n > 1 else np.array([theta])
    d = jack.mean() - jack
    denom = 6.0 * float((d ** 2).sum()) ** 1.5
    a = float((d ** 3).sum()) / denom if denom > 0 else 0.0
    levels = []
    for q in (alpha / 2, 1 - alpha / 2):
        zq = z0 + special.ndtri(q)
        levels.append(float(special.ndtr(z0 + zq / (1 - a * zq))))
    return levels[0], levels[1]


def bootstrap_ci(values, statistic: Callable = np.mean, *, n_resamples: int = 10_000, level: float = 0.95,
                 seed: int = 0, method: str = "percentile") -> Estimate:
    """``statistic(values)`` with a bootstrap confidence interval.

    Args:
        values: one number per case (1-D; a list, NumPy array or tensor), finite.
        statistic: maps a 1-D array to a number (``np.mean``, ``np.median``, ...); if it accepts ``axis=-1`` it
            is applied to many resamples at once.
        n_resamples: bootstrap resamples B.
        level: confidence level of the two-sided interval.
        seed: seeds the only random generator used.
        method: ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated).

    All-equal values give the zero-width interval ``[v, v]``.
    """
    data = _sample(values)
    level = _check_level(level)
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be a positive number of resamples, such as 10000; got {n_resamples}")
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    theta = float(statistic(data))
    boot = _resampled_statistics(data, statistic, int(n_resamples), np.random.default_rng(seed))
    if np.all(boot == boot[0]):  # a degenerate sample: every resample gives the same value
        return Estimate(theta, float(boot[0]), float(boot[0]), data.size, level, method)
    alpha = 1.0 - level
    lo_q, hi_q = (alpha / 2, 1 - alpha / 2) if method == "percentile" else \
        _bca_quantiles(data, statistic, theta, boot, alpha)
    low, high = np.quantile(boot, [lo_q, hi_q])
    return Estimate(theta, float(low), float(high), data.size, level, method)


# ------------------------------------------------------------------------------------- paired tests
def sign_test(differences) -> float:
    """Exact two-sided sign test of "a − b is as often positive as negative" (zero differences dropped).

    With k positive among m non-zero differences: :math:`p = \\min(1, 2 \\sum_{i \\le \\min(k, m-k)}
    \\binom{m}{i} 2^{-m})`, the binomial test of k against Binomial(m, 1/2). No non-zero difference gives p = 1.
    """
    d = _sample(differences, "differences")
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    m, k = pos + neg, min(pos, neg)
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(k + 1))
    return min(1.0, 2.0 * tail / 2.0 ** m)


def _wilcoxon(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value from :func:`scipy.stats.wilcoxon` (zeros dropped, "wilcox")."""
    from scipy import stats

    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_comparison(a, b, *, test: str = "sign", n_resamples: int = 10_000, level: float = 0.95,
                      seed: int = 0) -> PairedComparison:
    """Compare A and B measured on the same cases (case i of ``a`` and of ``b`` is the same scene).

    The difference is :math:`\\bar d = \\frac1n \\sum_i (a_i - b_i)` with a percentile bootstrap interval that
    resamples *cases* (pairs stay together, so the between-case spread cancels). The p-value is two-sided:

    * ``test="sign"`` (default): the exact sign test on the signs of :math:`a_i - b_i` (:func:`sign_test`); it
      assumes nothing about the shape of the differences. On 0/1 outcomes (hit or miss per case) it is the
      exact McNemar test: only the discordant cases count.
    * ``test="wilcoxon"``: the Wilcoxon signed-rank test (scipy's, zero differences dropped); more powerful, but
      it assumes the differences are symmetric about their median.
    """
    x, y = _sample(a, "a"), _sample(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a paired comparison needs one value of a and of b per case; got {x.size} and {y.size}")
    if test not in ("sign", "wilcoxon"):
        raise ValueError(f"test must be 'sign' (exact sign test) or 'wilcoxon' (signed-rank), got {test!r}")
    d = x - y
    diff = bootstrap_ci(d, np.mean, n_resamples=n_resamples, level=level, seed=seed)
    p = sign_test(d) if test == "sign" else _wilcoxon(d)
    name = "sign test" if test == "sign" else "Wilcoxon"
    return PairedComparison(diff, p, name, int((d > 0).sum()), int((d < 0).sum()), int((d == 0).sum()))


# -------------------------------------------------------------------------------------- proportions
def wilson_interval(successes: int, n: int, level: float = 0.95) -> Estimate:
    r"""The share ``successes / n`` with the Wilson score interval (Wilson 1927):

    .. math:: \frac{\hat p + \frac{z^2}{2n} \pm z \sqrt{\frac{\hat p (1-\hat p)}{n} + \frac{z^2}{4n^2}}}
              {1 + \frac{z^2}{n}}, \qquad z = \Phi^{-1}\big(1 - \tfrac{1-\text{level}}{2}\big).

    Unlike the normal ("Wald") interval it stays inside [0, 1] and has width > 0 at 0/n and n/n.
    """
    level = _check_level(level)
    if isinstance(successes, bool) or isinstance(n, bool) or int(successes) != successes or int(n) != n:
        raise ValueError(f"successes and n must be whole numbers, got {successes!r} and {n!r}")
    k, n = int(successes), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got successes={k}, n={n}")
    z = float(special.ndtri(1 - (1 - level) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n, level, "wilson")


def proportion(outcomes, level: float = 0.95) -> Estimate:
    """The share of true values in ``outcomes`` (booleans, or 0/1, one per case) with its Wilson interval."""
    arr = _sample(outcomes, "outcomes")
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError("outcomes must be booleans or 0/1 (one per case); for a mean of other numbers use "
                         "bootstrap_ci")
    return wilson_interval(int(arr.sum()), arr.size, level)


# ------------------------------------------------------------------------------------------ verdicts
#: the words a comparative sentence may use, one per verdict
VERDICT_WORDS = ("higher", "lower", "equivalent", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`verdict`: ``word`` (one of :data:`VERDICT_WORDS`) for A − B, with the paired
    ``comparison`` behind it (mean difference, interval, test, wins), the smallest effect of interest ``delta`` and
    ``disagreement`` (``True`` when the interval and the test point different ways at the same level, e.g. the
    interval excludes 0 while the test's p ≥ 0.05: a sentence must then say so).

    ``str(v)`` gives ``"higher: +0.12 [0.08, 0.16], n=120, sign test p=3.1e-05 (δ = 0.05)"``; a format spec sets the
    digits of the difference (``f"{v:.3f}"``)."""

    word: str
    comparison: PairedComparison
    delta: float
    disagreement: bool

    @property
    def difference(self) -> Estimate:
        return self.comparison.difference

    @property
    def n(self) -> int:
        return self.comparison.difference.n

    @property
    def p_value(self) -> float:
        return self.comparison.p_value

    @property
    def negligible(self) -> bool:
        """The whole interval lies inside ±delta: whatever the difference is, it is smaller than any of interest."""
        d = self.comparison.difference
        return -self.delta < d.low and d.high < self.delta

    def __format__(self, spec: str) -> str:
        spec = spec or ".2f"
        word = f"equivalent within ±{self.delta:{spec}}" if self.word == "equivalent" else self.word
        note = "; interval and test disagree" if self.disagreement else ""
        return f"{word}: {format(self.comparison, spec)} (δ = {self.delta:{spec}}){note}"

    def __str__(self) -> str:
        return format(self)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.isin(x, (0.0, 1.0)).all())


def verdict(a, b=None, *, delta: float, level: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> Verdict:
    r"""A paired comparison of A and B on the same cases, turned into the word a sentence may use.

    ``a`` and ``b`` hold one value per case (case i is the same scene for both); with ``b=None``, ``a`` holds the
    differences :math:`d_i = a_i - b_i`. ``delta`` > 0 is the smallest effect of interest, declared *before*
    looking (in the metric's units: 0.05 of a pointing rate, 0.01 of an AUC). With the mean difference's
    percentile-bootstrap interval :math:`[l, h]` at ``level`` (pairs resampled together):

    * ``"equivalent"`` when :math:`-\delta < l` and :math:`h < \delta` (two one-sided tests at the interval's
      level): any difference there is smaller than the smallest one of interest. This wins even when the interval
      excludes 0 (a real but negligible difference; :attr:`Verdict.negligible` is true and the printed
      difference shows it);
    * ``"higher"`` when :math:`l > 0`, ``"lower"`` when :math:`h < 0`;
    * ``"inconclusive"`` otherwise: the data allow both no difference and one that matters. Never write "no
      difference" for it.

    The test beside the interval is the exact sign test, which on 0/1 outcomes (a hit or a miss per case) is the
    exact McNemar test (only discordant pairs count). ``disagreement`` is set when exactly one of "the interval
    excludes 0" and "p < 1 − level" holds.
    """
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta <= 0:
        raise ValueError(f"delta must be a positive number, the smallest effect of interest in the metric's units "
                         f"(such as 0.05), declared before looking at the data; got {delta!r}")
    x = _sample(a, "a" if b is not None else "differences")
    if b is None:
        y = np.zeros_like(x)
    else:
        y = _sample(b, "b")
        if x.shape != y.shape:
            raise ValueError(f"a paired comparison needs one value of a and of b per case; got {x.size} and {y.size}")
    comparison = paired_comparison(x, y, n_resamples=n_resamples, level=level, seed=seed)
    if b is not None and _is_binary(x) and _is_binary(y):
        comparison = replace(comparison, test="McNemar (exact)")
    d = comparison.difference
    if -delta < d.low and d.high < delta:
        word = "equivalent"
    elif d.low > 0:
        word = "higher"
    elif d.high < 0:
        word = "lower"
    else:
        word = "inconclusive"
    excludes_zero = d.low > 0 or d.high < 0
    significant = comparison.p_value < 1.0 - _check_level(level)
    return Verdict(word, comparison, float(delta), excludes_zero != significant)


def mcnemar_power(n: int, discordant: float, difference: float, level: float = 0.95) -> float:
    r"""The probability that the exact McNemar test (:func:`sign_test` on 0/1 outcomes) at ``level`` rejects when
    two methods' failure rates on ``n`` paired cases differ by ``difference`` and a share ``discordant`` of the
    pairs disagree. The number of discordant pairs is :math:`m \sim \mathrm{Bin}(n, \pi_d)`; of them, the first
    method fails in :math:`k \sim \mathrm{Bin}(m, q)` with :math:`q = (\pi_d + \Delta) / (2\pi_d)`; the power is
    :math:`\sum_m P(m) \sum_k P(k \mid m)\,[\text{sign test on } (k, m-k) \text{ gives } p < 1-\text{level}]`."""
    from scipy.stats import binom

    if not 0 < discordant <= 1 or abs(difference) > discordant:
        raise ValueError(f"need 0 < discordant <= 1 and |difference| <= discordant; got {discordant}, {difference}")
    alpha, q = 1.0 - _check_level(level), (discordant + difference) / (2 * discordant)
    power = 0.0
    for m in range(1, n + 1):
        ks = np.arange(m + 1)
        low = np.minimum(ks, m - ks)
        p_values = np.minimum(1.0, 2.0 * binom.cdf(low, m, 0.5))
        power += binom.pmf(m, n, discordant) * binom.pmf(ks[p_values < alpha], m, q).sum()
    return float(power)


def detectable_difference(n: int, discordant: float, power: float = 0.8, level: float = 0.95,
                          step: float = 0.005) -> float:
    """The smallest difference of failure rates (on a grid of ``step``) that the exact McNemar test at ``level``
    detects with probability ``power`` on ``n`` paired cases of which a share ``discordant`` disagree
    (:func:`mcnemar_power`): below it, a non-significant result says little. ``inf`` if none up to ``discordant``."""
    for k in range(1, int(discordant / step) + 1):
        if mcnemar_power(n, discordant, k * step, level) >= power:
            return round(k * step, 10)
    return math.inf
