import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

# A hand-made corpus: each document holds one made-up fact, so retrieval and gold documents are
# known exactly and no model has the answers in its memory.
DOCS = {
    "orchard.md": (
        "# The Zorbex orchard\n\nThe Zorbex orchard lies on a hill above the town. "
        "In 2021 the Zorbex orchard harvested 4,812 apples, most of them green. "
        "The orchard keeps bees to pollinate its trees, and the bees make honey every summer. "
    ) + "Apple trees need pruning in winter. " * 40,
    "river.txt": (
        "The Kelvane river is 212 kilometres long and runs north to the sea. "
        "Ferries cross the Kelvane river at three towns. Salmon swim up the river in autumn. "
    ) + "Rivers carry sediment to their deltas. " * 40,
    "stars.md": (
        "# Stars\n\nThe star Velmora is a red giant about 310 light years away. "
        "Astronomers measured the brightness of Velmora for ten years. "
    ) + "Stars shine because of nuclear fusion in their cores. " * 40,
}
QUESTIONS = [
    ("How many apples did the Zorbex orchard harvest in 2021?", "*orchard*", "4,812 apples"),
    ("How long is the Kelvane river?", "*river*", "212 kilometres"),
    ("How far away is the star Velmora?", "*stars*", "about 310 light years"),
]


def write_questions(path: Path, rows, header=("Question", "Source Docs", "Answer")) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A folder with docs/ and questions.csv in the SEC 10-Q CSV format."""
    docs = tmp_path / "corpus" / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    write_questions(tmp_path / "corpus" / "questions.csv", QUESTIONS)
    return tmp_path / "corpus"


def dataset_overrides(corpus: Path) -> list[str]:
    return [
        "dataset.name=tiny",
        f"dataset.documents_dir={corpus / 'docs'}",
        f"dataset.questions_file={corpus / 'questions.csv'}",
    ]


def run_pipeline(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m pipelines.run ARGS` as a user runs it, in `cwd` (so mlruns/ and .cache/ land there)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipelines.run", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


ANSWERS = {"Zorbex": "4,812 apples", "Kelvane": "212 kilometres", "Velmora": "310 light years"}


def scripted(question: str) -> str:
    return next((a for key, a in ANSWERS.items() if key in question), "I do not know")


def fake_model_overrides(server, **prices) -> list[str]:
    """Point the default model config at a scripted local server."""
    return [
        "model.name=fake", "model.model_id=fake-1", f"model.base_url={server.base_url}", "model.local_server=null",
        "model.max_retries=0", "model.context_window=4096", "model.tokens_per_cl100k=1.0",
        *[f"model.prices.{k}={v}" for k, v in prices.items()],
    ]


def table(run) -> list[dict]:
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="questions.json")
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [dict(zip(data["columns"], row)) for row in data["data"]]


@pytest.fixture(scope="session")
def fake_sweep(tmp_path_factory):
    """The default three-strategy sweep over the tiny corpus against a scripted server, run once per
    session: (workdir with mlruns/, the process result, the request bodies the server got)."""
    from fakes import FakeOpenAI

    workdir = tmp_path_factory.mktemp("work")
    corpus = workdir / "corpus"
    (corpus / "docs").mkdir(parents=True)
    for name, text in DOCS.items():
        (corpus / "docs" / name).write_text(text, encoding="utf-8")
    write_questions(corpus / "questions.csv", QUESTIONS + [("Please FAIL on this one", "*stars*", "x")])
    with FakeOpenAI(scripted, cache_hit_tokens=50) as server:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(
            server, input_cache_miss=0.28, input_cache_hit=0.028, output=0.42),
            "experiment=compare", "run.limit=null", "retrieval.top_k=2", "index.chunk_size=64", "index.chunk_overlap=8"],
            cwd=workdir)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result, requests
