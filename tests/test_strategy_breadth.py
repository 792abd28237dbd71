"""Strategies from the literature on a hand-made corpus: which chunks, in which order, how many
tokens; RRF against hand-computed ranks; matched budgets to the token; Self-Route's routing."""

import mlflow
import pytest

from conftest import dataset_overrides, fake_model_overrides, run_pipeline, table
from pipelines import embeddings, prompts, retrieval, tokens, tracking
from pipelines.datasets import Question
from pipelines.documents import load_documents
from fakes import FakeOpenAI
from pipelines.index import Chunk, Hit, VectorIndex
from pipelines.strategies import Corpus
from pipelines.strategies.full_context import FullContext
from pipelines.strategies.hybrid import Hybrid
from pipelines.strategies.rag import Rag

RIVER = Question("q2", "How long is the Kelvane river?", ("212 kilometres",), ("river.txt",))


@pytest.fixture
def corpus_obj(corpus, tmp_path):
    docs = load_documents(corpus / "docs", tmp_path / "cache")[0]
    return Corpus(docs, lambda: VectorIndex(docs, embeddings.load(), tmp_path / "cache", 64, 8, "all-MiniLM-L6-v2"))


def hit(cid, score=0.0):
    doc, n = cid.split("#")
    return Hit(Chunk(cid, doc, int(n), cid, 1), score)


def test_rrf_against_hand_computed_ranks():
    dense = [hit("a#0"), hit("b#0"), hit("c#0")]
    bm25 = [hit("c#0"), hit("a#0"), hit("d#0")]
    fused = retrieval.rrf([(dense, 1.0), (bm25, 1.0)], k=60)
    # a: 1/61 + 1/62; c: 1/63 + 1/61; b: 1/62; d: 1/63
    assert [h.chunk.chunk_id for h in fused] == ["a#0", "c#0", "b#0", "d#0"]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62) and fused[1].score == pytest.approx(1 / 63 + 1 / 61)
    weighted = retrieval.rrf([(dense, 1.0), (bm25, 3.0)], k=60)
    assert [h.chunk.chunk_id for h in weighted][:2] == ["c#0", "a#0"]  # 3/61 + 1/63 beats 1/61 + 3/62


def test_bm25_and_fused_retrieval_find_the_fact(corpus_obj):
    for method in ("bm25", "fused"):
        ctx = Rag(top_k=2, method=method).build(RIVER, corpus_obj, 10_000)
        assert ctx.context_ids[0] == "river.txt#0", method
    scoped = Question("q", "Kelvane river length", scope=("stars.md",))
    assert {h.chunk.doc_id for h in retrieval.search(corpus_obj.index, scoped.text, 5, scoped.scope, "bm25")} == {"stars.md"}


def test_chunk_orders(corpus_obj):
    relevance = Rag(top_k=5).build(RIVER, corpus_obj, 10_000).context_ids
    document = Rag(top_k=5, order="document").build(RIVER, corpus_obj, 10_000).context_ids
    ends = Rag(top_k=5, order="ends").build(RIVER, corpus_obj, 10_000).context_ids
    position = {d.doc_id: i for i, d in enumerate(corpus_obj.documents)}
    key = lambda cid: (position[cid.split("#")[0]], int(cid.split("#")[1]))
    assert sorted(relevance) == sorted(document) and list(document) == sorted(document, key=key)
    r = relevance
    assert ends == (r[0], r[2], r[4], r[3], r[1])  # the best at both ends, the weakest in the middle


@pytest.mark.parametrize("limit", [150, 400])
def test_matched_budget_is_respected_to_the_token(corpus_obj, limit):
    rag = Rag(top_k=1, budget_tokens=limit).build(RIVER, corpus_obj, 10_000)
    used = tokens.count(prompts.render_context(rag))
    assert used <= limit and len(rag.context_ids) > 1  # k grew past top_k=1 to fill the budget
    next_size = min(c.tokens for c in corpus_obj.index.chunks if c.chunk_id not in rag.context_ids)
    assert used > limit - next_size - 20  # nothing else would have fitted
    # Hybrid keeps whole documents up to the budget; full context is cut to it, and says so.
    hybrid = prompts.build(Hybrid(candidates=30, budget_tokens=limit).build(RIVER, corpus_obj, limit),
                           RIVER.text, "", "{context}\n{question}", limit, "truncate")
    assert hybrid.context_tokens <= limit
    full = prompts.build(FullContext().build(RIVER, corpus_obj, limit), RIVER.text, "", "{context}\n{question}",
                         limit, "truncate")
    assert full.status == "truncated" and limit - 10 <= full.context_tokens <= limit


