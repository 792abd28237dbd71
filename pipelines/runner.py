"""Answer every question under one strategy and one model. Contexts are built first (no calls), then
the calls run concurrently, up to the model's `max_concurrency`. Each question becomes exactly one
record, also when it fails, is skipped, or the budget stops it: no row ever vanishes."""

from __future__ import annotations

import json
import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import SimpleNamespace

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pipelines import gpu_time, interrupt, metrics, prompts, tokens, traces
from pipelines.budget import Budget, BudgetStop, paid_call
from pipelines.datasets import Question
from pipelines.models import cache as response_cache
from pipelines.models.chat import CallFailed, ChatModel, Completion
from pipelines.prompts import Prompt
from pipelines.record import QuestionRecord
from pipelines.strategies import Corpus, Strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    question: Question
    record: QuestionRecord
    prompt: Prompt | None  # None when nothing is to be sent (skipped, or the context failed)
    cache_key: str = ""
    context: tuple[str, ...] | None = None  # the texts the strategy chose, for retrieval metrics
    route: str = ""  # the plan step this call is, for strategies of several steps
    model: ChatModel | None = None  # who answers this step; None: the run's model
    strategy: Strategy | None = None  # whose plan it is (decides whether to go on)
    then: tuple["Prepared", ...] = ()  # the plan's later steps, sent only while the strategy escalates


def prepare_all(questions: list[Question], strategy: Strategy, corpus: Corpus, model: ChatModel, prompt_cfg,
                cache: response_cache.ResponseCache | None, context_tokens: int | None = None) -> list[Prepared]:
    """Every step of the strategy's plan, prepared for every question (no calls yet)."""
    prompt_cfg = plain(prompt_cfg)
    steps = strategy.steps()
    out = []
    for question in questions:
        chain = [_prepared(question, step, strategy, corpus, step.model or model, prompt_cfg, context_tokens, len(steps) > 1)
                 for step in steps]
        out.append(replace(chain[0], then=tuple(chain[1:])))
    return out


def plain(prompt_cfg):
    """The prompt settings as a plain object, read once a run: OmegaConf's attribute access costs ~25 µs
    a read, four reads a question."""
    if isinstance(prompt_cfg, DictConfig):
        return SimpleNamespace(**OmegaConf.to_container(prompt_cfg, resolve=True, throw_on_missing=True))
    return prompt_cfg


def _prepared(question, step, strategy, corpus, model, prompt_cfg, context_tokens, multi: bool) -> Prepared:
    record, prompt, context = prepare(question, step.strategy, corpus, model, prompt_cfg, context_tokens, step.instruction)
    route = step.name if multi else ""
    record = replace(record, strategy=strategy.name, route=route)
    key = response_cache.key(model.endpoint, model.request(prompt.messages), prompt.parts) if prompt else ""
    texts = tuple(b.text for b in context.blocks) if context else None
    return Prepared(question, record, prompt, key, texts, route, step.model, strategy)


def prepare(question: Question, strategy: Strategy, corpus: Corpus, model: ChatModel, prompt_cfg,
            context_tokens: int | None = None, instruction: str = ""):
    """The record and prompt for one question; `context_tokens` is a matched budget every strategy
    fills at most (full context is cut to it with prompt.overflow)."""
    record = QuestionRecord(
        question_id=question.qid,
        strategy=strategy.name,
        model=model.name,
        question=question.text,
        reference=question.answers[0] if question.answers else "",
        gold_documents=question.gold_documents,
        scope=question.scope,
    )
    system = prompt_cfg.system if strategy.system is None else strategy.system
    if instruction:
        system = f"{system} {instruction}"
    template = prompt_cfg.template if strategy.template is None else strategy.template
    try:
        budget = prompts.context_budget(model.prompt_window, model.tokens_per_cl100k, system, template,
                                        question.text, prompt_cfg.question_reserve)
        if context_tokens:
            budget = min(budget, context_tokens)
        context = strategy.build(question, corpus, budget)
        record = replace(record, context_ids=context.context_ids, doc_ids=context.doc_ids,
                         context_doc_ids=context.context_doc_ids,
                         retrieval_scores=context.scores, retrieved=context.retrieved, cut=context.cut)
        prompt = prompts.build(context, question.text, system, template, budget, prompt_cfg.overflow)
    except Exception as err:  # recorded on the row, never dropped: the run goes on
        log.debug("question %s: context failed", question.qid, exc_info=True)
        return replace(record, status="error", error=f"context: {type(err).__name__}: {err}"), None, None
    record = replace(record, status=prompt.status, context_tokens=prompt.context_tokens,
                     dropped_tokens=prompt.dropped_tokens)
    if prompt.status == "truncated":
        record = replace(record, cut="; ".join(filter(None, [record.cut, truncation_note(context, prompt.dropped_tokens)])))
    if prompt.status == "skipped":
        note = f"context of {prompt.context_tokens} tokens exceeds the {budget} the window leaves (prompt.overflow=skip)"
        return replace(record, error=note), None, context
    return record, prompt, context


