"""Bad input: one line on stderr naming the file or setting, no traceback, no MLflow run."""

import pypdf
import pytest

from conftest import DOCS, QUESTIONS, dataset_overrides, run_pipeline, write_questions


def assert_one_line_error(result, *fragments, code=2):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def assert_no_run(workdir):
    assert not (workdir / "mlruns").exists()


def make_corpus(root, extra=None, questions=QUESTIONS, header=("Question", "Source Docs", "Answer")):
    docs = root / "corpus" / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    if extra:
        extra(docs)
    write_questions(root / "corpus" / "questions.csv", questions, header)
    return root / "corpus"


def encrypted(docs):
    writer = pypdf.PdfWriter()
    writer.add_blank_page(100, 100)
    writer.encrypt("secret")
    writer.write(docs / "locked.pdf")


def blank(docs):
    writer = pypdf.PdfWriter()
    writer.add_blank_page(100, 100)
    writer.write(docs / "scan.pdf")


def test_missing_documents_folder(tmp_path):
    corpus = make_corpus(tmp_path)
    result = run_pipeline([*dataset_overrides(corpus), f"dataset.documents_dir={tmp_path / 'nope'}", "strategy=rag"], tmp_path)
    assert_one_line_error(result, "dataset.documents_dir: folder not found", str(tmp_path / "nope"))
    assert_no_run(tmp_path)


@pytest.mark.parametrize("extra, message", [(encrypted, "locked.pdf: encrypted PDF"), (blank, "scan.pdf: no extractable text")])
def test_unreadable_pdf(tmp_path, extra, message):
    corpus = make_corpus(tmp_path, extra)
    result = run_pipeline([*dataset_overrides(corpus), "strategy=rag"], tmp_path)
    assert_one_line_error(result, message, "dataset.skip_unreadable=true")
    assert_no_run(tmp_path)


def test_malformed_questions_file(tmp_path):
    corpus = make_corpus(tmp_path, header=("Question", "Source Docs", "Reply"))
    result = run_pipeline([*dataset_overrides(corpus), "strategy=rag"], tmp_path)
    assert_one_line_error(result, "questions.csv: missing column(s) Answer")
    assert_no_run(tmp_path)


def test_gold_document_that_does_not_exist(tmp_path):
    corpus = make_corpus(tmp_path, questions=[("Where?", "*atlas*", "here")])
    result = run_pipeline([*dataset_overrides(corpus), "strategy=rag"], tmp_path)
    assert_one_line_error(result, "questions.csv:2: Source Docs '*atlas*' matches no document")
    assert_no_run(tmp_path)


def test_missing_api_key_fails_before_any_work(tmp_path):
    corpus = make_corpus(tmp_path)
    env = {"DEEPSEEK_API_KEY": ""}
    result = run_pipeline([*dataset_overrides(corpus), "model=deepseek-chat", "strategy=rag"], tmp_path, env=env)
    assert_one_line_error(result, "model deepseek-chat: environment variable DEEPSEEK_API_KEY is not set")
    assert_no_run(tmp_path)
    assert not (tmp_path / ".cache").exists()  # nothing parsed or embedded


def test_bad_setting_values(tmp_path):
    corpus = make_corpus(tmp_path)
    result = run_pipeline([*dataset_overrides(corpus), "strategy=rag", "prompt.overflow=squeeze"], tmp_path)
    assert_one_line_error(result, "prompt.overflow: must be one of truncate, skip")
    result = run_pipeline([*dataset_overrides(corpus), "strategy=rag", "retrieval.top_k=0"], tmp_path)
    assert_one_line_error(result, "strategy (pipelines.strategies.rag.Rag): retrieval.top_k must be at least 1")
    assert_no_run(tmp_path)


@pytest.mark.parametrize("override, group, valid", [
    ("strategy=ragg", "strategy", ["full_context", "hybrid", "rag"]),
    ("model=gpt-9", "model", ["deepseek-chat", "smollm2-135m"]),
])
def test_unknown_names_list_the_valid_ones(tmp_path, override, group, valid):
    result = run_pipeline([override], tmp_path)
    assert result.returncode == 1
    assert f"Could not find '{group}/{override.split('=')[1]}'" in result.stderr
    assert all(name in result.stderr for name in valid)
    assert "Traceback" not in result.stderr
    assert_no_run(tmp_path)


def test_generic_host_without_its_required_values(tmp_path):
    corpus = make_corpus(tmp_path)
    result = run_pipeline([*dataset_overrides(corpus), "model=openai-compatible", "strategy=rag"], tmp_path)
    assert_one_line_error(result, "model: no value given for model.base_url, model.model_id, model.prices.as_of, "
                          "model.prices.input_cache_miss, model.prices.output", "model.base_url=...")
    assert_no_run(tmp_path)


@pytest.mark.parametrize("override, message", [
    ("model.context_window=1e9x", "model.context_window: must be a whole number, got '1e9x'"),
    ("model.stream=maybe", "model.stream: must be true or false, got 'maybe'"),
    ("strategy.token_budget=lots", "strategy.token_budget: must be a whole number, got 'lots'"),
    ("model.tokens_per_cl100k=abc", "model.tokens_per_cl100k: must be a number, got 'abc'"),
])
def test_a_wrong_type_is_one_line_naming_the_key_before_any_work(tmp_path, override, message):
    """The types come from the code each config instantiates (its signature), so every setting of every
    strategy, model, data set and index is checked, not only a hand-kept list."""
    corpus = make_corpus(tmp_path)
    result = run_pipeline([*dataset_overrides(corpus), "strategy=hybrid", override], tmp_path)
    assert_one_line_error(result, message)
    assert_no_run(tmp_path)
