"""Team scale on real engines, started on 127.0.0.1 inside the test session (tests/services.py):
an `mlflow server` on PostgreSQL and a `chroma run` server. Each sweep runs against the scripted
OpenAI server, whose own bill (`FakeOpenAI.billed_usd`) is the reference for costs; the single-machine
path (local SQLite store, embedded Chroma) is the reference for rows."""

import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import pytest

from conftest import DOCS, QUESTIONS, dataset_overrides, fake_model_overrides, run_pipeline, scripted, write_questions
from pipelines import tracking
from fakes import FakeOpenAI
from services import chroma_port, mlflow_on_postgres, postgres_uri, ray_address  # noqa: F401  (session fixtures)

PRICES = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42}
SMALL_INDEX = ["index.chunk_size=64", "index.chunk_overlap=8"]
COMPARED = ("question_id", "status", "answer", "context_ids", "prompt_tokens", "completion_tokens", "cost_usd",
            "spent_usd", "f1")


def make_corpus(root: Path, questions=QUESTIONS) -> Path:
    docs = root / "corpus" / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    write_questions(root / "corpus" / "questions.csv", questions)
    return root / "corpus"


def sweep(server, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    corpus = workdir / "corpus" if (workdir / "corpus").exists() else make_corpus(workdir)
    return run_pipeline(["experiment=compare", *dataset_overrides(corpus), *fake_model_overrides(server, **PRICES),
                         *SMALL_INDEX, *extra],
                        cwd=workdir)


def rows_by_strategy(uri: str, experiment: str, without: tuple = ()) -> dict[str, list[dict]]:
    import json

    mlflow.set_tracking_uri(uri)
    out = {}
    for run in mlflow.search_runs(experiment_names=[experiment], output_format="list",
                                  filter_string="tags.kind = 'run'"):
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="questions.json")
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = [dict(zip(data["columns"], row)) for row in data["data"]]
        out[run.data.tags["strategy"]] = sorted(({k: r.get(k) for k in COMPARED if k not in without} for r in rows),
                                                key=lambda r: r["question_id"])
    return out


def children(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], output_format="list", filter_string="tags.kind = 'run'")


def test_a_sweep_through_the_mlflow_server_and_chroma_server_matches_the_single_machine_path(
        tmp_path, mlflow_on_postgres, chroma_port):
    with FakeOpenAI(scripted, prices=PRICES) as server:
        local = sweep(server, tmp_path / "local")
        local_billed = server.billed_usd
        shared = sweep(server, tmp_path / "team", f"tracking.uri={mlflow_on_postgres}", "tracking.experiment=match",
                       "index.store=chroma_server", "index.host=127.0.0.1", f"index.port={chroma_port}")
        shared_billed = server.billed_usd - local_billed
    assert local.returncode == 0, local.stderr[-3000:]
    assert shared.returncode == 0, shared.stderr[-3000:]
    expected = rows_by_strategy(tracking.tracking_uri(str(tmp_path / "local" / "mlruns")), "tiny")
    got = rows_by_strategy(mlflow_on_postgres, "match")
    assert sorted(got) == ["full_context", "hybrid", "rag"]
    assert got == expected
    assert shared_billed == pytest.approx(local_billed, rel=1e-9) and shared_billed > 0
    runs = children(mlflow_on_postgres, "match")
    assert sum(r.data.metrics["spent_usd_total"] for r in runs) == pytest.approx(shared_billed, rel=1e-9)
    # Traces and their assessments live in the server too (one trace per sent call).
    rag = next(r for r in runs if r.data.tags["strategy"] == "rag")
    traces = mlflow.search_traces(locations=[rag.info.experiment_id], run_id=rag.info.run_id, return_type="list")
    assert len(traces) == len(QUESTIONS)
    assert all(any(a.name == "f1" for a in t.info.assessments) for t in traces)
    # Artifacts went through the server (mlflow-artifacts:), not to a local folder of this machine.
    assert rag.info.artifact_uri.startswith("mlflow-artifacts:")
    assert not (tmp_path / "team" / "mlruns").exists()


