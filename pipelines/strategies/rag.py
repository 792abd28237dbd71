"""`rag`: the top-k chunks by vector similarity, best first."""

from __future__ import annotations

from pipelines.strategies import Block, Context, Corpus, Strategy


class Rag(Strategy):
    name = "rag"
    uses_index = True

    def __init__(self, top_k: int):
        if top_k < 1:
            raise ValueError(f"retrieval.top_k must be at least 1, got {top_k}")
        self.top_k = top_k

    def build(self, question, corpus: Corpus, budget: int) -> Context:
        hits = corpus.index.search(question.text, self.top_k, question.scope)
        return Context(
            blocks=tuple(Block(f"{h.chunk.doc_id} (part {h.chunk.position + 1})", h.chunk.text) for h in hits),
            context_ids=tuple(h.chunk.chunk_id for h in hits),
            doc_ids=tuple(dict.fromkeys(h.chunk.doc_id for h in hits)),
            scores=tuple(round(h.score, 4) for h in hits),
        )
