"""`budget.max_usd`: stop sending before the accumulated cost could pass the cap, also with many
calls in flight and across the processes of a sweep (pipelines/ledger.py). Each call reserves an
upper bound of its cost before it is sent; when it returns, the reservation becomes its billed cost.

The bound must hold for a provider whose tokenizer is not ours: output is capped by `max_tokens`;
input, until this model's billed-to-estimated ratio has been observed, is bounded by the prompt's
UTF-8 bytes (a byte-level BPE token is at least one byte), and afterwards by the cl100k count times
the largest observed ratio plus a margin (`INPUT_MARGIN`), recorded on the run."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import replace

from pipelines import interrupt, tokens, traces

log = logging.getLogger(__name__)
INPUT_MARGIN = 1.1  # over the largest billed/estimated input ratio seen for the model
PER_MESSAGE = 16  # chat-template tokens a provider may add around each message


class Budget:
    def __init__(self, max_usd: float | None, ledger=None):
        self.max_usd = max_usd
        self.ledger = ledger
        self.stopped = False
        self.overruns = 0  # calls that cost more than their reservation (a bound that did not hold)
        self._spent = 0.0
        self._reserved: dict[int, float] = {}
        self._ratios: dict[str, float] = {}
        self._next = 0
        self._lock = threading.Lock()

    @property
    def spent(self) -> float:
        return self.ledger.spent() if self.ledger else self._spent

    def reserve(self, usd: float, key: str = "") -> int | None:
        """A ticket for `settle`, or None (and stopped from then on) when the cap could be passed."""
        with self._lock:
            if self.stopped:
                return None
            if self.ledger:
                ticket = self.ledger.reserve(usd, self.max_usd, key)
            elif self.max_usd is not None and self._spent + sum(self._reserved.values()) + usd > self.max_usd:
                ticket = None
            else:
                self._next += 1
                ticket = self._next
                self._reserved[ticket] = usd
            if ticket is None:
                self.stopped = True  # once refused, stay stopped: later questions are not cheaper to trust
            return ticket

    def settle(self, ticket: int, reserved_usd: float, actual_usd: float) -> None:
        if actual_usd > reserved_usd + 1e-12:
            self.overruns += 1
            log.warning("a call cost $%.6f, more than the $%.6f reserved for it", actual_usd, reserved_usd)
        with self._lock:
            if self.ledger:
                self.ledger.settle(ticket, actual_usd)
            else:
                self._reserved.pop(ticket, None)
                self._spent += actual_usd

    def ratio(self, model: str) -> float | None:
        if not self.ledger:
            return self._ratios.get(model)
        shared = self.ledger.ratio(model)
        if shared is not None:
            with self._lock:
                self._ratios[model] = max(shared, self._ratios.get(model, 0.0))
        return shared

    def observe(self, model: str, estimated: int, billed: int) -> None:
        if estimated <= 0 or billed <= 0:
            return
        ratio = billed / estimated
        with self._lock:
            # The ledger keeps the maximum of every job's observations: one no higher than what this job
            # has read or written cannot change it, and is not written (a transaction per question, on
            # PostgreSQL a round trip). `_ratios` is then the largest this job knows the ledger holds.
            if ratio <= self._ratios.get(model, 0.0):
                return
            self._ratios[model] = ratio
        if self.ledger:
            self.ledger.observe_ratio(model, ratio)


class BudgetStop(Exception):
    """Nothing was sent: the budget refused the call, or the run is being interrupted."""


def worst_case_usd(messages: list[dict], model, ratio: float | None, n_cl100k: int) -> float:
    """An upper bound of what sending `messages` can cost (see the module docstring)."""
    p = model.prices
    if p.gpu_usd_per_hour is not None:  # GPU time: every attempt may run to its timeout
        return p.gpu_usd_per_hour * model.timeout_s * (model.max_retries + 1) / 3600
    text = "\n".join(m["content"] for m in messages)
    overhead = PER_MESSAGE * (len(messages) + 1)
    n_input = len(text.encode("utf-8")) + overhead
    if ratio is not None:
        n_input = min(n_input, math.ceil(n_cl100k * max(ratio, model.tokens_per_cl100k) * INPUT_MARGIN) + overhead)
    input_price = max(p.input_cache_miss, p.input_cache_hit, getattr(p, "input_cache_write", 0.0) or 0.0)
    return (n_input * input_price + model.max_output_tokens * p.output) / 1e6


def paid_call(model, messages: list[dict], key: str, cache, budget: Budget, on_text=None, n_cl100k: int | None = None,
              parts: tuple[str, ...] = ()):
    """The one way a call is made, for answers and judge verdicts alike: from the response cache if
    there, else reserve the worst case, call, settle with the actual cost and store the answer.
    Raises BudgetStop (not sent) or the model's CallFailed (sent, failed, settled at 0). `on_text` sees a
    streamed answer grow (ChatModel.complete); a cached answer arrives whole, without it. `n_cl100k`: the
    messages' cl100k tokens when the caller knows them (a built prompt does, from its documents' counts;
    encoding a 40k-token prompt again cost more CPU than the rest of the call). `parts`: the last message's
    content in pieces (prompts.Prompt.parts), for the request's JSON."""
    from pipelines.models.usage import call_cost

    # Hashed: an endpoint URL may carry a key, and the ledger and the cache are files.
    identity = hashlib.sha256(f"{model.endpoint}|{model.model_id}".encode()).hexdigest()[:16]
    done = (cache.get(key, identity) or _claim_or_wait(cache, key, identity, model)) if cache else None
    if done is not None:
        # The cache keeps the provider's usage; dollars follow the prices in force now (overrides included).
        return replace(done, cost_usd=call_cost(done.usage, model.prices, done.latency_s))
    try:
        return _pay(model, messages, key, cache, budget, on_text, n_cl100k, identity, parts)
    finally:
        if cache:
            cache.release(key)


