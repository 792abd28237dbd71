"""A long prompt is counted from its documents' memoised counts, exactly (issue 16): hybrid prompts of
20k+ tokens were encoded whole twice per question (window guard, estimate) where the raw loop counts each
document once. The reference is tiktoken encoding the whole joined text."""

import json
import random
from pathlib import Path

import pytest

from pipelines import prompts, tokens
from pipelines.documents import load_documents
from pipelines.strategies import Block, Context

ROOT = Path(__file__).resolve().parents[1]
TRICKY = ["ends with a space ", "ends with a tab\t", "ends with punctuation.", "ends with a newline\n",
          "ends with CRLF\r\n", "数字と漢字の文。", "emoji 👩‍🔬", "12345", "'s contraction", "  \n  \n", "",
          "trailing newlines\n\n\n", "a line\n  indented next", "word"]


@pytest.fixture(scope="module")
def texts():
    docs, _ = load_documents(ROOT / "experiments/sec10q_apple/docs", ROOT / ".cache")
    squad = json.loads((ROOT / "experiments/squad2/dev-v2.0.json").read_text())["data"]
    papers = sorted((ROOT / "experiments/lara_32k/paper").glob("*.md"))[:3]
    out = [d.text[:20_000] for d in docs] + [p["context"] for a in squad[:3] for p in a["paragraphs"][:10]]
    return out + [p.read_text()[:20_000] for p in papers] + TRICKY


def test_parts_joined_at_a_newline_before_a_non_space_count_as_the_whole_text(texts):
    rng = random.Random(16)
    for _ in range(300):
        parts = rng.sample(texts, rng.randint(1, 6))
        seams = rng.choice(["\n\n", "\n", "", " ", "\n\n[", "\t\n"])
        parts = [p + seams for p in parts[:-1]] + parts[-1:]
        assert tokens.count_parts(parts) == len(tokens.encoding().encode("".join(parts), disallowed_special=()))


@pytest.mark.parametrize("template", ["Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:",
                                      "{question}\n{context}", "Q: {question} C: {context} A:", "{context}"])
def test_a_built_prompt_knows_its_exact_token_count(texts, template):
    rng = random.Random(3)
    for system in ("You answer questions. ", ""):
        for _ in range(20):
            blocks = tuple(Block(f"doc{i}.txt", t) for i, t in enumerate(rng.sample(texts, rng.randint(0, 4))))
            question = rng.choice(["How much?", " leading space?", "{braces} stay", "多少？"])
            p = prompts.build(Context(blocks, (), ()), question, system, template, 10**6, "truncate")
            assert p.status == "ok"
            assert p.context_tokens == tokens.count(prompts.render_context(Context(blocks, (), ())))
            assert p.token_count() == len(tokens.encoding().encode(p.text, disallowed_special=()))


def test_questions_over_the_same_documents_encode_each_document_once(texts, monkeypatch):
    from pipelines.estimate import estimate
    from types import SimpleNamespace

    docs = [t for t in texts if len(t) > 5_000][:4]
    blocks = tuple(Block(f"doc{i}.txt", t) for i, t in enumerate(docs))
    tokens.count.cache_clear()
    tokens._encode.cache_clear()
    encoded = []
    real = tokens._encode.__wrapped__
    monkeypatch.setattr(tokens, "_encode", lambda text: encoded.append(len(text)) or real(text))
    template = "Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:"
    built = [prompts.build(Context(blocks, (), ()), f"Question number {i}?", "System.", template, 10**6, "truncate")
             for i in range(30)]
    model = SimpleNamespace(tokens_per_cl100k=1.0, prefix_cache=None, expected_output_tokens=0,
                            prices=SimpleNamespace(input_cache_miss=1.0, input_cache_hit=0.1, output=1.0))
    guess = estimate(built, [False] * 30, model)
    assert guess.input_miss == sum(p.token_count() for p in built)
    corpus = sum(len(d) for d in docs)
    # Each document at most twice (with its separator, and alone where it ends a context), the short
    # parts once per question: not 30 questions x 2 whole prompts (the window guard's and the estimate's).
    assert sum(encoded) < 2 * corpus + 30 * 200