def truncation_note(context, dropped: int) -> str:
    """Which documents the window guard's middle cut removed whole or in part (to a few tokens: block
    sizes are counted apart), so a row says more than a token count."""
    sizes = [tokens.count(f"[{b.label}]\n{b.text}") + 2 for b in context.blocks]
    total = sum(sizes)
    head = (total - dropped + 1) // 2  # the guard keeps the head and the tail in equal halves
    gone, cut, at = [], [], 0
    for block, size in zip(context.blocks, sizes):
        start, end, at = at, at + size, at + size
        if start >= head and end <= head + dropped:
            gone.append(block.label)
        elif start < head + dropped and end > head:
            cut.append(block.label)
    which = "; ".join(filter(None, [gone and f"dropped whole: {', '.join(gone)}", cut and f"cut: {', '.join(cut)}"]))
    return f"window guard dropped {dropped:,} tokens from the middle" + (f" ({which})" if which else "")


def answer_all(prepared: list[Prepared], model: ChatModel, metric_list: list[metrics.Metric],
               cache: response_cache.ResponseCache | None, budget: Budget, progress: bool = True,
               label: str = "", interrupt_wait_s: float = 60.0, on_progress=None,
               progress_every_s: float = 30.0, on_text=None) -> list[QuestionRecord]:
    """Every question's record, in input order. After an interrupt (pipelines.interrupt) no new call
    is sent; calls in flight get `interrupt_wait_s` to finish, then their rows say so. `on_progress`
    gets the finished records every `progress_every_s` seconds (a long run shows its rows as it goes).
    `on_text(question_id, answer_so_far, reasoning_so_far)` sees streamed answers grow, from the call threads."""
    records: list[QuestionRecord | None] = [None] * len(prepared)
    bar = tqdm(total=len(prepared), desc=label, unit="q", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=max(1, model.max_concurrency))
    # Finished calls arrive on a queue: `concurrent.futures.wait` looks at every pending call again after
    # each answer, quadratic in the questions (seconds of CPU at 6,000).
    finished: queue.SimpleQueue = queue.SimpleQueue()
    for i, item in enumerate(prepared):
        pool.submit(_routed, item, model, cache, budget, on_text).add_done_callback(lambda f, i=i: finished.put((i, f)))
    left, failed, stop_seen, flushed = len(prepared), 0, None, time.monotonic()
    try:
        while left:
            try:
                done = [finished.get(timeout=0.2)]
            except queue.Empty:
                done = []
            while not finished.empty():
                done.append(finished.get())
            for i, future in done:
                records[i] = future.result()
                failed += records[i].status == "error"
                bar.update()
            left -= len(done)
            if done and progress:
                bar.set_postfix(spent=f"${budget.spent:.4f}", failed=failed)
            if on_progress and done and time.monotonic() - flushed > progress_every_s:
                on_progress([r for r in records if r is not None])
                flushed = time.monotonic()
            if interrupt.requested():
                stop_seen = stop_seen or time.monotonic()
                if time.monotonic() - stop_seen > interrupt_wait_s:
                    break
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    for i, item in enumerate(prepared):
        if records[i] is None:  # still in flight when the wait ran out
            records[i] = replace(item.record, status="error",
                                 error="interrupted while in flight: the provider may still bill this call")
    if model.prices.gpu_usd_per_hour is not None:
        records = gpu_time.share(records, model.prices.gpu_usd_per_hour)
    scores = metrics.score_all([(r, item.question, _context_of(r, item)) for r, item in zip(records, prepared)], metric_list)
    return [replace(r, scores=s) for r, s in zip(records, scores)]


def _context_of(record: QuestionRecord, item: Prepared):
    """The context of the step that answered."""
    return next((p.context for p in (item, *item.then) if p.route == record.route), item.context)


def _routed(item: Prepared, model: ChatModel, cache, budget: Budget, on_text=None) -> QuestionRecord:
    """One question as one MLflow trace (when tracing is on): its context, then its call(s)."""
    with traces.question(item.record) as root:
        traces.retrieval(item.record, item.context)
        record = _calls(item, model, cache, budget, on_text)
        if root is not None:
            record = replace(record, trace_id=root.trace_id)
            traces.mark(root, record)
    return record