def test_metadata_prefilter_keeps_the_documents_the_question_names(corpus_obj):
    q = Question("q", "What is long?", filters=("stars",))
    assert Hybrid(candidates=30, prefilter="metadata").build(q, corpus_obj, 10**6).context_ids == ("stars.md",)
    assert Hybrid(candidates=30, prefilter="bm25").build(RIVER, corpus_obj, 10**6).context_ids[0] in ("orchard.md", "river.txt")


def route_answers(question):
    return "unanswerable" if "Velmora" in question or "Zorbex" in question else "212 kilometres"


def test_self_route_sends_only_declined_questions_on_and_logs_the_route(corpus, tmp_path):
    with FakeOpenAI(route_answers) as server:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(server), "strategy=self_route",
                               "run.limit=null", "index.chunk_size=64", "index.chunk_overlap=8", "retrieval.top_k=2"],
                              cwd=tmp_path)
        bodies = list(server.requests)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(bodies) == 3 + 2  # three RAG calls, two of them declined and sent on
    assert "reply with exactly one word: unanswerable" in bodies[0]["messages"][0]["content"]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'run'", output_format="list")
    rows = {r["question_id"]: r for r in table(run)}
    assert [rows[q]["route"] for q in ("q0001", "q0002", "q0003")] == ["full_context", "rag", "full_context"]
    assert rows["q0002"]["context_ids"].startswith("river.txt#0")
    assert rows["q0001"]["context_ids"] == "orchard.md; river.txt; stars.md"
    m = run.data.metrics
    assert m["routed_share"] == pytest.approx(2 / 3)
    full_each = rows["q0002"]["fallback_context_tokens"]
    sent = sum(r["context_tokens"] for r in rows.values())
    assert m["context_tokens_saved_vs_fallback"] == 3 * full_each - sent > 0


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sweep_of_2_strategies_by_2_budgets_gives_4_runs_under_one_parent(corpus, tmp_path, launcher):
    with FakeOpenAI(lambda q: "212 kilometres") as server:
        result = run_pipeline(["-m", *dataset_overrides(corpus), *fake_model_overrides(server),
                               "strategy=rag,full_context", "budget.context_tokens=150,300", "run.limit=1",
                               "index.chunk_size=64", "index.chunk_overlap=8", f"hydra/launcher={launcher}",
                               *(["hydra.launcher.n_jobs=2"] if launcher == "joblib" else [])], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [parent] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'sweep'", output_format="list")
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    combos = sorted((r.data.tags["strategy"], r.data.params["budget.context_tokens"]) for r in runs)
    assert combos == [("full_context", "150"), ("full_context", "300"), ("rag", "150"), ("rag", "300")]
    for r in runs:  # each strategy filled at most its matched budget
        assert r.data.metrics["context_tokens_total"] <= int(r.data.params["budget.context_tokens"])
    assert parent.data.tags["jobs"] == "4 finished, 0 failed"
    # The sweep's table names what tells the jobs apart, under joblib too (its jobs ran in other processes).
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["strategy", "model", "settings"])
    table = "\n".join(lines[header:header + 7])
    assert table.count("budget.context_tokens=150") == 2 and table.count("budget.context_tokens=300") == 2


def test_bm25_index_is_reused_by_content_not_by_object_identity():
    from pipelines import retrieval

    class Index:  # two objects holding the same chunks under the same content key
        def __init__(self, key):
            self.key, self.chunks = key, []

    first = retrieval.bm25_for(_Chunks("k1"))
    assert retrieval.bm25_for(_Chunks("k1")) is first
    assert retrieval.bm25_for(_Chunks("k2")) is not first


class _Chunks:
    def __init__(self, key):
        from pipelines.index import Chunk

        self.key = key
        self.chunks = [Chunk("a.md#0", "a.md", 0, "apples and pears", 3), Chunk("b.md#0", "b.md", 0, "rivers", 1)]