def test_a_paid_call_reads_its_prompts_count_rather_than_encoding_the_prompt_again(texts, monkeypatch):
    """The budget's reservation needs the prompt's tokens: a built prompt already knows them."""
    from fakes import FakeOpenAI
    from pipelines.budget import Budget
    from pipelines.datasets import Question
    from pipelines.models import cache
    from pipelines.models.chat import ChatModel
    from pipelines.record import QuestionRecord
    from pipelines.runner import Prepared, answer_all

    docs = [t for t in texts if len(t) > 5_000][:4]
    blocks = tuple(Block(f"doc{i}.txt", t) for i, t in enumerate(docs))
    template = "Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:"
    prices = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42, "as_of": "2025-09-29", "source": "test"}
    with FakeOpenAI(lambda q: "blue") as server:
        model = ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=131_072, max_output_tokens=16,
                          prices=prices, base_url=server.base_url, max_retries=0, timeout_s=5, stream=True)
        items = []
        for i in range(6):
            p = prompts.build(Context(blocks, (), ()), f"Question number {i}?", "System.", template, 10**6, "truncate")
            record = QuestionRecord(f"q{i}", "hybrid", model.name, f"Question number {i}?", "blue")
            items.append(Prepared(Question(f"q{i}", record.question, ("blue",)), record, p,
                                  cache.key(model.endpoint, model.request(p.messages))))
        encoded = []
        real = tokens._encode.__wrapped__
        monkeypatch.setattr(tokens, "_encode", lambda text: encoded.append(len(text)) or real(text))
        tokens.count.cache_clear()
        records = answer_all(items, model, [], None, Budget(None), progress=False)
    assert [r.status for r in records] == ["ok"] * 6
    assert max(encoded, default=0) < 1_000  # short strings at most; each prompt is over 20,000 characters


def test_whole_documents_in_a_prompt_are_counted_from_their_known_counts_exactly(texts, monkeypatch):
    """A document's cl100k count is known from loading it (and kept in the parse cache): a prompt that
    carries it whole encodes only the document's first and last lines again, and the count is still
    exact, also for documents that start or end with white space."""
    rng = random.Random(5)
    long = [t for t in texts if t.count("\n") > 3 and len(t) > 2_000]
    docs = long + [" " + long[0], "\n\n" + long[1], long[2] + "  ", long[3] + "\n"] + [
        "line one\nline two.", "x\n\n\nend", " leading space\nline two.\n", "\n\nstarts with newlines\nthen text",
        "ends with spaces\nlast line  ", "one line only, no newline", "数字\n漢字。", "tab\n\tindented\n", ""]
    template = "Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:"
    for _ in range(40):
        chosen = rng.sample(docs, rng.randint(1, 4))
        blocks = tuple(Block(f"doc{i}.txt", t, tokens.count(t)) for i, t in enumerate(chosen))
        tokens.count.cache_clear()
        tokens._encode.cache_clear()
        encoded = []
        real = tokens._encode.__wrapped__
        monkeypatch.setattr(tokens, "_encode", lambda text: encoded.append(len(text)) or real(text))
        p = prompts.build(Context(blocks, (), ()), "How much?", "System.", template, 10**6, "truncate")
        monkeypatch.undo()
        whole = len(tokens.encoding().encode(p.text, disallowed_special=()))
        assert p.token_count() == whole
        assert p.context_tokens == len(tokens.encoding().encode(prompts.render_context(Context(blocks, (), ())),
                                                                disallowed_special=()))
        longest_line = max(len(line) for t in chosen for line in t.split("\n"))
        if any(len(t) < 2_000 for t in chosen):
            continue  # the short ones check exactness; the long ones also that only lines are encoded
        assert max(encoded, default=0) <= 2 * longest_line + 200  # lines and labels, never a whole document


def test_filling_a_budget_reads_each_chunks_known_count_rather_than_encoding_it(monkeypatch):
    """A matched-budget rag run ranks every chunk of the corpus and fills the budget from them: encoding
    each chunk again (one encode per chunk per question: 8,627 in the benchmark's corpus, more than the
    count memo holds) where the index already stored its count. The reference is tiktoken on the texts."""
    from types import SimpleNamespace

    from pipelines.prompts import render_context
    from pipelines.strategies import rag

    enc = tokens.encoding()
    texts = [(" " if i % 7 == 0 else "") + f"Chunk {i} reports.\nRevenue rose " + "word " * (40 + i % 90) + "end."
             for i in range(300)]
    hits = [SimpleNamespace(chunk=SimpleNamespace(doc_id="10-Q.pdf", position=i, text=t,
                                                  tokens=len(enc.encode(t, disallowed_special=()))), score=1.0)
            for i, t in enumerate(texts)]
    tokens.count.cache_clear()
    tokens._encode.cache_clear()
    counted = []
    real = tokens.count
    monkeypatch.setattr(tokens, "count", lambda text: counted.append(len(text)) or real(text))
    chosen = rag.fill(hits, 6_000)

    # the same greedy choice as tiktoken's counts give, the context fitting whichever block ends it
    rendered = lambda picked: len(enc.encode(render_context(Context(tuple(rag.block(h) for h in picked), (), ())),
                                             disallowed_special=()))
    shown = lambda h: f"[{rag.block(h).label}]\n{h.chunk.text}"
    size = lambda text: len(enc.encode(text, disallowed_special=()))
    expected = []
    for h in hits:
        picked = expected + [h]
        if sum(size(shown(c) + "\n\n") for c in picked) - min(size(shown(c) + "\n\n") - size(shown(c)) for c in picked) <= 6_000:
            expected.append(h)
    assert [h.chunk.position for h in chosen] == [h.chunk.position for h in expected]
    assert rendered(chosen) <= 6_000 and rendered(chosen[::-1]) <= 6_000
    # Only labels and each block's first and last words are encoded again (about 560 characters a chunk
    # were): not every chunk's text.
    assert sum(counted) <= 100 * len(hits), sum(counted)


