import pytest

from pipelines import embeddings, prompts, tokens
from pipelines.datasets import Question
from pipelines.documents import Document, load_documents
from pipelines.index import VectorIndex
from pipelines.strategies import Block, Context, Corpus
from pipelines.strategies.full_context import FullContext
from pipelines.strategies.hybrid import Hybrid
from pipelines.strategies.rag import Rag

RIVER = Question("q2", "How long is the Kelvane river?", ("212 kilometres",), ("river.txt",))


@pytest.fixture
def corpus_obj(corpus, tmp_path):
    docs = load_documents(corpus / "docs", tmp_path / "cache")[0]
    return Corpus(docs, lambda: VectorIndex(docs, embeddings.load(), tmp_path / "cache", 64, 8, "all-MiniLM-L6-v2"))


def test_rag_gives_top_k_chunks_best_first(corpus_obj):
    ctx = Rag(top_k=3).build(RIVER, corpus_obj, budget=10_000)
    assert len(ctx.context_ids) == 3
    assert ctx.context_ids[0] == "river.txt#0"
    assert list(ctx.scores) == sorted(ctx.scores, reverse=True)
    assert ctx.doc_ids[0] == "river.txt"
    assert "212 kilometres" in ctx.blocks[0].text
    assert ctx.retrieved


def test_hybrid_keeps_best_documents_whole_within_budget(corpus_obj):
    sizes = {d.doc_id: d.tokens for d in corpus_obj.documents}
    strategy = Hybrid(candidates=30, order="relevance")
    ranked = [d for d, _ in strategy.rank(RIVER, corpus_obj)]
    assert ranked[0] == "river.txt"
    # Room for the river document and one more: the next best that fits goes in.
    budget = sizes["river.txt"] + max(sizes[ranked[1]], sizes[ranked[2]])
    ctx = strategy.build(RIVER, corpus_obj, budget=budget)
    assert ctx.context_ids[0] == "river.txt" and len(ctx.context_ids) == 2
    assert sum(sizes[d] for d in ctx.context_ids) <= budget
    assert ctx.blocks[0].text == corpus_obj.by_id["river.txt"].text  # whole, not chunks
    assert ctx.cut == f"left out for the {budget:,}-token budget: {ranked[2]}"  # the row says what did not fit
    # A budget below the best document gives that document's best chunks that fit, and says what was cut.
    small = strategy.build(RIVER, corpus_obj, budget=80)
    assert small.doc_ids == ("river.txt",) and small.context_ids and all(c.startswith("river.txt#") for c in small.context_ids)
    assert tokens.count(prompts.render_context(small)) <= 80
    assert small.cut.startswith(f"river.txt: best {len(small.context_ids)} of ") and "80-token budget" in small.cut
    assert Hybrid(candidates=30, max_documents=1).build(RIVER, corpus_obj, budget=10**6).context_ids == ("river.txt",)
    # In corpus order, the same pick comes out in file order whatever the scores.
    in_corpus_order = Hybrid(candidates=30).build(RIVER, corpus_obj, budget=budget).context_ids
    assert set(in_corpus_order) == set(ctx.context_ids) and list(in_corpus_order) == sorted(in_corpus_order)
    assert Hybrid(candidates=30, token_budget=sizes["river.txt"]).build(RIVER, corpus_obj, 10**6).context_ids == ("river.txt",)


def test_full_context_gives_every_document_without_building_an_index(corpus, tmp_path):
    docs = load_documents(corpus / "docs", tmp_path / "cache")[0]
    corpus_obj = Corpus(docs, lambda: pytest.fail("full_context must not need the index"))
    ctx = FullContext().build(RIVER, corpus_obj, budget=10)
    assert ctx.context_ids == ("orchard.md", "river.txt", "stars.md")
    assert not ctx.retrieved


def _context(n_tokens: int) -> Context:
    text = " ".join(f"w{i}" for i in range(n_tokens))  # "w123" style words: a few tokens each
    return Context(blocks=(Block("doc.txt", text),), context_ids=("d",), doc_ids=("d",), context_doc_ids=("d",))


def test_prompt_puts_documents_first_and_question_last():
    p = prompts.build(_context(50), "What is w7?", "Be brief.", "Docs:\n{context}\n\nQ: {question}", 10_000, "truncate")
    assert p.status == "ok" and p.dropped_tokens == 0
    assert p.messages[0] == {"role": "system", "content": "Be brief."}
    user = p.messages[1]["content"]
    assert user.startswith("Docs:\n[doc.txt]\nw0 w1") and user.endswith("Q: What is w7?")


def test_window_guard_truncates_the_middle_and_records_it():
    ctx = _context(3000)
    full = tokens.count(prompts.render_context(ctx))
    p = prompts.build(ctx, "q?", "", "{context}\n{question}", budget=500, policy="truncate")
    assert p.status == "truncated"
    assert p.context_tokens <= 500
    assert p.dropped_tokens > full - 500
    text = p.messages[0]["content"]
    assert text.startswith("[doc.txt]\nw0 w1 w2")  # head kept
    assert text.rstrip("q?").rstrip().endswith("w2999")  # tail kept
    assert f"[... {p.dropped_tokens} tokens omitted" in text
    assert "w1500 " not in text  # middle gone


def test_window_guard_skip_sends_nothing():
    p = prompts.build(_context(3000), "q?", "", "{context}\n{question}", budget=500, policy="skip")
    assert p.status == "skipped" and p.messages == []
    assert p.context_tokens > 500


def test_context_budget_converts_to_the_model_tokenizer():
    # 8192 window - 256 output = 7936 model tokens; at 1.25 model tokens per cl100k token: 6348 cl100k
    fixed = tokens.count("sys") + tokens.count("Q: ") + tokens.count("why?") + prompts.TEMPLATE_MARGIN
    assert prompts.context_budget(8192 - 256, 1.25, "sys", "{context}Q: {question}", "why?") == 6348 - fixed
    # A question shorter than the reserve counts as the reserve: the same budget for every short question.
    assert prompts.context_budget(7936, 1.25, "sys", "{context}Q: {question}", "why?", question_reserve=100) == 6348 - fixed + tokens.count("why?") - 100
