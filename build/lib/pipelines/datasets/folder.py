"""Your own documents: a folder of PDFs/markdown/text plus a questions file in JSONL, CSV or YAML.

Fields per question: `question` (required), `answer` or `answers` (a list; in CSV a JSON list),
`gold_documents` and `evidence` (lists; in CSV separated by `;`), `unanswerable` (true/false), `id`.
Every row is checked on load; a bad one names the file, the line and the field."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import yaml

from pipelines.datasets import Dataset, Question, RowError, collect
from pipelines.documents import load_documents
from pipelines.errors import UserError

log = logging.getLogger(__name__)
FIELDS = {"question", "answer", "answers", "gold_documents", "evidence", "unanswerable", "id", "filters"}


class Folder:
    def __init__(self, name: str, documents_dir: str, questions_file: str, skip_unreadable: bool = False,
                 skip_bad_rows: bool = False):
        self.name = name
        self.documents_dir = documents_dir
        self.questions_file = Path(questions_file)
        self.skip_unreadable = skip_unreadable
        self.skip_bad_rows = skip_bad_rows

    def load(self, cache_dir: str) -> Dataset:
        rows = read_rows(self.questions_file)
        documents, skipped_docs = load_documents(self.documents_dir, cache_dir, self.skip_unreadable)
        known = {d.doc_id for d in documents}
        questions, skipped = collect(rows, lambda r: self._question(*r, known), self.skip_bad_rows, log)
        if not questions:
            raise UserError(f"{self.questions_file}: no usable questions")
        return Dataset(self.name, documents, questions, skipped_docs, skipped)

    def _question(self, line: int, row: dict, known: set[str]) -> Question:
        where = f"{self.questions_file}:{line}"
        unknown = set(row) - FIELDS
        if unknown:
            raise RowError(where, sorted(unknown)[0], f"unknown field (expected some of {', '.join(sorted(FIELDS))})")
        text = row.get("question")
        if not isinstance(text, str) or not text.strip():
            raise RowError(where, "question", "missing or empty")
        answers = as_list(row.get("answers"), where, "answers") or as_list(row.get("answer"), where, "answer")
        gold = tuple(as_list(row.get("gold_documents"), where, "gold_documents"))
        missing = [d for d in gold if d not in known]
        if missing:
            raise RowError(where, "gold_documents", f"{missing[0]!r} is not in {self.documents_dir}")
        flag = row.get("unanswerable", False)
        if isinstance(flag, str):
            if flag.strip().lower() not in ("", "true", "false", "1", "0", "yes", "no"):
                raise RowError(where, "unanswerable", f"expected true or false, got {flag!r}")
            flag = flag.strip().lower() in ("true", "1", "yes")
        return Question(qid=str(row.get("id") or f"q{line:04d}"), text=text.strip(), answers=tuple(answers),
                        gold_documents=gold, evidence=tuple(as_list(row.get("evidence"), where, "evidence")),
                        unanswerable=bool(flag), filters=tuple(as_list(row.get("filters"), where, "filters")))


def as_list(value, where: str, field: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise RowError(where, field, "expected a list of strings")
        return value
    if not isinstance(value, str):
        raise RowError(where, field, f"expected text or a list, got {type(value).__name__}")
    if field == "answers":  # in CSV, a JSON list
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise RowError(where, field, "expected a JSON list of strings") from None
        return as_list(parsed if isinstance(parsed, list) else [value], where, field)
    if field in ("gold_documents", "evidence", "filters") and ";" in value:
        return [v.strip() for v in value.split(";") if v.strip()]
    return [value]


def read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line, row) pairs from a .jsonl, .csv or .yaml/.yml file."""
    if not path.is_file():
        raise UserError(f"dataset.questions_file: file not found: {path}")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise UserError(f"{path}:{n}: not valid JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path}:{n}: expected a JSON object")
                rows.append((n, row))
        return rows
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        if "question" not in (reader.fieldnames or []):
            raise UserError(f"{path}: missing column question (found: {', '.join(reader.fieldnames or [])})")
        rows, end = [], reader.line_num
        for row in reader:
            line, end = end + 1, reader.line_num
            if None in row:
                raise UserError(f"{path}:{line}: more fields than columns")
            rows.append((line, {k: v for k, v in row.items() if v is not None}))
        return rows
    if suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            raise UserError(f"{path}:{mark.line + 1 if mark else '?'}: not valid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise UserError(f"{path}: expected a list of questions (mappings)")
        return [(n, r) for n, r in enumerate(data, 1)]  # YAML: the position in the list
    raise UserError(f"dataset.questions_file: {path} is not .jsonl, .csv or .yaml")
