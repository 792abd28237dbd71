"""Messages for one question, documents first and the question last (providers cache prompt
prefixes, so what repeats across questions goes first), and the guard that keeps a prompt inside
the model's window: `truncate` keeps the head and tail of the context, `skip` sends nothing."""

from __future__ import annotations

import string
from dataclasses import dataclass

from pipelines import tokens
from pipelines.strategies import Context

POLICIES = ("truncate", "skip")
# Chat templates wrap each message in role markers; this covers them for the models we ship.
TEMPLATE_MARGIN = 32


@dataclass(frozen=True)
class Prompt:
    messages: list[dict]
    context_tokens: int  # cl100k tokens of context actually sent
    dropped_tokens: int  # cl100k tokens cut from the middle by `truncate` (0 otherwise)
    status: str  # ok | truncated | skipped
    n_tokens: int | None = None  # cl100k tokens of `text`, when `build` counted them from its parts
    # The last message's content in pieces whose join is that content, documents' texts whole (the same
    # objects for every question that has them): the cache key and the request's JSON escape each document
    # once a run (pipelines/models/body.py).
    parts: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """What the provider sees, in order: the basis for token estimates and prefix sharing."""
        return "\n".join(m["content"] for m in self.messages)

    def token_count(self) -> int:
        """cl100k tokens of `text` (the estimate and the budget's reservation read it)."""
        return self.n_tokens if self.n_tokens is not None else tokens.count(self.text)


SEPARATOR = "\n\n"  # between blocks; each block starts with "[", so the seams count exactly (tokens.count_parts)


def render_context(context: Context) -> str:
    return SEPARATOR.join(_blocks(context))


def _blocks(context: Context) -> list[str]:
    return [f"[{b.label}]\n{b.text}" for b in context.blocks]


def context_tokens(context: Context) -> int:
    """cl100k tokens of render_context's text, exactly, from the blocks' known counts where they have them."""
    return tokens.count_parts(_context_parts(context))


def _context_parts(context: Context, after: str = "", inner: list[str] | None = None) -> list[str]:
    """render_context's text (then `after`) in parts that repeat across questions: each block's label,
    then its text with the separator; one part counted from the text's known count where it has one.
    `inner`: the parts of every block but the last, when already made (they do not depend on `after`)."""
    if not context.blocks:
        return []
    inner = _inner_parts(context) if inner is None else inner
    return inner + _block_parts(context.blocks[-1], after)


def _inner_parts(context: Context) -> list[str]:
    return [part for b in context.blocks[:-1] for part in _block_parts(b, SEPARATOR)]


def _block_parts(b, suffix: str) -> list[str]:
    if b.tokens is None:
        return [f"[{b.label}]\n", b.text + suffix]
    return [tokens.around(f"[{b.label}]\n", b.text, b.tokens, suffix)]


def _prompt_tokens(context: Context, question: str, system: str, template: str,
                   inner: list[str] | None = None) -> int | None:
    """cl100k tokens of the prompt's text (system, newline, the filled template), from its parts: the
    documents' counts are shared by every question that has them."""
    mark = "\x00context\x00"
    head, found, tail = template.format(context=mark, question=question).partition(mark)
    if not found:
        return None
    lead = tail[:len(tail) - len(tail.lstrip())].rpartition("\n")
    lead = lead[0] + lead[1]  # the tail's leading white space up to its last newline, put with the last block
    if context.blocks:
        tail = tail[len(lead):]
    parts = _context_parts(context, lead, inner)
    return tokens.count_parts([(system + "\n" if system else "") + head, *parts, tail])


def _content_parts(context: Context, question: str, template: str) -> tuple[str, ...]:
    """The user message's content (the filled template) in pieces; () unless the template holds the
    context exactly once, as it is (no format spec or conversion, which would change its text)."""
    fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template) if name == "context"]
    if fields != [("context", "", None)]:
        return ()
    mark = "\x00context\x00"
    pieces = template.format(context=mark, question=question).split(mark)
    if len(pieces) != 2 or mark in question:
        return ()
    inner = []
    for i, b in enumerate(context.blocks):
        inner += [SEPARATOR + f"[{b.label}]\n" if i else f"[{b.label}]\n", b.text]
    return (pieces[0], *inner, pieces[1])


def messages(system: str, template: str, context_text: str, question: str) -> list[dict]:
    out = [{"role": "system", "content": system}] if system else []
    return out + [{"role": "user", "content": template.format(context=context_text, question=question)}]


def context_budget(window_tokens: int, tokens_per_cl100k: float, system: str, template: str, question: str,
                   question_reserve: int = 0) -> int:
    """cl100k tokens left for context once the fixed parts of the prompt are counted.

    `window_tokens` is the model's window minus its output reserve, in the model's own tokens;
    `tokens_per_cl100k` converts, since a model's tokenizer is rarely cl100k. The question counts as
    at least `question_reserve` tokens, so questions of different lengths get the same budget and a
    truncated context stays byte-identical across questions: a prefix the provider can cache."""
    fixed = tokens.count(system) + tokens.count(template.format(context="", question="")) + TEMPLATE_MARGIN
    return max(0, int(window_tokens / tokens_per_cl100k) - fixed - max(question_reserve, tokens.count(question)))


MARKER = "\n\n[... {} tokens omitted to fit the context window ...]\n\n"


def _whole(ids: list[int]) -> str:
    """Text of a slice of token ids without the partial characters at its two ends: cl100k splits
    multi-byte characters (CJK, emoji) across tokens, and decoding half of one gives U+FFFD."""
    return tokens.encoding().decode_bytes(ids).decode("utf-8", errors="ignore")


def fit(text: str, budget: int) -> tuple[str, int]:
    """`text` cut to at most `budget` cl100k tokens: head and tail kept, the middle replaced by a
    marker that says how much went; (text, tokens dropped). A budget too small for the marker keeps
    the head alone. Never cuts inside a character, never ends above the budget."""
    ids = tokens.encode(text)
    if len(ids) <= budget:
        return text, 0
    n = budget - tokens.count(MARKER.format(len(ids)))  # ids to keep around the marker
    marked = n > 0
    if not marked:
        n = budget
    while True:
        if marked:
            head, tail = n - n // 2, n // 2
            dropped = len(ids) - head - tail
            cut = _whole(ids[:head]) + MARKER.format(dropped) + (_whole(ids[-tail:]) if tail else "")
        else:
            dropped = len(ids) - n
            cut = _whole(ids[:n])
        over = tokens.count(cut) - budget  # re-encoding at the cuts can merge or split tokens: checked
        if over <= 0:
            return cut, dropped
        n -= over
        if marked and n <= 0:
            marked, n = False, budget


def build(context: Context, question: str, system: str, template: str, budget: int, policy: str) -> Prompt:
    if policy not in POLICIES:
        raise ValueError(f"prompt.overflow must be one of {POLICIES}, got {policy!r}")
    text = render_context(context)
    inner = _inner_parts(context)  # counted once for both counts below, which differ after the last block
    n = tokens.count_parts(_context_parts(context, "", inner))
    if n <= budget:
        return Prompt(messages(system, template, text, question), n, 0, "ok",
                      _prompt_tokens(context, question, system, template, inner),
                      _content_parts(context, question, template))
    if policy == "skip":
        return Prompt([], n, 0, "skipped")
    cut, dropped = fit(text, budget)
    return Prompt(messages(system, template, cut, question), tokens.count(cut), dropped, "truncated")
