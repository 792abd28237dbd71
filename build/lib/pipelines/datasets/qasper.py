"""QASPER (HF export): each paper (title, abstract, sections) is a document; each question is asked
over its own paper. References: free-form answers, extractive spans joined, or yes/no; a question
that all annotators marked unanswerable is unanswerable. The file is a stream of JSON objects."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipelines.datasets import Dataset, Question, RowError, collect
from pipelines.datasets.lara import document
from pipelines.errors import UserError

log = logging.getLogger(__name__)


class Qasper:
    def __init__(self, name: str, path: str, skip_bad_rows: bool = False):
        self.name, self.path, self.skip_bad_rows = name, Path(path), skip_bad_rows

    def load(self, cache_dir: str) -> Dataset:
        papers = read_stream(self.path)
        documents, rows = [], []
        for i, paper in enumerate(papers):
            if not isinstance(paper.get("id"), str) or not isinstance(paper.get("full_text"), dict):
                raise UserError(f"{self.path}: object {i + 1}: missing id or full_text")
            doc_id = f"{paper['id']}.md"
            documents.append(document(doc_id, paper_text(paper)))
            qas = paper.get("qas") or {}
            for q, question in enumerate(qas.get("question", [])):
                answers = (qas.get("answers") or [])[q] if q < len(qas.get("answers") or []) else None
                rows.append((f"{self.path}: paper {paper['id']} question {q + 1}", doc_id, question, answers,
                             (qas.get("question_id") or [None] * (q + 1))[q]))
        questions, skipped = collect(rows, lambda r: self._question(*r), self.skip_bad_rows, log)
        return Dataset(self.name, documents, questions, [], skipped)

    def _question(self, where, doc_id, text, answers, qid) -> Question:
        if not isinstance(text, str) or not text.strip():
            raise RowError(where, "question", "missing")
        if not isinstance(answers, dict) or not isinstance(answers.get("answer"), list):
            raise RowError(where, "answers", "missing")
        references, evidence, unanswerable = [], [], []
        for a in answers["answer"]:
            unanswerable.append(bool(a.get("unanswerable")))
            if a.get("free_form_answer"):
                references.append(a["free_form_answer"])
            elif a.get("extractive_spans"):
                references.append(", ".join(a["extractive_spans"]))
            elif a.get("yes_no") is not None:
                references.append("yes" if a["yes_no"] else "no")
            evidence += [e for e in a.get("evidence") or [] if not e.startswith("FLOAT SELECTED")]
        return Question(qid=qid or where, text=text.strip(), answers=tuple(dict.fromkeys(references)),
                        gold_documents=(doc_id,), evidence=tuple(dict.fromkeys(evidence)),
                        unanswerable=bool(unanswerable) and all(unanswerable), scope=(doc_id,))


def read_stream(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"dataset.path: file not found: {path}")
    text, decoder, pos, out = path.read_text(encoding="utf-8"), json.JSONDecoder(), 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        out.append(obj)


def paper_text(paper: dict) -> str:
    parts = [f"# {paper.get('title', '')}", paper.get("abstract", "")]
    full = paper["full_text"]
    for name, paragraphs in zip(full.get("section_name", []), full.get("paragraphs", [])):
        parts.append(f"## {name}\n\n" + "\n\n".join(paragraphs))
    return "\n\n".join(p for p in parts if p)
