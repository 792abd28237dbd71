"""Concurrency and response-cache benchmark against the scripted local server (no network, no cost).

200 questions, 1.0 s latency per call, 16 in flight: the ideal wall time is 200 x 1.0 / 16 = 12.5 s.
Reports wall / ideal per repeat and the median, then the same sweep again from the response cache.

    .venv/bin/python benchmarks/concurrency.py                  # defaults below
    .venv/bin/python benchmarks/concurrency.py --questions 400 --concurrency 32 --repeats 5
    .venv/bin/python benchmarks/concurrency.py --load 2        # beside 2 busy processes (a shared machine)

`--load N` starts N processes that spin on the CPU for the whole benchmark (what a joblib sweep or a
test suite does to a shared machine): the calls must still overlap, since waiting costs no CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the scripted server is a test fake

from fakes import FakeOpenAI, prepared_questions  # noqa: E402
from pipelines.budget import Budget
from pipelines.models.cache import ResponseCache
from pipelines.models.chat import ChatModel
from pipelines.runner import answer_all

FREE = {"input_cache_miss": 0.0, "input_cache_hit": 0.0, "output": 0.0, "as_of": "-", "source": "benchmark"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", type=int, default=0, help="busy processes beside the benchmark")
    args = parser.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        run(args)
    finally:
        for p in spinners:
            p.kill()


def run(args) -> None:
    print(f"load average at start {tuple(round(x, 2) for x in os.getloadavg())}, {args.load} busy process(es)")
    ideal = args.questions * args.latency / args.concurrency
    ratios = []
    with FakeOpenAI(lambda q: "blue", latency_s=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        model = ChatModel(name="bench", provider="bench", model_id="bench", context_window=4096, max_output_tokens=16,
                          prices=FREE, base_url=server.base_url, max_concurrency=args.concurrency)
        for repeat in range(args.repeats):
            cache = ResponseCache(Path(tmp) / f"responses-{repeat}.sqlite")
            items = prepared_questions([f"question {i} (run {repeat})" for i in range(args.questions)], model)
            start = time.perf_counter()
            records = answer_all(items, model, [], cache, Budget(None), progress=False)
            wall = time.perf_counter() - start
            assert all(r.status == "ok" for r in records), "a call failed"
            ratios.append(wall / ideal)
            print(f"run {repeat + 1}: {wall:.2f} s for {args.questions} calls, ideal {ideal:.2f} s, "
                  f"ratio {wall / ideal:.3f}, peak in flight {server.max_in_flight}")
        calls_before = len(server.requests)
        start = time.perf_counter()
        again = answer_all(items, model, [], cache, Budget(None), progress=False)
        wall = time.perf_counter() - start
        print(f"median ratio over {args.repeats} runs: {statistics.median(ratios):.3f} (goal <= 1.15)")
        print(f"rerun from the response cache: {len(server.requests) - calls_before} calls, "
              f"{sum(r.cached for r in again)}/{len(again)} rows cached, {wall:.2f} s")
    print(f"load average at end {tuple(round(x, 2) for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
