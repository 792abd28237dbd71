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
        assert max(encoded) <= 2 * longest_line + 200  # lines and labels, never a whole document
