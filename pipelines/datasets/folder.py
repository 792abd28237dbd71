"""Your own documents: a folder of PDFs/markdown/text plus a questions file in JSONL, CSV or YAML.

Fields per question (README "Bring your own data"): `question` (required), `answer` or `answers`
(a list; in CSV a JSON list or one text), `gold_documents`, `scope`, `evidence`, `filters` (lists; in
CSV separated by `;`), `unanswerable` (true/false), `id`. `gold_documents` and `scope` name documents
by file name or by a glob (`*2023 Q3 AAPL*`; `_` and space match each other, as in Docugami's CSV).
Column names are matched without regard to case, spaces or `-`, so Docugami's `Question`,
`Source Docs`, `Answer` load as they are; other names are mapped with `dataset.columns.<field>=Name`.
Other columns are kept as metadata; one that looks like a misspelt field is an error.
Every row is checked on load; a bad one names the file, the line and the field."""

from __future__ import annotations

import csv
import difflib
import fnmatch
import json
import logging
import re
from pathlib import Path

import yaml

from pipelines.datasets import check_quotes, Dataset, Question, RowError, collect
from pipelines.documents import load_documents
from pipelines.errors import UserError

log = logging.getLogger(__name__)
FIELDS = ("question", "answer", "answers", "gold_documents", "scope", "evidence", "unanswerable", "id", "filters")
# Names other formats use for our fields (after normalising case and spaces).
ALIASES = {"source_docs": "gold_documents", "gold_docs": "gold_documents",
           "question_id": "id", "qid": "id", "_id": "id"}
SCOPES = ("corpus", "gold")


def normal(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


class Folder:
    def __init__(self, name: str | None, documents_dir: str, questions_file: str, skip_unreadable: bool = False,
                 skip_bad_rows: bool = False, columns: dict | None = None, scope: str = "corpus",
                 pdf_parser: str = "pypdf"):
        if scope not in SCOPES:
            raise ValueError(f"dataset.scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.name = name or default_name(documents_dir)
        self.documents_dir = documents_dir
        self.questions_file = Path(questions_file)
        self.skip_unreadable = skip_unreadable
        self.skip_bad_rows = skip_bad_rows
        self.columns = {k: v for k, v in (columns or {}).items() if v}
        if unknown := sorted(set(self.columns) - set(FIELDS)):
            raise ValueError(f"dataset.columns.{unknown[0]}: not a question field (fields: {', '.join(FIELDS)})")
        self.scope = scope
        self.pdf_parser = pdf_parser

    def load(self, cache_dir: str) -> Dataset:
        rows = [(n, self._fields(row)) for n, row in read_rows(self.questions_file, self.columns.get("question"))]
        documents, skipped_docs = load_documents(self.documents_dir, cache_dir, self.skip_unreadable, self.pdf_parser)
        known = [d.doc_id for d in documents]
        questions, skipped = collect(rows, lambda r: self._question(*r, known, bool(skipped_docs)), self.skip_bad_rows, log)
        if not questions:
            raise UserError(f"{self.questions_file}: no usable questions")
        return Dataset(self.name, documents, questions, skipped_docs, skipped)

    def _fields(self, row: dict) -> dict:
        """The row with its columns renamed to our fields; other columns under `meta`."""
        mapped = {normal(v): k for k, v in self.columns.items()}
        out, meta = {}, {}
        for key, value in row.items():
            name = mapped.get(normal(key)) or ALIASES.get(normal(key)) or normal(key)
            if name in FIELDS and name not in out:
                out[name] = value
            else:
                meta[key] = value
        out["meta"] = meta
        return out

    def _question(self, line: int, row: dict, known: list[str], some_skipped: bool) -> Question:
        where = f"{self.questions_file}:{line}"
        meta = row.pop("meta")
        for key in meta:
            close = difflib.get_close_matches(normal(key), FIELDS, n=1, cutoff=0.8)
            if close:
                raise RowError(where, key, f"unknown field (did you mean {close[0]}? fields: {', '.join(FIELDS)})")
        text = row.get("question")
        if not isinstance(text, str) or not text.strip():
            raise RowError(where, "question", "missing or empty")
        answers = as_list(row.get("answers"), where, "answers") or as_list(row.get("answer"), where, "answer")
        gold = self._documents(row, "gold_documents", where, known, some_skipped)
        scope = self._documents(row, "scope", where, known, some_skipped)
        if not scope and self.scope == "gold":
            scope = gold
        flag = row.get("unanswerable", False)
        if isinstance(flag, str):
            if flag.strip().lower() not in ("", "true", "false", "1", "0", "yes", "no"):
                raise RowError(where, "unanswerable", f"expected true or false, got {flag!r}")
            flag = flag.strip().lower() in ("true", "1", "yes")
        return Question(qid=str(row.get("id") or f"q{line:04d}"), text=text.strip(), answers=tuple(answers),
                        gold_documents=gold, evidence=tuple(as_list(row.get("evidence"), where, "evidence")),
                        unanswerable=bool(flag), scope=scope, filters=tuple(as_list(row.get("filters"), where, "filters")),
                        meta={k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))})

    def _documents(self, row: dict, field: str, where: str, known: list[str], some_skipped: bool) -> tuple[str, ...]:
        """Document names or globs -> doc_ids; a name that matches nothing is an error (unless files were skipped)."""
        out = []
        for pattern in as_list(row.get(field), where, field):
            found = match_documents(pattern, known)
            if not found and not some_skipped:
                raise RowError(where, field, f"{pattern!r} is not in {self.documents_dir} (no document matches)")
            out += found
        return tuple(dict.fromkeys(out))


