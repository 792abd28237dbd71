"""Per-question metrics, registered by name with their direction; aggregation lives in tracking/stats.

- `exact_match`, `f1`: the official SQuAD v2.0 rules (lowercase, drop punctuation and the articles
  a/an/the, collapse white space; best over references; a question without answer text, or an
  unanswerable one, scores 1 only for an empty prediction). An answer the abstention detector
  recognises ("I don't know", "not in the documents") counts as the empty prediction.
- `rouge_l`, `semantic_similarity`: against the reference text (cosine clamped at 0, so 0 is its worst).
- `abstained`: 1 when the answer abstains; a rate over ANSWERED rows only (non-answers have no row value).
- `doc_recall`, `doc_precision`, `mrr`, `evidence_recall`: what the strategy put in the prompt, for
  strategies that choose (rag, hybrid), wherever the dataset knows gold documents or evidence.
- `faithfulness_lexical`: offline share of the answer's sentences whose content words appear together
  in one bounded span of the context (a window a few times the sentence's length), so a longer
  context cannot raise it by construction. `faithfulness`: the judge's verdict only (pipelines/judge.py).
- `judge`: the judge's verdict, filled in by pipelines/judge.py.

Non-answers: a row that failed, was skipped (budget or prompt.overflow=skip) or came back empty is a
non-answer, and every metric that grades the answer (`Metric.grades_answer`) gives it its worst value
(`Metric.worst`, from `higher_is_better`) wherever the metric applies to the question - also on an
unanswerable question, where only a real abstention earns the empty prediction's 1. A strategy must
not look better by failing.

`scoring_version()` names how rows were scored; runs log it as a tag and param. Bump rule: raise
`RULES_VERSION` when a scoring rule in code changes (SQuAD normalisation, abstention detection,
non-answer handling, metric definitions); change `FAITHFULNESS_METHOD` when the lexical faithfulness
method changes. The abstention pattern, the judge's prompts and the answer prompt are hashed, so
editing them changes the version without a bump."""

from __future__ import annotations

import collections
import functools
import hashlib
import re
import string
from dataclasses import dataclass
from typing import Callable

from pipelines.datasets import Question
from pipelines.errors import UserError
from pipelines.record import QuestionRecord


RULES_VERSION = 2  # 2: non-answers score their metric's worst value; judge scores every row
FAITHFULNESS_METHOD = "window4x"  # lexical support within a window of 4x the sentence's words


NEEDS = frozenset({"reference", "context", "gold", "judge", "human"})  # what a metric can need to apply


@dataclass(frozen=True)
class Metric:
    """What a metric is, read downstream (aggregation, report, Pareto front, highlights, the app)."""
    name: str
    fn: Callable  # (record, question, context_texts) -> float | None (None: does not apply)
    higher_is_better: bool = True
    grades_answer: bool = True  # False for metrics of the context (retrieval) or over answered rows only
    aggregation: str = "mean"  # how rows become the run's figure: a key of stats.AGGREGATIONS
    needs: tuple[str, ...] = ()  # of NEEDS: reference (answers or unanswerable), context, gold (documents or
    #                              evidence), judge (filled in by pipelines/judge.py), human (review import)
    version: int = 1  # raise when the definition changes: part of scoring_version
    rank: int | None = None  # preference as the report's quality metric (lowest first); None: not a quality metric
    worst_value: float | None = None  # what a non-answer scores; default 0 (or 1 when lower is better)
    description: str = ""
    batch: Callable | None = None  # (rows) -> values, for metrics that run a model: one pass per run, not per row

    @property
    def worst(self) -> float:
        """What a non-answer scores: the declared worst, else the bad end of [0, 1]."""
        if self.worst_value is not None:
            return self.worst_value
        return 0.0 if self.higher_is_better else 1.0


REGISTRY: dict[str, Metric] = {}


