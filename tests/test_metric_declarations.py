"""Metrics declare what they are (direction, aggregation, what they need, version, headline rank) and
the report, the Pareto front, the highlights and the app read those declarations instead of lists kept
by hand. A new metric is one module (registering itself) named in the `metrics` list of a YAML."""

import textwrap
from dataclasses import replace

import pytest

from conftest import dataset_overrides, fake_model_overrides, run_pipeline, scripted, table
from pipelines import charts, metrics, report, stats, tracking
from pipelines.datasets import Question
from pipelines.record import QuestionRecord


def test_every_registered_metric_declares_itself():
    assert set(metrics.REGISTRY) >= {"exact_match", "f1", "judge", "faithfulness", "human", "bleu", "bertscore"}
    for m in metrics.REGISTRY.values():
        assert isinstance(m.higher_is_better, bool), m.name
        assert m.aggregation in stats.AGGREGATIONS, m.name
        assert set(m.needs) <= metrics.NEEDS, m.name
        assert isinstance(m.version, int) and m.version >= 1, m.name
        assert m.description, m.name
    assert "judge" in metrics.REGISTRY["judge"].needs and "reference" in metrics.REGISTRY["f1"].needs
    assert "context" in metrics.REGISTRY["faithfulness_lexical"].needs
    assert metrics.REGISTRY["abstained"].higher_is_better is False


def test_the_report_headline_list_is_the_declared_ranking():
    ranked = [m.name for m in metrics.headline()]
    assert ranked[:3] == ["human", "judge", "f1"]  # people over the LLM judge over the official F1
    assert all(metrics.REGISTRY[n].rank is not None for n in ranked)
    assert "abstained" not in ranked and "mrr" not in ranked


def _config(label, value, cost, rows):
    return {"label": label, "strategy": label, "model": "m", "metrics": {"wordiness": value, "f1": 0.5},
            "cost_per_question": cost, "latency_p50": 1.0, "rows": rows, "questions": len(rows)}


@pytest.fixture
def wordiness():
    """A lower-is-better metric registered the way a user's module would."""
    @metrics.register("wordiness", higher_is_better=False, needs=(), rank=0, version=1,
                      description="answer words / 10, capped at 1 (shorter is better)")
    def _wordiness(record, question, context=None):
        return min(1.0, len(record.answer.split()) / 10)
    yield metrics.REGISTRY["wordiness"]
    del metrics.REGISTRY["wordiness"]


def test_direction_is_read_by_ranking_highlights_pareto_and_correctness(wordiness):
    short = _config("short", 0.1, 0.002, [{"question_id": "q1", "wordiness": 0.1, "cost_usd": 0.002}])
    long = _config("long", 0.9, 0.001, [{"question_id": "q1", "wordiness": 0.9, "cost_usd": 0.001}])
    configs = [short, long]
    assert report.primary_metric(configs, None) == "wordiness"  # rank 0 comes first
    lines = report.highlights(configs, "wordiness")
    assert lines[0].startswith("Best quality: **short**")  # lower is better: the smallest value wins
    for c in configs:
        c["quality"] = c["metrics"]["wordiness"]
    front = charts.pareto_front(configs, "cost_per_question", "quality", higher_is_better=False)
    assert [c["label"] for c in front] == ["long", "short"]  # cheaper one, then the better one
    rows, wins = report.per_question(configs, "wordiness", threshold=0.5)
    assert rows[0]["short"] == "yes" and rows[0]["long"] == "no"  # correct means at or below the threshold
    assert rows[0]["cheapest correct"] == "short"


def test_higher_is_better_front_unchanged():
    a = {"label": "a", "c": 1.0, "q": 0.2}
    b = {"label": "b", "c": 2.0, "q": 0.8}
    worse = {"label": "w", "c": 3.0, "q": 0.5}
    assert [c["label"] for c in charts.pareto_front([a, b, worse], "c", "q")] == ["a", "b"]


