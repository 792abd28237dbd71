"""The one record that carries a question through the pipeline: the strategy fills the context,
the model fills answer/usage/latency, metrics add scores, tracking writes it to MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

STATUSES = ("ok", "truncated", "skipped", "error")


@dataclass(frozen=True)
class QuestionRecord:
    question_id: str
    strategy: str
    model: str
    question: str
    reference: str
    status: str = "ok"  # ok | truncated | skipped | error
    error: str = ""
    context_ids: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()
    retrieved: bool = False  # doc_ids were chosen by retrieval (rag, hybrid), not "all of them"
    route: str = ""  # strategies of several steps (self_route, cascade): the step that answered
    fallback_context_tokens: int = 0  # those strategies: context tokens their last step sends (the saving's base)
    retrieval_scores: tuple[float, ...] = ()
    gold_documents: tuple[str, ...] = ()
    context_tokens: int = 0  # cl100k tokens of context sent
    dropped_tokens: int = 0  # cl100k tokens cut by the window guard
    answer: str = ""
    reasoning: str = ""  # a thinking model's reasoning, never mixed into the answer
    prompt_tokens: int = 0  # as the provider billed them
    cache_hit_tokens: int = 0
    completion_tokens: int = 0  # includes reasoning tokens, as providers bill them
    reasoning_tokens: int = 0
    cost_usd: float = 0.0  # what this answer cost when it was produced, from the provider's usage
    spent_usd: float = 0.0  # what this run paid for it: 0 when served from the response cache
    latency_s: float | None = None  # measured when the answer was produced, kept when cached
    ttft_s: float | None = None
    started_at: float | None = None  # epoch seconds the call was sent (kept from the first run when cached)
    output_tokens_per_s: float | None = None
    cached: bool = False
    attempts: int = 0  # HTTP requests sent, retries included
    attempt_log: str = ""  # status per attempt, e.g. "429 200"; "x" when no response came
    finish_reason: str = ""
    response_model: str = ""  # the model the provider says answered (an alias such as deepseek-chat is not a model)
    system_fingerprint: str = ""  # the provider's backend configuration, when reported
    prices: str = ""  # the price table cost_usd was computed with (USD per 1M tokens, dated)
    # The judge's own calls, counted apart from the answer's.
    judge_label: str = ""  # correct | partial | incorrect | unparsed
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0
    judge_cost_usd: float = 0.0
    judge_spent_usd: float = 0.0
    judge_latency_s: float | None = None
    judge_error: str = ""
    trace_id: str = ""  # the question's MLflow trace, when tracing is on
    escalated: bool = False  # a strategy of several steps went past its first
    calls: str = ""  # those strategies: JSON list of every call made (step, model, tokens, cost, latency)
    fallback_usd_estimate: float = 0.0  # those strategies: estimated cost of sending only their last step
    context_doc_ids: tuple[str, ...] = ()  # the document of each context item, parallel to context_ids
    judge_dropped_tokens: int = 0  # cl100k tokens of context cut to fit the judge's own window
    scope: tuple[str, ...] = ()  # the documents the question was asked over; empty = the whole corpus
    cut: str = ""  # what the strategy left out to fit its budget, e.g. "report.pdf: 40,000 of 95,000 tokens"
    scores: dict = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.status in ("ok", "truncated")

    def row(self) -> dict:
        """Flat row for the per-question table: lists joined, scores as their own columns."""
        # Read, not dataclasses.asdict: that deep-copies every field (~0.07 ms a row against 0.007, for every row each
        # time the rows so far are logged), and these fields are immutable.
        out = {name: getattr(self, name) for name in _FIELDS}
        scores = out.pop("scores")
        for key in ("context_ids", "doc_ids", "gold_documents", "context_doc_ids", "scope"):
            out[key] = "; ".join(out[key])
        out["retrieval_scores"] = "; ".join(f"{s:.4f}" for s in out["retrieval_scores"])
        return {**out, **scores}


_FIELDS = tuple(f.name for f in fields(QuestionRecord))
