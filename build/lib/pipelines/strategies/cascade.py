"""`cascade` (small -> large, from the deployment playbook): a small, cheap model answers first with any
context strategy (rag, hybrid, full_context...); a question goes on to the run's model only when the
small one declines (abstains), fails, or saw its context cut by its smaller window. Rows record the
route (`small` or `large`) and every call; runs log the share escalated and what was saved."""

from __future__ import annotations

from pipelines.metrics import is_abstention
from pipelines.strategies import Context, Corpus, Step, Strategy

REASONS = ("abstain", "error", "truncated")


class Cascade(Strategy):
    name = "cascade"

    def __init__(self, context: Strategy, small, instruction: str = "", escalate_on: tuple[str, ...] = REASONS):
        unknown = [r for r in escalate_on if r not in REASONS]
        if unknown:
            raise ValueError(f"strategy.escalate_on: unknown reason(s) {', '.join(unknown)}; valid: {', '.join(REASONS)}")
        self.context, self.small, self.instruction = context, small, instruction
        self.escalate_on = tuple(escalate_on)
        self.uses_index = context.uses_index

    def build(self, question, corpus: Corpus, budget: int) -> Context:
        return self.context.build(question, corpus, budget)

    def steps(self) -> list[Step]:
        return [Step("small", self.context, self.small, self.instruction), Step("large", self.context)]

    def escalate(self, step: int, record) -> bool:
        if record.status == "error":
            return "error" in self.escalate_on
        if record.status == "skipped":  # not sent (budget, interrupt, window): the next step would not be either
            return False
        if record.status == "truncated" and "truncated" in self.escalate_on:
            return True
        return "abstain" in self.escalate_on and (is_abstention(record.answer) or not record.answer.strip())