def test_a_text_without_newlines_is_counted_around_from_its_first_and_last_words_exactly(texts):
    """Chunks are mostly prose without a newline seam: a space after a non-space is also a place where
    cl100k's pieces end whatever comes before or after the text. The reference is tiktoken, on prose in
    several scripts, numbers, contractions and punctuation, with prefixes and suffixes that merge."""
    enc = tokens.encoding()
    rng = random.Random(11)
    words = ["word", "Revenue", "rose", "12,345", "3.5%", "don't", "it's", "U.S.", "数字と漢字", "Ärger", "naïve",
             "(note)", "—", "...", "x²", "émigré", "ﬁne", "O'Neil", "$4.2bn", "'s", "a", "I", "Ⅻ", "🙂", "e.g.,"]
    pieces = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(150)]
    pieces += [t.replace("\n", " ")[:3_000] for t in texts] + TRICKY
    for text in pieces:
        prefix = rng.choice(["[doc.txt (part 3)]\n", "", "x", " ", "[a]\n ", "'", "12"])
        suffix = rng.choice(["\n\n", "", "s", " ", "\n", "...", "'t", "9"])
        got = tokens.around(prefix, text, len(enc.encode(text, disallowed_special=())), suffix)
        assert got == prefix + text + suffix
        assert got.n == len(enc.encode(prefix + text + suffix, disallowed_special=())), (prefix, text[:80], suffix)


def test_random_strings_are_counted_around_exactly():
    """The seam rules against tiktoken on character soup: every kind of white space, punctuation,
    digits, contractions, CJK and emoji, so a wrong rule shows up as a mismatch somewhere."""
    enc = tokens.encoding()
    rng = random.Random(16)
    alphabet = list("ab Z1 2 3.,;:!?'\"-()[]{}  \t\n\r\n  ’ éß数字🙂²Ⅻ_/$%&*+=<>|\\~`") + [
        "'s", "'ll", "'T", " \n", "\n\n", "  ", "\u00a0", "\u2009", "\u3000"]
    soup = lambda n: "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))
    for _ in range(5_000):
        prefix, text, suffix = soup(6), soup(60), soup(6)
        got = tokens.around(prefix, text, len(enc.encode(text, disallowed_special=())), suffix)
        assert got.n == len(enc.encode(prefix + text + suffix, disallowed_special=())), (prefix, text, suffix)


def test_a_documents_seams_are_searched_once_however_many_questions_pick_it(texts, monkeypatch):
    """Hybrid gives the same whole documents to many questions: finding a document's first and last
    exact seams scanned its ends again for every question, twice per prompt (the context's count and the
    prompt's), 3-4 ms of a hybrid question's ~6 ms preparation at 8k chunks. The counts stay tiktoken's."""
    docs = [t for t in texts if len(t) > 5_000][:4]
    tokens.count.cache_clear()
    searched = []
    real = tokens._seam
    monkeypatch.setattr(tokens, "_seam", lambda text, first: searched.append((text, first)) or real(text, first))
    template = "Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:"
    rng = random.Random(4)
    for i in range(30):
        picked = sorted(rng.sample(range(len(docs)), rng.randint(1, len(docs))))
        blocks = tuple(Block(f"doc{d}.txt", docs[d], tokens.count(docs[d])) for d in picked)
        p = prompts.build(Context(blocks, (), ()), f"Question {i}?", "System.", template, 10**6, "truncate")
        assert p.token_count() == len(tokens.encoding().encode(p.text, disallowed_special=()))
    assert len(searched) == len(set(searched)) <= 2 * len(docs)


