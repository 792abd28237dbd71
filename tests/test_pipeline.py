"""The whole job as a user runs it (`python -m pipelines.run`), against a scripted local
OpenAI-compatible server, read back through the MLflow API."""


import json

import mlflow
import pytest

from conftest import dataset_overrides, fake_model_overrides, run_pipeline, scripted, table
from fakes import FakeOpenAI
from pipelines import tracking

def runs_of(workdir, experiment="tiny"):
    """The runs of (strategy, model) configurations, without a sweep's parent run."""
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return [r for r in runs if r.data.tags.get("kind") != "sweep"]


@pytest.fixture(scope="module")
def sweep(fake_sweep):
    return fake_sweep


def test_default_sweep_makes_one_finished_run_per_strategy(sweep):
    workdir, result, _ = sweep
    runs = runs_of(workdir)
    assert sorted(r.data.tags["strategy"] for r in runs) == ["full_context", "hybrid", "rag"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["model"] == "fake" and run.data.tags["dataset"] == "tiny"
        assert run.data.params["retrieval.top_k"] == "2"
        assert run.data.params["model._target_"] == "pipelines.models.chat.ChatModel"
        m = run.data.metrics
        assert m["questions"] == 4 and m["n_error"] == 1 and m["n_ok"] == 3
        # Two answers match exactly; "310 light years" misses the reference's "about" (F1 6/7); the failure scores 0.
        assert m["exact_match"] == pytest.approx(2 / 4)
        assert m["f1"] == pytest.approx((1 + 1 + 6 / 7 + 0) / 4)
        assert m["latency_p50_s"] > 0 and m["latency_p95_s"] >= m["latency_p50_s"]


def test_cost_is_computed_from_the_usage_the_server_reported(sweep):
    workdir, _, _ = sweep
    for run in runs_of(workdir):
        rows = table(run)
        ok = [r for r in rows if r["status"] == "ok"]
        for r in ok:
            miss = r["prompt_tokens"] - r["cache_hit_tokens"]
            assert r["cache_hit_tokens"] == 50
            assert r["cost_usd"] == pytest.approx((miss * 0.28 + 50 * 0.028 + r["completion_tokens"] * 0.42) / 1e6, rel=1e-12)
        assert run.data.metrics["cost_usd_total"] == pytest.approx(sum(r["cost_usd"] for r in rows))
        assert run.data.metrics["prompt_tokens_total"] == sum(r["prompt_tokens"] for r in rows)


def test_a_failed_question_is_a_recorded_row(sweep):
    workdir, _, _ = sweep
    for run in runs_of(workdir):
        rows = table(run)
        assert [r["question_id"] for r in rows] == ["q0001", "q0002", "q0003", "q0004"]
        failed = rows[3]
        assert failed["status"] == "error" and "InternalServerError" in failed["error"]
        assert failed["answer"] == "" and failed["cost_usd"] == 0 and failed["f1"] == 0


def test_rows_carry_context_and_gold_documents(sweep):
    workdir, _, _ = sweep
    by_strategy = {r.data.tags["strategy"]: table(r) for r in runs_of(workdir)}
    river = by_strategy["rag"][1]
    assert river["context_ids"].split("; ")[0] == "river.txt#0" and len(river["context_ids"].split("; ")) == 2
    assert river["gold_documents"] == "river.txt" and river["doc_recall"] == 1.0
    assert "river.txt" in by_strategy["hybrid"][1]["context_ids"].split("; ")
    assert by_strategy["full_context"][1]["context_ids"] == "orchard.md; river.txt; stars.md"
    assert by_strategy["full_context"][1].get("doc_recall") is None  # takes everything: recall says nothing


def test_prompts_sent_documents_first_question_last(sweep):
    _, _, requests = sweep
    # 4 questions x 3 strategies, but the whole tiny corpus fits hybrid's budget: hybrid and full_context
    # send byte-identical prompts, so full_context's three answers come from the response cache.
    assert len(requests) == 9
    for body in requests:
        user = body["messages"][-1]["content"]
        assert user.startswith("Documents:") and user.rstrip().endswith("Answer:")
        assert body["temperature"] == 0.0 and body["model"] == "fake-1"


def test_identical_prompts_are_not_paid_twice(sweep):
    workdir, _, _ = sweep
    runs = {r.data.tags["strategy"]: r.data.metrics for r in runs_of(workdir)}
    assert runs["full_context"]["n_cached"] == 3 and runs["full_context"]["spent_usd_total"] == 0
    assert runs["full_context"]["cost_usd_total"] == pytest.approx(runs["hybrid"]["cost_usd_total"])
    assert runs["hybrid"]["cost_usd_total"] > 0
    assert runs["hybrid"]["spent_usd_total"] == pytest.approx(runs["hybrid"]["cost_usd_total"])


def test_run_logs_resolved_config_and_per_question_csv(sweep):
    workdir, _, _ = sweep
    run = runs_of(workdir)[0]
    config = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config.yaml")
    assert "_target_: pipelines.strategies." in config and "top_k: 2" in config
    csv_text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/questions.csv")
    assert csv_text.splitlines()[0].startswith("question_id,strategy,model,question,reference,status")
    assert len(csv_text.splitlines()) >= 5


def test_crash_inside_a_run_marks_it_failed(corpus, tmp_path, monkeypatch):
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from pipelines import run as run_module

    monkeypatch.chdir(tmp_path)
    with FakeOpenAI(scripted) as server, initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", [*dataset_overrides(corpus), *fake_model_overrides(server), "strategy=full_context"],
                      return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as @hydra.main hands it to the task

        def crash(*args, **kwargs):
            raise RuntimeError("disk full")

        monkeypatch.setattr(run_module.runner, "answer_all", crash)
        with pytest.raises(RuntimeError, match="disk full"):
            run_module.run(cfg)
    [run] = runs_of(tmp_path)
    assert run.info.status == "FAILED"


def _spans(trace, span_type):
    return [s for s in trace.data.spans if s.span_type == span_type]


def test_each_question_is_a_live_trace_with_context_call_usage_and_cost(sweep):
    from mlflow.tracing.constant import SpanAttributeKey

    workdir, _, _ = sweep
    run = next(r for r in runs_of(workdir) if r.data.tags["strategy"] == "rag")
    traces = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list")
    rows = {r["question_id"]: r for r in table(run)}
    assert len(traces) == 4  # every question, the failed one included (its trace says ERROR)
    by_question = {t.data.spans[0].inputs["question_id"]: t for t in traces}
    for qid, trace in by_question.items():
        row = rows[qid]
        assert row["trace_id"] == trace.info.trace_id
        [context] = _spans(trace, "RETRIEVER")
        assert [d["id"] for d in context.outputs] == row["context_ids"].split("; ")
        [call] = _spans(trace, "CHAT_MODEL")
        assert call.inputs["messages"][-1]["content"].endswith("Answer:")
        if row["status"] == "ok":
            usage = call.attributes[SpanAttributeKey.CHAT_USAGE]
            assert usage["input_tokens"] == row["prompt_tokens"] and usage["output_tokens"] == row["completion_tokens"]
            assert usage["cache_read_input_tokens"] == 50
            assert call.attributes[SpanAttributeKey.LLM_COST]["total_cost"] == pytest.approx(row["cost_usd"])
            assert call.outputs["choices"][0]["message"]["content"] == row["answer"]
        else:
            assert trace.info.state.value == "ERROR" and call.status.status_code.value == "ERROR"
    # The trace list's token and cost columns come from these trace-level aggregates.
    ok = [t for q, t in by_question.items() if rows[q]["status"] == "ok"]
    assert sum(t.info.token_usage["input_tokens"] for t in ok) == sum(r["prompt_tokens"] for r in rows.values())


def test_scores_are_assessments_on_each_trace(sweep):
    workdir, _, _ = sweep
    run = next(r for r in runs_of(workdir) if r.data.tags["strategy"] == "rag")
    rows = {r["question_id"]: r for r in table(run)}
    for trace in mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list"):
        row = rows[trace.data.spans[0].inputs["question_id"]]
        feedback = {a.name: a.value for a in trace.info.assessments}
        assert feedback["f1"] == pytest.approx(row["f1"]) and feedback["exact_match"] == pytest.approx(row["exact_match"])


def test_cached_answers_are_not_logged_as_calls(sweep):
    workdir, _, _ = sweep
    run = next(r for r in runs_of(workdir) if r.data.tags["strategy"] == "full_context")  # served from the cache
    traces = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list")
    cached = [t for t in traces if t.data.spans[0].attributes.get("cached")]
    assert len(cached) == 3
    assert all(not _spans(t, "CHAT_MODEL") for t in cached)


def test_the_question_set_is_the_runs_input_dataset(sweep):
    workdir, _, _ = sweep
    runs = runs_of(workdir)
    digests = set()
    for run in runs:
        [dataset_input] = run.inputs.dataset_inputs
        assert dataset_input.dataset.name == "tiny"
        digests.add(dataset_input.dataset.digest)
    assert len(digests) == 1  # the same questions: recognisably the same dataset


def test_sweep_runs_are_grouped_under_a_parent_run(sweep):
    workdir, _, _ = sweep
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    [parent] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'sweep'", output_format="list")
    children = [r for r in runs_of(workdir) if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["strategy"] for r in children) == ["full_context", "hybrid", "rag"]
    assert parent.info.status == "FINISHED" and parent.data.tags["jobs"] == "3 finished, 0 failed"
    summary = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/sweep_summary.txt")
    assert summary.splitlines()[0].split()[:3] == ["strategy", "model", "questions"]


def test_rows_written_while_a_run_goes_are_replaced_not_appended(tmp_path, monkeypatch):
    from pipelines.record import QuestionRecord

    monkeypatch.chdir(tmp_path)
    experiment_id = tracking.use_experiment(str(tmp_path / "mlruns"), "rows")
    rows = [QuestionRecord(f"q{i}", "rag", "m", "?", "") for i in range(3)]
    with mlflow.start_run(experiment_id=experiment_id) as run:
        tracking.log_rows_so_far(rows[:1])
        tracking.log_rows_so_far(rows[:2])
        tracking.log_rows_so_far(rows)
        tracking.log_results(rows, [], 1.0)
    assert [r["question_id"] for r in table(run)] == ["q0", "q1", "q2"]  # once each
    so_far = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/questions_so_far.json"))
    assert len(so_far["data"]) == 3


def test_a_plain_run_is_one_run_without_the_sweep_machinery(corpus, tmp_path):
    """`python -m pipelines.run` with no strategy named is one configuration, one MLflow run and no
    sweep parent; the three-strategy comparison is the `experiment=compare` preset (`make run`)."""
    with FakeOpenAI(scripted) as server:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(server), "run.limit=1",
                               "index.chunk_size=64", "index.chunk_overlap=8"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "multirun").exists() and (tmp_path / "outputs").is_dir()
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert [(r.data.tags["kind"], r.data.tags["strategy"]) for r in runs] == [("run", "rag")]
    assert "mlflow.parentRunId" not in runs[0].data.tags


