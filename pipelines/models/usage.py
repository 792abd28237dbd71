"""Token usage as the provider reported it, and cost as a pure function of usage and prices."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prices:
    """USD per million tokens, with the date they were read and where."""

    input_cache_miss: float
    input_cache_hit: float
    output: float
    as_of: str = ""
    source: str = ""
    input_cache_write: float | None = None  # prompt tokens written to the cache (Anthropic: 1.25x); None: the miss price
    # A self-hosted model paid by the hour (vLLM on your GPU): calls pay GPU time, not tokens
    # (pipelines/gpu_time.py); the token prices are then ignored.
    gpu_usd_per_hour: float | None = None

    def __post_init__(self):
        if self.input_cache_write is None:
            object.__setattr__(self, "input_cache_write", self.input_cache_miss)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # all prompt tokens: cache hits, cache writes and the rest
    cache_hit_tokens: int = 0
    output_tokens: int = 0  # includes reasoning tokens: providers bill them as output
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # written to the provider's cache (billed above the miss price by Anthropic)

    def __post_init__(self):
        # A negative count would make a negative bill: refuse the usage rather than credit the budget.
        if min(self.input_tokens, self.cache_hit_tokens, self.output_tokens, self.reasoning_tokens,
               self.cache_write_tokens, self.input_tokens - self.cache_hit_tokens - self.cache_write_tokens) < 0:
            raise ValueError(f"inconsistent usage (negative count): {self}")

    @property
    def cache_miss_tokens(self) -> int:
        return max(0, self.input_tokens - self.cache_hit_tokens - self.cache_write_tokens)

    @classmethod
    def from_response(cls, usage) -> Usage:
        """Parse the `usage` object of a chat completion (the SDK's model or a plain dict)."""
        if usage is None:
            return cls()
        u = usage if isinstance(usage, dict) else usage.model_dump()
        details = u.get("prompt_tokens_details") or {}
        completion_details = u.get("completion_tokens_details") or {}
        read = u.get("cache_read_input_tokens")
        write = u.get("cache_creation_input_tokens") or details.get("cache_write_tokens") or 0
        if "prompt_tokens" not in u and "input_tokens" in u:
            # Anthropic's native shape: input_tokens excludes the cache reads and writes.
            return cls(input_tokens=u["input_tokens"] + (read or 0) + write, cache_hit_tokens=read or 0,
                       output_tokens=u.get("output_tokens") or 0, cache_write_tokens=write)
        prompt = u.get("prompt_tokens") or 0
        # DeepSeek reports prompt_cache_hit_tokens; OpenAI-style hosts prompt_tokens_details.cached_tokens;
        # gateways may pass Anthropic's cache_read_input_tokens through.
        hit = u.get("prompt_cache_hit_tokens")
        if hit is None:
            hit = details.get("cached_tokens") or read or 0
        if hit + write > prompt:
            prompt += hit + write  # Anthropic's semantics behind an OpenAI-shaped gateway: prompt excludes them
        return cls(input_tokens=prompt, cache_hit_tokens=hit, output_tokens=u.get("completion_tokens") or 0,
                   reasoning_tokens=completion_details.get("reasoning_tokens") or 0, cache_write_tokens=write)


def call_cost(usage: Usage, prices: Prices, latency_s: float | None) -> float:
    """A call's cost: from its tokens, or for a GPU-hour model the GPU time of the call alone (its
    latency); overlapping calls then share it (pipelines/gpu_time.py)."""
    if prices.gpu_usd_per_hour is not None:
        return prices.gpu_usd_per_hour * (latency_s or 0.0) / 3600
    return cost_usd(usage, prices)


def cost_usd(usage: Usage, prices: Prices) -> float:
    write_price = prices.input_cache_miss if prices.input_cache_write is None else prices.input_cache_write
    return (
        usage.cache_miss_tokens * prices.input_cache_miss
        + usage.cache_hit_tokens * prices.input_cache_hit
        + usage.cache_write_tokens * write_price
        + usage.output_tokens * prices.output
    ) / 1_000_000
