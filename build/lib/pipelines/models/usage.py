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


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # all prompt tokens, hit + miss
    cache_hit_tokens: int = 0
    output_tokens: int = 0  # includes reasoning tokens: providers bill them as output
    reasoning_tokens: int = 0

    @property
    def cache_miss_tokens(self) -> int:
        return self.input_tokens - self.cache_hit_tokens

    @classmethod
    def from_response(cls, usage) -> Usage:
        """Parse the `usage` object of a chat completion (the SDK's model or a plain dict)."""
        if usage is None:
            return cls()
        u = usage if isinstance(usage, dict) else usage.model_dump()
        prompt = u.get("prompt_tokens") or 0
        details = u.get("prompt_tokens_details") or {}
        # DeepSeek reports prompt_cache_hit_tokens; OpenAI-style hosts prompt_tokens_details.cached_tokens;
        # Anthropic's native name is cache_read_input_tokens, which some compatible gateways pass through.
        hit = u.get("prompt_cache_hit_tokens")
        if hit is None:
            hit = details.get("cached_tokens") or u.get("cache_read_input_tokens") or 0
        completion_details = u.get("completion_tokens_details") or {}
        return cls(
            input_tokens=prompt,
            cache_hit_tokens=hit,
            output_tokens=u.get("completion_tokens") or 0,
            reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
        )


def cost_usd(usage: Usage, prices: Prices) -> float:
    return (
        usage.cache_miss_tokens * prices.input_cache_miss
        + usage.cache_hit_tokens * prices.input_cache_hit
        + usage.output_tokens * prices.output
    ) / 1_000_000
