from pathlib import Path

import pypdf
import pytest

from pipelines import documents, tokens
from pipelines.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
APPLE = ROOT / "experiments" / "sec10q_apple" / "docs" / "2023_Q3_AAPL.pdf"


def one_page_pdf(path: Path, password: str | None = None) -> Path:
    writer = pypdf.PdfWriter()
    writer.add_page(pypdf.PdfReader(APPLE).pages[0])
    if password:
        writer.encrypt(password)
    writer.write(path)
    return path


def test_reads_pdf_md_and_txt_with_cl100k_counts(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    one_page_pdf(folder / "a.pdf")
    (folder / "b.md").write_text("# Title\n\nSome markdown.", encoding="utf-8")
    (folder / "c.txt").write_text("Plain text here.", encoding="utf-8")
    (folder / "ignored.csv").write_text("x,y", encoding="utf-8")
    docs, skipped = documents.load_documents(folder, tmp_path / "cache")
    assert [d.doc_id for d in docs] == ["a.pdf", "b.md", "c.txt"]
    assert skipped == []
    pdf = docs[0]
    assert "Apple Inc." in pdf.text and "FORM 10-Q" in pdf.text.upper()
    assert pdf.tokens == len(tokens.encoding().encode(pdf.text)) > 100
    assert docs[2].tokens == 4  # "Plain", " text", " here", "."


def test_parsed_text_is_cached_by_content(tmp_path, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    one_page_pdf(folder / "a.pdf")
    first, _ = documents.load_documents(folder, tmp_path / "cache")
    monkeypatch.setattr(documents, "pdf_text", lambda path, parser="pypdf": pytest.fail("parsed again"))
    second, _ = documents.load_documents(folder, tmp_path / "cache")
    assert second == first
    # Different bytes under the same name are parsed again, not served stale.
    (folder / "a.pdf").unlink()
    (folder / "a.md").write_text("new text", encoding="utf-8")
    assert documents.load_documents(folder, tmp_path / "cache")[0][0].text == "new text"


def test_the_default_experiment_corpus_is_about_80k_tokens(tmp_path):
    docs, _ = documents.load_documents(ROOT / "experiments" / "sec10q_apple" / "docs", tmp_path / "cache")
    assert [d.doc_id for d in docs] == ["2022_Q3_AAPL.pdf", "2023_Q1_AAPL.pdf", "2023_Q2_AAPL.pdf", "2023_Q3_AAPL.pdf"]
    total = sum(d.tokens for d in docs)
    assert 75_000 < total < 85_000  # 80,215 with pypdf 7.1


@pytest.mark.parametrize("make, message", [
    (lambda p: one_page_pdf(p, password="secret"), "encrypted PDF"),
    (lambda p: p.write_bytes(b"%PDF-1.4 this is not really a pdf"), "unreadable PDF"),
])
def test_bad_pdfs_fail_naming_the_file_unless_skipping_is_allowed(tmp_path, make, message):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("fine", encoding="utf-8")
    make(folder / "bad.pdf")
    with pytest.raises(UserError, match=rf"bad\.pdf: {message}.*skip_unreadable"):
        documents.load_documents(folder, tmp_path / "cache")
    docs, skipped = documents.load_documents(folder, tmp_path / "cache", skip_unreadable=True)
    assert [d.doc_id for d in docs] == ["good.txt"]
    assert len(skipped) == 1 and "bad.pdf" in skipped[0]


def test_pdf_without_text_is_named(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    writer = pypdf.PdfWriter()
    writer.add_blank_page(200, 200)
    writer.write(folder / "scan.pdf")
    with pytest.raises(UserError, match=r"scan\.pdf: no extractable text"):
        documents.load_documents(folder, tmp_path / "cache")


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(UserError, match="dataset.documents_dir: folder not found"):
        documents.load_documents(tmp_path / "nope", tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .pdf, .md or .txt files"):
        documents.load_documents(tmp_path / "empty", tmp_path / "cache")


def test_two_processes_parsing_the_same_file_at_once_both_get_it(tmp_path, monkeypatch):
    """Parallel sweep jobs share `.cache/parsed`: a second job that writes the same entry between the
    first one's write and its rename must not take the first one's temporary file from under it (a
    joblib sweep failed in CI with FileNotFoundError on `<digest>.tmp`)."""
    import os

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("The same text, parsed by two jobs.", encoding="utf-8")
    real_replace = os.replace
    other_job = []

    def replace_after_another_job(src, dst):
        if not other_job:  # the other job parses, writes and renames while this one is about to rename
            other_job.append(None)
            other_job[0] = documents.load_documents(folder, tmp_path / "cache")[0]
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_after_another_job)
    docs, _ = documents.load_documents(folder, tmp_path / "cache")
    assert [d.text for d in docs] == [d.text for d in other_job[0]] == ["The same text, parsed by two jobs."]
    assert sorted(p.name for p in (tmp_path / "cache" / "parsed").iterdir()) == [f"{docs[0].sha256}.json"]


def test_a_parsed_text_entry_is_readable_by_whoever_shares_the_cache(tmp_path):
    """A team's cache folder is shared between accounts: an entry gets the permissions any new file
    gets (0666 less the umask), not a temporary file's 0600."""
    import os

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Shared text.", encoding="utf-8")
    umask = os.umask(0o022)
    try:
        docs, _ = documents.load_documents(folder, tmp_path / "cache")
    finally:
        os.umask(umask)
    [entry] = (tmp_path / "cache" / "parsed").iterdir()
    assert entry.stat().st_mode & 0o777 == 0o644
