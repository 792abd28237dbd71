"""LaRA (Alibaba-NLP, arXiv 2502.09977): every released split (`32k`, `128k`) and type (`paper`,
`financial`, `novel`), laid out as upstream: `<root>/<split>/<type>/*` contexts and
`<root>/query/<split>_<type>_<level>.jsonl` questions.

A paper file holds 2-3 papers tagged `<paper N>`: each paper becomes a document (`32k_paper_0.md#0`),
so `hybrid` can pick papers, and the gold document is the paper at `context_order` (or those in
`comp_parts`). Financial and novel files are one document each, and the file is the gold document.
A question is asked over its own file (`scope`), as in LaRA. `hallu` questions are unanswerable."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from pipelines import tokens
from pipelines.datasets import Dataset, Question, RowError, collect
from pipelines.documents import Document
from pipelines.errors import UserError

log = logging.getLogger(__name__)
PAPER = re.compile(r"^<paper (\d+)>\s*$", re.M)
SPLITS = ("32k", "128k")
KINDS = ("paper", "financial", "novel")


class Lara:
    def __init__(self, name: str, contexts_dir: str | None = None, queries_dir: str | None = None, kind: str = "paper",
                 levels: tuple[str, ...] = ("location", "reasoning", "comp", "hallu"), skip_bad_rows: bool = False,
                 root: str | None = None, split: str = "32k"):
        if split not in SPLITS:
            raise ValueError(f"dataset.split must be one of {', '.join(SPLITS)}, got {split!r}")
        if kind not in KINDS:
            raise ValueError(f"dataset.kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not root and not (contexts_dir and queries_dir):
            raise ValueError("dataset.root: the LaRA folder (holding <split>/<kind>/ and query/) is not set")
        self.name = name
        self.contexts_dir = Path(contexts_dir or Path(root) / split / kind)
        self.queries_dir = Path(queries_dir or Path(root) / "query")
        self.split = split
        self.kind = kind
        self.levels = tuple(levels)
        self.skip_bad_rows = skip_bad_rows

    def load(self, cache_dir: str) -> Dataset:
        if not self.contexts_dir.is_dir():
            raise UserError(f"dataset.contexts_dir: folder not found: {self.contexts_dir}")
        documents = []
        for path in sorted(self.contexts_dir.iterdir()):
            if path.is_file():
                documents += split_papers(path)
        known = {d.doc_id for d in documents}
        rows = []
        for level in self.levels:
            path = self.queries_dir / f"{self.split}_{self.kind}_{level}.jsonl"
            if not path.is_file():
                raise UserError(f"dataset.queries_dir: {path} not found (levels: {', '.join(self.levels)})")
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    rows.append((path, n, line))
        questions, skipped = collect(rows, lambda r: self._question(*r, known), self.skip_bad_rows, log)
        if not questions:
            raise UserError(f"dataset: no usable LaRA questions in {self.queries_dir} for {self.split} {self.kind}")
        return Dataset(self.name, documents, questions, [], skipped)

    def _question(self, path: Path, n: int, line: str, known: set[str]) -> Question:
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise RowError(where, "line", f"not valid JSON ({err.msg})") from None
        for field in ("file", "question", "answer", "level"):
            if not isinstance(row.get(field), str):
                raise RowError(where, field, "missing")
        scope = tuple(sorted(d for d in known if d.split("#")[0] == row["file"]))
        if not scope:
            raise RowError(where, "file", f"{row['file']!r} is not in {self.contexts_dir}")
        if scope == (row["file"],):  # financial, novel: the file is one document; context_order is not a part
            gold = scope
        else:
            parts = row.get("comp_parts") if row["level"] == "comp" else [row.get("context_order")]
            if not isinstance(parts, list) or not all(isinstance(p, int) for p in parts):
                raise RowError(where, "comp_parts" if row["level"] == "comp" else "context_order", "expected paper numbers")
            gold = tuple(f"{row['file']}#{p}" for p in parts)
        if missing := [g for g in gold if g not in known]:
            raise RowError(where, "context_order", f"{missing[0]!r}: no such paper in {row['file']}")
        return Question(qid=f"{row['level']}-{n:03d}", text=row["question"], answers=(row["answer"],), gold_documents=gold,
                        unanswerable=row["level"] == "hallu", scope=scope, meta={"level": row["level"]})


def split_papers(path: Path) -> list[Document]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    marks = list(PAPER.finditer(text))
    if not marks:  # financial filings: one document per file
        return [document(path.name, text)]
    out = []
    for i, mark in enumerate(marks):
        body = text[mark.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip()
        out.append(document(f"{path.name}#{mark.group(1)}", body))
    return out


def document(doc_id: str, text: str) -> Document:
    return Document(doc_id, text, tokens.count(text), hashlib.sha256(text.encode()).hexdigest())
