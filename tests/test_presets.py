"""Every preset in conf/experiment/ run end to end (not only composed), against the scripted server
with one question per job: each job's run FINISHED under one sweep parent, and the server's bill equal
to the runs' spend."""

import mlflow
import pytest

from conftest import ROOT, fake_model_overrides, run_pipeline
from fakes import FakeOpenAI
from pipelines import tracking

PRICES = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42}
PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
# The preset's own data set, one question per job; the LaRA sweep at one budget (its 8 other jobs
# differ only in budget.context_tokens, which the strategy tests cover).
EXTRA = {"lara_budget_sweep": ["budget.context_tokens=1000"]}
JOBS = {"compare": 3, "all_questions": 3, "lara_budget_sweep": 8}


def test_every_preset_has_an_expected_job_count():
    assert set(PRESETS) == set(JOBS)


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_runs_end_to_end(preset, tmp_path):
    with FakeOpenAI(lambda q: "I do not know", prices=PRICES) as server:
        result = run_pipeline([f"experiment={preset}", "run.limit=1", "model.max_output_tokens=16",
                               *fake_model_overrides(server, **PRICES), *EXTRA.get(preset, [])],
                              cwd=tmp_path, timeout=1200)
        billed = server.billed_usd
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.kind = 'run'", output_format="list")
    assert len(runs) == JOBS[preset] and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.metrics["questions"] == 1 for r in runs)
    assert sum(r.data.metrics["spent_usd_total"] for r in runs) == pytest.approx(billed, abs=1e-12)
