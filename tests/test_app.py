"""The interactive app (pipelines/app.py) driven through Streamlit's own testing API, on a tiny corpus
with two strategies and two models: the real local SmolLM2 and a DeepSeek-shaped fake server, whose
own bill is the reference for the costs shown."""

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from browser import CHROMIUM, Browser, free_port
from conftest import QUESTIONS, dataset_overrides, scripted
from fakes import FakeOpenAI
from pipelines import tracking

ROOT = Path(__file__).resolve().parents[1]
PRICES = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42}  # conf/model/deepseek-chat.yaml


@pytest.fixture
def app(corpus, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test-not-a-key")
    with FakeOpenAI(scripted, prices=PRICES, cache_hit_tokens=20) as server:
        at = AppTest.from_file(str(ROOT / "pipelines" / "app.py"), default_timeout=900)
        at.run()
        overrides = [*dataset_overrides(corpus), f"tracking.uri={tmp_path / 'mlruns'}", f"run.cache_dir={tmp_path / '.cache'}",
                     "index.chunk_size=64", "index.chunk_overlap=8", "model.max_output_tokens=48"]
        at.text_input(key="overrides").input(" ".join(overrides))
        at.text_area(key="model_overrides").input(f"deepseek-chat: model.base_url={server.base_url} model.max_retries=0")
        at.run()
        yield at, server


def test_one_question_two_strategies_two_models(app, tmp_path):
    at, server = app
    assert not at.exception, at.exception
    at.multiselect(key="models").select("deepseek-chat")
    at.run()
    assert at.multiselect(key="strategies").value == ["rag", "full_context"]
    question = QUESTIONS[1][0]  # "How long is the Kelvane river?", reference "212 kilometres"
    assert question in at.selectbox(key="example").options  # examples come from the data set
    at.selectbox(key="example").select(question)
    at.run()
    assert any("Estimated cost of these 4 calls" in c.value for c in at.caption), ([c.value for c in at.caption], [e.value for e in at.error], at.text_area(key="question").value)
    assert server.requests == []  # the estimate sends nothing
    at.button(key="ask").click()
    at.run()
    assert not at.exception, at.exception

    results = at.session_state["results"]
    assert sorted(c.label for c in results) == sorted(f"{s} · {m}" for s in ("rag", "full_context")
                                                      for m in ("smollm2-135m", "deepseek-chat"))
    fake = {c: r for c, r in results.items() if c.model == "deepseek-chat"}
    local = {c: r for c, r in results.items() if c.model == "smollm2-135m"}
    assert all(r.status == "ok" and r.answer == "212 kilometres" for r in fake.values())
    assert all(r.answered and r.answer and r.cost_usd == 0 for r in local.values())
    # Exact costs: what the fake billed, call by call and in total
    assert len(server.requests) == 2
    assert sum(r.cost_usd for r in fake.values()) == pytest.approx(server.billed_usd, abs=1e-12)
    shown = " ".join(m.value for m in at.markdown)
    for r in fake.values():
        assert f"${r.cost_usd:.6f}" in shown and r.scores["f1"] == 1.0
    # The charts (cost, tokens, latency, cost vs time, quality) and the highlights
    charts = [e for e in at.main if "chart" in e.type]
    assert len(charts) >= 5, [e.type for e in at.main]
    highlights = {s.value.split(": ", 1)[0]: s.value.split(": ", 1)[1] for s in at.success}
    assert set(highlights) == {"cheapest", "fastest", "best quality per dollar"}
    assert highlights["cheapest"].endswith("smollm2-135m")  # free
    # One MLflow run for the session, closed, with the rows, the spend and a trace per call
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'ask'", output_format="list")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["spent_usd_total"] == pytest.approx(server.billed_usd, abs=1e-12)
    rows = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/asks.json")
    assert len(rows["data"]) == 4
    traces = mlflow.search_traces(run_id=run.info.run_id, return_type="list")
    assert len(traces) == 4

    # Asked again: every answer from the response cache, nothing sent, nothing spent
    at.button(key="ask").click()
    at.run()
    again = at.session_state["results"]
    assert len(server.requests) == 2 and all(r.cached and r.spent_usd == 0 for r in again.values())


def test_missing_keys_grey_models_out_with_the_reason(app, monkeypatch):
    at, _ = app
    names = at.multiselect(key="models").options
    assert "smollm2-135m" in names and "deepseek-chat" in names
    assert "gpt-5" not in names  # no OPENAI_API_KEY here
    assert any(c.value.startswith("gpt-5:") and "OPENAI_API_KEY" in c.value for c in at.caption)


def test_a_failed_call_is_its_cells_error_and_the_others_go_on(app):
    at, server = app
    at.multiselect(key="models").select("deepseek-chat").unselect("smollm2-135m")
    at.multiselect(key="strategies").set_value(["rag", "no_context"])
    at.text_area(key="question").input("Please FAIL on this question")
    at.run()
    at.button(key="ask").click()
    at.run()
    results = at.session_state["results"]
    assert all(r.status == "error" and "500" in r.error for r in results.values())
    assert any("error" in e.value for e in at.error)



@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it as root)")
def test_the_app_in_a_browser(corpus, tmp_path):
    """`ragbench app` as a person opens it: served on 127.0.0.1, rendered by headless Chromium, from a
    link that asks by itself (allowed because the local model is free); the real SmolLM2 answers."""
    port = free_port()
    overrides = [*dataset_overrides(corpus), f"tracking.uri={tmp_path / 'mlruns'}", f"run.cache_dir={tmp_path / '.cache'}",
                 "index.chunk_size=64", "index.chunk_overlap=8"]
    env = {**os.environ, "STREAMLIT_SERVER_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "app", *overrides], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = Browser(tmp_path / "chromium", height=2400)  # tall enough for the grid and the charts
    try:
        browser.open(f"http://127.0.0.1:{port}/?question=How%20long%20is%20the%20Kelvane%20river%3F&ask=1")
        # the notice is drawn after the highlights: wait for it too rather than read the page half drawn
        page = browser.wait_for("cheapest:", "free model: no cost charts", timeout=600)
        assert "3 documents" in page and "Estimated cost of these 2 calls" in page
        assert "Answers to: How long is the Kelvane river?" in page and "rag · smollm2-135m" in page
        assert "OPENAI_API_KEY" in page  # models without keys are listed with the reason
        time.sleep(2)  # the charts draw after the text
        browser.screenshot(ROOT / "test-output" / "app.png")
    finally:
        browser.close()
        server.terminate()
        server.wait(timeout=20)