def test_the_report_reads_runs_from_the_server(tmp_path, mlflow_on_postgres):
    with FakeOpenAI(scripted, prices=PRICES) as server:
        result = sweep(server, tmp_path, f"tracking.uri={mlflow_on_postgres}", "tracking.experiment=reported",
                       "strategy=rag")
    assert result.returncode == 0, result.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "pipelines.report", "--tracking", mlflow_on_postgres,
                             "--experiment", "reported", "--out", str(tmp_path / "report")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "rag" in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")


def test_the_cap_holds_over_a_sweep_logged_to_the_server(tmp_path, mlflow_on_postgres):
    questions = [(f"Question {i}: how long is the Kelvane river?", "*river*", "212 kilometres") for i in range(12)]
    make_corpus(tmp_path, questions)
    cap = 0.0006
    with FakeOpenAI(lambda q: "212 kilometres", latency_s=0.02, prices=PRICES) as server:
        result = sweep(server, tmp_path, f"tracking.uri={mlflow_on_postgres}", "tracking.experiment=capped",
                       "run.limit=null", "model.max_concurrency=8", "model.max_output_tokens=16", f"budget.max_usd={cap}")
        billed = server.billed_usd
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0 < billed <= cap
    runs = children(mlflow_on_postgres, "capped")
    assert len(runs) == 3
    assert sum(r.data.metrics["spent_usd_total"] for r in runs) == pytest.approx(billed, rel=1e-9)
    assert sum(r.data.metrics["n_skipped"] for r in runs) > 0


def test_two_concurrent_sweeps_against_one_server_lose_nothing(tmp_path, mlflow_on_postgres, chroma_port):
    """Two people start the default sweep at the same moment, from different machines (folders), into a
    new experiment and an index nobody has built yet. Their sweep folders have the same relative name
    (Hydra's default is the start time to the second, so that happens whenever they start together)."""
    experiment = "concurrent"
    results = {}
    with FakeOpenAI(scripted, prices=PRICES) as server:
        for name in ("alice", "bob"):
            make_corpus(tmp_path / name)

        def go(name):
            results[name] = sweep(server, tmp_path / name, f"tracking.uri={mlflow_on_postgres}",
                                  f"tracking.experiment={experiment}", "index.store=chroma_server",
                                  "index.host=127.0.0.1", f"index.port={chroma_port}", "index.chunk_size=80",
                                  "hydra.sweep.dir=multirun/same-second")

        threads = [threading.Thread(target=go, args=(n,)) for n in ("alice", "bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        billed = server.billed_usd
    for name, result in results.items():
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
    mlflow.set_tracking_uri(mlflow_on_postgres)
    runs = children(mlflow_on_postgres, experiment)
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
    assert sum(r.data.metrics["spent_usd_total"] for r in runs) == pytest.approx(billed, rel=1e-9)
    # Each sweep's runs hang under its own parent, which closed FINISHED with its own three.
    parents = mlflow.search_runs(experiment_names=[experiment], output_format="list", filter_string="tags.kind = 'sweep'")
    assert len(parents) == 2
    for parent in parents:
        mine = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.data.tags["strategy"] for r in mine) == ["full_context", "hybrid", "rag"]
        assert parent.info.status == "FINISHED"
    for run in runs:
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="questions.json")
        assert len(__import__("json").loads(Path(path).read_text())["data"]) == len(QUESTIONS)


