"""Scoring does no repeated work (issue 16): a run's embedding metrics embed in one batch, a context
shared by many questions is normalised once, and filling a token budget counts each chunk once.
The values are checked against the per-row definitions, which test_metrics.py checks by hand."""

import pytest

from pipelines import embeddings, metrics, tokens
from pipelines.datasets import Question
from pipelines.record import QuestionRecord

ANSWERS = ["The river is 212 km long.", "It measures 212 kilometres.", "Bees make honey.", "I do not know.",
           "Paris is the capital of France.", "", "The treaty was signed in 1648.", "Twelve members."]
REFERENCES = [("The river is 212 km long.",), ("212 kilometres", "212 km"), ("Bees make honey in summer.",),
              ("Nobody knows.",), ("Paris",), ("anything",), ("in 1648", "1648"), ("twelve",)]


def rows(n: int = 24, context=None):
    out = []
    for i in range(n):
        record = QuestionRecord(f"q{i}", "rag", "m", f"question {i}?", "", answer=ANSWERS[i % len(ANSWERS)],
                                retrieved=True)
        out.append((record, Question(f"q{i}", f"question {i}?", REFERENCES[i % len(REFERENCES)]), context))
    return out


class Counting:
    """Wraps a callable and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("name", ["semantic_similarity", "bertscore"])
def test_a_runs_embedding_metric_runs_the_model_once_and_agrees_with_each_row_alone(name, monkeypatch):
    metric = metrics.get([name])[0]
    batch = rows()
    alone = [metrics.score(r, q, [metric], c).get(name) for r, q, c in batch]
    if name == "semantic_similarity":
        model = embeddings.load().model
        counted = Counting(model.encode)
        monkeypatch.setattr(model, "encode", counted)
    else:
        from pipelines import text_metrics

        scorer = text_metrics._bertscorer()
        counted = Counting(scorer.score)
        monkeypatch.setattr(scorer, "score", counted)
    together = [s.get(name) for s in metrics.score_all(batch, [metric])]
    assert counted.calls == 1  # 24 rows, 21 of them with an answer: one forward pass over all of them
    assert together == pytest.approx(alone, abs=1e-5)
    assert together[5] == 0.0  # the empty answer: a non-answer scores the worst value


def test_score_all_gives_the_same_rows_as_scoring_one_row_at_a_time():
    context = ("The river is 212 km long. Bees make honey in summer. Paris is the capital of France.",)
    batch = rows(16, context)
    metric_list = metrics.get(["exact_match", "f1", "rouge_l", "semantic_similarity", "bleu", "abstained",
                               "faithfulness_lexical"])
    alone = [metrics.score(r, q, metric_list, c) for r, q, c in batch]
    together = metrics.score_all(batch, metric_list)
    assert [sorted(s) for s in together] == [sorted(s) for s in alone]
    for a, b in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_context_shared_by_many_questions_is_normalised_once(monkeypatch):
    long_context = (" ".join(["The committee met and discussed the budget of the river authority at length."] * 2000),)
    seen = []
    real = metrics.normalize
    monkeypatch.setattr(metrics, "normalize", lambda text: seen.append(len(text)) or real(text))
    metrics._normalized.cache_clear()
    metrics._word_positions.cache_clear()
    batch = rows(20, long_context)
    for record, question, _ in batch:
        object.__setattr__(question, "evidence", ("the budget of the river authority",))
    metrics.score_all(batch, metrics.get(["faithfulness_lexical", "evidence_recall", "mrr"]))
    assert sum(n >= len(long_context[0]) for n in seen) == 1  # not once per question and metric


def test_filling_a_budget_counts_each_chunk_once_not_the_growing_context(monkeypatch):
    from types import SimpleNamespace

    from pipelines.strategies import rag

    texts = [f"Chunk {i} says " + "word " * 150 for i in range(120)]
    chunks = [SimpleNamespace(chunk=SimpleNamespace(doc_id="d", position=i, text=t, tokens=tokens.count(t)))
              for i, t in enumerate(texts)]
    tokens.count.cache_clear()
    counted = []
    real = tokens.count
    monkeypatch.setattr(tokens, "count", lambda text: counted.append(len(text)) or real(text))
    chosen = rag.fill(chunks, 6_000)
    from pipelines.prompts import render_context
    from pipelines.strategies import Context

    sent = render_context(Context(tuple(rag.block(h) for h in chosen), (), ()))
    assert real(sent) <= 6_000 and len(chosen) == 37  # as many as the exact count of every trial context allowed
    # Each chunk rendered and counted once, and the chosen context once more to check it: linear, where
    # counting every trial context is quadratic (about 60 times the corpus here).
    assert sum(counted) <= 2 * sum(len(rag.block(h).text) + 20 for h in chunks) + len(sent)



def test_a_table_row_is_read_from_the_record_without_copying_it_deeply(monkeypatch):
    """`row()` runs for every question at the end of a run and for every finished row each time the rows
    so far are logged (every 30 s of a long run). dataclasses.asdict deep-copied each field of each
    row, ~0.5 ms a row; the fields are immutable, so they are read as they are. Expected by hand."""
    import copy

    record = QuestionRecord("q7", "hybrid", "m", "How long?", "212 km", context_ids=("a.txt", "b.txt"),
                            doc_ids=("b.txt", "a.txt"), retrieval_scores=(0.91234, 0.5), scope=("a.txt",),
                            latency_s=1.5, scores={"exact_match": 1.0, "f1": 0.5})
    monkeypatch.setattr(copy, "deepcopy", lambda *a, **k: pytest.fail("row() deep-copied a field"))
    row = record.row()
    assert row["context_ids"] == "a.txt; b.txt" and row["doc_ids"] == "b.txt; a.txt"
    assert row["retrieval_scores"] == "0.9123; 0.5000" and row["scope"] == "a.txt" and row["gold_documents"] == ""
    assert row["exact_match"] == 1.0 and row["f1"] == 0.5 and "scores" not in row
    assert row["latency_s"] == 1.5 and row["question_id"] == "q7" and row["status"] == "ok"
    assert list(row)[:3] == ["question_id", "strategy", "model"]  # the table's column order: the fields'
    assert record.scores == {"exact_match": 1.0, "f1": 0.5}  # the record itself is left as it was
