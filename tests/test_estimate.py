"""Estimates before any call: the dry run prints the whole sweep's tokens and dollars and sends nothing."""

import pytest

from conftest import dataset_overrides, run_pipeline
from pipelines import tokens
from pipelines.estimate import estimate, worst_case_usd
from fakes import FakeOpenAI
from pipelines.models.chat import ChatModel
from pipelines.prompts import Prompt

PRICES = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42, "as_of": "2025-09-29", "source": "test"}


def model(**kw):
    return ChatModel(name="m", provider="p", model_id="m", context_window=100_000, max_output_tokens=100, prices=PRICES,
                     base_url="http://127.0.0.1:1/v1", expected_output_tokens=50, **kw)


def prompt(text):
    return Prompt([{"role": "user", "content": text}], 0, 0, "ok")


def test_repeated_prefixes_are_estimated_at_the_cache_hit_price():
    shared = " ".join(f"word{i}" for i in range(3000))  # the documents, identical for every question
    prompts = [prompt(f"{shared}\nQuestion: number {i}?") for i in range(3)]
    m = model(prefix_cache={"min_tokens": 64, "block": 64})
    guess = estimate(prompts, [False, False, False], m)
    n = [tokens.count(p.text) for p in prompts]
    shared_tokens = tokens.count(shared + "\nQuestion: number ")
    hit_each = shared_tokens // 64 * 64
    assert guess.calls == 3 and guess.input_hit == 2 * hit_each
    assert guess.input_miss == sum(n) - 2 * hit_each
    assert guess.output == 150
    assert guess.usd == pytest.approx((guess.input_miss * 0.28 + guess.input_hit * 0.028 + 150 * 0.42) / 1e6)
    # Without a prefix cache every token is a miss; cached responses and skipped questions cost nothing.
    assert estimate(prompts, [False] * 3, model()).input_hit == 0
    assert estimate([prompts[0], None, prompts[2]], [True, False, False], m).calls == 1


def test_worst_case_counts_every_token_as_a_miss_and_the_whole_output_reserve():
    p = prompt("one two three")
    assert worst_case_usd(p, model(tokens_per_cl100k=1.5)) == pytest.approx((5 * 0.28 + 100 * 0.42) / 1e6)  # ceil(3 x 1.5)


def test_dry_run_prints_the_sweep_table_and_sends_nothing(corpus, tmp_path):
    with FakeOpenAI() as server:
        result = run_pipeline([*dataset_overrides(corpus), "experiment=compare", "run.dry_run=true", "run.limit=null",
                               "model.name=fake", f"model.base_url={server.base_url}", "model.local_server=null",
                               "model.prices.input_cache_miss=0.28", "model.prices.input_cache_hit=0.028",
                               "model.prices.output=0.42", "model.prefix_cache={min_tokens:64,block:64}"], cwd=tmp_path)
        assert server.requests == []
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    rows = {line.split()[0]: line.split() for line in lines[header + 2: header + 6]}
    assert set(rows) == {"rag", "hybrid", "full_context", "total"}
    # full_context repeats the same documents for every question: later questions hit the cache.
    assert int(rows["full_context"][7].replace(",", "")) > 0  # input_hit
    assert rows["total"][-1].startswith("$")
    assert not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "mlflow.db").exists()  # MLflow's default store: nothing may open it


def test_dry_run_shows_the_range_of_later_plan_steps_the_judge_and_truncation(corpus, tmp_path):
    from conftest import fake_model_overrides

    with FakeOpenAI() as server:
        result = run_pipeline([*dataset_overrides(corpus), "run.dry_run=true", "run.limit=null", "strategy=self_route",
                               *fake_model_overrides(server, input_cache_miss=1.0, input_cache_hit=0.1, output=2.0),
                               "model.context_window=600", "judge=deepseek-chat", "index.chunk_size=64", "retrieval.top_k=1",
                               "index.chunk_overlap=8"], cwd=tmp_path)
        assert server.requests == []
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    header, row = lines[header_at].split(), lines[header_at + 2].split()
    values = dict(zip(header, row))
    # 3 RAG calls always; the 3 full-context fallbacks only if every question is routed on.
    assert values["calls"] == "3" and values["calls_max"] == "6"
    usd, usd_max, judge = (float(values[k].lstrip("$")) for k in ("usd", "usd_max", "judge_usd"))
    assert usd_max > usd > 0 and judge > 0
    # The full-context fallback (3 documents of ~300 tokens) does not fit a 600-token window.
    assert int(values["truncated"]) == 3 and int(values["dropped"].replace(",", "")) > 0