def _claim_or_wait(cache, key: str, identity: str, model):
    """None once this thread holds the claim on `key`; the answer when another job that held it stored it."""
    # A live owner is trusted for as long as its call can take, retries included.
    stale_s = model.timeout_s * (model.max_retries + 1) + 30
    while not cache.claim(key, stale_s):
        if interrupt.requested():
            raise BudgetStop("interrupted: not sent")
        time.sleep(0.1)
        done = cache.get(key, identity)
        if done is not None:
            return done
    done = cache.get(key, identity)  # stored between the first look and the claim
    if done is not None:
        cache.release(key)
    return done


def _pay(model, messages, key, cache, budget, on_text, n_cl100k, identity, parts=()):
    from pipelines.models.chat import CallFailed, Unbilled

    if interrupt.requested():
        raise BudgetStop("interrupted: not sent")
    if n_cl100k is None:
        n_cl100k = tokens.count("\n".join(m["content"] for m in messages))
    worst = worst_case_usd(messages, model, budget.ratio(identity), n_cl100k)
    ticket = budget.reserve(worst, key)
    if ticket is None:
        raise BudgetStop(f"budget.max_usd={budget.max_usd} reached: not sent")
    with traces.call(model, messages) as span:
        try:
            done = model.complete(messages, on_text=on_text, parts=parts)
        except CallFailed as err:
            # A response that came back unpriceable (no usage, no choices) may have been billed: it
            # counts at its reservation. Other failures got no answer from the provider.
            budget.settle(ticket, worst, worst if isinstance(err.cause, Unbilled) else 0.0)
            raise
        traces.finish(span, done, model.prices)
    budget.settle(ticket, worst, done.cost_usd)
    budget.observe(identity, n_cl100k, done.usage.input_tokens)
    if cache:
        cache.note_served(identity, done.response_model)
        cache.put(key, done)
    return done
