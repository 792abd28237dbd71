"""LLM-as-judge: a fixed rubric grades each answer against its reference (correct / partial /
incorrect -> 1 / 0.5 / 0) and, optionally, which answer sentences the given context supports
(faithfulness). Any model config can judge; temperature 0; the judge's tokens, cost and latency go in
their own `judge_*` fields, never mixed with the answer's. Calls go through the response cache and
the run's budget like any other.

Every row is graded: a non-answer (failed, skipped, empty) is "incorrect" (0) without a call. A judge
call that fails, is stopped by the budget or gives no verdict leaves the score MISSING, with the reason
in `judge_error` and a warning naming how many rows the `judge` mean does not cover (the run logs
`n/judge`). Missing, not 0: a judge outage says nothing about the answer, so 0 would blame the
strategy; but the gap is never silent.

The judge's prompts fit the JUDGE's own window (`prompt_window`, `tokens_per_cl100k`): the context of
the faithfulness prompt (and, rarely, a long answer) is cut with the answers' window guard
(`prompts.fit`), and `judge_dropped_tokens` says on the row how much went."""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from pipelines import prompts, tokens
from pipelines.budget import Budget, BudgetStop, paid_call
from pipelines.metrics import has_answer, is_abstention, sentences
from pipelines.models import cache as response_cache
from pipelines.models.chat import CallFailed, ChatModel

log = logging.getLogger(__name__)

RUBRIC = """You grade an answer to a question against a reference answer.
Reply with one word:
correct - the answer says what the reference says (wording may differ; extra correct detail is fine)
partial - the answer is partly right or leaves out an essential part
incorrect - the answer is wrong, contradicts the reference, or answers although the reference says the question cannot be answered

Question: {question}
Reference answer: {reference}
Answer to grade: {answer}
Verdict:"""
NO_REFERENCE = "The documents do not answer this question; the correct response is to say so."
FAITHFUL = """Context:
{context}

Answer sentences:
{sentences}

For each numbered sentence, reply on its own line with "N: yes" if the context supports it or "N: no" if it does not."""
SCORES = {"correct": 1.0, "partial": 0.5, "partially correct": 0.5, "incorrect": 0.0}
_VERDICT = re.compile(r"\b(incorrect|partially correct|partial|correct)\b", re.IGNORECASE)
# "N: yes" per line as asked, but also all on one line, as small judges and streamed replies give it.
_LINE = re.compile(r"(?<![\w.])(\d+)\s*[:.)-]\s*(yes|no)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    found = _VERDICT.search(text or "")
    return found.group(1).lower().replace("partially correct", "partial") if found else None


def parse_support(text: str, n: int) -> float | None:
    votes = {int(i): v.lower() == "yes" for i, v in _LINE.findall(text or "") if 1 <= int(i) <= n}
    return sum(votes.values()) / n if len(votes) == n else None


class Judge:
    def __init__(self, model: ChatModel, faithfulness: bool = True):
        self.model = model
        self.faithfulness = faithfulness

    @property
    def metric_names(self) -> list[str]:
        """The metrics this judge fills in, for the run's metric list."""
        return ["judge", "faithfulness"] if self.faithfulness else ["judge"]

    def grade_all(self, records, prepared, cache, budget: Budget) -> list:
        with ThreadPoolExecutor(max_workers=max(1, self.model.max_concurrency)) as pool:
            out = list(pool.map(lambda pair: self.grade(*pair, cache, budget), zip(records, prepared)))
        missing = [r for r in out if r.judge_error]
        if missing:
            log.warning("%d of %d rows have no judge verdict (judge_error on each, e.g. %s): the judge mean covers the rest",
                        len(missing), len(out), missing[0].judge_error[:200])
        return out

    def grade(self, record, item, cache, budget: Budget):
        from pipelines.runner import _context_of

        question = item.question
        context = _context_of(record, item)  # a plan's answering step, not always its first
        reference = NO_REFERENCE if question.unanswerable and not question.answers else (question.answers[0] if question.answers else "")
        if not has_answer(record):
            # Nothing to grade: incorrect without a call (metrics.score gave the 0s already).
            if not reference:
                return record
            scores = {**record.scores, "judge": 0.0}
            if self.faithfulness and context != ():
                scores["faithfulness"] = 0.0
            return replace(record, judge_label="incorrect", scores=scores)
        if not reference:
            return record
        fixed = RUBRIC.format(question=question.text, reference=reference, answer="")
        answer, dropped = prompts.fit(record.answer, self._room(fixed))
        verdict, record = self._ask(record, RUBRIC.format(question=question.text, reference=reference, answer=answer), cache, budget)
        scores = dict(record.scores)
        label = parse_verdict(verdict) if verdict is not None else None
        if label:
            scores["judge"] = SCORES[label]
        record = replace(record, judge_label=label or ("unparsed" if verdict is not None else ""), scores=scores,
                         judge_dropped_tokens=record.judge_dropped_tokens + dropped)
        if verdict is not None and not label:
            record = replace(record, judge_error=f"unparsed verdict: {verdict[:200]!r}")
        said = sentences(record.answer)
        if self.faithfulness and context and said and not is_abstention(record.answer):
            listing = "\n".join(f"{i}. {s}" for i, s in enumerate(said, 1))
            context, dropped = prompts.fit("\n\n".join(context), self._room(FAITHFUL.format(context="", sentences=listing)))
            reply, record = self._ask(record, FAITHFUL.format(context=context, sentences=listing), cache, budget)
            record = replace(record, judge_dropped_tokens=record.judge_dropped_tokens + dropped)
            support = parse_support(reply, len(said)) if reply is not None else None
            if support is not None:
                record = replace(record, scores={**record.scores, "faithfulness": round(support, 6)})
            elif reply is not None:
                record = replace(record, judge_error=(record.judge_error + f" | unparsed support: {reply[:200]!r}").strip(" |"))
        return record

    def _room(self, fixed_prompt: str) -> int:
        """cl100k tokens the judge's window leaves beside the fixed part of a judge prompt."""
        window = int(self.model.prompt_window / self.model.tokens_per_cl100k)
        return max(0, window - tokens.count(fixed_prompt) - prompts.TEMPLATE_MARGIN)

    def _ask(self, record, content: str, cache, budget: Budget):
        """One judge call; returns (reply or None, record with the judge's usage added)."""
        messages = [{"role": "user", "content": content}]
        key = response_cache.key(self.model.endpoint, self.model.request(messages))
        try:
            done = paid_call(self.model, messages, key, cache, budget)
        except BudgetStop as stop:
            return None, replace(record, judge_error=str(stop))
        except CallFailed as err:
            log.warning("judge failed on %s: %s", record.question_id, err)
            return None, replace(record, judge_error=str(err))
        return done.answer, replace(
            record,
            judge_prompt_tokens=record.judge_prompt_tokens + done.usage.input_tokens,
            judge_completion_tokens=record.judge_completion_tokens + done.usage.output_tokens,
            judge_cost_usd=record.judge_cost_usd + done.cost_usd,
            judge_spent_usd=record.judge_spent_usd + (0.0 if done.cached else done.cost_usd),
            judge_latency_s=round((record.judge_latency_s or 0.0) + done.latency_s, 4),
        )