def test_parts_are_joined_by_their_counts_only_where_the_joined_text_encodes_as_the_two_parts():
    """`_joins` is the rule `count_parts` and `around` trust: where it says yes, tiktoken's tokens of the
    joined text are the left part's followed by the right part's (the same ids, not only as many)."""
    enc = tokens.encoding()
    rng = random.Random(5)
    alphabet = list("ab Z1 .,;:!?'\"-()[]  \t\n\r\n  ’ é数字🙂_/$") + ["'s", " \n", "\n\n", "\u00a0", "\u3000"]
    soup = lambda n: "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))
    joined = 0
    for _ in range(5_000):
        left, right = soup(30) + rng.choice(["\n", "", "\n\n", " \n"]), rng.choice(["", "[", "x", " "]) + soup(30)
        if tokens._joins(left, right):
            joined += 1
            assert enc.encode(left + right, disallowed_special=()) == (
                enc.encode(left, disallowed_special=()) + enc.encode(right, disallowed_special=())), (left, right)
    assert joined > 500  # the rule was exercised, not skipped


def test_a_prompt_counts_each_of_its_documents_around_once(texts, monkeypatch):
    """A built prompt is counted twice (its context alone, for the budget; the whole prompt, for the
    reservation), and the two differ only after the last document: every other document was counted
    around its label again for the second. Now once each, plus the last one again with the prompt's tail.
    The counts stay tiktoken's."""
    docs = [t for t in texts if len(t) > 5_000][:4]
    calls = []
    real = tokens.around
    monkeypatch.setattr(tokens, "around", lambda *a: calls.append(a[1]) or real(*a))
    blocks = tuple(Block(f"doc{i}.txt", d, tokens.count(d)) for i, d in enumerate(docs))
    for template in ("Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:", "{question}\n{context}"):
        calls.clear()
        p = prompts.build(Context(blocks, (), ()), "How much?", "System.", template, 10**6, "truncate")
        enc = tokens.encoding()
        assert p.context_tokens == len(enc.encode(prompts.render_context(Context(blocks, (), ())), disallowed_special=()))
        assert p.token_count() == len(enc.encode(p.text, disallowed_special=()))
        assert len(calls) == len(docs) + 1 and calls[-1] is docs[-1]


def test_filling_a_budget_counts_each_chunk_around_its_label_at_most_twice(monkeypatch):
    """An over-budget hybrid question fills the budget from ~160 chunks of its best document: the chosen
    context was then counted again block by block. Each chunk is now counted alone and with the separator
    after it, which is enough to know exactly what any order of the chosen blocks counts (callers put them
    back in document order), so the budget holds in every order and every skipped chunk really did not
    fit. The references are tiktoken on rendered contexts and on each block."""
    import random
    from types import SimpleNamespace

    from pipelines.prompts import render_context
    from pipelines.strategies import rag

    enc = tokens.encoding()
    n = lambda text: len(enc.encode(text, disallowed_special=()))
    texts = [f"Chunk {i} reports.\nRevenue rose " + "word " * (40 + i % 90) + ("end." if i % 3 else "end")
             for i in range(80)]
    hits = [SimpleNamespace(chunk=SimpleNamespace(doc_id="10-Q.pdf", position=i, text=t, tokens=n(t)), score=1.0)
            for i, t in enumerate(texts)]
    random.Random(4).shuffle(hits)  # rank order is not document order
    rendered = lambda picked: n(render_context(Context(tuple(rag.block(h) for h in picked), (), ())))
    shown = lambda h: f"[{rag.block(h).label}]\n{h.chunk.text}"
    calls = []
    real = tokens.around
    monkeypatch.setattr(tokens, "around", lambda *a: calls.append(1) or real(*a))
    # At the margin: two chunks that fit exactly in rank order, the one ending in a word last, are one
    # token over once put back in document order (the separator after a full stop costs nothing).
    pair = [SimpleNamespace(chunk=SimpleNamespace(doc_id="10-Q.pdf", position=p, text=t, tokens=n(t)), score=1.0)
            for p, t in ((1, "Second chunk ends here."), (0, "Alpha beta gamma delta word"))]
    chosen = rag.fill(pair, rendered(pair))
    assert rendered(sorted(chosen, key=lambda h: h.chunk.position)) <= rendered(pair)
    for limit in (10**6, 3_000, 777):
        calls.clear()
        chosen = rag.fill(hits, limit)
        assert len(calls) <= 2 * len(hits)  # never the chosen context counted again
        by_position = sorted(chosen, key=lambda h: h.chunk.position)
        for order in (chosen, by_position, by_position[::-1]):
            assert rendered(order) <= limit
        for h in hits:
            if h not in chosen:  # in some order, the chunks chosen before it plus it did not fit
                before = [c for c in chosen if hits.index(c) < hits.index(h)] + [h]
                worst = sum(n(shown(c) + "\n\n") for c in before) - min(n(shown(c) + "\n\n") - n(shown(c)) for c in before)
                assert worst > limit
