"""The human-review loop: a run's answers out as CSV, ratings back in as HUMAN assessments on each
question's trace and as the run's `human` metric; a bad rating is one line naming file, line, column."""

import csv

import mlflow
import pytest

from pipelines import review, tracking


@pytest.fixture
def rag_run(fake_sweep):
    workdir, _, _ = fake_sweep
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    runs = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'run' and tags.strategy = 'rag'",
                              output_format="list")
    return runs[0]


def _rate(path, ratings):
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    for row in rows:
        row["rating"] = ratings.get(row["question_id"], "")
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_ratings_go_back_as_human_assessments_and_a_metric(rag_run, tmp_path):
    out = tmp_path / "ratings.csv"
    review.main(["export", "--run", rag_run.info.run_id, "--out", str(out), "--tracking", mlflow.get_tracking_uri()])
    exported = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["question_id"] for r in exported] == ["q0001", "q0002", "q0003", "q0004"]
    assert exported[1]["answer"] == "212 kilometres" and exported[0]["trace_id"].startswith("tr-")
    _rate(out, {"q0001": "correct", "q0002": "0.5", "q0003": "incorrect"})  # q0004 left blank
    review.main(["import", str(out), "--run", rag_run.info.run_id, "--tracking", mlflow.get_tracking_uri()])
    run = mlflow.get_run(rag_run.info.run_id)
    assert run.data.metrics["human"] == pytest.approx(0.5) and run.data.metrics["n/human"] == 3
    trace = mlflow.get_trace(exported[1]["trace_id"])
    [human] = [a for a in trace.info.assessments if a.name == "human"]
    assert human.value == 0.5 and human.source.source_type == "HUMAN"


def test_a_bad_rating_is_one_line_naming_file_line_and_column(rag_run, tmp_path, capsys):
    out = tmp_path / "ratings.csv"
    review.export(rag_run.info.run_id, out)
    _rate(out, {"q0002": "7"})
    with pytest.raises(SystemExit) as stop:
        review.main(["import", str(out), "--run", rag_run.info.run_id, "--tracking", mlflow.get_tracking_uri()])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {out}:3: rating: expected a number from 0 to 1, got 7.0"
