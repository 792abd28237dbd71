"""The framework as people install it: `pip install .` outside the repository (configs and the embedded
data sets ship inside the package), the `ragbench` console command, and the Python API."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import mlflow
import pytest

from conftest import ROOT, dataset_overrides, fake_model_overrides, scripted
from pipelines import tracking
from fakes import FakeOpenAI


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A new virtualenv holding only this package (built from the checkout, not editable); the
    dependencies come from the test's own environment through a .pth file, so nothing is downloaded."""
    wheels, venv = tmp_path_factory.mktemp("wheels"), tmp_path_factory.mktemp("venv")
    # Built from a copy: setuptools leaves build/ in the source tree, and the checkout must stay clean.
    source = tmp_path_factory.mktemp("source") / "project"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "mlruns", "multirun",
                                                                 "outputs", "build", "test-output", "reports", "*.egg-info"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "-w", str(wheels), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    [wheel] = wheels.glob("*.whl")
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


def test_pip_install_then_the_console_command_runs_the_default_experiment_elsewhere(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with FakeOpenAI(scripted) as server:
        # The default experiment (embedded Apple 10-Q filings), from a folder that is not the checkout.
        result = subprocess.run([str(installed / "bin" / "ragbench"), "run", "strategy=full_context", "run.limit=1",
                                 *fake_model_overrides(server)], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["sec10q_apple"], filter_string="tags.kind = 'run'",
                               output_format="list")
    m = run.data.metrics
    assert m["n_ok"] + m["n_truncated"] == 1 and m["n_error"] == 0 and run.data.params["dataset.documents"] == "4"
    source = subprocess.run([str(installed / "bin" / "python"), "-c", "import pipelines; print(pipelines.__file__)"],
                            cwd=tmp_path, env=env, capture_output=True, text=True).stdout
    assert str(installed) in source  # the installed copy ran, not the checkout


def test_the_installed_package_holds_no_test_fakes(installed):
    site = next((installed / "lib").glob("python3*/site-packages"))
    shipped = [p.name for p in (site / "pipelines").rglob("*.py")]
    assert "run.py" in shipped
    assert not [name for name in shipped if "fake" in name], shipped


def test_the_python_api_returns_the_records_and_the_run_id(corpus, tmp_path, monkeypatch):
    from pipelines import api

    monkeypatch.chdir(tmp_path)
    with FakeOpenAI(scripted) as server:
        result = api.run([*dataset_overrides(corpus), *fake_model_overrides(server), "strategy=rag",
                          "index.chunk_size=64", "index.chunk_overlap=8"])
    assert [r.question_id for r in result.records] == ["q0001", "q0002", "q0003"]
    assert result.records[1].answer == "212 kilometres"
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["strategy"] == "rag"
    assert result.summary["n_ok"] == 3