def register(name: str, higher_is_better: bool = True, grades_answer: bool = True, aggregation: str = "mean",
             needs: tuple[str, ...] = ("reference",), version: int = 1, rank: int | None = None,
             worst: float | None = None, description: str | None = None, batched: bool = False):
    """Declare a metric. `description` defaults to the first line of the function's docstring.
    `batched`: the function takes a run's rows, `[(record, question, context), ...]`, and returns their
    values in order (for a model's forward pass over all answers at once); it still scores one row
    alone as `Metric.fn` and as the name it decorates."""
    from pipelines import stats

    if aggregation not in stats.AGGREGATIONS:
        raise ValueError(f"metric {name}: aggregation {aggregation!r}; valid: {', '.join(stats.AGGREGATIONS)}")
    if not set(needs) <= NEEDS:
        raise ValueError(f"metric {name}: needs {sorted(set(needs) - NEEDS)}; valid: {', '.join(sorted(NEEDS))}")

    def wrap(fn):
        text = description or (fn.__doc__ or name).strip().splitlines()[0]
        one = (lambda record, question, context=None: fn([(record, question, context)])[0]) if batched else fn
        REGISTRY[name] = Metric(name, one, higher_is_better, grades_answer, aggregation, tuple(needs), version,
                                rank, worst, text, fn if batched else None)
        return one

    return wrap


def has_answer(record: QuestionRecord) -> bool:
    """The model answered with some text: not failed, not skipped, not empty."""
    return record.answered and bool(record.answer.strip())


def _load(name: str) -> None:
    """`module:metric` in a `metrics:` list: import the module, which registers its metrics."""
    import importlib

    module = name.partition(":")[0]
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise UserError(f"metrics: {name}: cannot import {module} ({err})") from None


def get(names: list[str], judged: bool = True) -> list[Metric]:
    """The metrics of a `metrics:` list, by registered name or `module:name` (a module on the path)."""
    for name in names:
        if ":" in name:
            _load(name)
    plain = [n.partition(":")[2] or n for n in names]
    unknown = [n for n in plain if n not in REGISTRY]
    if unknown:
        raise UserError(f"metrics: unknown metric(s) {', '.join(unknown)}; valid: {', '.join(sorted(REGISTRY))}")
    orphans = [n for n in plain if "judge" in REGISTRY[n].needs and not judged]
    if orphans:
        raise UserError(f"metrics: {', '.join(orphans)} need a judge (judge=deepseek-chat, ...); the offline check is faithfulness_lexical")
    return [REGISTRY[n] for n in plain]


def applicable(metric_list: list[Metric], question: Question) -> list[Metric]:
    """The metrics that can grade this question (a typed question has no reference, no gold documents)."""
    has = {"reference": bool(question.answers or question.unanswerable),
           "gold": bool(question.gold_documents or question.evidence)}
    return [m for m in metric_list if all(has.get(need, True) for need in m.needs)]


def headline() -> list[Metric]:
    """Quality metrics in the order the report prefers them as its headline (declared `rank`)."""
    return sorted((m for m in REGISTRY.values() if m.rank is not None), key=lambda m: (m.rank, m.name))


# --- SQuAD v2.0 ---------------------------------------------------------------------------------
_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize(text: str) -> str:
    # The official script's character filter, as one translate: 20x faster on whole-document contexts.
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


@functools.lru_cache(maxsize=64)
def _normalized(text: str) -> tuple[str, collections.Counter]:
    """A context text normalised, with its word counts: questions over the same documents share it."""
    text = normalize(text)
    return text, collections.Counter(text.split())


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


@register("exact_match", rank=3, description="official SQuAD v2.0 exact match")
def exact_match(record, question, context=None):
    if not question.answers and not question.unanswerable:
        return None
    return squad_scores(_prediction(record), question.answers, question.unanswerable)[0]


@register("f1", rank=2, description="official SQuAD v2.0 token F1")
def f1(record, question, context=None):
    if not question.answers and not question.unanswerable:
        return None
    return squad_scores(_prediction(record), question.answers, question.unanswerable)[1]


@register("abstained", higher_is_better=False, grades_answer=False, needs=())
def abstained(record, question, context=None):
    """A rate over answered rows: a failure or a skip is not an abstention, it has no value here."""
    return float(is_abstention(record.answer)) if has_answer(record) else None


# --- text similarity -----------------------------------------------------------------------------
@functools.cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@register("rouge_l", rank=4, description="ROUGE-L F (rouge-score, Porter stemming)")
def rouge_l(record, question, context=None):
    if not question.answers:
        return None
    return max(_rouge().score(ref, record.answer)["rougeL"].fmeasure for ref in question.answers)


