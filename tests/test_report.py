"""The report command on a store made by a small offline run, and the projection's arithmetic."""

import csv
import re

import mlflow
import pytest

from pipelines import charts, projection, report, tracking

DEEPSEEK = projection.Pricing("deepseek-chat", 0.28, 0.028, 0.42, 131072, 1024, 1.1, True)
CLAUDE = projection.Pricing("claude-sonnet-4-5", 3.0, 0.30, 15.0, 200000, 1024, 1.2, False)


@pytest.fixture(scope="module")
def built(fake_sweep, tmp_path_factory):
    workdir, _, _ = fake_sweep
    out = tmp_path_factory.mktemp("report") / "tiny"
    report.main(["--experiment", "tiny", "--tracking", str(workdir / "mlruns"), "--out", str(out)])
    return workdir, out


def test_report_folder_has_markdown_html_charts_and_tables(built):
    _, out = built
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "summary.csv", "per_question.csv", "break_even.csv",
            "cost_per_configuration.png", "response_time.png", "token_usage.png", "cost_vs_time.png",
            "quality_vs_cost.png", "latency_distribution.png", "break_even.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    md = (out / "report.md").read_text()
    for heading in ("## Highlights", "## Summary", "## Charts", "## Paired differences", "## Per question",
                    "## Break-even projection"):
        assert heading in md