def test_processes_opening_a_new_experiment_on_the_server_at_once_all_get_it(mlflow_on_postgres):
    code = ("import sys; from pipelines import tracking; "
            "print(tracking.use_experiment(sys.argv[1], 'race'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, mlflow_on_postgres], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1


@pytest.mark.parametrize("overrides, fragment", [
    (["index.store=elastic"], "index.store"),
    (["index.store=chroma_server"], "index.host"),
    (["index.store=chroma_server", "index.host=127.0.0.1", "index.port=abc"], "index.port"),
    (["budget.ledger_uri=mysql://u@127.0.0.1/ledger"], "budget.ledger_uri"),
    ([f"budget.ledger_uri=postgresql://u@127.0.0.1:{__import__('services').free_port()}/ledger"], "budget.ledger_uri"),
])
def test_bad_index_store_and_ledger_settings_are_one_line_before_any_work(tmp_path, overrides, fragment):
    corpus = make_corpus(tmp_path)
    result = run_pipeline([*dataset_overrides(corpus), "strategy=rag", *overrides], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {fragment}")
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / ".cache").exists()


def test_an_unreachable_chroma_server_is_one_line(tmp_path):
    from services import free_port

    corpus = make_corpus(tmp_path)
    with FakeOpenAI(scripted, prices=PRICES) as server:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(server, **PRICES), "strategy=rag",
                               "index.store=chroma_server", "index.host=127.0.0.1", f"index.port={free_port()}"],
                              cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "index.host/index.port: no Chroma server at 127.0.0.1" in result.stderr.strip().splitlines()[-1]


def ray_overrides(address: str) -> list[str]:
    # The plugin always passes object_store_memory to ray.init, which Ray 2.60 refuses when joining a
    # running cluster; an explicit null is passed through as "not given".
    return ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}",
            "+hydra.launcher.ray.init.object_store_memory=null"]


def test_a_sweep_on_a_local_ray_cluster_matches_the_single_machine_path(tmp_path, ray_address):
    """The workers start in the head's folder; relative paths (mlruns, .cache, the dataset) must still
    mean the folder the sweep was started from."""
    with FakeOpenAI(scripted, prices=PRICES) as server:
        local = sweep(server, tmp_path / "local")
        local_billed = server.billed_usd
        make_corpus(tmp_path / "ray")
        on_ray = run_pipeline(["experiment=compare", "dataset.name=tiny", "dataset.documents_dir=corpus/docs",
                               "dataset.questions_file=corpus/questions.csv", *fake_model_overrides(server, **PRICES),
                               *SMALL_INDEX, *ray_overrides(ray_address)], cwd=tmp_path / "ray")
        ray_billed = server.billed_usd - local_billed
    assert local.returncode == 0, local.stderr[-3000:]
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    # Which job pays for a prompt two strategies share (hybrid picks all three documents of this corpus,
    # as full context sends) depends on which asks first when they run at once; the other waits for
    # the answer and gets it from the cache. So each row's spend may differ, not the sweep's bill.
    expected = rows_by_strategy(tracking.tracking_uri(str(tmp_path / "local" / "mlruns")), "tiny", ("spent_usd",))
    got = rows_by_strategy(tracking.tracking_uri(str(tmp_path / "ray" / "mlruns")), "tiny", ("spent_usd",))
    assert sorted(got) == ["full_context", "hybrid", "rag"] and got == expected
    assert ray_billed == pytest.approx(local_billed, rel=1e-9) and ray_billed > 0
    spent = sum(r.data.metrics["spent_usd_total"] for r in children(tracking.tracking_uri(str(tmp_path / "ray" / "mlruns")), "tiny"))
    assert spent == pytest.approx(ray_billed, rel=1e-9)
    assert "Ray Launcher is launching 3 jobs" in on_ray.stdout + on_ray.stderr


RESERVE = """
import sys
from pipelines.ledger import open_ledger
ledger = open_ledger(sys.argv[1], None, "sweep-a")
got = [ledger.reserve(0.125, 2.0, key=f"k{i}") for i in range(10)]
print(" ".join(str(t) for t in got if t is not None))
"""


