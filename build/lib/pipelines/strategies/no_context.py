"""`no_context`: the question alone. Shows how much of a "correct" answer comes from the model's
memory rather than the documents; its prompt asks from knowledge, not from documents."""

from __future__ import annotations

from pipelines.strategies import Context, Corpus, Strategy


class NoContext(Strategy):
    name = "no_context"

    def __init__(self, system: str, template: str):
        self.system = system
        self.template = template

    def build(self, question, corpus: Corpus, budget: int) -> Context:
        return Context(blocks=(), context_ids=(), doc_ids=(), retrieved=False)
