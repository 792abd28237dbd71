"""The LLM judge: verdict parsing, and its tokens and cost logged apart from the answer's, in a real
run against two scripted servers (the answering model and the judge, priced differently)."""

import mlflow
import pytest

from conftest import dataset_overrides, fake_model_overrides, run_pipeline, table
from pipelines import tracking
from pipelines.fake_server import FakeOpenAI
from pipelines.judge import parse_support, parse_verdict


@pytest.mark.parametrize("reply, label", [
    ("Correct.", "correct"), ("INCORRECT - the year is wrong", "incorrect"), ("Partially correct", "partial"),
    ("partial", "partial"), ("Verdict: the answer is correct", "correct"), ("", None), ("I cannot grade this", None),
])
def test_verdicts_are_parsed(reply, label):
    assert parse_verdict(reply) == label


def test_support_lines_are_parsed():
    assert parse_support("1: yes\n2: no\n3. YES", 3) == pytest.approx(2 / 3)
    assert parse_support("1: yes", 2) is None  # a sentence without a verdict: no score, not a guess


def answers(question):
    return "212 kilometres long. It has purple dolphins." if "Kelvane" in question else "I do not know"


def verdicts(prompt):
    if "Answer sentences" in prompt:
        return "1: yes\n2: no"
    return "Correct" if "212 kilometres" in prompt.split("Answer to grade:")[-1] else "Incorrect."


def test_judge_scores_and_costs_are_kept_apart(corpus, tmp_path):
    with FakeOpenAI(answers) as model_server, FakeOpenAI(verdicts) as judge_server:
        result = run_pipeline([
            *dataset_overrides(corpus), *fake_model_overrides(model_server, input_cache_miss=0.28, output=0.42),
            "strategy=rag", "run.limit=null", "index.chunk_size=64", "index.chunk_overlap=8",
            "judge=smollm2-135m", "judge.name=fake-judge", f"judge.base_url={judge_server.base_url}",
            "judge.local_server=null", "judge.max_retries=0", "judge.prices.input_cache_miss=1.0",
            "judge.prices.output=2.0", "judge.stream=true"], cwd=tmp_path)
        judge_calls = len(judge_server.requests)
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'run'", output_format="list")
    rows = table(run)
    river, orchard = rows[1], rows[0]
    assert river["judge_label"] == "correct" and river["judge"] == 1.0
    assert river["faithfulness"] == 0.5  # the judge found one of two sentences supported
    assert orchard["judge_label"] == "incorrect" and orchard["judge"] == 0.0
    assert judge_calls == 3 + 1  # three verdicts, one faithfulness check (abstentions are not checked)
    m = run.data.metrics
    assert m["judge"] == pytest.approx(1 / 3)
    judge_cost = sum((r["judge_prompt_tokens"] * 1.0 + r["judge_completion_tokens"] * 2.0) / 1e6 for r in rows)
    answer_cost = sum((r["prompt_tokens"] * 0.28 + r["completion_tokens"] * 0.42) / 1e6 for r in rows)
    assert m["judge_cost_usd_total"] == pytest.approx(judge_cost) and judge_cost > 0
    assert m["cost_usd_total"] == pytest.approx(answer_cost)  # the judge never lands in the answer's cost
    assert m["judge_prompt_tokens_total"] == sum(r["judge_prompt_tokens"] for r in rows) > m["prompt_tokens_total"] / 10
    assert m["judge_ci_low"] <= m["judge"] <= m["judge_ci_high"]


@pytest.mark.parametrize("dataset", ["squad2", "lara_paper"])
def test_other_datasets_give_the_same_mlflow_layout(dataset, tmp_path):
    with FakeOpenAI(lambda q: "I do not know") as server:
        result = run_pipeline([f"dataset={dataset}", "strategy=full_context", "run.limit=2",
                               *fake_model_overrides(server), "model.context_window=200000"],
                              cwd=tmp_path, env={"PWD": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=[dataset], filter_string="tags.kind = 'run'", output_format="list")
    m = run.data.metrics
    assert m["questions"] == 2 and m["n_ok"] == 2
    for key in ("exact_match", "f1", "exact_match_ci_low", "cost_usd_total", "latency_p50_s", "prompt_tokens_total"):
        assert key in m
    assert run.data.tags["dataset"] == dataset and run.data.tags["strategy"] == "full_context"
