"""Benchmark files whose records carry their own long document(s): L-Eval (`input` = the document,
`instructions`/`outputs` = lists of questions and answers), LongBench and ∞Bench (`context` = the
document, `input`/`question` = one question, `answers`/`answer` = references). JSONL, a JSON list, or
a JSON object with a `data` list. Each distinct document is stored once (by content) and every
question is asked over its own record's document(s) (`scope`), which are also its gold documents.

Field names are found automatically; `dataset.fields.<role>=name` picks one when a file differs."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from pipelines.datasets import Dataset, Question, RowError, collect
from pipelines.datasets.lara import document
from pipelines.errors import UserError

log = logging.getLogger(__name__)
# Tried in order when `fields` does not name one. `context` first: in LongBench `input` is the question.
CANDIDATES = {
    "context": ("context", "document", "documents", "input"),
    "question": ("instructions", "questions", "question", "query", "input"),
    "answers": ("outputs", "answers", "answer", "output", "ground_truth"),
    "id": ("_id", "id", "qid"),
}


class Inline:
    def __init__(self, path: str, name: str | None = None, fields: dict | None = None, skip_bad_rows: bool = False):
        self.path = Path(path)
        self.name = name or self.path.stem
        self.fields = {k: v for k, v in (fields or {}).items() if v}
        if unknown := sorted(set(self.fields) - set(CANDIDATES)):
            raise ValueError(f"dataset.fields.{unknown[0]}: not a role (roles: {', '.join(CANDIDATES)})")
        self.skip_bad_rows = skip_bad_rows

    def load(self, cache_dir: str) -> Dataset:
        documents, rows = {}, []
        for n, record in read_records(self.path):
            where = f"{self.path}:{n}"
            id_field = self._field(record, "id")
            base = str(record[id_field]) if id_field else f"r{n:04d}"
            rows += [(f"{where} question {q + 1}", record, documents, q, f"{base}#{q + 1}" if many else base)
                     for q, many in self._positions(record)]
        questions, skipped = collect(rows, lambda r: self._question(*r), self.skip_bad_rows, log)
        if not questions:
            raise UserError(f"{self.path}: no usable questions")
        return Dataset(self.name, list(documents.values()), questions, [], skipped)

    def _field(self, record: dict, role: str, exclude: tuple = ()) -> str | None:
        if role in self.fields:
            return self.fields[role] if self.fields[role] in record else None
        return next((f for f in CANDIDATES[role] if f in record and f not in exclude), None)

    def _question_field(self, record: dict) -> str | None:
        return self._field(record, "question", exclude=(self._field(record, "context"),))

    def _positions(self, record: dict) -> list[tuple[int, bool]]:
        """(index, several?) for each question of a record: L-Eval keeps a list per document."""
        value = record.get(self._question_field(record) or "")
        return [(q, True) for q in range(len(value))] if isinstance(value, list) and value else [(0, False)]

    def _question(self, where: str, record: dict, documents: dict, q: int, qid: str) -> Question:
        doc_ids = self._documents(record, where, documents)
        field, answers_field = self._question_field(record), self._field(record, "answers")
        text, answers = record.get(field) if field else None, record.get(answers_field) if answers_field else None
        if isinstance(text, list):  # parallel lists: question q and answer q
            if isinstance(answers, list):
                if len(answers) != len(text):
                    raise RowError(where, answers_field, f"{len(answers)} answers for {len(text)} questions")
                answers = answers[q]
            text = text[q]
        if not isinstance(text, str) or not text.strip():
            raise RowError(where, field or "question", f"missing or empty (looked for {', '.join(CANDIDATES['question'])})")
        refs = answers if isinstance(answers, list) else [] if answers is None else [answers]
        if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in refs):
            raise RowError(where, answers_field or "answers", "expected text or a list of texts")
        return Question(qid=qid, text=text.strip(), answers=tuple(str(a) for a in refs), gold_documents=doc_ids,
                        scope=doc_ids)

    def _documents(self, record: dict, where: str, documents: dict) -> tuple[str, ...]:
        field = self._field(record, "context")
        value = record.get(field) if field else None
        texts = value if isinstance(value, list) else [value]
        if not field or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise RowError(where, field or "context", f"no document text (looked for {', '.join(CANDIDATES['context'])})")
        ids = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest not in documents:  # the same document under many records is stored once
                documents[digest] = document(f"{self.path.stem}-{len(documents) + 1:04d}", text)
            ids.append(documents[digest].doc_id)
        return tuple(dict.fromkeys(ids))


def read_records(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise UserError(f"dataset.path: file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if path.suffix.lower() == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise UserError(f"{path}:{n}: not valid JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path}:{n}: expected a JSON object")
                out.append((n, row))
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    data = data.get("data") if isinstance(data, dict) else data
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UserError(f"{path}: expected JSON Lines, a JSON list of records, or an object with a `data` list")
    return [(n, r) for n, r in enumerate(data, 1)]
