"""Issue 13's sweep benchmark: 3 strategies x 2 context budgets x 50 questions against a local
OpenAI-compatible endpoint that takes 1 s per call, under the basic launcher (one job after another),
joblib (parallel processes on one machine) and Ray (a local head), in interleaved rounds; then the
same single job logged to the local SQLite store and to an `mlflow server` on PostgreSQL, for the
tracking overhead per logged row.

    nice -n 5 .venv/bin/python benchmarks/sweep_launchers.py              # all of it (about 20 minutes on 2 cores)
    nice -n 5 .venv/bin/python benchmarks/sweep_launchers.py --only tracking --rounds 5

`model.max_concurrency` holds per endpoint across every process on the machine (`pipelines/limits.py`),
so the parallel launchers' ideal is ceil(6 x 50 / 16) rounds of 1 s, not one job's 4.
Every sweep's bill (the fake server's own) is checked against the runs' spent_usd_total."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the scripted server and the service starters are test code

import mlflow  # noqa: E402

from conftest import DOCS, fake_model_overrides, write_questions  # noqa: E402
from fakes import FakeOpenAI  # noqa: E402
from pipelines import tracking  # noqa: E402
from services import mlflow_server, postgres, postgres_bin, ray_head  # noqa: E402

PRICES = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42}
SWEEP = ["-m", "strategy=rag,hybrid,full_context", "budget.context_tokens=300,600"]
COMMON = ["run.limit=null", "run.response_cache=false", "run.progress=false", "model.max_concurrency=16",
          "index.chunk_size=64", "index.chunk_overlap=8"]
JOBS, CONCURRENCY = 6, 16


def corpus(root: Path, n: int) -> list[str]:
    docs = root / "corpus" / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    rows = [(f"Question {i}: how long is the Kelvane river?", "*river*", "212 kilometres") for i in range(n)]
    write_questions(root / "corpus" / "questions.csv", rows)
    return ["dataset.name=bench", f"dataset.documents_dir={docs}", f"dataset.questions_file={root / 'corpus' / 'questions.csv'}"]


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipelines.run", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return time.perf_counter() - start


def spent(store: str, experiment: str) -> float:
    mlflow.set_tracking_uri(tracking.tracking_uri(store))
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.kind = 'run'", output_format="list")
    return sum(r.data.metrics.get("spent_usd_total", 0.0) for r in runs)


def launchers(questions: int, rounds: int) -> None:
    calls = JOBS * questions
    ideal = {"basic": JOBS * -(-questions // CONCURRENCY), "joblib": -(-calls // CONCURRENCY)}
    ideal["ray"] = ideal["joblib"]
    extra = {"basic": [], "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={JOBS}"]}
    times: dict[str, list[float]] = {name: [] for name in ideal}
    bills_ok = []
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(lambda q: "212 kilometres", latency_s=1.0, prices=PRICES) as server:
        tmp = Path(tmp)
        ray_folder = tmp / "ray-head"
        ray_folder.mkdir()
        with ray_head(ray_folder, cpus=JOBS) as address:
            extra["ray"] = ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}",
                            "+hydra.launcher.ray.init.object_store_memory=null"]
            setups = {}
            for name in ideal:
                work = tmp / name
                work.mkdir()
                args = [*corpus(work, questions), *COMMON, *fake_model_overrides(server, **PRICES)]
                timed([*args, "strategy=rag", "run.limit=1", "tracking.experiment=warm-up"], work)  # index built once
                setups[name] = (args, work)
            for i in range(rounds):  # interleaved, the order rotated each round
                order = list(ideal)[i % 3:] + list(ideal)[:i % 3]
                for name in order:
                    args, work = setups[name]
                    before = server.billed_usd
                    times[name].append(timed([*SWEEP, *args, *extra[name], f"tracking.experiment=round-{i}"], work))
                    bill = server.billed_usd - before
                    bills_ok.append(abs(bill - spent(str(work / "mlruns"), f"round-{i}")) < 1e-9)
                    print(f"round {i + 1} {name}: {times[name][-1]:.1f} s, bill ${bill:.6f}, "
                          f"runs' spend equal: {bills_ok[-1]}", flush=True)
    rounds_table(("launcher", "jobs x questions"), f"{JOBS} x {questions}", times, ("ideal s", "median / ideal"),
                 lambda name, median: (ideal[name], f"{median / ideal[name]:.2f}"), digits=1)
    print(f"bill = runs' spend in {sum(bills_ok)}/{len(bills_ok)} sweeps", flush=True)


def tracking_overhead(questions: int, rounds: int) -> None:
    if postgres_bin() is None:
        raise SystemExit("PostgreSQL not installed (apt-get install postgresql; make services)")
    with tempfile.TemporaryDirectory() as tmp, postgres() as pg:
        tmp = Path(tmp)
        server_dir = tmp / "server"
        server_dir.mkdir()
        with mlflow_server(f"{pg}/mlflow", server_dir) as url, \
                FakeOpenAI(lambda q: "212 kilometres", prices=PRICES) as fake:
            stores = {"local SQLite (`mlruns`)": None, "mlflow server on PostgreSQL": url}
            setups = {}
            for name, uri in stores.items():
                work = tmp / str(len(setups))
                work.mkdir()
                args = ["strategy=rag", *corpus(work, questions), *COMMON, *fake_model_overrides(fake, **PRICES),
                        *([f"tracking.uri={uri}"] if uri else [])]
                timed([*args, "tracking.experiment=warm-up"], work)  # the index is built, the tables exist
                setups[name] = (args, work, uri or str(work / "mlruns"))
            times: dict[str, list[float]] = {name: [] for name in stores}
            for i in range(rounds):  # interleaved, alternating which goes first
                for name in (list(stores) if i % 2 == 0 else list(stores)[::-1]):
                    args, work, store = setups[name]
                    before = fake.billed_usd
                    times[name].append(timed([*args, f"tracking.experiment=round-{i}"], work))
                    bill = fake.billed_usd - before
                    ok = abs(bill - spent(store, f"round-{i}")) < 1e-9
                    print(f"round {i + 1} {name}: {times[name][-1]:.2f} s, bill ${bill:.6f}, runs' spend equal: {ok}",
                          flush=True)
    local = statistics.median(next(iter(times.values())))
    rounds_table(("store", "questions"), str(questions), times, ("ms per logged row over local",),
                 lambda name, median: (f"{1000 * (median - local) / questions:+.0f}",), digits=2)


def rounds_table(head: tuple[str, str], size: str, times: dict[str, list[float]], tail_head: tuple, tail, digits: int):
    """A markdown table: one row per case, its wall time per round, the median in bold, then `tail`."""
    rounds = len(next(iter(times.values())))
    print(f"\n| {head[0]} | {head[1]} | " + " | ".join(f"round {i + 1} s" for i in range(rounds))
          + " | **median wall s** | " + " | ".join(tail_head) + " |")
    print("|---|---|" + "---|" * (rounds + 1 + len(tail_head)))
    for name, walls in times.items():
        median = statistics.median(walls)
        print(f"| {name} | {size} | " + " | ".join(f"{w:.{digits}f}" for w in walls)
              + f" | **{median:.{digits}f}** | " + " | ".join(str(c) for c in tail(name, median)) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--only", choices=["launchers", "tracking"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average before: {os.getloadavg()}")
    if args.only in (None, "launchers"):
        launchers(args.questions, args.rounds)
        print(f"load average: {os.getloadavg()}")
    if args.only in (None, "tracking"):
        tracking_overhead(args.questions, args.rounds)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
