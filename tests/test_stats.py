import numpy as np
import pytest

from pipelines import stats


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1] * 3
    low, high = stats.bootstrap_ci(values)
    assert (low, high) == stats.bootstrap_ci(values)  # same seed, same numbers
    assert low < np.mean(values) < high
    # Normal approximation for a proportion of 0.7 over 30 questions: +-1.96 * sqrt(.7 * .3 / 30) = +-0.164
    assert high - low == pytest.approx(2 * 0.164, abs=0.05)
    assert stats.bootstrap_ci([0.5]) == (0.5, 0.5)


def test_paired_difference_finds_a_real_gap_and_not_a_fake_one():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 60)
    a = {f"q{i}": v + 0.1 for i, v in enumerate(base)}  # a is better by 0.1 on every question
    b = {f"q{i}": v for i, v in enumerate(base)}
    result = stats.paired(a, b)
    assert result.n == 60 and result.diff == pytest.approx(0.1)
    assert result.ci_low == pytest.approx(0.1) and result.p_value < 0.001
    noise = {f"q{i}": v + rng.normal(0, 0.05) for i, v in enumerate(base)}
    same = stats.paired(noise, b)
    assert same.ci_low < 0 < same.ci_high and same.p_value > 0.05
    assert stats.paired(noise, b) == same  # seeded


def test_paired_uses_only_shared_questions():
    result = stats.paired({"q1": 1.0, "q2": 0.0, "q3": 1.0}, {"q1": 0.0, "q3": 0.0, "q9": 1.0})
    assert result.n == 2 and result.diff == 1.0
    with pytest.raises(ValueError):
        stats.paired({"q1": 1.0}, {"q2": 1.0})
