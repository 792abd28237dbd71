"""Warm-cache fixed cost of the index on the built-in corpus (issue 16), rounds interleaved:

    nice .venv/bin/python benchmarks/warm_index.py [rounds]

- "old warm path": what a cache hit paid before chunks were stored in Chroma, i.e. re-splitting and
  re-counting the whole corpus (`index.split`) plus opening the collection;
- "warm load now": `VectorIndex(...)` on a complete collection (chunks rebuilt from Chroma);
- the interpreter import of `pipelines.run`, of llama-index's splitter, and the embedder load, apart.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from pipelines import embeddings, index
from pipelines.documents import load_documents

SIZE, OVERLAP, MODEL = 256, 32, "all-MiniLM-L6-v2"


def import_s(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main(rounds: int = 3) -> None:
    print(f"load average {os.getloadavg()}")
    imports = [import_s("pipelines.run") for _ in range(rounds)]
    splitter_imports = [import_s("llama_index.core.node_parser") for _ in range(rounds)]
    docs, _ = load_documents("experiments/sec10q_apple/docs", ".cache")
    t = time.perf_counter()
    embedder = embeddings.load()
    embedder_s = time.perf_counter() - t
    cache = tempfile.mkdtemp(prefix="warm-index-")
    t = time.perf_counter()
    built = index.VectorIndex(docs, embedder, cache, SIZE, OVERLAP, MODEL)
    cold_s = time.perf_counter() - t
    old, new = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        index.split(docs, SIZE, OVERLAP)
        index._open_collection(index.Path(cache) / "chroma", f"chunks-{built.key}")
        old.append(time.perf_counter() - t)
        t = time.perf_counter()
        warm = index.VectorIndex(docs, embedder, cache, SIZE, OVERLAP, MODEL)
        new.append(time.perf_counter() - t)
        assert warm.chunks == built.chunks
    print(f"load average after {os.getloadavg()}")
    print(f"{len(built.chunks)} chunks from {len(docs)} documents; medians of {rounds} rounds")
    print("| step | seconds |\n|---|---|")
    print(f"| import pipelines.run (subprocess) | {statistics.median(imports):.2f} |")
    print(f"| import the splitter (subprocess; the old warm path paid it, the new one does not) | "
          f"{statistics.median(splitter_imports):.2f} |")
    print(f"| load the embedder | {embedder_s:.2f} |")
    print(f"| cold build (split + embed + store) | {cold_s:.2f} |")
    print(f"| old warm path (split + open collection) | {statistics.median(old):.2f} |")
    print(f"| warm load now (chunks from Chroma) | {statistics.median(new):.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
