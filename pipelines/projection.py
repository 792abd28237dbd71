"""Break-even projection: estimated cost per question for each strategy as the corpus grows, from a
run's measured token profile and each model's prices, and where full context stops fitting; the
assumptions, stated in the report, are ASSUMPTIONS."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

ASSUMPTIONS = (
    "rag sends the same context whatever the corpus size; hybrid keeps the share of the corpus it kept in "
    "the run, up to its token budget; full_context sends the whole corpus, and with a provider that caches "
    "prefixes every question after the first pays the hit price for it (many questions per corpus); "
    "self_route pays RAG for every question plus its measured routed share of its fallback; output tokens "
    "stay as measured.")
SIZES = np.unique(np.logspace(4, 6, 21).round(-3).astype(int))  # 10k .. 1M cl100k tokens


@dataclass(frozen=True)
class Profile:
    strategy: str
    context_tokens: float  # mean cl100k context tokens per question in the run
    corpus_tokens: float  # cl100k tokens of the run's corpus
    overhead_tokens: float  # cl100k tokens of the prompt besides the context
    output_tokens: float  # mean completion tokens
    token_budget: float | None = None  # hybrid's cap
    routed_share: float = 0.0  # self_route: share of questions sent on to the fallback (`routed_share` metric)
    fallback: str = "full_context"  # self_route: the strategy those questions go to


@dataclass(frozen=True)
class Pricing:
    name: str
    miss: float
    hit: float
    output: float
    window: int
    max_output: int
    tokens_per_cl100k: float
    caches_prefix: bool


def context_at(profile: Profile, corpus: float) -> float:
    if profile.strategy == "full_context":
        return corpus
    if profile.strategy == "hybrid":
        share = profile.context_tokens / profile.corpus_tokens if profile.corpus_tokens else 1.0
        return min(corpus * share, profile.token_budget or float("inf"))
    return min(profile.context_tokens, corpus)


def cost_per_question(profile: Profile, pricing: Pricing, corpus: float) -> tuple[float, bool]:
    """(USD per question, whether the prompt fits the window; if not, priced as truncated to it)."""
    if profile.strategy == "self_route":  # every question pays RAG; the routed share pays the fallback too
        first, _ = cost_per_question(replace(profile, strategy="rag"), pricing, corpus)
        second, fits = cost_per_question(replace(profile, strategy=profile.fallback), pricing, corpus)
        return first + profile.routed_share * second, fits or not profile.routed_share
    window = (pricing.window - pricing.max_output) / pricing.tokens_per_cl100k - profile.overhead_tokens
    context = context_at(profile, corpus)
    fits = context <= window
    context = min(context, window)
    cached = context if (pricing.caches_prefix and profile.strategy == "full_context") else 0.0
    miss = (context - cached + profile.overhead_tokens) * pricing.tokens_per_cl100k
    hit = cached * pricing.tokens_per_cl100k
    return (miss * pricing.miss + hit * pricing.hit + profile.output_tokens * pricing.output) / 1e6, fits


def fit_limit(profile: Profile, pricing: Pricing) -> float:
    """Corpus size (cl100k tokens) beyond which full context no longer fits the window."""
    return (pricing.window - pricing.max_output) / pricing.tokens_per_cl100k - profile.overhead_tokens


def table(profiles: list[Profile], pricings: list[Pricing]) -> list[dict]:
    rows = []
    for profile in profiles:
        for pricing in pricings:
            for size in SIZES:
                usd, fits = cost_per_question(profile, pricing, float(size))
                rows.append({"strategy": profile.strategy, "model": pricing.name, "corpus_tokens": int(size),
                             "usd_per_question": usd, "fits_window": fits})
    return rows
