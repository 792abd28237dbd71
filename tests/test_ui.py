"""What a person sees: the MLflow UI over a store from a small offline run, and the report page,
rendered by headless Chromium (Debian's `chromium`, installed by `make setup`). Screenshots go to
test-output/ for a person to look at."""

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import pytest

from pipelines import report, tracking

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make setup installs it as root)")


def chromium(url: str, tmp_path: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (virtual time lets the single-page app fetch its data)."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1600,1100", "--virtual-time-budget=20000"]
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    if screenshot:
        screenshot.parent.mkdir(exist_ok=True)
        subprocess.run(flags + [f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
        assert screenshot.stat().st_size > 10_000
    return dom


@pytest.fixture
def mlflow_server(fake_sweep):
    workdir, _, _ = fake_sweep
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tracking.tracking_uri(str(workdir / "mlruns"))
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        yield url, store
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_mlflow_ui_shows_the_sweep_and_lines_runs_up_with_their_metrics(mlflow_server, tmp_path):
    url, store = mlflow_server
    mlflow.set_tracking_uri(store)
    experiment = mlflow.get_experiment_by_name("tiny").experiment_id
    runs = mlflow.search_runs(experiment_ids=[experiment], filter_string="tags.kind = 'run'", output_format="list")
    listing = chromium(f"{url}/#/experiments/{experiment}/runs", tmp_path, SHOTS / "mlflow_runs.png")
    assert "sweep " in listing  # the sweep's parent run, its three runs nested under it
    ids = urllib.parse.quote(json.dumps([r.info.run_id for r in runs]))
    compare = chromium(f"{url}/#/compare-runs?runs={ids}&experiments=%5B%22{experiment}%22%5D", tmp_path,
                       SHOTS / "mlflow_compare.png")
    for name in ("rag·fake", "hybrid·fake", "full_context·fake"):
        assert name in compare
    # The metrics table is virtualised: only its first rows are in the DOM, whichever they are.
    shown = [m for m in runs[0].data.metrics if "_" in m and m in compare]
    assert len(shown) >= 3, shown


def test_report_page_renders_with_every_image_and_the_summary(fake_sweep, tmp_path):
    workdir, _, _ = fake_sweep
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    out = report.build("tiny", tmp_path / "report")
    page = (out / "report.html").read_text()
    # Count, in the browser, the images that decoded (naturalWidth > 0).
    probe = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
             "document.body.dataset.total=i.length;document.body.dataset.loaded=i.filter(x=>x.complete&&x.naturalWidth>0).length;})</script>")
    (out / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    dom = chromium((out / "probe.html").as_uri(), tmp_path, SHOTS / "report.png")
    total = int(dom.split('data-total="')[1].split('"')[0])
    loaded = int(dom.split('data-loaded="')[1].split('"')[0])
    assert total == 7 and loaded == total  # six charts and the break-even projection
    assert "<h2>Summary</h2>" in dom and "rag·fake" in dom and "USD / 1k questions" in dom


def test_the_trace_list_shows_each_questions_tokens_and_its_scores(mlflow_server, tmp_path):
    """MLflow's Traces page, as a person opens it: each question's tokens (from the spans' standard usage
    attributes) and its scores as assessment columns."""
    from browser import Browser

    url, store = mlflow_server
    mlflow.set_tracking_uri(store)
    experiment = mlflow.get_experiment_by_name("tiny").experiment_id
    traces = mlflow.search_traces(locations=[experiment], return_type="list")
    totals = {t.info.token_usage["total_tokens"] for t in traces if t.info.token_usage}
    assert totals and min(totals) > 0
    browser = Browser(tmp_path / "cdp", height=900)
    try:
        browser.open(f"{url}/#/experiments/{experiment}/traces")
        page = browser.wait_for("Tokens", timeout=90)
        time.sleep(2)
        page = browser.text()
        for column in ("Tokens", "f1", "exact_match"):
            assert f"\n{column}\n" in page, column
        assert any(f"\n{total}\n" in page for total in totals)  # the API's token count, on the page
        browser.send("Runtime.evaluate", expression="""[...document.querySelectorAll('button')].filter(b =>
            (b.innerText || '').trim() === 'Got it' || /close/i.test(b.getAttribute('aria-label') || '')).forEach(b => b.click())""")
        time.sleep(1)
        browser.screenshot(SHOTS / "mlflow_traces.png")
    finally:
        browser.close()


def test_the_runs_table_opens_with_the_headline_columns(fake_sweep):
    """Every run saves MLflow's shared view of the runs table (an experiment tag the UI reads through
    `?viewStateShareKey=`): strategy, model, the best-ranked quality metrics, cost and latency as columns."""
    workdir, result, _ = fake_sweep
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    experiment = mlflow.get_experiment_by_name("tiny")
    state = json.loads(experiment.tags[f"mlflow.sharedViewState.{tracking.VIEW_KEY}"])
    assert state["selectedColumns"] == ["attributes.`Dataset`", "metrics.`f1`", "metrics.`exact_match`",
                                        "metrics.`cost_usd_per_question`", "metrics.`latency_p50_s`", "metrics.`n_error`",
                                        "tags.`strategy`", "tags.`model`"]
    assert f"runs?viewStateShareKey={tracking.VIEW_KEY}" in result.stdout + result.stderr  # the run says where to look


def _close_assistant(browser):
    browser.send("Runtime.evaluate", expression="""[...document.querySelectorAll('button')].filter(b =>
        (b.innerText || '').trim() === 'Got it' || /close/i.test(b.getAttribute('aria-label') || '')).forEach(b => b.click())""")
    time.sleep(1)


def test_mlflow_ui_runs_table_and_genai_overview_as_a_person_sees_them(mlflow_server, tmp_path):
    """The runs table from the shared view shows strategy, model, quality and cost columns with the runs'
    values (after expanding the sweep, as a person does); the GenAI overview charts the traces' cost,
    equal to what the runs logged."""
    from browser import Browser

    url, store = mlflow_server
    mlflow.set_tracking_uri(store)
    experiment = mlflow.get_experiment_by_name("tiny").experiment_id
    runs = mlflow.search_runs(experiment_ids=[experiment], filter_string="tags.kind = 'run'", output_format="list")
    browser = Browser(tmp_path / "cdp", width=2400, height=900)
    try:
        browser.open(f"{url}/#/experiments/{experiment}/runs?viewStateShareKey={tracking.VIEW_KEY}")
        browser.wait_for("sweep ", timeout=90)
        _close_assistant(browser)
        # The sweep's [+] (the button in its Run Name cell): its runs are nested under it
        browser.send("Runtime.evaluate", expression="""document.querySelectorAll('button[data-component-id$="runnamecellrenderer.tsx_46"]')
            .forEach(b => b.click())""")
        page = browser.wait_for("rag·fake", timeout=30)
        for column in ("strategy", "model", "f1", "cost_usd_per_question", "latency_p50_s"):
            assert f"\n{column}\n" in page, column
        for run in runs:
            assert f"\n{run.data.tags['strategy']}\n" in page
            assert f"{run.data.metrics['f1']:.2f}" in page
        browser.screenshot(SHOTS / "mlflow_runs_table.png")

        browser.open(f"{url}/#/experiments/{experiment}/overview/usage")
        page = browser.wait_for("Total Cost", timeout=90)
        time.sleep(2)
        page = browser.text()
        billed = sum(r.data.metrics["spent_usd_total"] for r in runs)
        shown = [float(x) for x in re.findall(r"\$([0-9.]+) Total Cost", page)]
        assert shown and shown[0] == pytest.approx(billed, abs=1e-6), (shown, billed)
        assert "Token Usage" in page and "no cost data" not in page.lower()
        _close_assistant(browser)
        browser.send("Runtime.evaluate", expression="""[...document.querySelectorAll('*')].filter(e => !e.children.length
            && (e.innerText || '').trim() === 'Token Usage').forEach(e => e.scrollIntoView())""")
        time.sleep(1)
        browser.screenshot(SHOTS / "mlflow_overview.png")
    finally:
        browser.close()


def test_one_trace_shows_its_retrieval_span_and_assessments(mlflow_server, tmp_path):
    """A question opened from the trace list as a person does (a click on its row): the span tree
    (question, the context the strategy chose, the model call with its tokens and cost) and its scores
    as assessments."""
    from browser import Browser

    url, store = mlflow_server
    mlflow.set_tracking_uri(store)
    experiment = mlflow.get_experiment_by_name("tiny").experiment_id
    browser = Browser(tmp_path / "cdp", width=2000, height=1000)
    try:
        browser.open(f"{url}/#/experiments/{experiment}/traces")
        browser.wait_for("Kelvane", timeout=90)
        _close_assistant(browser)
        # Newest first: the last Kelvane row is the sweep's first job, rag
        browser.send("Runtime.evaluate", expression="""(() => {const cells = [...document.querySelectorAll('div,span,td,a')]
            .filter(x => !x.children.length && (x.innerText || '').includes('Kelvane')); cells[cells.length - 1].click()})()""")
        page = browser.wait_for("context·rag", timeout=60)
        assert "rag·fake" in page and "\nfake\n" in page  # question, retrieval step, model call
        assert re.search(r"\$0\.0000[0-9]+", page)  # the call's cost, from the span's standard attributes
        browser.send("Runtime.evaluate", expression="""[...document.querySelectorAll('button')]
            .filter(b => (b.innerText || '').trim().startsWith('Assess')).forEach(b => b.click())""")
        page = browser.wait_for("exact_match", timeout=30)
        time.sleep(1)
        page = browser.text()
        for name in ("f1", "exact_match", "rouge_l"):
            assert name in page, name
        browser.screenshot(SHOTS / "mlflow_trace.png")
    finally:
        browser.close()
