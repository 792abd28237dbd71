"""CPU of one streamed call: the framework's `ChatModel.complete` against the `openai` SDK's own
streaming and a non-streamed call, at answers of 10, 100 and 300 chunks (a provider sends about one
chunk per token).

    nice -n 19 .venv/bin/python benchmarks/streaming.py --rounds 3

The scripted server (`tests/fakes.py`, latency 0, one chunk per word) runs in a process of its own, so
its CPU is on no side. Each round runs every side in turn (order reversed every other round) over 100
calls with a 3,000-word prompt; CPU ms per call (`time.process_time()`, all threads of this process),
medians of the rounds.

- framework: `ChatModel.complete` with `stream=true` (the default);
- framework, stream=false: `ChatModel.complete` with `stream=false` (the local llama.cpp server's
  setting, and the judge's);
- SDK stream: `client.chat.completions.create(stream=True)` iterated, as a person would write it (the
  framework before it read the chunks as JSON);
- SDK plain: `create()` without streaming (no time to first token)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
CALLS = 100
LENGTHS = (10, 100, 300)
PROMPT = [{"role": "system", "content": "Answer from the documents."},
          {"role": "user", "content": "word " * 3000 + "\nQuestion: how many words?"}]
SERVE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from fakes import FakeOpenAI
n = int(sys.argv[2])
with FakeOpenAI(lambda q: " ".join(f"w{i}" for i in range(n))) as server:
    print(server.base_url, flush=True)
    sys.stdin.read()
"""


def sides(base_url: str):
    from openai import OpenAI

    from pipelines.models.chat import ChatModel

    prices = {"input_cache_miss": 0.28, "input_cache_hit": 0.028, "output": 0.42}
    model = ChatModel("fake", "fake", "fake-1", 131_072, 1024, prices, base_url=base_url, max_retries=0)
    client = OpenAI(base_url=base_url, api_key="local", max_retries=0)
    whole = ChatModel("fake", "fake", "fake-1", 131_072, 1024, prices, base_url=base_url, max_retries=0, stream=False)
    model.client(), whole.client()  # set up before timing, as the client above

    def framework():
        return model.complete(PROMPT).answer

    def framework_unstreamed():
        return whole.complete(PROMPT).answer

    def sdk_stream():
        parts = []
        for chunk in client.chat.completions.create(model="fake-1", messages=PROMPT, max_tokens=1024, stream=True,
                                                    stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts).strip()

    def sdk_plain():
        return client.chat.completions.create(model="fake-1", messages=PROMPT, max_tokens=1024).choices[0].message.content

    return {"framework": framework, "framework, stream=false": framework_unstreamed, "SDK stream": sdk_stream,
            "SDK plain": sdk_plain}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()}")
    rows = []
    for n in LENGTHS:
        server = subprocess.Popen([sys.executable, "-c", SERVE, str(ROOT / "tests"), str(n)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            calls = sides(server.stdout.readline().strip())
            answers = {name: call() for name, call in calls.items()}  # warm-up, and all sides agree
            assert len(set(answers.values())) == 1, answers
            got = {name: [] for name in calls}
            for r in range(args.rounds):
                for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                    start = time.process_time()
                    for _ in range(CALLS):
                        calls[name]()
                    got[name].append((time.process_time() - start) / CALLS * 1000)
            rows.append((n, got))
        finally:
            server.stdin.close()
            server.wait(timeout=30)
    print(f"load average at end {os.getloadavg()}\n")
    print("| chunks | side | CPU ms per call (rounds) | **median** | ÷ SDK plain |")
    print("|---|---|---|---|---|")
    for n, got in rows:
        plain = statistics.median(got["SDK plain"])
        for name, values in got.items():
            median = statistics.median(values)
            print(f"| {n} | {name} | {' / '.join(f'{v:.2f}' for v in values)} | **{median:.2f}** | {median / plain:.2f} |")


if __name__ == "__main__":
    main()