def test_the_postgres_ledger_holds_one_cap_across_processes(postgres_uri):
    """4 processes x 10 reservations of $0.125 under one $2 cap: exactly 16 fit (2 / 0.125, exact in
    binary), whatever the interleaving; settled at $0.0625 each, $1 is spent and $1 is free again."""
    uri = f"{postgres_uri}/ledger"
    procs = [subprocess.Popen([sys.executable, "-c", RESERVE, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outs]
    tickets = [int(t) for out, _ in outs for t in out.split()]
    assert len(tickets) == 16
    from pipelines.ledger import open_ledger

    ledger = open_ledger(uri, None, "sweep-a")
    assert ledger.committed() == 2.0 and ledger.reserve(0.125, 2.0) is None
    for ticket in tickets:
        ledger.settle(ticket, 0.0625)
    assert ledger.spent() == 1.0
    assert sum(ledger.reserve(0.125, 2.0) is not None for _ in range(10)) == 8
    assert open_ledger(uri, None, "sweep-b").reserve(2.0, 2.0) is not None  # scopes are separate


def test_the_cap_holds_over_a_ray_sweep_with_the_postgres_ledger(tmp_path, ray_address, postgres_uri):
    questions = [(f"Question {i}: how long is the Kelvane river?", "*river*", "212 kilometres") for i in range(12)]
    make_corpus(tmp_path, questions)
    cap = 0.0006
    with FakeOpenAI(lambda q: "212 kilometres", latency_s=0.02, prices=PRICES) as server:
        result = sweep(server, tmp_path, *ray_overrides(ray_address), f"budget.ledger_uri={postgres_uri}/ledger",
                       "run.limit=null", "model.max_concurrency=8", "model.max_output_tokens=16", f"budget.max_usd={cap}")
        billed = server.billed_usd
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0 < billed <= cap, result.stdout[-3000:] + result.stderr[-6000:]
    runs = children(tracking.tracking_uri(str(tmp_path / "mlruns")), "tiny")
    assert len(runs) == 3
    assert sum(r.data.metrics["spent_usd_total"] for r in runs) == pytest.approx(billed, rel=1e-9)
    assert sum(r.data.metrics["n_skipped"] for r in runs) > 0


def test_a_dataset_another_sweep_logged_first_is_not_a_crash(monkeypatch, tmp_path):
    """Two sweeps on one server log the same question set at the same moment; the server's unique key on
    (experiment, name, digest) rejects the second insert. Seen in CI: the second run died at start."""
    from mlflow.exceptions import RestException

    from pipelines.datasets import Question

    calls = []

    def log_input(dataset, context=None):
        calls.append(dataset.digest)
        if len(calls) == 1:
            raise RestException({"error_code": "BAD_REQUEST", "message": "(psycopg2.errors.UniqueViolation) duplicate "
                                 "key value violates unique constraint \"dataset_pk\""})

    monkeypatch.setattr(mlflow, "log_input", log_input)
    questions = [Question(qid="q1", text="Who?", answers=["Ada"])]
    tracking.log_questions(questions, "tiny", str(tmp_path / "questions.csv"))
    assert len(calls) == 2 and calls[0] == calls[1]


def test_a_shared_view_another_sweep_saved_first_is_not_a_crash(monkeypatch):
    """Two sweeps into one experiment on one server save the runs table's view (an experiment tag) at the
    same moment; the server looks the tag up, then inserts it, and the second insert breaks the unique
    key. Seen in CI: the second run died after answering every question."""
    from mlflow.exceptions import RestException

    calls = []

    def set_experiment_tag(self, experiment_id, key, value):
        calls.append((experiment_id, key))
        if len(calls) == 1:
            raise RestException({"error_code": "BAD_REQUEST", "message": "(psycopg2.errors.UniqueViolation) duplicate "
                                 "key value violates unique constraint \"experiment_tag_pk\""})

    monkeypatch.setattr(mlflow.MlflowClient, "set_experiment_tag", set_experiment_tag)
    page = tracking.share_view("4", {"f1": 0.5, "cost_usd_per_question": 0.01})
    assert page == "#/experiments/4/runs?viewStateShareKey=ragbench"
    assert calls == [("4", "mlflow.sharedViewState.ragbench")] * 2


SLOT_WORKER = """
import json, sys, time
from pipelines import limits
limits.configure(None, sys.argv[1])  # no shared folder: only the database ties the two processes
spans = []
for _ in range(4):
    with limits.slot("deepseek|https://api.example", 1):
        start = time.time()
        time.sleep(0.15)
        spans.append((start, time.time()))
print(json.dumps(spans))
"""


def test_max_concurrency_holds_across_machines_through_the_ledger_database(postgres_uri, tmp_path):
    """Workers on different machines share no folder; with `budget.ledger_uri` they share PostgreSQL,
    and one slot means no two calls to the endpoint overlap in time, whichever machine sends them."""
    import json

    script = tmp_path / "worker.py"
    script.write_text(SLOT_WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), postgres_uri], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    spans = sorted(span for p in procs for span in json.loads(p.communicate(timeout=60)[0]))
    assert len(spans) == 8
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:])), spans


