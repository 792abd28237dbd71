"""Token and cost estimates made before any call: the dry-run table, the confirmation prompt and the
budget's worst case. Estimates use cl100k counts scaled by the model's `tokens_per_cl100k`; the
costs logged to MLflow never do, they come from the usage the provider returns."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from pipelines import tokens
from pipelines.models.chat import ChatModel
from pipelines.prompts import Prompt


@dataclass(frozen=True)
class Estimate:
    calls: int = 0  # requests that would be sent (not skipped, not in the response cache)
    cached: int = 0  # answered from the response cache: no call
    input_miss: int = 0
    input_hit: int = 0  # prefix tokens the provider would likely serve from its cache
    output: int = 0
    usd: float = 0.0


def worst_case_usd(prompt: Prompt, model: ChatModel) -> float:
    """Every prompt token billed as a cache miss and the whole output reserve used."""
    n_input = math.ceil(tokens.count(prompt.text) * model.tokens_per_cl100k)
    return (n_input * model.prices.input_cache_miss + model.max_output_tokens * model.prices.output) / 1e6


def estimate(prompts: list[Prompt | None], cached: list[bool], model: ChatModel) -> Estimate:
    """`prompts[i]` is None where nothing is sent; `cached[i]` where the response cache answers."""
    sent, calls, n_cached, miss, hit = _Prefixes(), 0, 0, 0, 0
    for prompt, is_cached in zip(prompts, cached):
        if prompt is None:
            continue
        if is_cached:
            n_cached += 1
            continue
        text = prompt.text
        n = math.ceil(tokens.count(text) * model.tokens_per_cl100k)
        shared = _cached_prefix_tokens(text, sent, model)
        calls, hit, miss = calls + 1, hit + shared, miss + n - shared
        sent.add(text)
    output = calls * model.expected_output_tokens
    p = model.prices
    usd = (miss * p.input_cache_miss + hit * p.input_cache_hit + output * p.output) / 1e6
    return Estimate(calls, n_cached, miss, hit, output, usd)


class _Prefixes:
    """Prompts sent so far, kept sorted: the longest prefix a new prompt shares with ANY of them is the
    longer of what it shares with its two sorted neighbours, so each prompt costs two comparisons
    instead of one per earlier prompt (a 6,000-question dry run was quadratic)."""

    def __init__(self):
        self._sorted: list[str] = []

    def __bool__(self) -> bool:
        return bool(self._sorted)

    def add(self, text: str) -> None:
        bisect.insort(self._sorted, text)

    def longest(self, text: str) -> int:
        i = bisect.bisect_left(self._sorted, text)
        return max((_common_prefix_len(text, self._sorted[j]) for j in (i - 1, i) if 0 <= j < len(self._sorted)),
                   default=0)


def _cached_prefix_tokens(text: str, earlier: _Prefixes, model: ChatModel) -> int:
    rule = model.prefix_cache
    if not rule or not earlier:
        return 0
    longest = earlier.longest(text)
    n = math.floor(tokens.count(text[:longest]) * model.tokens_per_cl100k)
    if n < rule.get("min_tokens", 0):
        return 0
    block = rule.get("block", 1)
    return n // block * block


def _common_prefix_len(a: str, b: str) -> int:
    # Binary search with slice comparisons: C-speed on prompts of hundreds of thousands of characters.
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
