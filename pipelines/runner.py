"""Answer every question under one strategy and one model. Contexts are built first (no calls), then
the calls run concurrently, up to the model's `max_concurrency`. Each question becomes exactly one
record, also when it fails, is skipped, or the budget stops it: no row ever vanishes."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace

from tqdm import tqdm

from pipelines import metrics, prompts, tokens
from pipelines.budget import Budget, BudgetStop, paid_call
from pipelines.datasets import Question
from pipelines.models import cache as response_cache
from pipelines.models.chat import CallFailed, ChatModel, Completion
from pipelines.prompts import Prompt
from pipelines.record import QuestionRecord
from pipelines.strategies import Corpus, Strategy
from pipelines.strategies.self_route import SelfRoute

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    question: Question
    record: QuestionRecord
    prompt: Prompt | None  # None when nothing is to be sent (skipped, or the context failed)
    cache_key: str = ""
    context: tuple[str, ...] | None = None  # the texts the strategy chose, for retrieval metrics
    fallback: "Prepared | None" = None  # self_route: the second route, sent only if the first declines


def prepare_all(questions: list[Question], strategy: Strategy, corpus: Corpus, model: ChatModel, prompt_cfg,
                cache: response_cache.ResponseCache | None, context_tokens: int | None = None) -> list[Prepared]:
    out = []
    for question in questions:
        first = _prepared(question, strategy, corpus, model, prompt_cfg, context_tokens)
        if isinstance(strategy, SelfRoute):
            second = _prepared(question, strategy.fallback, corpus, model, prompt_cfg, context_tokens)
            first = replace(first, record=replace(first.record, route="rag"), fallback=second)
        out.append(first)
    return out


def _prepared(question, strategy, corpus, model, prompt_cfg, context_tokens) -> Prepared:
    record, prompt, context = prepare(question, strategy, corpus, model, prompt_cfg, context_tokens)
    key = response_cache.key(model.endpoint, model.request(prompt.messages)) if prompt else ""
    texts = tuple(b.text for b in context.blocks) if context else None
    return Prepared(question, record, prompt, key, texts)


def prepare(question: Question, strategy: Strategy, corpus: Corpus, model: ChatModel, prompt_cfg,
            context_tokens: int | None = None):
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
    if isinstance(strategy, SelfRoute):
        system = f"{system} {strategy.instruction}"
    template = prompt_cfg.template if strategy.template is None else strategy.template
    try:
        budget = prompts.context_budget(model.prompt_window, model.tokens_per_cl100k, system, template,
                                        question.text, prompt_cfg.question_reserve)
        if context_tokens:
            budget = min(budget, context_tokens)
        context = strategy.build(question, corpus, budget)
        record = replace(record, context_ids=context.context_ids, doc_ids=context.doc_ids,
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
               label: str = "") -> list[QuestionRecord]:
    records: list[QuestionRecord | None] = [None] * len(prepared)
    bar = tqdm(total=len(prepared), desc=label, unit="q", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, model.max_concurrency)) as pool:
        futures = {pool.submit(_routed, item, model, cache, budget): i for i, item in enumerate(prepared)}
        for future in as_completed(futures):
            i = futures[future]
            records[i] = future.result()
            bar.update()
            bar.set_postfix(spent=f"${budget.spent:.4f}", failed=sum(r is not None and r.status == "error" for r in records))
    bar.close()
    return [replace(r, scores=metrics.score(r, item.question, metric_list, _context_of(r, item))) for r, item in zip(records, prepared)]


def _context_of(record: QuestionRecord, item: Prepared):
    return item.fallback.context if record.route not in ("", "rag") and item.fallback else item.context


def _routed(item: Prepared, model: ChatModel, cache, budget: Budget) -> QuestionRecord:
    """One call, or for self_route a second one when the first declines; usage and latency add up."""
    first = _answer(item, model, cache, budget)
    if item.fallback is None:
        return first
    fallback_tokens = item.fallback.record.context_tokens  # what full context on every question would send
    if first.status == "error" or not SelfRoute.declined(first.answer):
        return replace(first, fallback_context_tokens=fallback_tokens)
    second = _answer(item.fallback, model, cache, budget)
    return replace(
        second, route=item.fallback.record.strategy, fallback_context_tokens=fallback_tokens,
        context_tokens=first.context_tokens + second.context_tokens,
        prompt_tokens=first.prompt_tokens + second.prompt_tokens,
        cache_hit_tokens=first.cache_hit_tokens + second.cache_hit_tokens,
        completion_tokens=first.completion_tokens + second.completion_tokens,
        reasoning_tokens=first.reasoning_tokens + second.reasoning_tokens,
        cost_usd=first.cost_usd + second.cost_usd, spent_usd=first.spent_usd + second.spent_usd,
        latency_s=None if second.latency_s is None else round((first.latency_s or 0) + second.latency_s, 4),
        attempts=first.attempts + second.attempts, attempt_log=f"{first.attempt_log} | {second.attempt_log}".strip(" |"),
        strategy=first.strategy, question_id=first.question_id)


def _answer(item: Prepared, model: ChatModel, cache, budget: Budget) -> QuestionRecord:
    record, prompt = item.record, item.prompt
    if prompt is None:
        return record
    try:
        done = paid_call(model, prompt.messages, item.cache_key, cache, budget)
    except BudgetStop as stop:
        return replace(record, status="skipped", error=str(stop))
    except CallFailed as err:
        log.warning("question %s failed after %d attempt(s): %s", record.question_id, err.attempts, err)
        return replace(record, status="error", error=str(err), attempts=err.attempts, attempt_log=err.attempt_log)
    return _filled(record, done)


def _filled(record: QuestionRecord, done: Completion) -> QuestionRecord:
    u = done.usage
    generating = done.latency_s - (done.ttft_s or 0.0)
    return replace(
        record, answer=done.answer, reasoning=done.reasoning, prompt_tokens=u.input_tokens,
        cache_hit_tokens=u.cache_hit_tokens, completion_tokens=u.output_tokens, reasoning_tokens=u.reasoning_tokens,
        cost_usd=done.cost_usd, spent_usd=0.0 if done.cached else done.cost_usd, latency_s=round(done.latency_s, 4),
        ttft_s=None if done.ttft_s is None else round(done.ttft_s, 4),
        output_tokens_per_s=round(u.output_tokens / generating, 2) if u.output_tokens and generating > 0 else None,
        cached=done.cached, started_at=done.started_at or None, attempts=done.attempts, attempt_log=done.attempt_log, finish_reason=done.finish_reason,
    )
