import pytest

from pipelines import embeddings, index
from pipelines.documents import load_documents


@pytest.fixture
def docs(corpus, tmp_path):
    return load_documents(corpus / "docs", tmp_path / "cache")[0]


class CountingEmbedder:
    """The real embedder, with a count of the texts it had to embed."""

    def __init__(self):
        self.inner = embeddings.load()
        self.texts_embedded = 0

    def embed(self, texts, progress=False):
        self.texts_embedded += len(texts)
        return self.inner.embed(texts)


def make(docs, embedder, cache, size=64, overlap=8):
    return index.VectorIndex(docs, embedder, cache, size, overlap, "all-MiniLM-L6-v2")


def test_chunks_respect_the_token_size_and_keep_document_order(docs):
    chunks = index.split(docs, chunk_size=64, chunk_overlap=8)
    assert all(c.tokens <= 64 for c in chunks)
    for doc in docs:
        own = [c for c in chunks if c.doc_id == doc.doc_id]
        assert len(own) > 3
        assert [c.position for c in own] == list(range(len(own)))
        assert own[0].chunk_id == f"{doc.doc_id}#0"
        assert doc.text.startswith(own[0].text[:40])


def test_search_finds_the_chunk_with_the_fact(docs, tmp_path):
    idx = make(docs, CountingEmbedder(), tmp_path / "cache")
    hits = idx.search("How long is the Kelvane river?", 3)
    assert hits[0].chunk.chunk_id == "river.txt#0"
    assert "212 kilometres" in hits[0].chunk.text
    assert hits[0].score > hits[1].score > hits[2].score > 0


def test_second_index_of_same_corpus_embeds_nothing(docs, tmp_path):
    first = CountingEmbedder()
    make(docs, first, tmp_path / "cache")
    assert first.texts_embedded == len(index.split(docs, 64, 8))
    second = CountingEmbedder()
    idx = make(docs, second, tmp_path / "cache")
    assert second.texts_embedded == 0
    assert idx.search("Velmora red giant", 1)[0].chunk.doc_id == "stars.md"
    assert second.texts_embedded == 1  # only the query


def test_other_chunk_settings_build_another_index(docs, tmp_path):
    make(docs, CountingEmbedder(), tmp_path / "cache")
    other = CountingEmbedder()
    idx = make(docs, other, tmp_path / "cache", size=128)
    assert other.texts_embedded == len(idx.chunks) > 0


def test_interrupted_build_is_redone(docs, tmp_path, monkeypatch):
    class Boom(CountingEmbedder):
        def embed(self, texts, progress=False):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make(docs, Boom(), tmp_path / "cache")
    again = CountingEmbedder()
    make(docs, again, tmp_path / "cache")
    assert again.texts_embedded > 0


def test_warm_index_loads_the_same_chunks_without_splitting(docs, tmp_path, monkeypatch):
    first = make(docs, CountingEmbedder(), tmp_path / "cache")

    def no_split(*args, **kwargs):
        raise AssertionError("a warm index must not split the corpus")

    monkeypatch.setattr(index, "split", no_split)
    monkeypatch.setattr(index.tokens, "count", no_split)
    second = make(docs, CountingEmbedder(), tmp_path / "cache")
    assert second.chunks == first.chunks  # same text, ids, positions and token counts, in the same order
    assert second.search("How long is the Kelvane river?", 1)[0].chunk == first.by_id["river.txt#0"]


def test_a_text_of_megabytes_is_split_not_a_regex_time_out():
    from pipelines.documents import Document
    from pipelines.index import split

    # One 20 MB paragraph of ordinary prose with no line break: nltk's punkt (inside SentenceSplitter)
    # raised "regular-expression match exceeded its 5.0s time limit" on such a file.
    sentence = "The Kelvane river is 212 kilometres long and runs north to the sea. "
    text = sentence * (20_000_000 // len(sentence))
    chunks = split([Document("one_line.txt", text, 0, "x")], 256, 32)
    assert len(chunks) > 1000 and all(c.tokens <= 256 for c in chunks)
    assert chunks[0].text.startswith("The Kelvane river")


class CountingQueries:
    """A Chroma collection that records how many query vectors each `query` call carried."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def query(self, **kwargs):
        self.calls.append(len(kwargs["query_embeddings"]))
        return self.inner.query(**kwargs)


def test_a_runs_primed_questions_are_searched_in_one_chroma_query_with_the_same_hits(docs, tmp_path):
    """The raw loop batches its Chroma queries; so does a run: one query for all its questions."""
    embedder = embeddings.load()
    idx = make(docs, embedder, tmp_path / "cache")
    questions = ["How long is the Kelvane river?", "Which star is a red giant?", "Who founded the guild?",
                 "What is Velmora?", "How many members?", "When was the treaty signed?"]
    alone = {q: [(h.chunk.chunk_id, round(h.score, 5)) for h in idx.search(q, 4)] for q in questions}
    idx.collection = CountingQueries(idx.collection)
    try:
        embedder.prime(questions)
        together = {q: [(h.chunk.chunk_id, round(h.score, 5)) for h in idx.search(q, 4)] for q in reversed(questions)}
        assert together == alone
        assert idx.collection.calls == [len(questions)]
        idx.search(questions[0], 2)  # another depth: one more batch
        idx.search(questions[1], 2)
        scoped = idx.search(questions[0], 2, ("river.txt",))  # a filter: asked alone
        assert idx.collection.calls == [len(questions), len(questions), 1]
        assert {h.chunk.doc_id for h in scoped} == {"river.txt"}
    finally:
        embedder.prime([])


def test_a_warm_rerun_reads_its_questions_vectors_and_loads_no_model(docs, tmp_path):
    """Issue 16: start to first call of a warm run was 12.6 s, 7.3 of them loading sentence-transformers
    to embed questions the run before had already embedded. The vectors are kept beside the index; a
    rerun reads them, gets the very same hits, and loads the model only for a question it has not seen."""
    questions = ["How long is the Kelvane river?", "Which star is a red giant?", "How many apples?"]
    first = embeddings.Embedder(embeddings.default_model_path())
    idx = make(docs, first, tmp_path / "cache")
    idx.prime(questions)
    vectors = first.model.encode(questions, normalize_embeddings=True)
    hits = {q: [(h.chunk.chunk_id, round(h.score, 5)) for h in idx.search(q, 4)] for q in questions}

    fresh = embeddings.Embedder(embeddings.default_model_path())
    again = make(docs, fresh, tmp_path / "cache")
    again.prime(list(reversed(questions)))
    assert fresh.texts_embedded == 0 and not fresh.loaded  # no torch, no model, no encode
    assert (fresh.embed(questions) == vectors).all()  # bit for bit what the model gives
    assert {q: [(h.chunk.chunk_id, round(h.score, 5)) for h in again.search(q, 4)] for q in questions} == hits

    again.prime(questions + ["Who keeps the bees?"])
    assert fresh.texts_embedded == 1  # only the new question
    assert (fresh.embed(["Who keeps the bees?"]) == fresh.model.encode(["Who keeps the bees?"], normalize_embeddings=True)).all()
    other = make(docs, embeddings.Embedder(embeddings.default_model_path()), tmp_path / "cache", size=128)
    built = other.embedder.texts_embedded  # its chunks
    other.prime(["Who keeps the bees?"])  # another index of the same model shares the stored vectors
    assert other.embedder.texts_embedded == built
