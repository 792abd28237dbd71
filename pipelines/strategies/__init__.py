"""Strategies decide what context a question gets. One module and one `conf/strategy/*.yaml` each;
the YAML's `_target_` names the class, and Hydra lists the valid names when a choice is unknown."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from pipelines.datasets import Question
from pipelines.documents import Document
from pipelines.index import VectorIndex


@dataclass(frozen=True)
class Block:
    label: str  # shown to the model above the text, e.g. the file name
    text: str


@dataclass(frozen=True)
class Context:
    blocks: tuple[Block, ...]
    context_ids: tuple[str, ...]  # chunk ids or doc ids, in prompt order
    doc_ids: tuple[str, ...]  # the documents the context came from, best first
    scores: tuple[float, ...] = ()  # retrieval score per context id, when there is one
    retrieved: bool = True  # False when the strategy takes every document without choosing
    cut: str = ""  # what the strategy left out to fit its budget, said on the row


class Corpus:
    """Documents plus a vector index that is built (or loaded from cache) only if a strategy asks."""

    def __init__(self, documents: list[Document], make_index: Callable[[], VectorIndex]):
        self.documents = documents
        self.by_id = {d.doc_id: d for d in documents}
        self._make_index = make_index

    @cached_property
    def index(self) -> VectorIndex:
        return self._make_index()

    def documents_for(self, question: Question) -> list[Document]:
        """The documents a question is asked over: its scope, or the whole corpus."""
        if not question.scope:
            return self.documents
        return [self.by_id[d] for d in question.scope]


class Strategy:
    name: str = ""
    uses_index: bool = False
    system: str | None = None  # replaces prompt.system / prompt.template when a strategy needs its own
    template: str | None = None

    def build(self, question: Question, corpus: Corpus, budget: int) -> Context:
        """Context for one question; `budget` is how many cl100k tokens the model's window leaves."""
        raise NotImplementedError
