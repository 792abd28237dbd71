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
    """Every prompt token billed as a cache miss and the whole output reserve used; for a GPU-hour
    model, every attempt running to its timeout (its expected cost is unknown before it runs)."""
    if model.prices.gpu_usd_per_hour is not None:
        return model.prices.gpu_usd_per_hour * model.timeout_s * (model.max_retries + 1) / 3600
    n_input = math.ceil(prompt.token_count() * model.tokens_per_cl100k)
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
        text, counted = prompt.text, prompt.token_count()
        n = math.ceil(counted * model.tokens_per_cl100k)
        shared = _cached_prefix_tokens(text, counted, sent, model)
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


def _cached_prefix_tokens(text: str, counted: int, earlier: _Prefixes, model: ChatModel) -> int:
    rule = model.prefix_cache
    if not rule or not earlier:
        return 0
    longest = earlier.longest(text)
    # The shared prefix's tokens in proportion to its characters: re-encoding every prefix was most of
    # a 6,000-question dry run's time, and an estimate needs no exact count.
    n = math.floor(counted * longest / max(1, len(text)) * model.tokens_per_cl100k)
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


def run_estimate(prepared, cached, model: ChatModel, judge=None) -> dict:
    """The dry-run row of one configuration: the calls always sent (a plan's first step), the range up
    to every later step being sent too (Self-Route's fallback, a cascade's large model), every judge
    call, and how many prompts the window guard will cut and by how many tokens."""
    steps = list(zip(*[(p, *p.then) for p in prepared])) if prepared else []
    parts = [estimate([p.prompt for p in step], [cached(p) for p in step], step[0].model or model) for step in steps]
    first = parts[0] if parts else Estimate()
    later = parts[1:]
    judged = _judge_usd(prepared, model, judge)
    items = [p for step in steps for p in step]
    return {"calls": first.calls, "cached": first.cached, "input_miss": first.input_miss, "input_hit": first.input_hit,
            "output": first.output, "usd": first.usd + judged[1],
            "calls_max": first.calls + sum(e.calls for e in later), "usd_max": first.usd + sum(e.usd for e in later) + judged[1],
            "judge_calls": judged[0], "judge_usd": judged[1],
            "truncated": sum(p.record.status == "truncated" for p in items),
            "dropped": sum(p.record.dropped_tokens for p in items)}


def _judge_usd(prepared, model: ChatModel, judge) -> tuple[int, float]:
    """Judge calls (a verdict per question with a reference, a faithfulness check per question with a
    context) and their cost at the judge's prices, from the prompts' known parts and the answering
    model's expected answer length; the context counts at most what the judge's window takes."""
    if judge is None:
        return 0, 0.0
    from pipelines import judge as judging

    m = judge.model
    answer = model.expected_output_tokens
    room = int(m.prompt_window / m.tokens_per_cl100k)
    reply = min(m.expected_output_tokens, m.max_output_tokens)
    rubric = tokens.count(judging.RUBRIC.format(question="", reference="", answer=""))
    faithful = tokens.count(judging.FAITHFUL.format(context="", sentences=""))
    calls, n_input = 0, 0
    for p in prepared:
        q = p.question
        if q.answers or q.unanswerable:
            calls += 1
            n_input += rubric + tokens.count(q.text) + tokens.count(q.answers[0] if q.answers else "") + answer
        if judge.faithfulness and p.context:
            calls += 1
            n_input += faithful + min(room, p.record.context_tokens) + answer
    usd = (n_input * m.tokens_per_cl100k * m.prices.input_cache_miss + calls * reply * m.prices.output) / 1e6
    return calls, usd
