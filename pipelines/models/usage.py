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
    input_cache_write: float | None = None  # writing a prompt prefix to the cache; None = the miss price

    def __post_init__(self):
        if self.input_cache_write is None:
            object.__setattr__(self, "input_cache_write", self.input_cache_miss)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # all prompt tokens, hit + write + miss
    cache_hit_tokens: int = 0
    output_tokens: int = 0  # includes reasoning tokens: providers bill them as output
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # prompt tokens written to the provider's cache (Anthropic bills these higher)

    def __post_init__(self):
        # A negative count would make a negative bill: refuse the usage rather than credit the budget.
        if min(self.input_tokens, self.cache_hit_tokens, self.output_tokens, self.reasoning_tokens,
               self.cache_write_tokens, self.cache_miss_tokens) < 0:
            raise ValueError(f"inconsistent usage (negative count): {self}")

    @property
    def cache_miss_tokens(self) -> int:
        return self.input_tokens - self.cache_hit_tokens - self.cache_write_tokens

    @classmethod
    def from_response(cls, usage) -> Usage:
        """Parse the `usage` object of a chat completion (the SDK's model or a plain dict)."""
        if usage is None:
            return cls()
        u = usage if isinstance(usage, dict) else usage.model_dump()
        prompt = u.get("prompt_tokens") or u.get("input_tokens") or 0
        details = u.get("prompt_tokens_details") or {}
        # DeepSeek reports prompt_cache_hit_tokens; OpenAI-style hosts prompt_tokens_details.cached_tokens;
        # Anthropic's native name is cache_read_input_tokens, which some compatible gateways pass through.
        hit = u.get("prompt_cache_hit_tokens")
        if hit is None:
            hit = details.get("cached_tokens") or u.get("cache_read_input_tokens") or 0
        write = u.get("cache_creation_input_tokens") or 0
        # Anthropic-native usage counts input_tokens WITHOUT cache reads and writes; gateways that pass it
        # through show it as prompt_tokens. OpenAI-style totals always include them, so a total smaller
        # than reads + writes can only be the native, exclusive count.
        if "prompt_tokens" not in u or prompt < hit + write:
            prompt += hit + write
        completion_details = u.get("completion_tokens_details") or {}
        return cls(
            input_tokens=prompt,
            cache_hit_tokens=hit,
            cache_write_tokens=write,
            output_tokens=u.get("completion_tokens") or u.get("output_tokens") or 0,
            reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
        )


def cost_usd(usage: Usage, prices: Prices) -> float:
    return (
        usage.cache_miss_tokens * prices.input_cache_miss
        + usage.cache_hit_tokens * prices.input_cache_hit
        + usage.cache_write_tokens * prices.input_cache_write
        + usage.output_tokens * prices.output
    ) / 1_000_000
