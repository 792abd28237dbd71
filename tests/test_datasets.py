"""Each dataset adapter on the real files (copies in experiments/, see their READMEs), and malformed
inputs failing with the file, the line and the field named."""

import json
from pathlib import Path

import pytest

from pipelines.datasets.folder import Folder
from pipelines.datasets.lara import Lara
from pipelines.datasets.qasper import Qasper
from pipelines.datasets.sec10q import Sec10Q
from pipelines.datasets.squad2 import Squad2
from pipelines.errors import UserError

EXP = Path(__file__).resolve().parents[1] / "experiments"


def test_sec10q_apple(tmp_path):
    ds = Sec10Q("sec", EXP / "sec10q_apple/docs", EXP / "sec10q_apple/questions.csv").load(tmp_path)
    assert len(ds.documents) == 4 and len(ds.questions) == 39
    first = ds.questions[0]
    assert first.text == "How has Apple's total net sales changed over time?"
    assert first.gold_documents == ("2022_Q3_AAPL.pdf", "2023_Q1_AAPL.pdf", "2023_Q2_AAPL.pdf", "2023_Q3_AAPL.pdf")
    assert "$82,959 million" in first.answers[0]
    single = [q for q in ds.questions if len(q.gold_documents) == 1]
    assert len(single) == 24 and all(len(q.gold_documents) == 1 for q in single)


def test_lara_papers_split_into_documents_with_scopes(tmp_path):
    ds = Lara("lara", EXP / "lara_32k/paper", EXP / "lara_32k/query").load(tmp_path)
    assert len(ds.documents) == 53 and len(ds.questions) == 178
    by_id = {d.doc_id: d for d in ds.documents}
    assert by_id["32k_paper_0.md#0"].text.startswith("# Semantically Conditioned LSTM-based")
    location = ds.questions[0]
    assert location.gold_documents == ("32k_paper_0.md#0",) and location.scope == ("32k_paper_0.md#0", "32k_paper_0.md#1")
    hallu = [q for q in ds.questions if q.meta["level"] == "hallu"]
    assert len(hallu) == 53 and all(q.unanswerable for q in hallu)
    comp = [q for q in ds.questions if q.meta["level"] == "comp"]
    assert comp and all(len(q.gold_documents) >= 2 for q in comp)
    assert sum(d.tokens for d in ds.documents) > 400_000


def test_squad2_articles_as_documents_with_gold_paragraphs(tmp_path):
    ds = Squad2("squad2", EXP / "squad2/dev-v2.0.json").load(tmp_path)
    assert len(ds.documents) == 16 and len(ds.questions) == 6078
    assert sum(q.unanswerable for q in ds.questions) == 3168
    q = ds.questions[0]
    assert q.text == "In what country is Normandy located?" and q.answers[0] == "France"
    assert q.gold_documents == ("Normans.txt",) and q.scope == ("Normans.txt",)
    assert q.evidence[0] in ds.documents[0].text and "France" in q.evidence[0]
    assert Squad2("s", EXP / "squad2/dev-v2.0.json", scope="corpus", max_articles=2).load(tmp_path).questions[0].scope == ()


def test_qasper_stream_of_objects(tmp_path):
    ds = Qasper("qasper", EXP / "qasper/qasper-original-sample.json").load(tmp_path)
    assert len(ds.documents) == 10 and len(ds.questions) == 51
    q = ds.questions[0]
    assert q.text == "What is the seed lexicon?" and q.gold_documents == ("1909.00694.md",)
    assert q.answers[0].startswith("a vocabulary of positive and negative predicates")
    assert q.evidence and q.evidence[0].startswith("The seed lexicon consists of positive and negative predicates")
    assert sum(q.unanswerable for q in ds.questions) == 6


def write_folder(tmp_path, name, text):
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "a.md").write_text("Alpha facts.", encoding="utf-8")
    (docs / "b.txt").write_text("Beta facts.", encoding="utf-8")
    (tmp_path / name).write_text(text, encoding="utf-8")
    return Folder("mine", docs, tmp_path / name)


@pytest.mark.parametrize("name, text", [
    ("q.jsonl", '{"question": "What is alpha?", "answers": ["alpha", "a"], "gold_documents": ["a.md"]}\n'
                '{"question": "What is gamma?", "unanswerable": true, "id": "g1"}\n'),
    ("q.csv", 'question,answers,gold_documents,unanswerable,id\n'
              'What is alpha?,"[""alpha"", ""a""]",a.md,,\nWhat is gamma?,,,true,g1\n'),
    ("q.yaml", '- {question: "What is alpha?", answers: [alpha, a], gold_documents: [a.md]}\n'
               '- {question: "What is gamma?", unanswerable: true, id: g1}\n'),
])
def test_folder_reads_jsonl_csv_and_yaml_alike(tmp_path, name, text):
    ds = write_folder(tmp_path, name, text).load(tmp_path / "cache")
    first, second = ds.questions
    assert (first.text, first.answers, first.gold_documents, first.unanswerable) == ("What is alpha?", ("alpha", "a"), ("a.md",), False)
    assert (second.qid, second.unanswerable, second.answers) == ("g1", True, ())


@pytest.mark.parametrize("name, text, message", [
    ("q.jsonl", '{"question": "ok"}\n{"question": "bad" \n', r"q\.jsonl:2: not valid JSON"),
    ("q.jsonl", '{"question": "ok"}\n{"answer": "no question"}\n', r"q\.jsonl:2: question: missing or empty"),
    ("q.jsonl", '{"question": "ok", "gold_documents": ["zeta.pdf"]}\n', r"q\.jsonl:1: gold_documents: 'zeta\.pdf' is not in"),
    ("q.jsonl", '{"question": "ok", "answres": ["typo"]}\n', r"q\.jsonl:1: answres: unknown field"),
    ("q.csv", 'query,answer\nWhat?,x\n', r"q\.csv: missing column question"),
    ("q.csv", 'question,unanswerable\nWhat?,maybe\n', r"q\.csv:2: unanswerable: expected true or false"),
    ("q.yaml", '- question: [unclosed\n', r"q\.yaml:\d+: not valid YAML"),
])
def test_malformed_question_files_name_file_line_and_field(tmp_path, name, text, message):
    with pytest.raises(UserError, match=message):
        write_folder(tmp_path, name, text).load(tmp_path / "cache")


def test_bad_rows_are_skipped_and_counted_only_when_asked(tmp_path):
    folder = write_folder(tmp_path, "q.jsonl", '{"question": "ok"}\n{"answer": "x"}\n{"question": "fine", "gold_documents": ["nope.md"]}\n')
    with pytest.raises(UserError, match="skip_bad_rows=true"):
        folder.load(tmp_path / "cache")
    folder.skip_bad_rows = True
    ds = folder.load(tmp_path / "cache")
    assert [q.text for q in ds.questions] == ["ok"] and len(ds.skipped_rows) == 2


def test_lara_unknown_paper_is_named(tmp_path):
    queries = tmp_path / "query"
    queries.mkdir()
    row = {"type": "paper", "level": "location", "file": "32k_paper_0.md", "context_order": 7, "question": "?", "answer": "!"}
    (queries / "32k_paper_location.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(UserError, match=r"32k_paper_location\.jsonl:1: context_order: '32k_paper_0\.md#7': no such paper"):
        Lara("x", EXP / "lara_32k/paper", queries, levels=("location",)).load(tmp_path)
