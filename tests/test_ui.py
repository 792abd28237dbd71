"""What a person sees: the MLflow UI over a store from a small offline run, and the report page,
rendered by headless Chromium (Debian's `chromium`, installed by `make setup`). Screenshots go to
test-output/ for a person to look at."""

import json
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
