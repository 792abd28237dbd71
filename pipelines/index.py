"""Chunk documents with llama-index's SentenceSplitter, embed them, keep them in a persistent Chroma
collection named by a hash of (documents, chunker settings, embedding model), so one corpus is embedded
once across runs, strategies and sweeps."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import tokens
from pipelines.documents import Document
from pipelines.embeddings import Embedder

log = logging.getLogger(__name__)
TIE_MARGIN = 16
QUERY_BATCH = 1000  # question vectors per Chroma query when a run's questions are searched together


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # "<doc_id>#<n>", n counting from 0 in document order
    doc_id: str
    position: int
    text: str
    tokens: int


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # cosine similarity to the question


def split(documents: list[Document], chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    from llama_index.core.node_parser import SentenceSplitter

    # Our tokenizer, not llama-index's default (which would fetch an encoding from the web).
    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, tokenizer=tokens.encode)
    chunks = []
    for doc in documents:
        pieces = (piece for section in _sections(doc.text) for piece in splitter.split_text(section))
        for n, text in enumerate(pieces):
            chunks.append(Chunk(f"{doc.doc_id}#{n}", doc.doc_id, n, text, tokens.count(text)))
    return chunks


SECTION_CHARS = 1_000_000


def _sections(text: str) -> list[str]:
    """The sentence tokenizer inside SentenceSplitter (nltk punkt) gives up with a regex time-out on a
    text of many megabytes (20 MB of prose: 13 s, past its 5 s limit). A longer document is split first
    into sections of at most SECTION_CHARS, at a paragraph break, else a line break, else a space;
    documents below that size (every filing and paper we have) are split exactly as before."""
    out = []
    while len(text) > SECTION_CHARS:
        window = text[:SECTION_CHARS]
        cut = max(window.rfind("\n\n"), 0) or max(window.rfind("\n"), 0) or max(window.rfind(" "), 0) or SECTION_CHARS
        out.append(text[:cut])
        text = text[cut:]
    return out + [text]


class VectorIndex:
    def __init__(self, documents: list[Document], embedder: Embedder, cache_dir: str | Path,
                 chunk_size: int, chunk_overlap: int, model_name: str):
        self.embedder = embedder
        self.key = _index_key(documents, chunk_size, chunk_overlap, model_name)
        self.model_name = model_name
        path = self.path = Path(cache_dir) / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        # Parallel sweep jobs (joblib launcher) share the cache: one builds, the others wait and reuse.
        with self._locked():
            self.collection = _open_collection(path, f"chunks-{self.key}")
            if self.collection.metadata.get("complete") is not True:
                self.chunks = split(documents, chunk_size, chunk_overlap)
                self._build()
            else:
                # A hit rebuilds the chunks from what the collection stores: no splitting, no tokenising.
                self.chunks = _stored_chunks(self.collection, [d.doc_id for d in documents])
                log.info("index %s: %d chunks from cache", self.key, len(self.chunks))
        self.by_id = {c.chunk_id: c for c in self.chunks}
        self._batch_lock = threading.Lock()
        self._batch_of, self._batches = None, {}  # the primed questions' hits, per search depth

    @contextlib.contextmanager
    def _locked(self):
        with open(self.path / "build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def prime(self, questions: list[str]) -> None:
        """Embed a run's questions in one batch (Embedder.prime), keeping their vectors beside the index:
        a rerun of the same questions reads them back (float32 as the model gave them, so the hits and
        prompts are the same) and loads no embedding model before its first call."""
        # Inner-product space: Chroma renormalises vectors stored in a cosine one, which moves them by an ulp.
        store = _open_collection(self.path, _queries_name(self.model_name), space="ip")
        unique = list(dict.fromkeys(questions))
        ids = {_query_id(q): q for q in unique}
        stored = store.get(ids=list(ids), include=["embeddings"]) if ids else {"ids": [], "embeddings": []}
        known = {ids[i]: np.asarray(v, dtype=np.float32) for i, v in zip(stored["ids"], stored["embeddings"])}
        fresh = self.embedder.prime(unique, known)
        if fresh:
            batch = store._client.get_max_batch_size()
            texts = list(fresh)
            with self._locked():
                for start in range(0, len(texts), batch):
                    part = texts[start:start + batch]
                    store.upsert(ids=[_query_id(q) for q in part], embeddings=np.stack([fresh[q] for q in part]))

    def _build(self) -> None:
        log.info("index %s: embedding %d chunks", self.key, len(self.chunks))
        vectors = self.embedder.embed([c.text for c in self.chunks], progress=True)
        batch = self.collection._client.get_max_batch_size()
        for start in range(0, len(self.chunks), batch):
            part = self.chunks[start:start + batch]
            self.collection.upsert(
                ids=[c.chunk_id for c in part],
                embeddings=vectors[start:start + batch],
                documents=[c.text for c in part],
                metadatas=[{"doc_id": c.doc_id, "position": c.position, "tokens": c.tokens} for c in part],
            )
        # Marked only once every chunk is stored, so an interrupted build is redone, not reused.
        self.collection.modify(metadata={"complete": True})

    def search(self, query: str, k: int, doc_ids: tuple[str, ...] = ()) -> list[Hit]:
        """Top-k chunks; only from `doc_ids` when given (a question asked over part of the corpus)."""
        k = min(k, len(self.chunks))
        if k <= 0:
            return []
        # A few more than asked, so chunks with equal scores (repeated boilerplate) are ordered by their
        # place in the corpus, not by HNSW's visiting order: the same question gets the same prompt on
        # every run, and the response cache can answer it.
        n = min(len(self.chunks), k + TIE_MARGIN)
        found = None if doc_ids else self._from_batch(query, n)
        if found is None:
            where = {"doc_id": {"$in": list(doc_ids)}} if doc_ids else None
            res = self.collection.query(query_embeddings=self.embedder.embed([query]), n_results=n, where=where,
                                        include=["distances"])
            found = res["ids"][0], res["distances"][0]
        # cosine space: distance = 1 - similarity
        hits = [Hit(self.by_id[i], 1.0 - d) for i, d in zip(*found)]
        return sorted(hits, key=lambda h: (-round(h.score, 5), h.chunk.doc_id, h.chunk.position))[:k]

    def _from_batch(self, query: str, n: int):
        """(ids, distances) of a primed question (embeddings.Embedder.prime): the first search at depth
        `n` asks Chroma for all the run's questions in one query, as a batching loop would; each vector is
        searched on its own there, so the hits are those of a query per question. None if not primed."""
        primed = getattr(self.embedder, "primed", None)
        if not primed or query not in primed:
            return None
        with self._batch_lock:
            if self._batch_of is not primed:  # a new run primed other questions
                self._batch_of, self._batches = primed, {}
            if n not in self._batches:
                texts = list(primed)
                found = {}
                for start in range(0, len(texts), QUERY_BATCH):
                    part = texts[start:start + QUERY_BATCH]
                    res = self.collection.query(query_embeddings=np.stack([primed[t] for t in part]), n_results=n,
                                                include=["distances"])
                    found.update(zip(part, zip(res["ids"], res["distances"])))
                self._batches[n] = found
            return self._batches[n][query]


def _stored_chunks(collection, doc_order: list[str]) -> list[Chunk]:
    """The chunks of a complete collection, in the order `split` gives them (documents, then position)."""
    rank = {doc_id: n for n, doc_id in enumerate(doc_order)}
    stored = collection.get(include=["documents", "metadatas"])
    chunks = [Chunk(i, m["doc_id"], m["position"], text, m["tokens"])
              for i, text, m in zip(stored["ids"], stored["documents"], stored["metadatas"])]
    return sorted(chunks, key=lambda c: (rank[c.doc_id], c.position))


def _index_key(documents: list[Document], chunk_size: int, chunk_overlap: int, model_name: str) -> str:
    spec = {
        "documents": sorted((d.doc_id, d.sha256) for d in documents),
        "chunk_size": chunk_size,
        "chunk_overlap": chunk_overlap,
        "embedding_model": model_name,
        "tokenizer": "cl100k",
        "stored": "text+tokens",  # collections from before chunk text was stored must be rebuilt
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _queries_name(model_name: str) -> str:
    """Question vectors depend on the model alone: every index (chunking) of one model shares them."""
    spec = {"embedding_model": model_name, "normalized": True}
    return "queries-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _query_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _open_collection(path: Path, name: str, space: str = "cosine"):
    from pipelines import stores

    return stores.open_collection(path, name, space=space)  # a local folder, or a shared Chroma server (index.store)
