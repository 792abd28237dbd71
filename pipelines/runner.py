"""Answer every question under one strategy and one model; each question becomes exactly one record,
also when it fails, so no row ever vanishes."""

from __future__ import annotations

import logging
from dataclasses import replace

from tqdm import tqdm

from pipelines import metrics, prompts
from pipelines.datasets import Question
from pipelines.models.chat import ChatModel
from pipelines.record import QuestionRecord
from pipelines.strategies import Corpus, Strategy

log = logging.getLogger(__name__)


def answer_all(questions: list[Question], strategy: Strategy, corpus: Corpus, model: ChatModel,
               prompt_cfg, metric_list: list[metrics.Metric], progress: bool = True) -> list[QuestionRecord]:
    records, spent = [], 0.0
    bar = tqdm(questions, desc=f"{strategy.name} · {model.name}", unit="q", disable=not progress)
    for question in bar:
        record = answer_one(question, strategy, corpus, model, prompt_cfg)
        record = replace(record, scores=metrics.score(record, question, metric_list))
        records.append(record)
        spent += record.cost_usd
        bar.set_postfix(cost=f"${spent:.4f}", failed=sum(r.status == "error" for r in records))
    return records


def answer_one(question: Question, strategy: Strategy, corpus: Corpus, model: ChatModel, prompt_cfg) -> QuestionRecord:
    record = QuestionRecord(
        question_id=question.qid,
        strategy=strategy.name,
        model=model.name,
        question=question.text,
        reference=question.answers[0] if question.answers else "",
        gold_documents=question.gold_documents,
    )
    try:
        budget = prompts.context_budget(model.prompt_window, model.tokens_per_cl100k, prompt_cfg.system,
                                        prompt_cfg.template, question.text, prompt_cfg.question_reserve)
        context = strategy.build(question, corpus, budget)
        record = replace(record, context_ids=context.context_ids, doc_ids=context.doc_ids,
                         retrieval_scores=context.scores, retrieved=context.retrieved)
        prompt = prompts.build(context, question.text, prompt_cfg.system, prompt_cfg.template, budget,
                               prompt_cfg.overflow)
        record = replace(record, status=prompt.status, context_tokens=prompt.context_tokens,
                         dropped_tokens=prompt.dropped_tokens)
        if prompt.status == "skipped":
            return replace(record, error=f"context of {prompt.context_tokens} tokens exceeds the {budget} the window leaves (prompt.overflow=skip)")
        done = model.complete(prompt.messages)
    except Exception as err:  # recorded on the row, never dropped: the run goes on
        log.debug("question %s failed", question.qid, exc_info=True)
        log.warning("question %s failed: %s: %s", question.qid, type(err).__name__, err)
        return replace(record, status="error", error=f"{type(err).__name__}: {err}")
    u = done.usage
    return replace(record, answer=done.answer, prompt_tokens=u.input_tokens, cache_hit_tokens=u.cache_hit_tokens,
                   completion_tokens=u.output_tokens, reasoning_tokens=u.reasoning_tokens, cost_usd=done.cost_usd,
                   latency_s=round(done.latency_s, 4), finish_reason=done.finish_reason)