def default_name(documents_dir: str) -> str:
    """The MLflow experiment a user's data lands in: the documents folder's name (its parent's when
    the folder is just called docs/documents, as in `my_project/docs`)."""
    path = Path(documents_dir).resolve()
    return path.parent.name if path.name.lower() in ("docs", "documents") and path.parent.name else path.name


def match_documents(pattern: str, known: list[str]) -> list[str]:
    if pattern in known:
        return [pattern]
    # Upstream names often have spaces where local copies have underscores (Docugami's SEC filings).
    wanted = pattern.replace("_", " ")
    return [d for d in known if fnmatch.fnmatch(d.replace("_", " "), wanted)
            or fnmatch.fnmatch(Path(d).name.replace("_", " "), wanted)]


def as_list(value, where: str, field: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise RowError(where, field, "expected a list of strings")
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and field in ("answer", "answers"):
        return [str(value)]
    if not isinstance(value, str):
        raise RowError(where, field, f"expected text or a list, got {type(value).__name__}")
    if field == "answers" and value.lstrip().startswith("["):  # in CSV, a JSON list
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise RowError(where, field, "expected a JSON list of strings") from None
        return as_list(parsed if isinstance(parsed, list) else [value], where, field)
    if field in ("gold_documents", "scope", "evidence", "filters") and ";" in value:
        return [v.strip() for v in value.split(";") if v.strip()]
    return [value.strip() if field in ("gold_documents", "scope") else value]


def read_rows(path: Path, question_column: str | None = None) -> list[tuple[int, dict]]:
    """(line, row) pairs from a .jsonl, .csv or .yaml/.yml file."""
    if not path.is_file():
        raise UserError(f"dataset.questions_file: file not found: {path}")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes CSV with a byte-order mark
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
        check_quotes(text, path)
        reader = csv.DictReader(text.splitlines(keepends=True))
        names = {normal(c) for c in reader.fieldnames or []}
        wanted = normal(question_column) if question_column else None
        if (wanted and wanted not in names) or (not wanted and "question" not in names):
            raise UserError(f"{path}: missing column {question_column or 'question'} (found: "
                            f"{', '.join(reader.fieldnames or [])}; map yours with dataset.columns.question=NAME)")
        rows, end = [], reader.line_num
        for row in reader:
            line, end = end + 1, reader.line_num  # a quoted answer spans lines: name the row's first
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
