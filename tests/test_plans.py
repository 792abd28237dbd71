"""Multi-call strategies as plans the runner executes without knowing them: Self-Route is one user,
a model cascade (small model first, the run's model only when the small one abstains or fails) another,
and a strategy written here, in the test, a third."""

import json

import mlflow
import pytest

from conftest import dataset_overrides, fake_model_overrides, run_pipeline, table
from pipelines import tracking
from pipelines.budget import Budget
from pipelines.datasets import Question
from fakes import FakeOpenAI
from pipelines.models.chat import ChatModel
from pipelines.runner import answer_all, prepare_all
from pipelines.strategies import Context, Block, Corpus, Step, Strategy

PRICES = {"input_cache_miss": 1.0, "input_cache_hit": 0.1, "output": 2.0, "as_of": "test"}


class Notes(Strategy):
    """A one-block context whose text names the step, so the server can tell the steps apart."""

    def __init__(self, name):
        self.name = name

    def build(self, question, corpus, budget):
        return Context((Block(self.name, f"notes for {self.name}"),), (self.name,), (self.name,), retrieved=False,
                       context_doc_ids=(self.name,))


class ThreeTries(Strategy):
    """Ask up to three times, each with other notes, until the answer is not 'no idea'."""

    name = "three_tries"

    def steps(self):
        return [Step("first", Notes("first")), Step("second", Notes("second")), Step("third", Notes("third"))]

    def escalate(self, step, record):
        return record.answer == "no idea"


def model_for(server):
    return ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=4096, max_output_tokens=16,
                     prices=PRICES, base_url=server.base_url, max_retries=0, stream=False)


def test_the_runner_executes_any_plan_and_adds_up_every_call():
    # Answers by the notes in the prompt: 'no idea' for the hard question until the third step's notes.
    def answer(prompt):
        return "no idea" if "Hard" in prompt and "notes for third" not in prompt else "blue"

    with FakeOpenAI(prompt_answer_for=answer) as server:
        model = model_for(server)
        questions = [Question("q0", "Hard question?", ("blue",)), Question("q1", "Easy question?", ("blue",))]
        prepared = prepare_all(questions, ThreeTries(), Corpus([], lambda: None), model, _prompt_cfg(), None)
        records = answer_all(prepared, model, [], None, Budget(None), progress=False)
        bodies = list(server.requests)
    hard, easy = records
    assert (hard.route, hard.answer, easy.route, easy.answer) == ("third", "blue", "first", "blue")
    assert hard.strategy == easy.strategy == "three_tries"
    assert len(bodies) == 3 + 1
    calls = json.loads(hard.calls)
    assert [c["step"] for c in calls] == ["first", "second", "third"]
    assert hard.prompt_tokens == sum(c["prompt_tokens"] for c in calls)
    assert hard.cost_usd == pytest.approx(sum(c["cost_usd"] for c in calls))
    assert hard.context_ids == ("third",)  # what the answering step saw


def _prompt_cfg():
    from omegaconf import OmegaConf

    return OmegaConf.create({"system": "Answer.", "template": "Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:",
                             "overflow": "truncate", "question_reserve": 16})


def test_cascade_escalates_only_what_the_small_model_declines(corpus, tmp_path):
    small_says = lambda q: "I don't know" if ("Velmora" in q or "Zorbex" in q) else "212 kilometres"
    with FakeOpenAI(small_says, prices=PRICES) as small, FakeOpenAI(lambda q: "large answer", prices=PRICES) as large:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(large, **PRICES), "strategy=cascade",
                               "run.limit=null", "index.chunk_size=64", "index.chunk_overlap=8",
                               "retrieval.top_k=2",
                               "strategy.small.name=small", "strategy.small.model_id=small-1",
                               f"strategy.small.base_url={small.base_url}", "strategy.small.local_server=null",
                               "strategy.small.max_retries=0", "strategy.small.context_window=4096",
                               "strategy.small.tokens_per_cl100k=1.0",
                               *[f"strategy.small.prices.{k}={v}" for k, v in PRICES.items() if k != "as_of"]],
                              cwd=tmp_path)
        small_calls, large_calls = len(small.requests), len(large.requests)
        billed = small.billed_usd + large.billed_usd
    assert result.returncode == 0, result.stderr[-3000:]
    assert (small_calls, large_calls) == (3, 2)
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'run'", output_format="list")
    rows = {r["question_id"]: r for r in table(run)}
    assert [rows[q]["route"] for q in ("q0001", "q0002", "q0003")] == ["large", "small", "large"]
    assert rows["q0002"]["answer"] == "212 kilometres" and rows["q0001"]["answer"] == "large answer"
    m = run.data.metrics
    assert m["routed_share"] == pytest.approx(2 / 3)
    assert m["cost_usd_total"] == pytest.approx(billed, rel=1e-9)  # the two servers' own bills
    # Saved against sending every question to the large model: its estimated cost minus what was paid.
    assert m["cost_usd_saved_vs_last_step"] == pytest.approx(
        sum(r["fallback_usd_estimate"] for r in rows.values()) - m["cost_usd_total"])
    assert all(r["fallback_usd_estimate"] > 0 for r in rows.values())


@pytest.mark.slow
def test_cascade_with_the_local_model_first_and_a_fake_large_model(corpus, tmp_path):
    with FakeOpenAI(lambda q: "large answer", prices=PRICES) as large:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(large, **PRICES), "strategy=cascade",
                               "run.limit=2", "index.chunk_size=64", "index.chunk_overlap=8",
                               "strategy.small.max_output_tokens=32"], cwd=tmp_path, timeout=900)
        large_calls, billed = len(large.requests), large.billed_usd
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'run'", output_format="list")
    rows = table(run)
    escalated = [r for r in rows if r["route"] == "large"]
    assert len(escalated) == large_calls  # the large model was asked exactly for the escalated questions
    for r in rows:
        assert len(json.loads(r["calls"])) == (2 if r["route"] == "large" else 1)
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(billed, rel=1e-9)  # SmolLM2 is free


def test_the_prompt_settings_are_read_from_the_config_once_per_run_not_per_question(monkeypatch):
    """OmegaConf's attribute access costs ~0.1 CPU-ms a question in a 4-read prompt build (issue 16)."""
    from omegaconf import DictConfig

    reads = []
    real = DictConfig.__getattr__
    monkeypatch.setattr(DictConfig, "__getattr__", lambda self, key: reads.append(key) or real(self, key))
    with FakeOpenAI(lambda q: "blue") as server:
        model = model_for(server)
        questions = [Question(f"q{i}", f"question {i}?", ("blue",)) for i in range(50)]
        prepared = prepare_all(questions, Notes("only"), Corpus([], lambda: None), model, _prompt_cfg(), None)
    assert [p.prompt.messages[0]["content"] for p in prepared] == ["Answer."] * 50
    assert len(reads) <= 8
