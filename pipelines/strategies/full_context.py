"""`full_context`: every document (of the question's scope), whole, in corpus order (stable, so providers
can cache the prefix)."""

from __future__ import annotations

from pipelines.strategies import Block, Context, Corpus, Strategy


class FullContext(Strategy):
    name = "full_context"

    def build(self, question, corpus: Corpus, budget: int) -> Context:
        docs = corpus.documents_for(question)
        return Context(
            blocks=tuple(Block(d.doc_id, d.text, d.tokens) for d in docs),
            context_ids=tuple(d.doc_id for d in docs),
            doc_ids=tuple(d.doc_id for d in docs),
            context_doc_ids=tuple(d.doc_id for d in docs),
            retrieved=False,
        )
