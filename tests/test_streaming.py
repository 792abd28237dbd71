"""Streamed answers reach the caller as they arrive: the client hands each growing text to a callback,
the runner passes it through per question, and the app's engine (pipelines/ask.py) delivers it in the
caller's own thread, cell by cell, before that cell's finished record."""

import pytest

from conftest import dataset_overrides
from fakes import FakeOpenAI, prepared_questions
from pipelines import ask
from pipelines.budget import Budget
from pipelines.models.chat import ChatModel
from pipelines.runner import answer_all

ANSWER = "The Kelvane river is 212 kilometres long"
PRICES = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42}


def model_for(server, **kw):
    args = dict(name="fake", provider="fake", model_id="fake-1", context_window=4096, max_output_tokens=64,
                prices=PRICES, base_url=server.base_url, max_retries=0, timeout_s=5, stream=True)
    return ChatModel(**{**args, **kw})


def test_the_client_hands_over_the_growing_answer_and_reasoning():
    seen = []
    with FakeOpenAI(lambda q: ANSWER, reasoning_for=lambda q: "Look it up.") as server:
        done = model_for(server).complete([{"role": "user", "content": "Question: how long?"}],
                                          on_text=lambda text, thought: seen.append((text, thought)))
    assert seen[0] == ("", "Look it up.")  # the reasoning streams first, apart from the answer
    texts = [t for t, _ in seen[1:]]
    assert len(texts) == len(ANSWER.split())  # one update per streamed chunk
    assert all(b.startswith(a.strip()) for a, b in zip(texts, texts[1:]))
    assert texts[-1].strip() == done.answer == ANSWER


def test_a_streamed_answer_is_read_without_an_sdk_object_per_chunk(monkeypatch):
    """A provider streams about one chunk per token, and the SDK's Stream builds a pydantic object for
    each: ~0.05 CPU-ms a chunk, half of a streamed call's CPU (benchmarks/streaming.py: 31 CPU-ms for a
    300-chunk answer, 17 without them). The SDK still sends the request, retries it and raises for its
    status; the events are decoded by httpx-sse and each chunk is plain JSON."""
    from openai.types.chat import ChatCompletionChunk

    built = []
    real = ChatCompletionChunk.construct.__func__
    monkeypatch.setattr(ChatCompletionChunk, "construct",
                        classmethod(lambda cls, *a, **kw: built.append(1) or real(cls, *a, **kw)))
    answer = " ".join(f"word{i}" for i in range(198)) + " kilomètres 公里"  # UTF-8 in chunks
    with FakeOpenAI(lambda q: answer, reasoning_for=lambda q: "Count them.") as server:
        server.served_model = "fake-1-0125"
        done = model_for(server).complete([{"role": "user", "content": "Question: how many?"}])
    assert (done.answer, done.reasoning, done.finish_reason) == (answer, "Count them.", "stop")
    assert (done.usage.output_tokens, done.response_model) == (200, "fake-1-0125")
    assert built == []


def test_the_runner_passes_each_questions_text_through():
    seen = {}
    with FakeOpenAI(lambda q: ANSWER) as server:
        model = model_for(server)
        records = answer_all(prepared_questions(["how long?", "and how wide?"], model), model, [], None, Budget(None),
                             progress=False, on_text=lambda qid, text, thought: seen.setdefault(qid, []).append(text))
    assert set(seen) == {"q0", "q1"}
    for r in records:
        assert seen[r.question_id][-1].strip() == r.answer


def test_an_unstreamed_model_gives_no_partial_text():
    seen = []
    with FakeOpenAI(lambda q: ANSWER) as server:
        done = model_for(server, stream=False).complete([{"role": "user", "content": "Question: x"}],
                                                        on_text=lambda *a: seen.append(a))
    assert done.answer == ANSWER and seen == []


def test_the_app_engine_streams_each_cell_in_the_callers_thread(corpus, tmp_path, monkeypatch):
    import threading

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test-not-a-key")
    events = []
    caller = threading.get_ident()
    with FakeOpenAI(lambda q: ANSWER, chunk_delay_s=0.3, prices=PRICES) as server:
        session = ask.Session(overrides=[*dataset_overrides(corpus), f"tracking.uri={tmp_path / 'mlruns'}",
                                         f"run.cache_dir={tmp_path / '.cache'}"],
                              model_overrides={"deepseek-chat": [f"model.base_url={server.base_url}", "model.max_retries=0"]},
                              max_usd=1.0)
        cells = [ask.Cell("no_context", "deepseek-chat")]
        records = session.ask("How long is the Kelvane river?", cells,
                              on_text=lambda cell, text, thought: events.append(("text", cell, text, threading.get_ident())),
                              on_record=lambda cell, r: events.append(("record", cell, r.answer, threading.get_ident())))
    [record] = records.values()
    assert record.answer == ANSWER
    texts = [e[2] for e in events if e[0] == "text"]
    assert len(texts) >= 3  # the answer arrived in several visible steps (7 chunks, 0.3 s apart)
    assert all(ANSWER.startswith(t.strip()) for t in texts)
    assert events[-1][0] == "record"  # the finished cell comes after its partial texts
    assert {e[3] for e in events} == {caller}  # Streamlit may only be touched from the script's thread
    assert record.cost_usd == pytest.approx(server.billed_usd, abs=1e-12)
