"""`self_route` (Li et al. 2024, "Retrieval Augmented Generation or Long-Context LLMs?"): answer from
the retrieved chunks first, told to reply "unanswerable" when they do not suffice; only those questions
go on to full context (or the pre-filtered hybrid). A two-step plan (pipelines.strategies.Step) the
runner executes like any other; each row says which route it took."""

from __future__ import annotations

import re

from pipelines.strategies import Context, Corpus, Step, Strategy
from pipelines.strategies.full_context import FullContext
from pipelines.strategies.hybrid import Hybrid
from pipelines.strategies.rag import Rag

_DECLINED = re.compile(r"\bunanswerable\b", re.IGNORECASE)


class SelfRoute(Strategy):
    name = "self_route"
    uses_index = True

    def __init__(self, rag: dict, instruction: str, fallback: str = "full_context", hybrid: dict | None = None):
        if fallback not in ("full_context", "hybrid"):
            raise ValueError(f"strategy.fallback must be full_context or hybrid, got {fallback!r}")
        self.first = Rag(**rag)
        self.fallback = FullContext() if fallback == "full_context" else Hybrid(**(hybrid or {}))
        self.instruction = instruction

    def build(self, question, corpus: Corpus, budget: int) -> Context:
        return self.first.build(question, corpus, budget)

    def steps(self) -> list[Step]:
        return [Step("rag", self.first, instruction=self.instruction), Step(self.fallback.name, self.fallback)]

    def escalate(self, step: int, record) -> bool:
        return record.status in ("ok", "truncated") and self.declined(record.answer)

    @staticmethod
    def declined(answer: str) -> bool:
        return bool(_DECLINED.search(answer))
