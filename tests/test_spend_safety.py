"""Spend and crash safety, proved against a local OpenAI-compatible server that keeps its own bill
(`FakeOpenAI.billed_usd`): the cap holds over a whole sweep, for a provider whose tokenizer counts more
than ours, on Ctrl-C / SIGTERM and after kill -9; failures give a non-zero exit; keys never land on disk."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from conftest import DOCS, dataset_overrides, fake_model_overrides, run_pipeline, write_questions
from pipelines import tokens, tracking
from pipelines.budget import Budget
from fakes import FakeOpenAI, prepared_questions
from pipelines.models.chat import ChatModel
from pipelines.runner import answer_all

PRICES = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42}


def many_questions(root: Path, n: int) -> Path:
    docs = root / "corpus" / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    write_questions(root / "corpus" / "questions.csv",
                    [(f"Question {i}: how long is the Kelvane river?", "*river*", "212 kilometres") for i in range(n)])
    return root / "corpus"


def runs(workdir: Path, experiment: str = "tiny"):
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def test_one_cap_holds_over_a_three_job_sweep_with_16_in_flight(tmp_path):
    corpus = many_questions(tmp_path, 20)
    cap = 0.0006
    with FakeOpenAI(lambda q: "212 kilometres", latency_s=0.05, prices=PRICES) as server:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(server, **PRICES),
                               "experiment=compare", "run.limit=null", "model.max_concurrency=16", "model.max_output_tokens=16",
                               f"budget.max_usd={cap}", "index.chunk_size=64", "index.chunk_overlap=8"], cwd=tmp_path)
        billed = server.billed_usd
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0 < billed <= cap  # the server's own bill, over all three jobs
    children = [r for r in runs(tmp_path) if r.data.tags.get("kind") == "run"]
    assert len(children) == 3
    assert sum(r.data.metrics["spent_usd_total"] for r in children) == pytest.approx(billed, rel=1e-9)
    assert sum(r.data.metrics["n_skipped"] for r in children) > 0
    assert any("budget_stopped" in r.data.tags for r in children)


def test_a_tokenizer_larger_than_ours_cannot_overrun_the_cap():
    # The provider counts 1.6 tokens for each cl100k token: an estimate-based reservation overran by 11%.
    def usage(prompt, answer):
        n = int(tokens.count(prompt) * 1.6) + 8
        return {"prompt_tokens": n, "completion_tokens": 1, "total_tokens": n + 1}

    with FakeOpenAI(lambda q: "blue", latency_s=0.02, usage_for=usage, prices=PRICES) as server:
        model = ChatModel(name="fake", provider="fake", model_id="fake-1", context_window=4096, max_output_tokens=4,
                          prices={**PRICES, "as_of": "x"}, base_url=server.base_url, max_retries=0,
                          tokens_per_cl100k=1.0, max_concurrency=16)
        cap = 0.0002
        records = answer_all(prepared_questions([f"question number {i} " + "word " * 40 for i in range(100)], model),
                             model, [], None, Budget(cap), progress=False)
        billed = server.billed_usd
    assert billed <= cap
    assert sum(r.status == "skipped" for r in records) > 0


def _wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _start(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipelines.run", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_sending_writes_finished_rows_and_exits_non_zero(tmp_path, sig):
    corpus = many_questions(tmp_path, 30)
    with FakeOpenAI(lambda q: "212 kilometres", latency_s=0.4, prices=PRICES) as server:
        args = ["-m", *dataset_overrides(corpus), *fake_model_overrides(server, **PRICES), "strategy=rag", "run.limit=null",
                "model.max_concurrency=2", "index.chunk_size=64", "index.chunk_overlap=8"]
        proc = _start(args, tmp_path)
        assert _wait_for(lambda: len(server.requests) >= 8), proc.communicate()[1][-2000:]
        proc.send_signal(sig)
        at_interrupt = len(server.requests)
        out, err = proc.communicate(timeout=120)
        sent = len(server.requests)
    assert proc.returncode != 0
    assert sent - at_interrupt <= 2  # at most the calls already in flight (max_concurrency=2)
    assert "Traceback" not in err
    assert "interrupted" in err.strip().splitlines()[-1]
    [run] = [r for r in runs(tmp_path) if r.data.tags.get("kind") == "run"]
    assert run.info.status == "KILLED"
    m = run.data.metrics
    assert m["questions"] == 30 and m["n_ok"] >= 6 and m["n_skipped"] >= 30 - sent
    assert int(run.data.tags["unsent"]) == m["n_skipped"]
    assert not [r for r in runs(tmp_path) if r.info.status == "RUNNING"]  # the sweep's parent is closed too


def test_kill_9_then_rerun_finishes_without_paying_twice_and_leaves_nothing_running(tmp_path):
    corpus = many_questions(tmp_path, 20)
    with FakeOpenAI(lambda q: "212 kilometres", latency_s=0.3, prices=PRICES) as server:
        args = [*dataset_overrides(corpus), *fake_model_overrides(server, **PRICES), "strategy=rag", "run.limit=null",
                "model.max_concurrency=2", "index.chunk_size=64", "index.chunk_overlap=8"]
        proc = _start(args, tmp_path)
        assert _wait_for(lambda: len(server.requests) >= 6), proc.communicate()[1][-2000:]
        proc.kill()
        proc.wait()
        first = len(server.requests)
        result = run_pipeline(args, cwd=tmp_path)
        questions = [b["messages"][-1]["content"].rsplit("Question:", 1)[-1] for b in server.requests]
    assert result.returncode == 0, result.stderr[-3000:]
    paid_twice = len(questions) - len(set(questions))
    assert paid_twice <= 2  # only what was in flight at the kill
    assert len(set(questions)) == 20 and first < 20
    all_runs = [r for r in runs(tmp_path)]
    assert not [r for r in all_runs if r.info.status == "RUNNING"]
    killed = [r for r in all_runs if r.data.tags.get("kind") == "run" and r.info.status == "KILLED"]
    finished = [r for r in all_runs if r.data.tags.get("kind") == "run" and r.info.status == "FINISHED"]
    assert len(killed) == 1 and len(finished) == 1
    assert finished[0].data.metrics["n_ok"] == 20 and finished[0].data.metrics["n_cached"] >= first - 2
    assert "closed" in result.stderr and killed[0].info.run_id[:8] in result.stderr


def test_every_call_failing_exits_non_zero_with_one_line(tmp_path):
    corpus = many_questions(tmp_path, 3)
    with FakeOpenAI(lambda q: "x", fail_status=401) as server:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(server, **PRICES), "strategy=rag",
                               "index.chunk_size=64", "index.chunk_overlap=8"], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "3 of 3 questions failed" in result.stderr
    [run] = [r for r in runs(tmp_path) if r.data.tags.get("kind") == "run"]
    assert run.info.status == "FAILED" and run.data.metrics["n_error"] == 3


def test_error_rate_threshold_is_configurable(tmp_path):
    corpus = many_questions(tmp_path, 4)
    with FakeOpenAI(lambda q: "x", fail_status=401) as server:
        result = run_pipeline([*dataset_overrides(corpus), *fake_model_overrides(server, **PRICES), "strategy=rag",
                               "run.max_error_rate=1.0", "index.chunk_size=64", "index.chunk_overlap=8"], cwd=tmp_path)
    assert result.returncode == 1  # every question failed: never a success, whatever the threshold


@pytest.mark.parametrize("override, fragment", [
    ("index.chunk_overlap=256", "index.chunk_overlap"),
    ("index.chunk_size=0", "index.chunk_size"),
    ("model.max_retries=-1", "model.max_retries"),
    ("model.timeout_s=0", "model.timeout_s"),
    ("model.max_concurrency=0", "model.max_concurrency"),
    ("model.prices.output=-1", "model.prices.output"),
    ("budget.context_tokens=-5", "budget.context_tokens"),
    ("run.max_error_rate=2", "run.max_error_rate"),
])
def test_bad_settings_are_one_line_before_any_work(tmp_path, override, fragment):
    from test_errors import assert_no_run, assert_one_line_error

    corpus = many_questions(tmp_path, 2)
    result = run_pipeline([*dataset_overrides(corpus), "strategy=rag", "model.base_url=http://127.0.0.1:9/v1",
                           "model.local_server=null", override], cwd=tmp_path, timeout=120)
    assert_one_line_error(result, fragment)
    assert_no_run(tmp_path)


KEY = "sk-planted0123456789abcdefPLANTED"


def _grep(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


def test_a_key_never_lands_on_disk_or_in_mlflow(tmp_path):
    corpus = many_questions(tmp_path, 2)
    (tmp_path / ".env").write_text(f"FAKE_KEY={KEY}\n")  # read like the tutorial does, never copied
    with FakeOpenAI(lambda q: "212 kilometres") as server:
        common = [*dataset_overrides(corpus), *fake_model_overrides(server, **PRICES), "strategy=rag",
                  "index.chunk_size=64", "index.chunk_overlap=8"]
        ok = run_pipeline([*common, "model.api_key_env=FAKE_KEY"], cwd=tmp_path)
        auth = {h.get("authorization") for h in server.headers}
        in_url = run_pipeline([*common, f"model.base_url=http://user:{KEY}@{server.base_url[7:]}"], cwd=tmp_path)
        in_config = run_pipeline([*common, f"+model.api_key={KEY}"], cwd=tmp_path)
        as_env_name = run_pipeline([*common, f"model.api_key_env={KEY}"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert in_url.returncode == 0, in_url.stderr[-3000:]
    assert f"Bearer {KEY}" in auth  # the key from .env reached the provider
    assert in_config.returncode == 2 and "model.api_key" in in_config.stderr
    assert as_env_name.returncode == 2 and "model.api_key_env" in as_env_name.stderr
    for result in (ok, in_url, in_config, as_env_name):
        # Hydra's launcher echoes the command line the user typed ("#0 : ..."); nothing else may show the key.
        shown = [line for line in (result.stdout + result.stderr).splitlines() if KEY in line and "#0 : " not in line]
        assert shown == []
    assert _grep(tmp_path, KEY) == [str(tmp_path / ".env")]


def test_max_concurrency_holds_across_the_processes_of_a_joblib_sweep(tmp_path):
    corpus = many_questions(tmp_path, 12)
    with FakeOpenAI(lambda q: "212 kilometres", latency_s=0.5) as server:
        result = run_pipeline(["-m", *dataset_overrides(corpus), *fake_model_overrides(server, **PRICES), "run.limit=null",
                               "strategy=no_context", "model.max_output_tokens=16,17", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                               "model.max_concurrency=2", "index.chunk_size=64", "index.chunk_overlap=8"], cwd=tmp_path)
        peak, sent = server.max_in_flight, len(server.requests)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sent == 24 and peak == 2


def test_a_corrupt_response_cache_is_moved_aside_with_a_warning(tmp_path, caplog):
    from pipelines.models.cache import ResponseCache

    path = tmp_path / "responses.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level("WARNING"):
        cache = ResponseCache(path)
    assert cache.get("anything") is None
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("responses.sqlite.corrupt")]
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not a database")
    assert "moved aside" in caplog.text


def test_a_csv_with_an_unbalanced_quote_is_one_line_naming_where_it_opens(tmp_path):
    from test_errors import assert_one_line_error

    corpus = many_questions(tmp_path, 2)
    questions = corpus / "questions.csv"
    # Row 3 opens a quote it never closes: csv would merge every later row into that one field.
    questions.write_text('Question,Source Docs,Answer\n"How long is the river?",*river*,212 kilometres\n'
                         '"How far is Velmora?,*stars*,310 light years\nHow many apples?,*orchard*,4812\n')
    result = run_pipeline([*dataset_overrides(corpus), "strategy=rag", "model.base_url=http://127.0.0.1:9/v1",
                           "model.local_server=null"], cwd=tmp_path, timeout=120)
    assert_one_line_error(result, f"{questions}:3", "quote")


def test_the_shared_token_ratio_is_written_only_when_it_rises(tmp_path):
    """The billed/estimated token ratio (what a worst case multiplies by) is a maximum shared by every job
    on the ledger. It was written in a transaction of its own after every call: on PostgreSQL a round trip
    per question for a value that rarely moves. Written when it rises above what this job already knows
    (read or written); the stored maximum is the same as writing every observation."""
    from pipelines.ledger import Ledger

    path = tmp_path / "ledger.sqlite"
    first, other = Ledger(path, "a"), Ledger(path, "b")
    writes = []
    real = Ledger.observe_ratio
    first.observe_ratio = lambda model, ratio: writes.append(ratio) or real(first, model, ratio)
    budget = Budget(None, first)
    for estimated, billed in [(100, 120), (100, 110), (100, 130), (200, 260), (100, 100), (50, 70)]:
        budget.observe("m", estimated, billed)
    assert writes == [1.2, 1.3, 1.4]  # 1.1, a second 1.3 and 1.0 were below the maximum already written
    assert other.ratio("m") == pytest.approx(1.4)

    other.observe_ratio("m", 1.6)  # another job saw more
    second = Budget(None, first)
    writes.clear()
    assert second.ratio("m") == pytest.approx(1.6)
    second.observe("m", 100, 150)  # under what it read: nothing to write
    second.observe("m", 100, 170)
    assert writes == [1.7] and other.ratio("m") == pytest.approx(1.7)


def _ledger_steps(ledger, calls: int = 20) -> int:
    """SQLite virtual-machine steps (in hundreds) that `calls` reserve + settle pairs take: a count of the
    work done, the same on a loaded machine as on a quiet one."""
    steps = [0]
    ledger._db.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1), 100)
    for _ in range(calls):
        ledger.settle(ledger.reserve(0.01, 1e6, "k"), 0.005)
    ledger._db.set_progress_handler(None, 100)
    return steps[0]


def test_a_calls_ledger_work_does_not_grow_with_the_ledgers_history(tmp_path):
    """The ledger is one file for every command run with the same cache folder, so it keeps growing.
    Each reservation searched the whole table for open rows of dead processes and summed every row of
    its scope: with 100k past calls in the file, 6 CPU-ms per call (benchmarks/ledger.py), and over
    one long capped run, quadratic. The history here: 20,000 settled calls of earlier commands, 5,000 of
    this scope (a resumed run) and one call left open by a process that died."""
    from pipelines.ledger import Ledger

    baseline = _ledger_steps(Ledger(tmp_path / "fresh.sqlite", "run"))
    path = tmp_path / "used.sqlite"
    seed = Ledger(path, "seed")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    rows = [(f"old-{i // 1000}", "settled", 0.01, 1) for i in range(20_000)]
    rows += [("run", "settled", 0.01, 1) for _ in range(5_000)] + [("run", "open", 0.5, int(dead.stdout))]
    from pipelines.ledger import HOST

    seed._db.execute("BEGIN")
    seed._db.executemany("INSERT INTO reservations (scope, host, pid, key, reserved, actual, state, created) "
                         "VALUES (?, ?, ?, 'k', ?, CASE WHEN ? = 'open' THEN 0 ELSE ? END, ?, 0)",
                         [(scope, HOST, pid, usd, state, usd, state) for scope, state, usd, pid in rows])
    seed._db.execute("COMMIT")
    used = Ledger(path, "run")
    steps = _ledger_steps(used)
    assert steps < 2 * baseline + 20
    # Totals stay exact: this scope's history, the dead process's call at its worst case, the 20 new calls.
    assert used.spent() == pytest.approx(5_000 * 0.01 + 0.5 + 20 * 0.005)
    assert used.committed() == pytest.approx(used.spent())
    assert Ledger(path, "old-3").spent() == pytest.approx(1_000 * 0.01)