@register("semantic_similarity", rank=5, batched=True)
def semantic_similarity(rows):
    """Cosine of MiniLM embeddings of answer and reference (best reference)."""
    from pipelines import embeddings

    texts = list(dict.fromkeys(t for record, question, _ in rows if question.answers and record.answer.strip()
                               for t in (record.answer, *question.answers)))
    vectors = dict(zip(texts, embeddings.load().embed(texts))) if texts else {}
    out = []
    for record, question, _ in rows:
        if not question.answers:
            out.append(None)
        elif not record.answer.strip():
            out.append(0.0)
        else:  # clamped at 0: a negative cosine means unrelated, no worse than no answer (the worst value, 0)
            out.append(max(0.0, max(float(vectors[ref] @ vectors[record.answer]) for ref in question.answers)))
    return out


# --- retrieval and routing -----------------------------------------------------------------------
@register("doc_recall", grades_answer=False, needs=("gold",), rank=8)
def doc_recall(record, question, context=None):
    """Share of the gold documents among those the strategy chose (strategies that retrieve only)."""
    if not question.gold_documents or not record.retrieved:
        return None
    return len(set(question.gold_documents) & set(record.doc_ids)) / len(set(question.gold_documents))


@register("doc_precision", grades_answer=False, needs=("gold",))
def doc_precision(record, question, context=None):
    """Share of the chosen documents that are gold: how clean the hybrid's pre-filter is."""
    if not question.gold_documents or not record.retrieved or not record.doc_ids:
        return None
    return len(set(question.gold_documents) & set(record.doc_ids)) / len(set(record.doc_ids))


def _contains(haystack: str, evidence: str) -> bool:
    """Evidence counts as present if its normalised text is inside, or 80% of its words are."""
    (h, present), e = _normalized(haystack), normalize(evidence)
    if not e or e in h:
        return bool(e)
    words = e.split()
    return sum(min(c, present[w]) for w, c in collections.Counter(words).items()) >= 0.8 * len(words)


@register("evidence_recall", grades_answer=False, needs=("gold", "context"))
def evidence_recall(record, question, context=None):
    """Share of gold evidence passages found in the retrieved context (recall@k for rag)."""
    if not question.evidence or not record.retrieved or context is None:
        return None
    text = "\n".join(context)
    return sum(_contains(text, e) for e in question.evidence) / len(question.evidence)


@register("mrr", grades_answer=False, needs=("gold", "context"))
def mrr(record, question, context=None):
    """1 / rank of the first context item holding gold evidence (or from a gold document)."""
    if not record.retrieved or context is None or not (question.evidence or question.gold_documents):
        return None
    if not question.evidence and len(record.context_doc_ids) != len(context):
        return None  # no document per context item: unknown, not 0
    for rank, text in enumerate(context, 1):
        if question.evidence:
            if any(_contains(text, e) for e in question.evidence):
                return 1.0 / rank
        elif record.context_doc_ids[rank - 1] in question.gold_documents:
            return 1.0 / rank
    return 0.0


# --- faithfulness -------------------------------------------------------------------------------
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOP = set("the a an and or of to in on for with by is are was were be been this that these those it its as at from "
            "which who what when where how than then there their they them has have had not no do does did".split())
WINDOW_FACTOR, MIN_WINDOW = 4, 12  # the span a sentence must find its words in: 4x its length, at least 12 words
SUPPORT_SHARE = 0.6  # share of a sentence's content words that must appear in that span


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if normalize(s)]


def _supported(sentence: str, parts: list[tuple[int, dict[str, list[int]]]]) -> bool:
    """Are enough of the sentence's content words together in one window of the context?

    Hand-written sliding window (no library does "best-matching window" for a bag of words): over the
    sorted positions of the sentence's words only, so an 80k-token context costs a few list walks.
    `parts`: each context text's word positions, with the text's first word's place in the whole."""
    said = normalize(sentence).split()
    words = set(w for w in said if w not in _STOP)
    if not words:
        return True
    need = SUPPORT_SHARE * len(words)
    width = max(MIN_WINDOW, WINDOW_FACTOR * len(said))
    hits = sorted((start + p, w) for start, where in parts for w in words for p in where.get(w, ()))
    inside: collections.Counter = collections.Counter()
    left = 0
    for pos, word in hits:
        inside[word] += 1
        while hits[left][0] <= pos - width:
            gone = hits[left][1]
            inside[gone] -= 1
            if not inside[gone]:
                del inside[gone]
            left += 1
        if len(inside) >= need:
            return True
    return False


