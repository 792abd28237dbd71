"""Chunk retrieval by dense similarity (Chroma), BM25 (`bm25s`) or both fused with reciprocal rank
fusion (RRF: score = sum of weight / (k + rank) over the two rankings, Cormack et al. 2009).
Every method respects a question's scope (the documents it is asked over)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from pipelines.index import Hit, VectorIndex

METHODS = ("dense", "bm25", "fused")


@dataclass(frozen=True)
class Fusion:
    k: int = 60  # RRF's constant: damps the weight of the very top ranks
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    pool: int = 100  # how deep each ranking is read before fusing


class Bm25:
    def __init__(self, index: VectorIndex):
        import bm25s

        self.chunks = index.chunks
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize([c.text for c in self.chunks], stopwords="en", show_progress=False),
                             show_progress=False)
        self._tokenize = functools.partial(bm25s.tokenize, stopwords="en", return_ids=False, show_progress=False)

    def search(self, query: str, k: int, doc_ids: tuple[str, ...] = ()) -> list[Hit]:
        tokens = self._tokenize([query])[0]
        scores = self.retriever.get_scores(tokens) if tokens else np.zeros(len(self.chunks))
        allowed = set(doc_ids)
        order = [i for i in np.argsort(-scores, kind="stable") if not allowed or self.chunks[i].doc_id in allowed]
        return [Hit(self.chunks[i], float(scores[i])) for i in order[:k]]


_bm25: dict[str, Bm25] = {}


def bm25_for(index: VectorIndex) -> Bm25:
    """Built once per index content per process (in memory: a second for thousands of chunks). Keyed by
    the index's content key: id() of a freed index can be reused by a different one."""
    if index.key not in _bm25:
        _bm25[index.key] = Bm25(index)
    return _bm25[index.key]


def rrf(rankings: list[tuple[list[Hit], float]], k: int) -> list[Hit]:
    """Fuse ranked lists: each chunk scores sum(weight / (k + rank)), rank counting from 1."""
    scores: dict[str, float] = {}
    chunks = {}
    for hits, weight in rankings:
        for rank, hit in enumerate(hits, 1):
            scores[hit.chunk.chunk_id] = scores.get(hit.chunk.chunk_id, 0.0) + weight / (k + rank)
            chunks[hit.chunk.chunk_id] = hit.chunk
    ordered = sorted(scores, key=lambda cid: (-scores[cid], cid))
    return [Hit(chunks[cid], scores[cid]) for cid in ordered]


def search(index: VectorIndex, query: str, k: int, doc_ids: tuple[str, ...] = (), method: str = "dense",
           fusion: Fusion = Fusion()) -> list[Hit]:
    if method not in METHODS:
        raise ValueError(f"retrieval.method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "dense":
        return index.search(query, k, doc_ids)
    if method == "bm25":
        return bm25_for(index).search(query, k, doc_ids)
    depth = max(k, fusion.pool)
    fused = rrf([(index.search(query, depth, doc_ids), fusion.dense_weight),
                 (bm25_for(index).search(query, depth, doc_ids), fusion.bm25_weight)], fusion.k)
    return fused[:k]
