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
    tokens: int | None = None  # cl100k tokens of `text` when known exactly (a whole document's)


@dataclass(frozen=True)
class Context:
    blocks: tuple[Block, ...]
    context_ids: tuple[str, ...]  # chunk ids or doc ids, in prompt order
    doc_ids: tuple[str, ...]  # the documents the context came from, best first
    scores: tuple[float, ...] = ()  # retrieval score per context id, when there is one
    retrieved: bool = True  # False when the strategy takes every document without choosing
    cut: str = ""  # what the strategy left out to fit its budget, said on the row
    # The document of each context item, parallel to context_ids: metrics map chunks to documents
    # with it, never by parsing ids (LaRA document ids contain '#').
    context_doc_ids: tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.context_doc_ids) != len(self.context_ids):
            raise ValueError(f"Context: {len(self.context_ids)} context_ids but {len(self.context_doc_ids)} context_doc_ids")


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

    def steps(self) -> list["Step"]:
        """The calls this strategy may make for a question, in order (its plan). The runner sends the
        first, then the next for as long as `escalate` says so. One call by default."""
        return [Step(self.name, self)]

    def escalate(self, step: int, record) -> bool:
        """After step `step` produced `record` (answered, failed or skipped): go on to the next step?"""
        return False


@dataclass(frozen=True)
class Step:
    """One call of a plan: a route name (recorded on the row), the strategy that builds its context,
    the model that answers (None: the run's model) and a sentence added to the system prompt."""

    name: str
    strategy: Strategy
    model: object = None
    instruction: str = ""
