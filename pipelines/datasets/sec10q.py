"""SEC 10-Q filings with Docugami's question/answer CSV (`Question`, `Source Docs`, `Answer`, ...).

`Source Docs` is a glob over the upstream file names, which have spaces (`*2023 Q3 AAPL*`); local
copies may use underscores (`2023_Q3_AAPL.pdf`), so names are compared with underscores as spaces.
"""

from __future__ import annotations

import csv
import fnmatch
from pathlib import Path

from pipelines.datasets import check_quotes, Dataset, Question
from pipelines.documents import load_documents
from pipelines.errors import UserError

REQUIRED = ("Question", "Source Docs", "Answer")


class Sec10Q:
    def __init__(self, name: str, documents_dir: str, questions_file: str, skip_unreadable: bool = False,
                 pdf_parser: str = "pypdf"):
        self.pdf_parser = pdf_parser
        self.name = name
        self.documents_dir = documents_dir
        self.questions_file = Path(questions_file)
        self.skip_unreadable = skip_unreadable

    def load(self, cache_dir: str) -> Dataset:
        rows = self._read_rows()  # questions first: a bad CSV fails before the PDFs are parsed
        documents, skipped = load_documents(self.documents_dir, cache_dir, self.skip_unreadable, self.pdf_parser)
        names = {d.doc_id: d.doc_id.replace("_", " ") for d in documents}
        questions = []
        for number, line, row in rows:
            pattern = row["Source Docs"].strip()
            gold = tuple(doc for doc, upstream in names.items() if fnmatch.fnmatch(upstream, pattern))
            if pattern and not gold and not skipped:
                raise UserError(f"{self.questions_file}:{line}: Source Docs {pattern!r} matches no document in {self.documents_dir}")
            questions.append(
                Question(
                    qid=f"q{number:04d}",
                    text=row["Question"].strip(),
                    answers=(row["Answer"].strip(),),
                    gold_documents=gold,
                    meta={k: row.get(k, "") for k in ("Question Type", "Source Chunk Type")},
                )
            )
        return Dataset(self.name, documents, questions, skipped)

    def _read_rows(self) -> list[tuple[int, int, dict]]:
        if not self.questions_file.is_file():
            raise UserError(f"dataset.questions_file: file not found: {self.questions_file}")
        try:
            check_quotes(self.questions_file.read_text(encoding="utf-8"), self.questions_file)
            with self.questions_file.open(encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
                if missing:
                    raise UserError(f"{self.questions_file}: missing column(s) {', '.join(missing)} (found: {', '.join(reader.fieldnames or [])})")
                rows, end = [], reader.line_num
                for row in reader:
                    line, end = end + 1, reader.line_num  # answers span lines: name the row's first
                    if None in row or any(row[c] is None for c in REQUIRED):
                        raise UserError(f"{self.questions_file}:{line}: wrong number of fields")
                    if not row["Question"].strip():
                        raise UserError(f"{self.questions_file}:{line}: empty Question")
                    rows.append((len(rows) + 1, line, row))
        except (UnicodeDecodeError, csv.Error) as err:
            raise UserError(f"{self.questions_file}: not a readable CSV ({err})") from None
        if not rows:
            raise UserError(f"{self.questions_file}: no questions")
        return rows
