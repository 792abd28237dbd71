"""Issue 13's sweep benchmark: 3 strategies x 2 context budgets x 50 questions against a local
OpenAI-compatible endpoint that takes 1 s per call, under the basic launcher (one job after another),
joblib (parallel processes on one machine) and Ray (a local head); then the same single job logged to
the local SQLite store and to an `mlflow server`, for the tracking overhead per logged row.

    .venv/bin/python benchmarks/sweep_launchers.py              # all of it (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/sweep_launchers.py --only tracking

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
from services import free_port, ray_head, stop, wait_http  # noqa: E402

PRICES = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42}
SWEEP = ["-m", "strategy=rag,hybrid,full_context", "budget.context_tokens=300,600"]
COMMON = ["run.limit=null", "run.response_cache=false", "run.progress=false", "model.max_concurrency=16",
          "index.chunk_size=64", "index.chunk_overlap=8"]


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


def spent(store: str) -> float:
    mlflow.set_tracking_uri(tracking.tracking_uri(store))
    runs = mlflow.search_runs(experiment_names=["bench"], filter_string="tags.kind = 'run'", output_format="list")
    return sum(r.data.metrics.get("spent_usd_total", 0.0) for r in runs)


def launchers(questions: int) -> None:
    print(f"| launcher | jobs | questions | wall s | ideal s | bill = runs' spend |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with FakeOpenAI(lambda q: "212 kilometres", latency_s=1.0, prices=PRICES) as server:
            cases = [("basic", []), ("joblib", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=6"])]
            ray_folder = tmp / "ray-head"
            ray_folder.mkdir()
            for name, extra in cases + [("ray", None)]:
                work = tmp / name
                work.mkdir()
                data = corpus(work, questions)
                before = server.billed_usd
                args = [*SWEEP, *data, *COMMON, *fake_model_overrides(server, **PRICES)]
                if name == "ray":
                    with ray_head(ray_folder, cpus=6) as address:
                        wall = timed([*args, "hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}",
                                      "+hydra.launcher.ray.init.object_store_memory=null"], work)
                else:
                    wall = timed([*args, *extra], work)
                bill = server.billed_usd - before
                ideal = 6 * -(-questions // 16) * 1.0 if name == "basic" else -(-questions // 16) * 1.0
                ok = abs(bill - spent(str(work / "mlruns"))) < 1e-9
                print(f"| {name} | 6 | {questions} each | {wall:.1f} | {ideal:.0f} | {ok} (${bill:.6f}) |", flush=True)


def tracking_overhead(questions: int, rounds: int) -> None:
    print(f"| store | questions | median wall s of {rounds} interleaved rounds | s per logged row over local |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        port = free_port()
        server_dir = tmp / "server"
        server_dir.mkdir()
        log = server_dir / "server.log"
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                                     f"sqlite:///{server_dir / 'mlflow.db'}", "--serve-artifacts", "--artifacts-destination",
                                     str(server_dir / "artifacts"), "--host", "127.0.0.1", "--port", str(port)],
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", 120, proc, log)
            with FakeOpenAI(lambda q: "212 kilometres", prices=PRICES) as fake:
                stores = {"local SQLite": None, "mlflow server": f"http://127.0.0.1:{port}"}
                setups = {}
                for name, uri in stores.items():
                    work = tmp / name.replace(" ", "_")
                    work.mkdir()
                    data = corpus(work, questions)
                    args = ["strategy=rag", *data, *COMMON, *fake_model_overrides(fake, **PRICES),
                            *([f"tracking.uri={uri}"] if uri else [])]
                    timed(args, work)  # warm: the index is built, the experiment exists
                    setups[name] = (args, work)
                times = {name: [] for name in stores}
                for i in range(rounds):  # interleaved, alternating which goes first
                    for name in (list(stores) if i % 2 == 0 else list(stores)[::-1]):
                        times[name].append(timed(*setups[name]))
                walls = {name: statistics.median(t) for name, t in times.items()}
                for name, wall in walls.items():
                    extra = (wall - walls["local SQLite"]) / questions
                    print(f"| {name} | {questions} | {wall:.1f} | {extra:+.3f} |", flush=True)
        finally:
            stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--only", choices=["launchers", "tracking"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    if args.only in (None, "launchers"):
        launchers(args.questions)
    if args.only in (None, "tracking"):
        tracking_overhead(args.questions, args.rounds)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
