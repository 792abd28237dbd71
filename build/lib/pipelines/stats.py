"""Uncertainty over questions: bootstrap confidence intervals for a mean, and the paired difference
of two runs on the same questions with its interval and a permutation p-value. Seeded: the same
inputs give the same numbers on every machine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000


def bootstrap_ci(values, seed: int = 0, level: float = 0.95, statistic=np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over questions."""
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


def paired(a: dict[str, float], b: dict[str, float], seed: int = 0, level: float = 0.95) -> Paired:
    """Compare two runs question by question; only questions scored in both count."""
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError("the two runs share no scored question")
    xa = np.array([a[i] for i in ids], dtype=float)
    xb = np.array([b[i] for i in ids], dtype=float)
    d = xa - xb
    low, high = bootstrap_ci(d, seed=seed, level=level)
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(RESAMPLES, len(d)))
    null = np.abs((signs * d).mean(axis=1))
    # +1 in both counts: the observed assignment is one of the permutations (never p = 0)
    p = (np.sum(null >= abs(d.mean()) - 1e-12) + 1) / (RESAMPLES + 1)
    return Paired(len(ids), float(xa.mean()), float(xb.mean()), float(d.mean()), low, high, float(p))