def _calls(item: Prepared, model: ChatModel, cache, budget: Budget, on_text=None) -> QuestionRecord:
    """The plan's steps in order, while the strategy escalates; one record with every call added up."""
    chain = (item, *item.then)
    made = []
    for i, step in enumerate(chain):
        if i:
            traces.retrieval(step.record, step.context)
        made.append(_answer(step, step.model or model, cache, budget, on_text))
        if i + 1 == len(chain) or not item.strategy.escalate(i, made[-1]):
            break
    if len(chain) == 1:
        return made[0]
    return replace(_combined(made, chain[-1].record.context_tokens),
                   fallback_usd_estimate=_estimated_usd(chain[-1], chain[-1].model or model))


def _estimated_usd(item: Prepared, model: ChatModel) -> float:
    """What the plan's last step alone would cost (estimated from its prompt): the base of the savings."""
    if item.prompt is None:
        return 0.0
    n = item.prompt.token_count() * model.tokens_per_cl100k
    return (n * model.prices.input_cache_miss + model.expected_output_tokens * model.prices.output) / 1e6


def _combined(made: list[QuestionRecord], fallback_tokens: int) -> QuestionRecord:
    """The answering step's record, with the usage, cost and time of every call made for it."""
    last = made[-1]
    total = lambda field: sum(getattr(r, field) for r in made)
    calls = [{"step": r.route, "model": r.model, "status": r.status, "prompt_tokens": r.prompt_tokens,
              "cache_hit_tokens": r.cache_hit_tokens, "completion_tokens": r.completion_tokens,
              "cost_usd": r.cost_usd, "latency_s": r.latency_s, "cached": r.cached} for r in made]
    latencies = [r.latency_s for r in made if r.latency_s is not None]
    return replace(
        last, fallback_context_tokens=fallback_tokens, escalated=len(made) > 1, calls=json.dumps(calls),
        context_tokens=total("context_tokens"), prompt_tokens=total("prompt_tokens"),
        cache_hit_tokens=total("cache_hit_tokens"), completion_tokens=total("completion_tokens"),
        reasoning_tokens=total("reasoning_tokens"), cost_usd=total("cost_usd"), spent_usd=total("spent_usd"),
        latency_s=round(sum(latencies), 4) if last.latency_s is not None else None, attempts=total("attempts"),
        attempt_log=" | ".join(r.attempt_log for r in made if r.attempt_log), started_at=made[0].started_at,
        cached=all(r.cached for r in made))


def _answer(item: Prepared, model: ChatModel, cache, budget: Budget, on_text=None) -> QuestionRecord:
    record, prompt = item.record, item.prompt
    if prompt is None:
        return record
    show = (lambda text, thought: on_text(record.question_id, text, thought)) if on_text else None
    try:
        done = paid_call(model, prompt.messages, item.cache_key, cache, budget, show, prompt.token_count(), prompt.parts)
    except BudgetStop as stop:
        return replace(record, status="skipped", error=str(stop))
    except CallFailed as err:
        log.warning("question %s failed after %d attempt(s): %s", record.question_id, err.attempts, err)
        return replace(record, status="error", error=str(err), attempts=err.attempts, attempt_log=err.attempt_log)
    return _filled(record, done, model)


def _price_note(p) -> str:
    """The price table a row's cost was computed with (USD per 1M tokens), kept on the row."""
    return f"miss {p.input_cache_miss} / hit {p.input_cache_hit} / write {p.input_cache_write} / output {p.output} ({p.as_of})"


def _filled(record: QuestionRecord, done: Completion, model: ChatModel) -> QuestionRecord:
    u = done.usage
    generating = done.latency_s - (done.ttft_s or 0.0)
    return replace(
        record, answer=done.answer, reasoning=done.reasoning, prompt_tokens=u.input_tokens,
        cache_hit_tokens=u.cache_hit_tokens, completion_tokens=u.output_tokens, reasoning_tokens=u.reasoning_tokens,
        cost_usd=done.cost_usd, spent_usd=0.0 if done.cached else done.cost_usd, latency_s=round(done.latency_s, 4),
        ttft_s=None if done.ttft_s is None else round(done.ttft_s, 4),
        output_tokens_per_s=round(u.output_tokens / generating, 2) if u.output_tokens and generating > 0 else None,
        cached=done.cached, started_at=done.started_at or None, attempts=done.attempts, attempt_log=done.attempt_log, finish_reason=done.finish_reason,
        response_model=done.response_model, system_fingerprint=done.system_fingerprint, prices=_price_note(model.prices),
    )