def test_summary_numbers_are_the_runs_numbers(built):
    workdir, out = built
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    runs = {r.data.tags["strategy"]: r.data.metrics for r in
            mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'run'", output_format="list")}
    rows = {r["configuration"].split("·")[0]: r for r in csv.DictReader((out / "summary.csv").open())}
    for strategy, m in runs.items():
        row = rows[strategy]
        assert float(row["USD / question"]) == pytest.approx(m["cost_usd_per_question"], abs=1e-6)
        assert float(row["USD / 1k questions"]) == pytest.approx(m["cost_usd_per_question"] * 1000, abs=0.01)
        assert float(row["f1"]) == pytest.approx(m["f1"], abs=1e-4)
        low, high = float(row["f1 low"]), float(row["f1 high"])
        assert (low, high) == (pytest.approx(m["ci/f1_low"], abs=1e-3), pytest.approx(m["ci/f1_high"], abs=1e-3))
        assert int(row["f1 n"]) == m["n/f1"] == 4
        assert int(row["failed"]) == m["n_error"] == 1


def test_per_question_names_the_cheapest_correct_configuration(built):
    _, out = built
    rows = list(csv.DictReader((out / "per_question.csv").open()))
    assert [r["question_id"] for r in rows] == ["q0001", "q0002", "q0003", "q0004"]
    assert rows[0]["cheapest correct"].startswith("rag·")  # rag's prompt is the smallest, so its answer the cheapest
    assert rows[3]["cheapest correct"] == "none"  # the failed question


def test_report_is_logged_back_to_mlflow(built):
    workdir, _ = built
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'report'", output_format="list")
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert "report/report.html" in names and "report/break_even.png" in names


def test_projection_hand_checked():
    full = projection.Profile("full_context", 50_000, 50_000, 100, 200)
    rag = projection.Profile("rag", 1280, 50_000, 100, 200)
    # 100k corpus on DeepSeek: the corpus is a cached prefix (hit price), the 100 other tokens miss.
    usd, fits = projection.cost_per_question(full, DEEPSEEK, 100_000)
    assert fits and usd == pytest.approx((110 * 0.28 + 110_000 * 0.028 + 200 * 0.42) / 1e6)
    assert projection.cost_per_question(rag, DEEPSEEK, 100_000)[0] == pytest.approx((1518 * 0.28 + 200 * 0.42) / 1e6)
    # No prefix caching on the compatible Claude endpoint: every token at the miss price.
    assert projection.cost_per_question(full, CLAUDE, 100_000)[0] == pytest.approx((100_100 * 1.2 * 3 + 200 * 15) / 1e6)
    # Full context stops fitting DeepSeek's window at (131072 - 1024) / 1.1 - 100 tokens of corpus.
    assert projection.fit_limit(full, DEEPSEEK) == pytest.approx(118_125.45, abs=0.01)
    assert projection.cost_per_question(full, DEEPSEEK, 500_000)[1] is False
    hybrid = projection.Profile("hybrid", 25_000, 50_000, 100, 200, token_budget=40_000)
    assert projection.context_at(hybrid, 60_000) == 30_000 and projection.context_at(hybrid, 1_000_000) == 40_000


def test_pareto_front():
    configs = [{"label": "a", "c": 1.0, "q": 0.5}, {"label": "b", "c": 2.0, "q": 0.4}, {"label": "c", "c": 3.0, "q": 0.9},
               {"label": "d", "c": 0.5, "q": 0.2}]
    assert [c["label"] for c in charts.pareto_front(configs, "c", "q")] == ["d", "a", "c"]


def test_unknown_experiment_is_an_error_not_a_new_experiment(fake_sweep, tmp_path, capsys):
    workdir, _, _ = fake_sweep
    from pipelines import compare

    for main, args in ((report.main, ["--experiment", "tinyy", "--out", str(tmp_path / "r")]),
                       (compare.main, ["--experiment", "tinyy", "--a", "strategy=rag", "--b", "strategy=hybrid"]),
                       (compare.main, ["--experiment", "tiny", "--a", "0123456789abcdef", "--b", "strategy=rag"])):
        with pytest.raises(SystemExit) as stop:
            main([*args, "--tracking", str(workdir / "mlruns")])
        assert stop.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    assert mlflow.get_experiment_by_name("tinyy") is None


def test_a_report_covers_the_latest_sweep_and_never_pairs_a_rerun_with_itself(fake_sweep, tmp_path):
    import shutil
    import subprocess
    import sys

    from conftest import dataset_overrides, fake_model_overrides, scripted
    from fakes import FakeOpenAI

    workdir, _, _ = fake_sweep
    copy = tmp_path / "work"
    shutil.copytree(workdir, copy)
    corpus = copy / "corpus"
    with FakeOpenAI(scripted) as server:  # a rerun of one configuration, then a sweep of two prefilters
        for extra in (["strategy=rag"], ["strategy=hybrid", "strategy.prefilter=dense,bm25"]):
            done = subprocess.run([sys.executable, "-m", "pipelines.run", "-m", *dataset_overrides(corpus),
                                   *fake_model_overrides(server), "index.chunk_size=64", "index.chunk_overlap=8",
                                   "retrieval.top_k=2", *extra], cwd=copy, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-2000:]
    configs = report.load_configs("tiny", None, store=str(copy / "mlruns"))
    labels = [c["label"] for c in configs]
    assert len(configs) == 2 and len(set(labels)) == 2  # the latest sweep only: the two prefilters
    assert any("prefilter=bm25" in label for label in labels) and any("prefilter=dense" in label for label in labels)
    every = report.load_configs("tiny", None, store=str(copy / "mlruns"), latest_sweep=False)
    pairs = report.paired_differences(every, "f1")
    assert all(p["A"] != p["B"] for p in pairs)  # the rag rerun is never compared with the first rag run


def test_self_route_is_priced_as_rag_plus_its_routed_share_of_the_fallback():
    rag = projection.Profile("rag", 2000, 50_000, 100, 20)
    full = projection.Profile("full_context", 2000, 50_000, 100, 20)
    routed = projection.Profile("self_route", 2000, 50_000, 100, 20, routed_share=0.25, fallback="full_context")
    size = 100_000.0
    rag_usd, _ = projection.cost_per_question(rag, CLAUDE, size)
    full_usd, _ = projection.cost_per_question(full, CLAUDE, size)
    assert rag_usd == pytest.approx((2100 * 1.2 * 3.0 + 20 * 15.0) / 1e6)
    usd, _ = projection.cost_per_question(routed, CLAUDE, size)
    assert usd == pytest.approx(rag_usd + 0.25 * full_usd)


def test_the_page_has_a_setup_captions_and_a_drill_down(built):
    """The HTML a colleague opens: rendered from the Jinja2 template, not converted markdown."""
    import html as html_lib

    _, out = built
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "`" not in page  # no markdown left unconverted
    setup = page.split('id="setup"')[1].split("</section>")[0]
    for needed in ("tiny", "fake", "0.28", "as of", "scoring version", "retrieval.top_k"):
        assert needed in setup, needed
    figures = page.count("<figure")
    assert figures >= 6 and page.count("<figcaption") == figures
    drill = page.split('id="questions"')[1].split("</section>")[0]
    assert html_lib.escape("How long is the Kelvane river?", quote=False) in drill
    assert "212 kilometres" in drill  # the reference and the answers, side by side
    assert drill.count('class="cheapest"') == 3  # one cheapest correct answer per answerable question


def test_a_free_model_gets_a_note_not_an_all_zero_cost_chart(built, tmp_path, monkeypatch):
    workdir, _ = built
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    configs = report.load_configs("tiny", None)
    for c in configs:
        c["cost_per_question"] = 0.0
    monkeypatch.setattr(report, "load_configs", lambda *a, **k: configs)
    out = report.build("tiny", tmp_path / "free")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert not (out / "cost_per_configuration.png").exists() and not (out / "cost_vs_time.png").exists()
    assert "free model" in page
