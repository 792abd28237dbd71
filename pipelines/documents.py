"""Read a folder of PDFs and text files into documents, caching the parsed text by file content."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pypdf

from pipelines import tokens
from pipelines.errors import UserError

log = logging.getLogger(__name__)

SUFFIXES = {".pdf", ".md", ".txt"}
PDF_PARSERS = ("pypdf", "pdfium")
# pypdf's default (100k array elements) is below what one page's text array reaches in some real
# filings (reported for Amazon and Intel 10-Qs; tests/test_byod.py builds one); these limits still
# bound memory on a hostile file. benchmarks/README.md "PDF parsers" compares the parsers.
PYPDF_LIMITS = {"array_maximum_element_count": 10_000_000, "dictionary_maximum_element_count": 1_000_000}


def parser_version(parser: str) -> str:
    """Stored with cached text: a different parser or version re-parses instead of reusing it."""
    if parser == "pdfium":
        from importlib.metadata import version

        return f"pdfium-{version('pypdfium2')}-1"
    return f"pypdf-{pypdf.__version__}-2"


@dataclass(frozen=True)
class Document:
    doc_id: str  # file name inside the documents folder: stable across machines
    text: str
    tokens: int  # cl100k
    sha256: str


def load_documents(folder: str | Path, cache_dir: str | Path, skip_unreadable: bool = False,
                   pdf_parser: str = "pypdf") -> tuple[list[Document], list[str]]:
    """Return the readable documents and, when `skip_unreadable`, the messages for those skipped."""
    if pdf_parser not in PDF_PARSERS:
        raise UserError(f"dataset.pdf_parser: must be one of {', '.join(PDF_PARSERS)}, got {pdf_parser!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"dataset.documents_dir: folder not found: {folder}")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not paths:
        raise UserError(f"dataset.documents_dir: no .pdf, .md or .txt files in {folder}")
    documents, skipped = [], []
    for path in paths:
        try:
            documents.append(_load_one(path, folder, Path(cache_dir) / "parsed", pdf_parser))
        except UserError as err:
            if not skip_unreadable:
                raise UserError(f"{err} (set dataset.skip_unreadable=true to skip it)") from None
            log.warning("skipped %s", err)
            skipped.append(str(err))
    if not documents:
        raise UserError(f"dataset.documents_dir: no readable documents in {folder}")
    return documents, skipped


def _load_one(path: Path, folder: Path, cache: Path, pdf_parser: str = "pypdf") -> Document:
    version = parser_version(pdf_parser)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cached = cache / f"{digest}.json"
    if cached.exists():
        entry = json.loads(cached.read_text(encoding="utf-8"))
        if entry.get("parser") == version:
            return Document(path.relative_to(folder).as_posix(), entry["text"], entry["tokens"], digest)
    text = pdf_text(path, pdf_parser) if path.suffix.lower() == ".pdf" else _plain_text(path, data)
    if not text.strip():
        raise UserError(f"{path}: no extractable text (a scanned PDF needs OCR first)")
    n_tokens = tokens.count(text)
    cache.mkdir(parents=True, exist_ok=True)
    # A temporary file of its own per writer: parallel sweep jobs parse the same file at once, and a
    # shared `<digest>.tmp` was renamed away by one job under the other. The rename is atomic, so an
    # interrupted parse never leaves a half-written entry and the last writer's (identical) entry wins.
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=cache, prefix=f"{digest}.", suffix=".tmp",
                                     delete=False) as tmp:
        try:
            json.dump({"parser": version, "text": text, "tokens": n_tokens}, tmp)
            tmp.flush()
            os.chmod(tmp.name, 0o666 & ~_umask())  # a shared cache: what any new file gets, not 0600
            os.replace(tmp.name, cached)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    return Document(path.relative_to(folder).as_posix(), text, n_tokens, digest)


def _umask() -> int:
    try:  # Linux says it without changing it (os.umask can only read it by setting it, for every thread)
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def pdf_text(path: Path, parser: str = "pypdf") -> str:
    """The text of a PDF; any failure of the parser becomes one line naming the file and the reason."""
    try:
        return pdfium_text(path) if parser == "pdfium" else pypdf_text(path)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - parsers raise many types (LimitReachedError, struct.error,
        # RecursionError...) for damaged or unusual files; to a user they all mean "this file is unreadable".
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else "no detail"
        raise UserError(f"{path}: unreadable PDF ({parser}: {type(err).__name__}: {reason})") from None


def pypdf_text(path: Path) -> str:
    with pypdf.apply_configuration(**PYPDF_LIMITS):
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UserError(f"{path}: encrypted PDF, cannot read it without its password")
        pages = [page.extract_text() or "" for page in reader.pages]
    return "\n\n".join(p.strip() for p in pages if p.strip())


def pdfium_text(path: Path) -> str:
    import pypdfium2

    try:
        pdf = pypdfium2.PdfDocument(path)
    except pypdfium2.PdfiumError as err:
        if "password" in str(err).lower():
            raise UserError(f"{path}: encrypted PDF, cannot read it without its password") from None
        raise
    try:
        pages = []
        for page in pdf:
            textpage = page.get_textpage()
            pages.append(textpage.get_text_bounded().replace("\r\n", "\n"))
            textpage.close()
            page.close()
    finally:
        pdf.close()
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _plain_text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
