"""SQuAD 2.0 (`dev-v2.0.json`): each article's paragraphs joined into one document; a question's gold
paragraph is its evidence and its article the gold document. `is_impossible` questions are
unanswerable. `scope: article` asks each question over its own article (4k-14k tokens, as in the
long-document setting); `corpus` over all articles."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipelines.datasets import Dataset, Question, RowError, collect
from pipelines.datasets.lara import document
from pipelines.errors import UserError

log = logging.getLogger(__name__)


class Squad2:
    def __init__(self, name: str, path: str, scope: str = "article", max_articles: int | None = None,
                 skip_bad_rows: bool = False):
        if scope not in ("article", "corpus"):
            raise ValueError(f"dataset.scope must be article or corpus, got {scope!r}")
        self.name, self.path, self.scope = name, Path(path), scope
        self.max_articles, self.skip_bad_rows = max_articles, skip_bad_rows

    def load(self, cache_dir: str) -> Dataset:
        if not self.path.is_file():
            raise UserError(f"dataset.path: file not found: {self.path}")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))["data"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise UserError(f"{self.path}: not a SQuAD v2 file ({type(err).__name__}: {err})") from None
        documents, rows = [], []
        for a, article in enumerate(data[: self.max_articles]):
            doc_id = f"{article.get('title', f'article-{a}')}.txt"
            paragraphs = [p.get("context", "") for p in article.get("paragraphs", [])]
            documents.append(document(doc_id, "\n\n".join(paragraphs)))
            for p, paragraph in enumerate(article.get("paragraphs", [])):
                for q, qa in enumerate(paragraph.get("qas", [])):
                    rows.append((f"{self.path}:data[{a}].paragraphs[{p}].qas[{q}]", doc_id, paragraph.get("context", ""), qa))
        questions, skipped = collect(rows, lambda r: self._question(*r), self.skip_bad_rows, log)
        return Dataset(self.name, documents, questions, [], skipped)

    def _question(self, where: str, doc_id: str, context: str, qa: dict) -> Question:
        for field in ("id", "question"):
            if not isinstance(qa.get(field), str):
                raise RowError(where, field, "missing")
        impossible = bool(qa.get("is_impossible", False))
        answers = tuple(a["text"] for a in qa.get("answers", []) if isinstance(a, dict) and "text" in a)
        if not impossible and not answers:
            raise RowError(where, "answers", "an answerable question needs at least one answer")
        return Question(qid=qa["id"], text=qa["question"], answers=answers, gold_documents=(doc_id,),
                        evidence=(context,), unanswerable=impossible,
                        scope=(doc_id,) if self.scope == "article" else ())
