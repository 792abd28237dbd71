"""The prefix-cache estimate compares each prompt with at most its two sorted neighbours, not with every
earlier prompt (a 6,000-question dry run was quadratic), and finds the same longest shared prefix."""

import random

from pipelines import estimate


def _brute(text, earlier):
    best = 0
    for e in earlier:
        n = 0
        while n < min(len(text), len(e)) and text[n] == e[n]:
            n += 1
        best = max(best, n)
    return best


def test_longest_prefix_matches_brute_force():
    rng = random.Random(0)
    texts = ["".join(rng.choice("ab") for _ in range(rng.randint(0, 12))) for _ in range(300)]
    seen = estimate._Prefixes()
    for i, t in enumerate(texts):
        assert seen.longest(t) == _brute(t, texts[:i]), t
        seen.add(t)


def test_comparisons_grow_linearly(monkeypatch):
    calls = []
    real = estimate._common_prefix_len
    monkeypatch.setattr(estimate, "_common_prefix_len", lambda a, b: calls.append(1) or real(a, b))
    seen = estimate._Prefixes()
    for i in range(500):
        t = f"shared context {i:04d}"
        seen.longest(t)
        seen.add(t)
    assert len(calls) <= 2 * 500
