"""`budget.max_usd`: stop sending before the accumulated cost could pass the cap, also with many
calls in flight. Each call reserves its worst case (every prompt token a cache miss, the full output
reserve) before it is sent; when it returns, the reservation becomes its actual cost."""

from __future__ import annotations

import threading
from dataclasses import replace


class Budget:
    def __init__(self, max_usd: float | None):
        self.max_usd = max_usd
        self.spent = 0.0
        self.reserved = 0.0
        self.stopped = False
        self._lock = threading.Lock()

    def reserve(self, worst_case_usd: float) -> bool:
        with self._lock:
            if self.max_usd is None:
                return True
            if self.stopped or self.spent + self.reserved + worst_case_usd > self.max_usd:
                self.stopped = True  # once refused, stay stopped: later questions are not cheaper to trust
                return False
            self.reserved += worst_case_usd
            return True

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        with self._lock:
            if self.max_usd is not None:
                self.reserved -= reserved_usd
            self.spent += actual_usd


class BudgetStop(Exception):
    """The budget refused this call: nothing was sent."""


def paid_call(model, messages: list[dict], key: str, cache, budget: Budget):
    """The one way a call is made, for answers and judge verdicts alike: from the response cache if
    there, else reserve the worst case, call, settle with the actual cost and store the answer.
    Raises BudgetStop (not sent) or the model's CallFailed (sent, failed, settled at 0)."""
    from pipelines.estimate import worst_case_usd
    from pipelines.models.chat import CallFailed
    from pipelines.models.usage import cost_usd
    from pipelines.prompts import Prompt

    done = cache.get(key) if cache else None
    if done is not None:
        # The cache keeps the provider's usage; dollars follow the prices in force now (overrides included).
        return replace(done, cost_usd=cost_usd(done.usage, model.prices))
    worst = worst_case_usd(Prompt(messages, 0, 0, "ok"), model)
    if not budget.reserve(worst):
        raise BudgetStop(f"budget.max_usd={budget.max_usd} reached: not sent")
    try:
        done = model.complete(messages)
    except CallFailed:
        budget.settle(worst, 0.0)
        raise
    budget.settle(worst, done.cost_usd)
    if cache:
        cache.put(key, done)
    return done