def test_interval_bounds_and_row_counts_are_in_their_own_namespaces(sweep):
    """The runs table lists the headline metrics; the bounds (ci/...) and counts (n/...) sit apart, as
    MLflow groups metrics by their prefix, instead of tripling the top-level list."""
    workdir, _, _ = sweep
    m = runs_of(workdir)[0].data.metrics
    assert not [k for k in m if k.endswith(("_ci_low", "_ci_high")) or k.endswith("_n") and "/" not in k]
    assert m["ci/f1_low"] <= m["f1"] <= m["ci/f1_high"] and m["n/f1"] == 4
    assert "ci/cost_usd_per_question_low" in m and "ci/latency_p50_s_high" in m
    top = [k for k in m if "/" not in k]
    assert {"f1", "exact_match", "cost_usd_per_question", "latency_p50_s", "spent_usd_total"} <= set(top)


def test_a_warm_rerun_sends_the_same_prompts_without_loading_the_embedding_model(corpus, tmp_path):
    """Issue 16 (fixed cost): a rerun on a warm cache, with metrics that need no embeddings, never
    imports sentence-transformers (4.9 s) or loads the model (2.4 s): the index and the questions'
    vectors come from the cache, and retrieval gives the same prompts as the run that embedded them."""
    args = [*dataset_overrides(corpus), "run.limit=null", "run.response_cache=false", "index.chunk_size=64",
            "index.chunk_overlap=8", "metrics=[exact_match,f1,doc_recall]"]
    sent, imported = [], []
    for _ in range(2):
        with FakeOpenAI(scripted) as server:
            result = run_pipeline([*args, *fake_model_overrides(server)], cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
            sent.append([r["messages"] for r in server.requests])
        assert result.returncode == 0, result.stderr[-3000:]
        imported.append({line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                         if line.startswith("import time:")})
    assert "sentence_transformers" in imported[0]  # the first run embedded the corpus and the questions
    assert "sentence_transformers" not in imported[1] and "torch" not in imported[1]
    assert len(sent[1]) == 3 and sorted(map(str, sent[1])) == sorted(map(str, sent[0]))