def test_aggregation_is_the_declared_one(wordiness):
    median = metrics.Metric("median_len", lambda *a: None, aggregation="median", description="x")
    records = []
    for i, v in enumerate([0.0, 0.1, 0.2, 1.0]):
        r = QuestionRecord(f"q{i}", "rag", "m", "?", "x", answer="x", status="ok")
        records.append(replace(r, scores={"median_len": v}))
    out = tracking.aggregate(records, [median])
    assert out["median_len"] == pytest.approx(0.15)  # the median, not the mean 0.325
    assert out["ci/median_len_low"] <= 0.15 <= out["ci/median_len_high"]


def test_metrics_that_need_a_reference_are_not_computed_without_one():
    q = Question("x", "a question without a reference", ())
    record = QuestionRecord("x", "rag", "m", q.text, "", answer="some answer", status="ok")
    applicable = metrics.applicable(metrics.get(["f1", "rouge_l", "faithfulness_lexical"]), q)
    assert [m.name for m in applicable] == ["faithfulness_lexical"]
    assert metrics.score(record, q, applicable, context=("some answer here",)) == {"faithfulness_lexical": 1.0}


def test_scoring_version_changes_with_a_metric_version(monkeypatch):
    before = metrics.scoring_version("s", "t")
    f1 = metrics.REGISTRY["f1"]
    monkeypatch.setitem(metrics.REGISTRY, "f1", replace(f1, version=f1.version + 1))
    assert metrics.scoring_version("s", "t") != before


def test_an_unknown_metric_module_is_one_line():
    with pytest.raises(metrics.UserError, match="metrics: no_such_module:foo: cannot import no_such_module"):
        metrics.get(["no_such_module:foo"])


def test_a_new_metric_is_one_module_plus_one_yaml(corpus, tmp_path):
    """The walkthrough of README "Adding a metric": a module anywhere on the path that registers a metric,
    named in a `metrics:` list (here on the command line, as a preset's YAML would); the run logs it
    with its row count and interval, and the report ranks by it in its declared direction."""
    from fakes import FakeOpenAI

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "lab_metrics.py").write_text(textwrap.dedent('''
        from pipelines.metrics import register

        @register("answer_words", higher_is_better=False, needs=(), rank=0, version=1,
                  description="words in the answer (fewer is better)")
        def answer_words(record, question, context=None):
            return float(len(record.answer.split()))
    '''))
    workdir = tmp_path / "work"
    workdir.mkdir()
    with FakeOpenAI(scripted) as server:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(server), "run.limit=null",
                               "metrics=[f1,lab_metrics:answer_words]", "index.chunk_size=64", "index.chunk_overlap=8"],
                              cwd=workdir, env={"PYTHONPATH": str(plugins)})
    assert result.returncode == 0, result.stderr[-3000:]
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'run'", output_format="list")
    rows = table(run)
    expected = [float(len(r["answer"].split())) if r["status"] == "ok" else None for r in rows]
    assert [r.get("answer_words") for r in rows] == expected  # "212 kilometres" -> 2 words
    assert run.data.metrics["answer_words"] == pytest.approx(sum(expected) / len(expected))
    assert run.data.metrics["n/answer_words"] == 3



def test_a_metric_registered_after_the_app_loaded_is_its_quality_column():
    from pipelines import ask

    try:
        @metrics.register("panel_grade", needs=(), rank=-1, version=1)  # ranked above every built-in metric
        def panel_grade(record, question, context=None):
            """A lab's own grade."""
            return 0.25

        record = QuestionRecord("q", "rag", "m", "?", "", answer="x", scores={"f1": 0.5, "panel_grade": 0.25})
        assert ask.table({ask.Cell("rag", "m"): record})["quality"].tolist() == [0.25]
        assert ask.quality_name([record]) == "panel_grade"
    finally:
        metrics.REGISTRY.pop("panel_grade", None)