def test_a_sweep_sends_the_ray_token_when_one_is_at_hand(tmp_path, monkeypatch):
    """`ray start --head` requires the token once ~/.ray/auth_token exists (any local `ray.init()` writes
    it), but `ray.init(address=...)` sends it only in RAY_AUTH_MODE=token: without this a sweep on such a
    machine failed with InvalidAuthToken (CI, 2026-12-02)."""
    from pipelines import ray_auth

    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    env: dict[str, str] = {}
    ray_auth.use_token_if_available(env)
    assert env == {}  # no token: Ray's own default stays
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("x" * 64)
    ray_auth.use_token_if_available(env)
    assert env == {"RAY_AUTH_MODE": "token"}
    chosen = {"RAY_AUTH_MODE": "disabled"}
    ray_auth.use_token_if_available(chosen)
    assert chosen == {"RAY_AUTH_MODE": "disabled"}  # the user's choice wins
    elsewhere = {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}
    ray_auth.use_token_if_available(elsewhere)
    assert "RAY_AUTH_MODE" not in elsewhere


def test_the_postgres_ledger_keeps_exact_totals_over_its_history(postgres_uri):
    """As in SQLite (test_a_calls_ledger_work_does_not_grow_with_the_ledgers_history), a scope's settled
    calls are one running total: it must agree with the history a resumed scope brings (summed once when
    the scope is opened on a ledger made by an earlier version), with a dead process's call counted at
    its worst case, and with the calls settled since."""
    import psycopg2

    from pipelines.ledger import HOST, open_ledger

    admin = psycopg2.connect(f"{postgres_uri}/ledger".replace("+psycopg2", ""))
    admin.autocommit = True
    admin.cursor().execute("CREATE DATABASE history")
    admin.close()
    uri = f"{postgres_uri}/history"
    with psycopg2.connect(uri.replace("+psycopg2", "")) as db, db.cursor() as cur:  # the tables before the total
        cur.execute("CREATE TABLE reservations (id BIGSERIAL PRIMARY KEY, scope TEXT, host TEXT, pid INTEGER, key TEXT,"
                    " reserved DOUBLE PRECISION, actual DOUBLE PRECISION, state TEXT, created DOUBLE PRECISION)")
        cur.execute("CREATE TABLE scopes (scope TEXT PRIMARY KEY)")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    rows = [("history-old", "settled", 0.01, 1)] * 2_000 + [("history-run", "settled", 0.01, 1)] * 500
    rows += [("history-run", "open", 0.5, int(dead.stdout))]
    with psycopg2.connect(uri.replace("+psycopg2", "")) as db, db.cursor() as cur:
        cur.executemany("INSERT INTO reservations (scope, host, pid, key, reserved, actual, state, created) "
                        "VALUES (%s, %s, %s, 'k', %s, %s, %s, 0)",
                        [(scope, HOST, pid, usd, 0 if state == "open" else usd, state) for scope, state, usd, pid in rows])
        cur.execute("INSERT INTO scopes VALUES ('history-run')")
    ledger = open_ledger(uri, None, "history-run")
    for _ in range(20):
        ledger.settle(ledger.reserve(0.01, 1e6, "k"), 0.005)
    assert ledger.spent() == pytest.approx(500 * 0.01 + 0.5 + 20 * 0.005)
    assert ledger.committed() == pytest.approx(ledger.spent())
    assert ledger.reserve(1.0, ledger.spent() + 0.99) is None  # the cap counts the history
