"""Bring your own data: each published shape (a Docugami CSV, a LaRA tree per split and type, an
L-Eval / LongBench inline file, a PDF that trips pypdf's default limits) loads and runs by overrides
alone against the scripted server; scope, gold-document recall and the one-line errors are checked.
The README's "Bring your own data" commands are run as written."""

import json
import re
import shlex
from pathlib import Path

import mlflow
import pypdf
import pytest

from conftest import DOCS, QUESTIONS, fake_model_overrides, run_pipeline, scripted, table, write_questions
from pipelines import documents, tracking
from pipelines.datasets.folder import Folder
from pipelines.datasets.inline import Inline
from pipelines.datasets.lara import Lara
from pipelines.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["index.chunk_size=64", "index.chunk_overlap=8", "run.limit=null", "retrieval.top_k=2", "run.progress=false"]


def big_array_pdf(path: Path, sentence: str, elements: int = 120_000) -> Path:
    """A one-page PDF whose text is drawn by one TJ array of `elements` kerning numbers: more than
    pypdf's default 100,000-element limit, as in some real 10-Q filings."""
    text = sentence.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    content = f"BT /F1 12 Tf 72 720 Td [({text}){' 0' * elements}] TJ ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def runs(workdir: Path, experiment: str) -> list:
    mlflow.set_tracking_uri(tracking.tracking_uri(str(workdir / "mlruns")))
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def rows_by_strategy(workdir: Path, experiment: str) -> dict[str, list[dict]]:
    return {r.data.tags["strategy"]: table(r) for r in runs(workdir, experiment) if r.data.tags.get("kind") == "run"}


# --- PDFs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("parser", ["pypdf", "pdfium"])
def test_pdf_over_pypdf_default_limits_parses(tmp_path, parser):
    folder = tmp_path / "docs"
    folder.mkdir()
    big_array_pdf(folder / "filing.pdf", "The Zorbex orchard harvested 4,812 apples in 2021.")
    with pytest.raises(pypdf.errors.LimitReachedError):  # the fixture does trip pypdf's defaults
        pypdf.PdfReader(folder / "filing.pdf").pages[0].extract_text()
    [doc], skipped = documents.load_documents(folder, tmp_path / "cache", pdf_parser=parser)
    assert doc.text == "The Zorbex orchard harvested 4,812 apples in 2021." and skipped == []


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"), MemoryError(),
                                   pypdf.errors.LimitReachedError("Reached maximum array element count."),
                                   AttributeError("'NullObject' object has no attribute 'get'")])
