"""Indexing cost of a corpus, stage by stage: parse (PDF/text -> documents), split (llama-index
SentenceSplitter, cl100k), embed (all-MiniLM-L6-v2 on CPU), store (Chroma upsert), from a cold cache.

    nice .venv/bin/python benchmarks/indexing.py /work/shared/data/sec10q/docs --max-tokens 300000 --pdf-parser pdfium
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import documents, embeddings, index  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--max-tokens", type=int, default=300_000, help="take whole documents, in name order, up to this")
    ap.add_argument("--pdf-parser", default="pdfium")
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--chunk-overlap", type=int, default=32)
    args = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="indexing-"))
    times = {}
    start = time.perf_counter()
    docs, _ = documents.load_documents(args.folder, cache, pdf_parser=args.pdf_parser)
    times["parse"] = time.perf_counter() - start
    chosen, total = [], 0
    for d in docs:
        if total + d.tokens <= args.max_tokens:
            chosen.append(d)
            total += d.tokens
    start = time.perf_counter()
    chunks = index.split(chosen, args.chunk_size, args.chunk_overlap)
    times["split"] = time.perf_counter() - start
    embedder = embeddings.load()
    embedder.embed(["warm up"])
    start = time.perf_counter()
    vectors = embedder.embed([c.text for c in chunks])
    times["embed"] = time.perf_counter() - start
    start = time.perf_counter()
    collection = index._open_collection(cache / "chroma", "bench")
    batch = collection._client.get_max_batch_size()
    for i in range(0, len(chunks), batch):
        part = chunks[i:i + batch]
        collection.upsert(ids=[c.chunk_id for c in part], embeddings=vectors[i:i + batch],
                          metadatas=[{"doc_id": c.doc_id, "position": c.position} for c in part])
    times["store"] = time.perf_counter() - start
    print(f"{len(chosen)} documents, {total:,} cl100k tokens, {len(chunks):,} chunks of <= {args.chunk_size} tokens "
          f"(parse timed over all {len(docs)} files in the folder)")
    print("| stage | seconds |\n|---|---|")
    for stage, seconds in times.items():
        print(f"| {stage} | {seconds:.1f} |")
    print(f"| **total** | **{sum(times.values()):.1f}** |")
    print(f"embed: {len(chunks) / times['embed']:.0f} chunks/s")


if __name__ == "__main__":
    main()
