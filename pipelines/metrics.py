"""Per-question quality metrics, registered by name with their direction.

Exact match and token F1 follow the SQuAD evaluation script's normalisation (lowercase, drop
punctuation and the articles a/an/the, collapse white space), taking the best over references.
Questions that were skipped or failed have no answer and score 0: a strategy must not look better by
failing."""

from __future__ import annotations

import collections
import functools
import re
import string
from dataclasses import dataclass
from typing import Callable

from pipelines.datasets import Question
from pipelines.errors import UserError
from pipelines.record import QuestionRecord


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[QuestionRecord, Question], float | None]  # None: does not apply to this row
    higher_is_better: bool = True


REGISTRY: dict[str, Metric] = {}


def register(name: str, higher_is_better: bool = True):
    def wrap(fn):
        REGISTRY[name] = Metric(name, fn, higher_is_better)
        return fn

    return wrap


def get(names: list[str]) -> list[Metric]:
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise UserError(f"metrics: unknown metric(s) {', '.join(unknown)}; valid: {', '.join(sorted(REGISTRY))}")
    return [REGISTRY[n] for n in names]


def normalize(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _em(pred: str, ref: str) -> float:
    return float(normalize(pred) == normalize(ref))


def _f1(pred: str, ref: str) -> float:
    p, r = normalize(pred).split(), normalize(ref).split()
    if not p or not r:
        return float(p == r)
    common = sum((collections.Counter(p) & collections.Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def _best(fn, record: QuestionRecord, question: Question) -> float | None:
    if not question.answers:
        return None
    return max(fn(record.answer, ref) for ref in question.answers)


@register("exact_match")
def exact_match(record, question):
    return _best(_em, record, question)


@register("f1")
def f1(record, question):
    return _best(_f1, record, question)


@functools.cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@register("rouge_l")
def rouge_l(record, question):
    if not question.answers:
        return None
    return max(_rouge().score(ref, record.answer)["rougeL"].fmeasure for ref in question.answers)


@register("semantic_similarity")
def semantic_similarity(record, question):
    """Cosine of MiniLM embeddings of answer and reference (best reference)."""
    if not question.answers:
        return None
    if not record.answer.strip():
        return 0.0
    from pipelines import embeddings

    vectors = embeddings.load().embed([record.answer, *question.answers])
    return float(max(vectors[1:] @ vectors[0]))


@register("doc_recall")
def doc_recall(record, question):
    """Share of the gold documents among those the strategy chose (strategies that retrieve only)."""
    if not question.gold_documents or not record.retrieved:
        return None
    return len(set(question.gold_documents) & set(record.doc_ids)) / len(set(question.gold_documents))


def score(record: QuestionRecord, question: Question, metrics: list[Metric]) -> dict[str, float]:
    out = {}
    for metric in metrics:
        value = metric.fn(record, question)
        if value is not None:
            out[metric.name] = round(float(value), 6)
    return out