def test_any_parser_failure_is_one_line_naming_the_file(tmp_path, monkeypatch, error):
    folder = tmp_path / "docs"
    folder.mkdir()
    big_array_pdf(folder / "odd.pdf", "text")
    (folder / "fine.txt").write_text("fine", encoding="utf-8")

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(pypdf, "PdfReader", broken)
    with pytest.raises(UserError) as caught:
        documents.load_documents(folder, tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message and re.search(rf"odd\.pdf: unreadable PDF \(pypdf: {type(error).__name__}", message)
    assert message.endswith("(set dataset.skip_unreadable=true to skip it)")
    docs, skipped = documents.load_documents(folder, tmp_path / "cache", skip_unreadable=True)
    assert [d.doc_id for d in docs] == ["fine.txt"] and len(skipped) == 1 and "odd.pdf" in skipped[0]


def test_unknown_pdf_parser_is_named(tmp_path):
    with pytest.raises(UserError, match="dataset.pdf_parser: must be one of pypdf, pdfium, got 'mupdf'"):
        documents.load_documents(tmp_path, tmp_path / "cache", pdf_parser="mupdf")


def test_run_skips_an_unreadable_pdf_and_records_it(tmp_path):
    from fakes import FakeOpenAI

    docs = tmp_path / "acme" / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    write_questions(tmp_path / "acme" / "questions.csv", QUESTIONS)
    args = ["dataset=folder", f"dataset.documents_dir={docs}", f"dataset.questions_file={tmp_path / 'acme' / 'questions.csv'}",
            "strategy=full_context", *SMALL]
    with FakeOpenAI(scripted) as server:
        failed = run_pipeline([*args, *fake_model_overrides(server)], cwd=tmp_path)
        assert failed.returncode == 2
        [line] = failed.stderr.strip().splitlines()[-1:]
        assert line.startswith("error: ") and "broken.pdf: unreadable PDF" in line and "skip_unreadable" in line
        done = run_pipeline([*args, "dataset.skip_unreadable=true", *fake_model_overrides(server)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    [run] = [r for r in runs(tmp_path, "acme") if r.data.tags.get("kind") == "run"]  # the experiment is named after the user's folder
    assert run.data.params["dataset.skipped_documents"] == "1" and run.data.params["dataset.documents"] == "3"
    assert "broken.pdf: unreadable PDF" in run.data.tags["skipped_documents"]


# --- questions files ------------------------------------------------------------------------------------

def docugami_folder(tmp_path: Path) -> Path:
    """Docugami's KG-RAG layout: files named with spaces upstream, `Source Docs` globs over them, extra columns."""
    docs = tmp_path / "tiny_filings" / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / f"2023_{name}").write_text(text, encoding="utf-8")
    rows = [(q, f"*2023 {glob.strip('*')}*", "Single-Doc RAG", "Text", a) for q, glob, a in QUESTIONS]
    write_questions(tmp_path / "tiny_filings" / "qna_data.csv", rows,
                    header=("Question", "Source Docs", "Question Type", "Source Chunk Type", "Answer"))
    return tmp_path / "tiny_filings"


def test_docugami_csv_loads_as_published(tmp_path):
    base = docugami_folder(tmp_path)
    ds = Folder(None, str(base / "docs"), str(base / "qna_data.csv")).load(tmp_path / "cache")
    assert ds.name == "tiny_filings"  # the documents folder is docs/: its parent names the data set
    assert [q.gold_documents for q in ds.questions] == [("2023_orchard.md",), ("2023_river.txt",), ("2023_stars.md",)]
    assert ds.questions[0].answers == ("4,812 apples",) and ds.questions[0].meta["Question Type"] == "Single-Doc RAG"
    assert all(q.scope == () for q in ds.questions)  # gold documents do not narrow the search unless asked
    scoped = Folder(None, str(base / "docs"), str(base / "qna_data.csv"), scope="gold").load(tmp_path / "cache")
    assert [q.scope for q in scoped.questions] == [q.gold_documents for q in ds.questions]


def test_columns_are_mapped_by_config_and_misspelt_fields_named(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("Alpha.", encoding="utf-8")
    (tmp_path / "q.csv").write_text("Query,Gold,Expected\nWhat?,a.md,Alpha\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"q\.csv: missing column question .*dataset\.columns\.question=NAME"):
        Folder("x", str(docs), str(tmp_path / "q.csv")).load(tmp_path / "cache")
    mapped = Folder("x", str(docs), str(tmp_path / "q.csv"),
                    columns={"question": "Query", "answer": "Expected", "gold_documents": "Gold"}).load(tmp_path / "cache")
    [q] = mapped.questions
    assert (q.text, q.answers, q.gold_documents) == ("What?", ("Alpha",), ("a.md",))
    (tmp_path / "q.jsonl").write_text('{"question": "What?", "gold_document": ["a.md"]}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"q\.jsonl:1: gold_document: unknown field \(did you mean gold_documents\?"):
        Folder("x", str(docs), str(tmp_path / "q.jsonl")).load(tmp_path / "cache")
    with pytest.raises(ValueError, match="dataset.columns.questoin: not a question field"):
        Folder("x", str(docs), str(tmp_path / "q.csv"), columns={"questoin": "Query"})


def test_docugami_csv_runs_every_strategy_with_gold_recall(tmp_path):
    from fakes import FakeOpenAI

    base = docugami_folder(tmp_path)
    with FakeOpenAI(scripted) as server:
        result = run_pipeline(["-m", "dataset=folder", f"dataset.documents_dir={base / 'docs'}",
                               f"dataset.questions_file={base / 'qna_data.csv'}", "strategy=rag,hybrid,full_context", *SMALL, *fake_model_overrides(server)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = rows_by_strategy(tmp_path, "tiny_filings")
    assert sorted(rows) == ["full_context", "hybrid", "rag"]
    for strategy, table_rows in rows.items():
        assert [r["gold_documents"] for r in table_rows] == ["2023_orchard.md", "2023_river.txt", "2023_stars.md"]
        # each finds its gold document (full context takes them all: recall is not defined for it)
        assert all(r["gold_documents"] in r["doc_ids"].split("; ") for r in table_rows), strategy
        if strategy != "full_context":
            assert all(r["doc_recall"] == 1.0 for r in table_rows), strategy
        assert all(r["status"] == "ok" for r in table_rows)


# --- per-question scope ------------------------------------------------------------------------------

def test_scope_limits_every_strategy_and_is_recorded(tmp_path):
    from fakes import FakeOpenAI

    docs = tmp_path / "zoo" / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    # The river question asked over the two documents that do NOT hold the answer: nothing may leak in.
    (tmp_path / "zoo" / "q.jsonl").write_text(
        json.dumps({"id": "river", "question": "How long is the Kelvane river?", "answer": "212 kilometres",
                    "gold_documents": ["river.txt"], "scope": ["orchard.md", "*stars*"]}) + "\n"
        + json.dumps({"id": "open", "question": "How far away is the star Velmora?", "gold_documents": ["stars.md"]}) + "\n",
        encoding="utf-8")
    with FakeOpenAI(scripted) as server:
        result = run_pipeline(["-m", "dataset=folder", f"dataset.documents_dir={docs}", f"dataset.questions_file={tmp_path / 'zoo' / 'q.jsonl'}",
                               "strategy=rag,hybrid,full_context", *SMALL, *fake_model_overrides(server)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for strategy, table_rows in rows_by_strategy(tmp_path, "zoo").items():
        river, open_row = table_rows
        assert river["scope"] == "orchard.md; stars.md" and open_row["scope"] == ""
        assert set(river["doc_ids"].split("; ")) <= {"orchard.md", "stars.md"}, strategy
        if strategy != "full_context":
            assert river["doc_recall"] == 0.0  # the gold document was outside the scope
        else:
            assert river["doc_ids"] == "orchard.md; stars.md" and open_row["doc_ids"] == "orchard.md; river.txt; stars.md"


# --- LaRA, every split and type ---------------------------------------------------------------------

def lara_tree(root: Path) -> Path:
    """LaRA's upstream layout in miniature: <root>/<split>/<kind>/ and <root>/query/<split>_<kind>_<level>.jsonl."""
    papers = "<paper 0>\nThe Zorbex orchard harvested 4,812 apples.\n<paper 1>\nThe star Velmora is 310 light years away.\n"
    files = {("32k", "paper"): ("32k_paper_0.md", papers),
             ("32k", "financial"): ("2024-Acme Corp.-j.txt", "Acme's total stockholders' equity was $2,576,340."),
             ("128k", "novel"): ("novel_0.txt", "Chapter 1. The Kelvane river is 212 kilometres long.")}
    for (split, kind), (name, text) in files.items():
        (root / split / kind).mkdir(parents=True, exist_ok=True)
        (root / split / kind / name).write_text(text, encoding="utf-8")
        (root / "query").mkdir(exist_ok=True)
        for level in ("location", "reasoning", "comp", "hallu"):
            row = {"type": kind, "level": level, "length": split, "file": name, "context_order": 1,
                   "question": f"{level} question about {name}?", "answer": "x"}
            if level == "comp":
                row["comp_parts"] = [0, 1]
            (root / "query" / f"{split}_{kind}_{level}.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("split, kind, gold, scope", [
    ("32k", "paper", ("32k_paper_0.md#1",), ("32k_paper_0.md#0", "32k_paper_0.md#1")),
    ("32k", "financial", ("2024-Acme Corp.-j.txt",), ("2024-Acme Corp.-j.txt",)),
    ("128k", "novel", ("novel_0.txt",), ("novel_0.txt",)),
])
def test_lara_every_split_and_type(tmp_path, split, kind, gold, scope):
    ds = Lara("lara", root=str(lara_tree(tmp_path / "LaRA")), split=split, kind=kind).load(tmp_path / "cache")
    location = ds.questions[0]
    assert len(ds.questions) == 4 and location.gold_documents == gold and location.scope == scope
    assert [q.unanswerable for q in ds.questions] == [False, False, False, True]


def test_lara_with_no_usable_question_is_an_error(tmp_path):
    root = lara_tree(tmp_path / "LaRA")
    for path in (root / "query").glob("32k_financial_*.jsonl"):
        path.write_text('{"file": "missing.txt", "question": "q?", "answer": "a", "level": "location"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="no usable LaRA questions"):
        Lara("lara", root=str(root), split="32k", kind="financial", skip_bad_rows=True).load(tmp_path / "cache")


# --- inline context -----------------------------------------------------------------------------------

def leval_file(path: Path) -> Path:
    """L-Eval style: the document in `input`, parallel `instructions` / `outputs`; the orchard
    document appears twice (two records), and must be stored once."""
    records = [
        {"input": DOCS["orchard.md"], "instructions": ["How many apples did the Zorbex orchard harvest in 2021?",
                                                       "What do the bees make?"], "outputs": ["4,812 apples", "honey"]},
        {"input": DOCS["river.txt"], "instructions": ["How long is the Kelvane river?"], "outputs": ["212 kilometres"]},
        {"input": DOCS["orchard.md"], "instructions": ["Where does the Zorbex orchard lie?"], "outputs": ["on a hill"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_inline_leval_and_longbench_records_load_with_documents_once(tmp_path):
    ds = Inline(str(leval_file(tmp_path / "leval_qa.jsonl"))).load(tmp_path / "cache")
    assert ds.name == "leval_qa" and len(ds.documents) == 2 and len(ds.questions) == 4
    orchard, river = (d.doc_id for d in ds.documents)
    assert [q.scope for q in ds.questions] == [(orchard,), (orchard,), (river,), (orchard,)]
    assert [q.qid for q in ds.questions] == ["r0001#1", "r0001#2", "r0002#1", "r0003#1"]
    assert ds.questions[1].answers == ("honey",) and ds.questions[1].gold_documents == (orchard,)
    # LongBench: `context` is the document and `input` the question.
    longbench = tmp_path / "longbench.jsonl"
    longbench.write_text(json.dumps({"_id": "lb1", "input": "How long is the Kelvane river?", "context": DOCS["river.txt"],
                                     "answers": ["212 kilometres", "212 km"]}) + "\n", encoding="utf-8")
    [q] = Inline(str(longbench)).load(tmp_path / "cache").questions
    assert (q.qid, q.text, q.answers) == ("lb1", "How long is the Kelvane river?", ("212 kilometres", "212 km"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"input": "doc", "instructions": ["a?", "b?"], "outputs": ["1"]}) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:1 question 1: outputs: 1 answers for 2 questions"):
        Inline(str(bad)).load(tmp_path / "cache")


def test_inline_file_runs_each_question_over_its_own_document(tmp_path):
    from fakes import FakeOpenAI

    path = leval_file(tmp_path / "leval_qa.jsonl")
    with FakeOpenAI(scripted) as server:
        result = run_pipeline(["-m", "dataset=inline", f"dataset.path={path}", "strategy=rag,full_context", *SMALL,
                               *fake_model_overrides(server)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for strategy, table_rows in rows_by_strategy(tmp_path, "leval_qa").items():
        assert all(r["doc_ids"] == r["scope"] == r["gold_documents"] for r in table_rows), strategy
        assert table_rows[0]["exact_match"] == 1.0  # the scripted server answers the orchard question


# --- documents larger than a strategy's budget --------------------------------------------------------

def test_hybrid_says_what_it_cut_from_a_document_over_its_budget(tmp_path):
    from fakes import FakeOpenAI

    docs = tmp_path / "big" / "docs"
    docs.mkdir(parents=True)
    (docs / "report.md").write_text(DOCS["river.txt"] * 8, encoding="utf-8")  # ~3.7k tokens
    (docs / "other.md").write_text(DOCS["stars.md"], encoding="utf-8")
    (tmp_path / "big" / "q.yaml").write_text("- question: How long is the Kelvane river?\n  gold_documents: [report.md]\n",
                                             encoding="utf-8")
    with FakeOpenAI(scripted) as server:
        result = run_pipeline(["dataset=folder", f"dataset.documents_dir={docs}", f"dataset.questions_file={tmp_path / 'big' / 'q.yaml'}",
                               "strategy=hybrid", "strategy.token_budget=500", *SMALL, *fake_model_overrides(server)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = rows_by_strategy(tmp_path, "big")["hybrid"]
    assert row["doc_ids"] == "report.md" and row["status"] == "ok" and row["dropped_tokens"] == 0
    assert row["context_tokens"] <= 500 and row["context_ids"].startswith("report.md#")
    assert re.match(r"report\.md: best \d+ of \d+ chunks, [\d,]+ of [\d,]+ tokens \(the document alone is over the 500-token budget\)",
                    row["cut"]), row["cut"]


# --- the README's commands, as written ----------------------------------------------------------------

def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Bring your own data", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in re.findall(r"```bash\n(.*?)```", section, re.S) for line in line.splitlines()
            if line.strip().startswith(".venv/bin/python -m pipelines.run")]


def test_readme_bring_your_own_data_commands_run(tmp_path):
    from fakes import FakeOpenAI

    commands = readme_commands()
    assert len(commands) == 4
    # The files the commands name, in each published shape.
    base = docugami_folder(tmp_path)
    (base / "docs").rename(tmp_path / "my_docs")
    (base / "qna_data.csv").rename(tmp_path / "qna_data.csv")
    (tmp_path / "questions.jsonl").write_text('{"question": "How long is the Kelvane river?", "answer": "212 kilometres",'
                                              ' "scope": ["2023_river.txt"]}\n', encoding="utf-8")
    lara_tree(tmp_path / "LaRA" / "dataset")
    leval_file(tmp_path / "financial_qa.jsonl")
    big_array_pdf(tmp_path / "my_docs" / "big_filing.pdf", "The Zorbex orchard harvested 4,812 apples in 2021.")
    with FakeOpenAI(scripted) as server:
        for command in commands:
            args = shlex.split(command)[3:]  # after `.venv/bin/python -m pipelines.run`
            result = run_pipeline([*args, "strategy=full_context", "run.progress=false", *fake_model_overrides(server)], cwd=tmp_path)
            assert result.returncode == 0, (command, result.stderr[-3000:])
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    names = {e.name for e in mlflow.search_experiments()}
    assert {"my_docs", "lara_32k_financial", "financial_qa"} <= names


def test_full_context_row_names_the_documents_the_window_guard_cut():
    from pipelines import prompts
    from pipelines.runner import truncation_note
    from pipelines.strategies import Block, Context

    blocks = tuple(Block(f"d{i}.txt", "word " * 400) for i in range(5))  # five documents of ~400 tokens
    labels = tuple(b.label for b in blocks)
    context = Context(blocks, labels, labels, retrieved=False, context_doc_ids=labels)
    prompt = prompts.build(context, "q?", "", "{context}\n{question}", budget=1000, policy="truncate")
    assert prompt.status == "truncated"
    note = truncation_note(context, prompt.dropped_tokens)
    # ~2,000 tokens cut to 1,000: the head keeps d0 and part of d1, the tail part of d3 and d4; d2 goes whole.
    assert note == f"window guard dropped {prompt.dropped_tokens:,} tokens from the middle (dropped whole: d2.txt; cut: d1.txt, d3.txt)"


def test_hybrid_takes_parts_of_the_best_document_rather_than_a_smaller_worse_one(corpus, tmp_path):
    from pipelines import embeddings
    from pipelines.datasets import Question
    from pipelines.documents import load_documents
    from pipelines.index import VectorIndex
    from pipelines.strategies import Corpus
    from pipelines.strategies.hybrid import Hybrid

    (corpus / "docs" / "river.txt").write_text(DOCS["river.txt"] * 6, encoding="utf-8")  # now the largest
    docs = load_documents(corpus / "docs", tmp_path / "cache")[0]
    corpus_obj = Corpus(docs, lambda: VectorIndex(docs, embeddings.load(), tmp_path / "cache", 64, 8, "all-MiniLM-L6-v2"))
    river = corpus_obj.by_id["river.txt"].tokens
    others = max(d.tokens for d in docs if d.doc_id != "river.txt")
    budget = (others + river) // 2  # the others fit whole, the river document does not
    assert others < budget < river
    ranked = Hybrid(candidates=500).rank(Question("q", "How long is the Kelvane river?"), corpus_obj)
    assert [d for d, _ in ranked][0] == "river.txt" and len(ranked) == 3  # every document ranked
    ctx = Hybrid(candidates=500).build(Question("q", "How long is the Kelvane river?"), corpus_obj, budget)
    assert ctx.doc_ids == ("river.txt",) and ctx.cut.startswith("river.txt: best ")
    assert "212 kilometres" in " ".join(b.text for b in ctx.blocks)
