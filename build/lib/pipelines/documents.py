"""Read a folder of PDFs and text files into documents, caching the parsed text by file content."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pypdf
from pypdf.errors import PdfReadError

from pipelines import tokens
from pipelines.errors import UserError

log = logging.getLogger(__name__)

SUFFIXES = {".pdf", ".md", ".txt"}
# Bumped when the extraction changes, so cached text from an older parser is not reused.
PARSER_VERSION = f"pypdf-{pypdf.__version__}-1"


@dataclass(frozen=True)
class Document:
    doc_id: str  # file name inside the documents folder: stable across machines
    text: str
    tokens: int  # cl100k
    sha256: str


def load_documents(folder: str | Path, cache_dir: str | Path, skip_unreadable: bool = False) -> tuple[list[Document], list[str]]:
    """Return the readable documents and, when `skip_unreadable`, the messages for those skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"dataset.documents_dir: folder not found: {folder}")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not paths:
        raise UserError(f"dataset.documents_dir: no .pdf, .md or .txt files in {folder}")
    documents, skipped = [], []
    for path in paths:
        try:
            documents.append(_load_one(path, folder, Path(cache_dir) / "parsed"))
        except UserError as err:
            if not skip_unreadable:
                raise UserError(f"{err} (set dataset.skip_unreadable=true to skip it)") from None
            log.warning("skipped %s", err)
            skipped.append(str(err))
    if not documents:
        raise UserError(f"dataset.documents_dir: no readable documents in {folder}")
    return documents, skipped


def _load_one(path: Path, folder: Path, cache: Path) -> Document:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cached = cache / f"{digest}.json"
    if cached.exists():
        entry = json.loads(cached.read_text(encoding="utf-8"))
        if entry.get("parser") == PARSER_VERSION:
            return Document(path.relative_to(folder).as_posix(), entry["text"], entry["tokens"], digest)
    text = _pdf_text(path) if path.suffix.lower() == ".pdf" else _plain_text(path, data)
    if not text.strip():
        raise UserError(f"{path}: no extractable text (a scanned PDF needs OCR first)")
    n_tokens = tokens.count(text)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps({"parser": PARSER_VERSION, "text": text, "tokens": n_tokens}), encoding="utf-8")
    tmp.replace(cached)  # atomic: an interrupted parse never leaves a half-written cache entry
    return Document(path.relative_to(folder).as_posix(), text, n_tokens, digest)


def _pdf_text(path: Path) -> str:
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UserError(f"{path}: encrypted PDF, cannot read it without its password")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UserError:
        raise
    except (PdfReadError, ValueError, KeyError, OSError) as err:
        # pypdf raises several types for damaged files; all mean the same thing to a user.
        raise UserError(f"{path}: unreadable PDF ({type(err).__name__}: {err})") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _plain_text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