@register("faithfulness_lexical", needs=("context",), version=2)  # 2: bounded window
def faithfulness_lexical(record, question, context=None):
    """Share of the answer's sentences supported by one bounded span of the context (see module doc).
    A non-answer scores 0; an abstention makes no claim and has no value."""
    if not has_answer(record):
        return 0.0
    said = sentences(record.answer)
    if context is None or is_abstention(record.answer) or not said:
        return None
    parts, start = [], 0
    for text in context:  # the words of the joined context are the texts' words in turn
        where, n = _word_positions(text)
        parts.append((start, where))
        start += n
    return sum(_supported(s, parts) for s in said) / len(said)


@functools.lru_cache(maxsize=64)
def _word_positions(text: str) -> tuple[dict[str, list[int]], int]:
    """Where each word of one context text is, and how many words it has: built once per document or
    chunk, shared by every question whose context holds it (hybrid contexts are sets of whole documents)."""
    where: dict[str, list[int]] = collections.defaultdict(list)
    words = _normalized(text)[0].split()
    for i, w in enumerate(words):
        where[w].append(i)
    return dict(where), len(words)


# The judge's metrics are filled in by pipelines/judge.py; here only what needs no call: a non-answer
# gets the worst value, wherever the metric applies.
@register("faithfulness", needs=("judge", "context"), rank=9)
def faithfulness(record, question, context=None):
    """The judge's verdict on which answer sentences the context supports (no context: no value)."""
    return 0.0 if not has_answer(record) and context != () else None


@register("judge", needs=("judge", "reference"), rank=1)
def judge(record, question, context=None):
    """correct / partial / incorrect -> 1 / 0.5 / 0; applies wherever there is a reference to grade against."""
    return 0.0 if not has_answer(record) and (question.answers or question.unanswerable) else None


@register("human", needs=("human",), rank=0, description="people's ratings, imported by `ragbench review import`")
def human(record, question, context=None):
    return None  # filled in from a ratings file (pipelines/review.py), never at run time


def score(record: QuestionRecord, question: Question, metrics: list[Metric], context=None) -> dict[str, float]:
    return score_all([(record, question, context)], metrics)[0]


def score_all(rows: list[tuple], metrics: list[Metric]) -> list[dict[str, float]]:
    """Each row's scores, for rows `(record, question, context_texts)`; batched metrics see all rows at once."""
    out: list[dict[str, float]] = [{} for _ in rows]
    answered = [has_answer(record) for record, _, _ in rows]
    for metric in metrics:
        values = metric.batch(rows) if metric.batch else [metric.fn(*row) for row in rows]
        for scores, ok, value in zip(out, answered, values):
            if value is not None and metric.grades_answer and not ok:
                value = metric.worst
            if value is not None:
                scores[metric.name] = round(float(value), 6)
    return out


def _digest(*texts: str) -> str:
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:8]


def scoring_version(system: str, template: str) -> str:
    """How rows are scored, for comparing runs across weeks: rules, abstention pattern, faithfulness
    method, the judge's prompts and the answer prompt (system + template). Bump rule: module doc."""
    from pipelines import judge as judging  # judge imports this module

    rubric = _digest(judging.RUBRIC, judging.NO_REFERENCE, judging.FAITHFUL, repr(sorted(judging.SCORES.items())))
    declared = _digest(*(f"{m.name}/{m.version}/{m.higher_is_better}/{m.aggregation}/{m.worst}" for m in sorted(
        REGISTRY.values(), key=lambda m: m.name)))
    return (f"rules{RULES_VERSION}-abstain.{_digest(_ABSTAIN.pattern)}-faith.{FAITHFULNESS_METHOD}"
            f"-judge.{rubric}-prompt.{_digest(system, template)}-metrics.{declared}")


from pipelines import text_metrics  # noqa: E402,F401  (registers bleu and bertscore)
