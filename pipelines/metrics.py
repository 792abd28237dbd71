"""Per-question metrics, registered by name with their direction; aggregation lives in tracking/stats.

- `exact_match`, `f1`: the official SQuAD v2.0 rules (lowercase, drop punctuation and the articles
  a/an/the, collapse white space; best over references; a question without answer text, or an
  unanswerable one, scores 1 only for an empty prediction). An answer the abstention detector
  recognises ("I don't know", "not in the documents") counts as the empty prediction.
- `rouge_l`, `semantic_similarity`: against the reference text.
- `abstained`: 1 when the answer abstains.
- `doc_recall`, `doc_precision`, `mrr`, `evidence_recall`: what the strategy put in the prompt, for
  strategies that choose (rag, hybrid), wherever the dataset knows gold documents or evidence.
- `faithfulness`: share of the answer's sentences supported by the context; lexical here, judged
  when a judge is configured (pipelines/judge.py).

Questions that failed or were skipped have no answer and score 0: a strategy must not look better by
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
    fn: Callable  # (record, question, context_texts) -> float | None (None: does not apply)
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


# --- SQuAD v2.0 ---------------------------------------------------------------------------------
_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


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


def squad_scores(prediction: str, answers: tuple[str, ...], unanswerable: bool = False) -> tuple[float, float]:
    """(EM, F1) of one prediction by the official SQuAD v2.0 evaluation rules."""
    golds = [] if unanswerable else [a for a in answers if normalize(a)]
    golds = golds or [""]
    return max(_em(prediction, g) for g in golds), max(_f1(prediction, g) for g in golds)


# --- abstention ----------------------------------------------------------------------------------
_ABSTAIN = re.compile(
    r"\b(i (do not|don't|cannot|can't) (know|answer|determine|find)"
    r"|(is|are) not (mentioned|stated|provided|specified|given|discussed|addressed|available|included)"
    r"|(does|do|did) not (contain|mention|provide|specify|include|say|state|discuss|address|cover)"
    r"|(no|not enough|insufficient) (information|details|data|mention)"
    r"|cannot be (answered|determined|found)|unanswerable|not in the (documents?|context|text|papers?))\b",
    re.IGNORECASE)


def is_abstention(answer: str) -> bool:
    return bool(answer.strip()) and bool(_ABSTAIN.search(answer))


def _prediction(record: QuestionRecord) -> str:
    return "" if is_abstention(record.answer) else record.answer


@register("exact_match")
def exact_match(record, question, context=None):
    if not question.answers and not question.unanswerable:
        return None
    return squad_scores(_prediction(record), question.answers, question.unanswerable)[0]


@register("f1")
def f1(record, question, context=None):
    if not question.answers and not question.unanswerable:
        return None
    return squad_scores(_prediction(record), question.answers, question.unanswerable)[1]


@register("abstained", higher_is_better=False)
def abstained(record, question, context=None):
    return float(is_abstention(record.answer)) if record.answered else None


# --- text similarity -----------------------------------------------------------------------------
@functools.cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@register("rouge_l")
def rouge_l(record, question, context=None):
    if not question.answers:
        return None
    return max(_rouge().score(ref, record.answer)["rougeL"].fmeasure for ref in question.answers)


@register("semantic_similarity")
def semantic_similarity(record, question, context=None):
    """Cosine of MiniLM embeddings of answer and reference (best reference)."""
    if not question.answers:
        return None
    if not record.answer.strip():
        return 0.0
    from pipelines import embeddings

    vectors = embeddings.load().embed([record.answer, *question.answers])
    return float(max(vectors[1:] @ vectors[0]))


# --- retrieval and routing -----------------------------------------------------------------------
@register("doc_recall")
def doc_recall(record, question, context=None):
    """Share of the gold documents among those the strategy chose (strategies that retrieve only)."""
    if not question.gold_documents or not record.retrieved:
        return None
    return len(set(question.gold_documents) & set(record.doc_ids)) / len(set(question.gold_documents))


@register("doc_precision")
def doc_precision(record, question, context=None):
    """Share of the chosen documents that are gold: how clean the hybrid's pre-filter is."""
    if not question.gold_documents or not record.retrieved or not record.doc_ids:
        return None
    return len(set(question.gold_documents) & set(record.doc_ids)) / len(set(record.doc_ids))


def _contains(haystack: str, evidence: str) -> bool:
    """Evidence counts as present if its normalised text is inside, or 80% of its words are."""
    h, e = normalize(haystack), normalize(evidence)
    if not e or e in h:
        return bool(e)
    words = e.split()
    present = collections.Counter(h.split())
    return sum(min(c, present[w]) for w, c in collections.Counter(words).items()) >= 0.8 * len(words)


@register("evidence_recall")
def evidence_recall(record, question, context=None):
    """Share of gold evidence passages found in the retrieved context (recall@k for rag)."""
    if not question.evidence or not record.retrieved or context is None:
        return None
    text = "\n".join(context)
    return sum(_contains(text, e) for e in question.evidence) / len(question.evidence)


@register("mrr")
def mrr(record, question, context=None):
    """1 / rank of the first context item holding gold evidence (or from a gold document)."""
    if not record.retrieved or context is None or not (question.evidence or question.gold_documents):
        return None
    for rank, (item_id, text) in enumerate(zip(record.context_ids, context), 1):
        if question.evidence:
            if any(_contains(text, e) for e in question.evidence):
                return 1.0 / rank
        elif item_id.split("#")[0] in question.gold_documents or item_id in question.gold_documents:
            return 1.0 / rank
    return 0.0


# --- faithfulness (lexical; pipelines.judge replaces it with the judge's verdict) ------------------
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOP = set("the a an and or of to in on for with by is are was were be been this that these those it its as at from "
            "which who what when where how than then there their they them has have had not no do does did".split())


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if normalize(s)]


@register("faithfulness")
def faithfulness(record, question, context=None):
    if not record.answered or context is None or is_abstention(record.answer) or not sentences(record.answer):
        return None
    present = set(normalize("\n".join(context)).split())
    supported = 0
    for sentence in sentences(record.answer):
        words = [w for w in normalize(sentence).split() if w not in _STOP]
        supported += not words or sum(w in present for w in words) >= 0.6 * len(words)
    return supported / len(sentences(record.answer))


@register("judge")
def judge(record, question, context=None):
    """correct / partial / incorrect -> 1 / 0.5 / 0, filled in by pipelines.judge when a judge is set."""
    return None


def score(record: QuestionRecord, question: Question, metrics: list[Metric], context=None) -> dict[str, float]:
    out = {}
    for metric in metrics:
        value = metric.fn(record, question, context)
        if value is not None:
            out[metric.name] = round(float(value), 6)
    return out
