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
    evidence: tuple[str, ...] = ()  # passages that hold the answer, when known
    unanswerable: bool = False  # the documents do not hold the answer: abstaining is correct
    scope: tuple[str, ...] = ()  # doc_ids the question is asked over; empty = the whole corpus
    filters: tuple[str, ...] = ()  # metadata given with the question (e.g. "2023_Q3"), for prefilter=metadata
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Dataset:
    name: str
    documents: list[Document]
    questions: list[Question]
    skipped_documents: list[str] = field(default_factory=list)
    skipped_rows: list[str] = field(default_factory=list)


class RowError(Exception):
    """A bad row: `where` is "file:line", `field` the offending field."""

    def __init__(self, where: str, field: str, message: str):
        super().__init__(f"{where}: {field}: {message}")


def collect(rows, parse, skip_bad_rows: bool, log) -> list:
    """Parse every row; stop at the first bad one unless skipping was asked for, then count them."""
    from pipelines.errors import UserError

    out, skipped = [], []
    for row in rows:
        try:
            out.append(parse(row))
        except RowError as err:
            if not skip_bad_rows:
                raise UserError(f"{err} (set dataset.skip_bad_rows=true to skip such rows)") from None
            skipped.append(str(err))
    if skipped:
        log.warning("skipped %d bad question rows; first: %s", len(skipped), skipped[0])
    return out, skipped


def check_quotes(text: str, path) -> None:
    """A CSV quote opened and never closed makes the csv module swallow every later row into one field
    (two questions silently become one paid call): name the line where it opens."""
    from pipelines.errors import UserError

    inside, opened, line = False, 0, 1
    for ch in text:
        if ch == '"':
            inside = not inside  # a doubled "" inside a field flips twice: balanced
            if inside:
                opened = line
        elif ch == "\n":
            line += 1
    if inside:
        raise UserError(f"{path}:{opened}: a quote opened here is never closed (every later row would merge into "
                        f"this one); close it or double the quote character")
