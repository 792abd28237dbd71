"""`rag`: the top-k chunks by dense, BM25 or fused retrieval. `order` puts them in relevance order,
back in document order (OP-RAG, Yu et al. 2024), or with the best at both ends of the context
("lost in the middle"). With a matched token budget, k grows or shrinks to fill it."""

from __future__ import annotations

from pipelines import retrieval, tokens
from pipelines.strategies import Block, Context, Corpus, Strategy

ORDERS = ("relevance", "document", "ends")


class Rag(Strategy):
    name = "rag"
    uses_index = True

    def __init__(self, top_k: int, method: str = "dense", order: str = "relevance", fusion: dict | None = None,
                 budget_tokens: int | None = None):
        if top_k < 1:
            raise ValueError(f"retrieval.top_k must be at least 1, got {top_k}")
        if order not in ORDERS:
            raise ValueError(f"retrieval.order must be one of {', '.join(ORDERS)}, got {order!r}")
        if method not in retrieval.METHODS:
            raise ValueError(f"retrieval.method must be one of {', '.join(retrieval.METHODS)}, got {method!r}")
        self.top_k, self.method, self.order = top_k, method, order
        self.fusion = retrieval.Fusion(**(fusion or {}))
        self.budget_tokens = budget_tokens

    def build(self, question, corpus: Corpus, budget: int) -> Context:
        k = len(corpus.index.chunks) if self.budget_tokens else self.top_k
        hits = retrieval.search(corpus.index, question.text, k, question.scope, self.method, self.fusion)
        if self.budget_tokens:
            hits = fill(hits, min(budget, self.budget_tokens))
        hits = arrange(hits, self.order, corpus)
        return Context(
            blocks=tuple(block(h) for h in hits),
            context_ids=tuple(h.chunk.chunk_id for h in hits),
            doc_ids=tuple(dict.fromkeys(h.chunk.doc_id for h in sorted(hits, key=lambda h: -h.score))),
            scores=tuple(round(h.score, 4) for h in hits),
            context_doc_ids=tuple(h.chunk.doc_id for h in hits),
        )


def block(hit) -> Block:
    return Block(f"{hit.chunk.doc_id} (part {hit.chunk.position + 1})", hit.chunk.text, hit.chunk.tokens)


def fill(hits, limit: int) -> list:
    """Best chunks, in rank order, while the rendered context stays within `limit` cl100k tokens in
    whatever order the caller then puts them (document order, both ends...).

    Counted exactly from each chunk's stored count (only its ends encoded again: a matched budget ranks
    every chunk of the corpus for every question): a block counted with the separator after it ends at an
    exact seam (the next block starts with "["), so a context is the sum of its blocks' counts, each with
    the separator but the last one. The separator costs a block 0 or 1 tokens (none after a full stop:
    cl100k has ".\n\n"), so the largest count any order gives is the sum with every separator less the
    smallest of those costs. Counting every growing trial context was quadratic."""
    from pipelines.prompts import SEPARATOR

    chosen, used, saving = [], 0, None  # `used`: every block with its separator; `saving`: the smallest separator cost
    for hit in hits:
        b = block(hit)
        label = f"[{b.label}]\n"
        alone = tokens.around(label, b.text, b.tokens, "").n
        with_separator = tokens.around(label, b.text, b.tokens, SEPARATOR).n
        least = with_separator - alone if saving is None else min(saving, with_separator - alone)
        if used + with_separator - least > limit:
            continue  # a smaller chunk further down may still fit
        chosen.append(hit)
        used, saving = used + with_separator, least
    return chosen


def arrange(hits, order: str, corpus: Corpus) -> list:
    if order == "document":
        position = {d.doc_id: i for i, d in enumerate(corpus.documents)}
        return sorted(hits, key=lambda h: (position[h.chunk.doc_id], h.chunk.position))
    if order == "ends":
        # ranks 1, 3, 5, ... from the front and 2, 4, 6, ... from the back: the weakest in the middle
        return hits[0::2] + hits[1::2][::-1]
    return list(hits)
