"""Uncertainty over questions: confidence intervals for a mean, and the paired difference of two runs
on the same questions with its interval and a permutation p-value. Seeded: the same inputs give the
same numbers on every machine.

Intervals must agree with p-values at every n. Below `SMALL_N` questions (or when the bootstrap is
degenerate) a mean's interval is Student's t interval (scipy.stats.t) and a paired comparison's p is
the paired t-test's, its exact dual: the interval excludes 0 exactly when p < 0.05. From `SMALL_N`
on, the BCa bootstrap (scipy.stats.bootstrap, which corrects the percentile bootstrap's bias and
skew) and a sign-flip permutation test, which agree there. A comparison of fewer than `MIN_PAIRED`
paired questions is marked inconclusive, whatever its numbers."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

RESAMPLES = 2000
SMALL_N = 20  # below: t interval; the BCa bootstrap needs enough questions to estimate its corrections
EXACT_N = 12  # up to 2**12 sign patterns: enumerate them all
MIN_PAIRED = 10  # fewer paired questions: the comparison is inconclusive


def mean_ci(values, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval for the mean over questions (t below SMALL_N, BCa bootstrap above)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])  # no spread to measure
    if len(x) >= SMALL_N:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a degenerate BCa warns and returns nan: then the t interval
            res = scipy_stats.bootstrap((x,), np.mean, confidence_level=level, method="BCa", n_resamples=RESAMPLES,
                                        random_state=np.random.default_rng(seed))
        low, high = res.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
    low, high = scipy_stats.t.interval(level, len(x) - 1, loc=x.mean(), scale=scipy_stats.sem(x))
    return float(low), float(high)


def _mean(values, seed: int = 0):
    return float(np.mean(values)), *mean_ci(values, seed=seed)


def _median(values, seed: int = 0):
    return float(np.median(values)), *bootstrap_ci(values, seed=seed, statistic=np.median)


# How a metric's rows become the run's figure and its interval (a metric declares one by name).
AGGREGATIONS = {"mean": _mean, "median": _median}


def aggregate(how: str, values) -> tuple[float, float, float]:
    """(figure, interval low, interval high) of per-question values under a declared aggregation."""
    return AGGREGATIONS[how](values)


def bootstrap_ci(values, seed: int = 0, level: float = 0.95, statistic=np.mean) -> tuple[float, float]:
    """Interval of `statistic` over questions: the mean's as `mean_ci`; others (the median latency) by
    the percentile bootstrap, which needs no standard error."""
    if statistic is np.mean:
        return mean_ci(values, level, seed)
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        v = float(statistic(x)) if len(x) else float("nan")
        return v, v
    rng = np.random.default_rng(seed)
    samples = statistic(x[rng.integers(0, len(x), size=(RESAMPLES, len(x)))], axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


@dataclass(frozen=True)
class Paired:
    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean of a - b over the questions both answered
    ci_low: float
    ci_high: float
    p_value: float  # two-sided sign-flip permutation test of "no difference"
    inconclusive: bool = False  # fewer than MIN_PAIRED questions: do not read the interval as a finding


def sign_flip_p(d: np.ndarray, seed: int = 0) -> float:
    observed = abs(d.mean()) - 1e-12
    if len(d) <= EXACT_N:
        signs = np.array(list(itertools.product([-1.0, 1.0], repeat=len(d))))
        return float(np.mean(np.abs((signs * d).mean(axis=1)) >= observed))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(RESAMPLES, len(d)))
    # +1 in both counts: the observed assignment is one of the permutations (never p = 0)
    return float((np.sum(np.abs((signs * d).mean(axis=1)) >= observed) + 1) / (RESAMPLES + 1))


def paired(a: dict[str, float], b: dict[str, float], seed: int = 0, level: float = 0.95) -> Paired:
    """Compare two runs question by question; only questions scored in both count."""
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError("the two runs share no scored question")
    xa = np.array([a[i] for i in ids], dtype=float)
    xb = np.array([b[i] for i in ids], dtype=float)
    d = xa - xb
    low, high = mean_ci(d, level, seed)
    if len(d) >= SMALL_N:
        p = sign_flip_p(d, seed)
    elif np.all(d == d[0]):
        p = 1.0 if d[0] == 0 else 0.0  # no spread: the difference is what it is on every question
    else:
        p = float(scipy_stats.ttest_1samp(d, 0.0).pvalue)
    return Paired(len(ids), float(xa.mean()), float(xb.mean()), float(d.mean()), low, high, p, len(ids) < MIN_PAIRED)
