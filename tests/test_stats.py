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


def test_a_tiny_comparison_never_shows_a_confident_interval_beside_a_large_p():
    # n = 2, both differences positive: the percentile bootstrap gave [+0.10, +0.20] beside p = 0.5.
    result = stats.paired({"q1": 0.3, "q2": 0.5}, {"q1": 0.2, "q2": 0.3})
    # d = [0.1, 0.2]: mean 0.15, standard error 0.05, t = 3 on 1 degree of freedom, t(0.975, 1) = 12.71
    assert result.n == 2 and result.p_value == pytest.approx(0.2048, abs=1e-3)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.15 - 12.706 * 0.05, 0.15 + 12.706 * 0.05), abs=1e-3)
    assert result.inconclusive


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 8])
def test_interval_and_p_value_agree_at_small_n(n):
    rng = np.random.default_rng(n)
    for _ in range(50):
        a = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, n))}
        b = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, n))}
        r = stats.paired(a, b)
        excludes_zero = r.ci_low > 0 or r.ci_high < 0
        assert excludes_zero == (r.p_value < 0.05), (r, a, b)


def test_mean_interval_is_the_t_interval_at_small_n():
    from scipy import stats as scipy_stats

    values = [0.2, 0.5, 0.9, 0.4]
    low, high = stats.mean_ci(values)
    expected = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (low, high) == pytest.approx(expected)
    assert stats.mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)  # no spread, no width


def test_cost_per_question_is_what_the_answered_questions_cost():
    from pipelines.record import QuestionRecord
    from pipelines.tracking import aggregate

    answered = [QuestionRecord(f"q{i}", "rag", "m", "?", "", status="ok", answer="x", cost_usd=0.01) for i in range(2)]
    stopped = [QuestionRecord(f"s{i}", "rag", "m", "?", "", status="skipped") for i in range(8)]
    out = aggregate(answered + stopped, [])
    assert out["cost_usd_total"] == pytest.approx(0.02)
    assert out["cost_usd_per_question"] == pytest.approx(0.01)  # not 0.002: the 8 unsent cost nothing and say nothing
    assert out["questions"] == 10 and out["n_skipped"] == 8
