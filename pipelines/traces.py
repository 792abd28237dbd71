"""MLflow traces made while the calls happen, in the shape MLflow's UI reads: one trace per question
(a CHAIN span) holding the strategy's retrieval step (a RETRIEVER span: which chunks or documents,
their scores and tokens) and each paid call (a CHAT_MODEL span with the messages sent, the answer,
the reasoning apart, attempts, and MLflow's standard `mlflow.chat.tokenUsage` and `mlflow.llm.cost`
attributes, so the trace list shows tokens and cost and the GenAI overview charts fill). An answer
served from the response cache makes no CHAT_MODEL span: it was not a call and cost nothing now.
Judge calls are traces of their own. After scoring, each question's scores become MLflow
assessments (feedback) on its trace.

Off until `enable(run_id)`: library use and unit tests write no traces."""

from __future__ import annotations

import contextlib
import logging

import mlflow
from mlflow.entities import AssessmentSource, AssessmentSourceType, SpanType
from mlflow.tracing.constant import SpanAttributeKey

log = logging.getLogger(__name__)
_run_id: str | None = None
PREVIEW_CHARS = 4000  # per retrieved item in the RETRIEVER span; the full text is in the prompt span


def enable(run_id: str | None) -> None:
    global _run_id
    _run_id = run_id


def enabled() -> bool:
    return _run_id is not None


@contextlib.contextmanager
def question(record):
    """The root span of one question; yields it (or None when tracing is off)."""
    if not enabled():
        yield None
        return
    with mlflow.start_span(name=f"{record.strategy}·{record.model}", span_type=SpanType.CHAIN, run_id=_run_id) as span:
        span.set_inputs({"question_id": record.question_id, "question": record.question})
        span.set_attributes({"strategy": record.strategy, "model": record.model, "question_id": record.question_id})
        yield span


def retrieval(record, texts: tuple[str, ...] | None) -> None:
    """What the strategy put in the prompt, as a RETRIEVER span (MLflow's document shape)."""
    if not enabled():
        return
    with mlflow.start_span(name=f"context·{record.strategy}", span_type=SpanType.RETRIEVER) as span:
        span.set_inputs({"query": record.question})
        scores = list(record.retrieval_scores) + [None] * len(record.context_ids)
        doc_ids = list(getattr(record, "context_doc_ids", ()) or ()) + [None] * len(record.context_ids)
        span.set_outputs([{"id": cid, "page_content": (text or "")[:PREVIEW_CHARS],
                           "metadata": {"doc_id": doc_ids[i], "score": scores[i], "rank": i + 1}}
                          for i, (cid, text) in enumerate(zip(record.context_ids, texts or ("",) * len(record.context_ids)))])
        span.set_attributes({"context_tokens": record.context_tokens, "dropped_tokens": record.dropped_tokens,
                             "status": record.status, "retrieved": record.retrieved})


@contextlib.contextmanager
def call(model, messages: list[dict]):
    """One paid call as a CHAT_MODEL span; the caller fills it with `finish(span, done)`."""
    if not enabled():
        yield None
        return
    root = mlflow.get_current_active_span() is None  # a judge call: its own trace, linked to the run
    with mlflow.start_span(name=model.name, span_type=SpanType.CHAT_MODEL, run_id=_run_id if root else None) as span:
        span.set_inputs({"model": model.model_id, "messages": messages})
        span.set_attributes({SpanAttributeKey.MODEL: model.model_id, SpanAttributeKey.MODEL_PROVIDER: model.provider,
                             "endpoint": _safe_endpoint(model)})
        yield span


def finish(span, done, prices) -> None:
    if span is None:
        return
    u = done.usage
    span.set_outputs({"choices": [{"index": 0, "finish_reason": done.finish_reason,
                                   "message": {"role": "assistant", "content": done.answer}}],
                      **({"reasoning": done.reasoning} if done.reasoning else {})})
    usage = {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
             "total_tokens": u.input_tokens + u.output_tokens}
    if u.cache_hit_tokens:
        usage["cache_read_input_tokens"] = u.cache_hit_tokens
    span.set_attribute(SpanAttributeKey.CHAT_USAGE, usage)
    output_cost = u.output_tokens * prices.output / 1e6
    span.set_attribute(SpanAttributeKey.LLM_COST, {"input_cost": max(0.0, done.cost_usd - output_cost),
                                                   "output_cost": output_cost, "total_cost": done.cost_usd})
    span.set_attributes({"attempts": done.attempts, "attempt_log": done.attempt_log, "latency_s": done.latency_s,
                         "ttft_s": done.ttft_s, "reasoning_tokens": u.reasoning_tokens, "cached": False})


def mark(span, record) -> None:
    """The question's outcome on its root span."""
    if span is None:
        return
    span.set_outputs({"answer": record.answer, "status": record.status, "error": record.error,
                      **({"route": record.route} if record.route else {})})
    span.set_attributes({"cached": record.cached, "status": record.status, "cost_usd": record.cost_usd,
                         "spent_usd": record.spent_usd})
    if record.status == "error":
        span.set_status("ERROR")


def assess(records, scoring_version: str = "") -> int:
    """Each question's scores as feedback on its trace. Returns how many were logged."""
    if not enabled():
        return 0
    mlflow.flush_trace_async_logging()  # traces are exported in the background: they must exist first
    code = AssessmentSource(AssessmentSourceType.CODE, f"pipelines.metrics{'@' + scoring_version if scoring_version else ''}")
    judged = AssessmentSource(AssessmentSourceType.LLM_JUDGE, "pipelines.judge")
    n = 0
    for r in records:
        if not getattr(r, "trace_id", ""):
            continue
        for name, value in r.scores.items():
            is_judge = name in ("judge", "faithfulness")
            rationale = f"verdict: {r.judge_label}" if name == "judge" and r.judge_label else None
            mlflow.log_feedback(trace_id=r.trace_id, name=name, value=float(value),
                                source=judged if is_judge else code, rationale=rationale)
            n += 1
    return n


def _safe_endpoint(model) -> str:
    from pipelines.secrets import redact_url

    return redact_url(model.endpoint)
