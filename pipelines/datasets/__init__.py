"""Dataset adapters: each turns files on disk into documents plus questions.

An adapter is a class named by `_target_` in `conf/dataset/*.yaml`; `load()` validates everything
before any run starts, so a malformed file never leaves half an experiment behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.documents import Document


@dataclass(frozen=True)
class Question:
    qid: str
    text: str
    answers: tuple[str, ...] = ()  # references; empty when the dataset has none
    gold_documents: tuple[str, ...] = ()  # doc_ids that hold the answer, when known
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Dataset:
    name: str
    documents: list[Document]
    questions: list[Question]
    skipped_documents: list[str] = field(default_factory=list)
