"""The LLM judge: verdict parsing, and its tokens and cost logged apart from the answer's, in a real
run against two scripted servers (the answering model and the judge, priced differently)."""

import mlflow
import pytest

from conftest import QUESTIONS, dataset_overrides, fake_model_overrides, run_pipeline, table, write_questions
from pipelines import metrics, tracking
from fakes import FakeOpenAI
from pipelines.judge import parse_support, parse_verdict


@pytest.mark.parametrize("reply, label", [
    ("Correct.", "correct"), ("INCORRECT - the year is wrong", "incorrect"), ("Partially correct", "partial"),
    ("partial", "partial"), ("Verdict: the answer is correct", "correct"), ("", None), ("I cannot grade this", None),
])
def test_verdicts_are_parsed(reply, label):
    assert parse_verdict(reply) == label


def test_support_lines_are_parsed():
    assert parse_support("1: yes\n2: no\n3. YES", 3) == pytest.approx(2 / 3)
    assert parse_support("1: yes 2: no 3) yes", 3) == pytest.approx(2 / 3)  # one line, as a stream may give it
    assert parse_support("1: yes", 2) is None  # a sentence without a verdict: no score, not a guess


def compose_prompt():
    from hydra import compose, initialize_config_dir

    from conftest import ROOT

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return compose(config_name="config").prompt


def answers(question):
    return "212 kilometres long. It has purple dolphins." if "Kelvane" in question else "I do not know"


def verdicts(prompt):
    if "Answer sentences" in prompt:
        return "1: yes\n2: no"
    return "Correct" if "212 kilometres" in prompt.split("Answer to grade:")[-1] else "Incorrect."


def test_judge_scores_and_costs_are_kept_apart(corpus, tmp_path):
    # A fourth question fails at the answering model: the judge grades it incorrect without a call.
    write_questions(corpus / "questions.csv", QUESTIONS + [("Please FAIL on this one", "*stars*", "x")])
    with FakeOpenAI(answers) as model_server, FakeOpenAI(verdicts) as judge_server:
        result = run_pipeline([
            *dataset_overrides(corpus), *fake_model_overrides(model_server, input_cache_miss=0.28, output=0.42),
            "strategy=rag", "run.limit=null", "index.chunk_size=64", "index.chunk_overlap=8",
            "judge=smollm2-135m", "judge.name=fake-judge", f"judge.base_url={judge_server.base_url}",
            "judge.local_server=null", "judge.max_retries=0", "judge.prices.input_cache_miss=1.0",
            "judge.prices.output=2.0", "judge.stream=true"], cwd=tmp_path)
        judge_calls = len(judge_server.requests)
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'run'", output_format="list")
    rows = table(run)
    river, orchard = rows[1], rows[0]
    assert river["judge_label"] == "correct" and river["judge"] == 1.0
    assert river["faithfulness"] == 0.5  # the judge found one of two sentences supported
    assert orchard["judge_label"] == "incorrect" and orchard["judge"] == 0.0
    failed = rows[3]
    assert failed["status"] == "error" and failed["judge_label"] == "incorrect"
    assert failed["judge"] == failed["exact_match"] == failed["f1"] == failed["faithfulness"] == 0.0
    assert judge_calls == 3 + 1  # three verdicts, one faithfulness check (abstentions and failures are not checked)
    m = run.data.metrics
    assert m["judge"] == pytest.approx(1 / 4) and m["n/judge"] == 4  # every row graded
    assert m["n/faithfulness"] == 2 and m["faithfulness"] == pytest.approx((0.5 + 0.0) / 2)  # abstentions make no claim
    assert "faithfulness_lexical" in m
    expected = metrics.scoring_version(compose_prompt().system, compose_prompt().template)
    assert run.data.tags["scoring_version"] == run.data.params["scoring_version"] == expected
    judge_cost = sum((r["judge_prompt_tokens"] * 1.0 + r["judge_completion_tokens"] * 2.0) / 1e6 for r in rows)
    answer_cost = sum((r["prompt_tokens"] * 0.28 + r["completion_tokens"] * 0.42) / 1e6 for r in rows)
    assert m["judge_cost_usd_total"] == pytest.approx(judge_cost) and judge_cost > 0
    assert m["cost_usd_total"] == pytest.approx(answer_cost)  # the judge never lands in the answer's cost
    assert m["judge_prompt_tokens_total"] == sum(r["judge_prompt_tokens"] for r in rows) > m["prompt_tokens_total"] / 10
    assert m["ci/judge_low"] <= m["judge"] <= m["ci/judge_high"]


@pytest.mark.parametrize("dataset", ["squad2", "lara_paper"])
def test_other_datasets_give_the_same_mlflow_layout(dataset, tmp_path):
    with FakeOpenAI(lambda q: "I do not know") as server:
        result = run_pipeline([f"dataset={dataset}", "strategy=full_context", "run.limit=2",
                               *fake_model_overrides(server), "model.context_window=200000"],
                              cwd=tmp_path, env={"PWD": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=[dataset], filter_string="tags.kind = 'run'", output_format="list")
    m = run.data.metrics
    assert m["questions"] == 2 and m["n_ok"] == 2
    for key in ("exact_match", "f1", "ci/exact_match_low", "cost_usd_total", "latency_p50_s", "prompt_tokens_total"):
        assert key in m
    assert run.data.tags["dataset"] == dataset and run.data.tags["strategy"] == "full_context"


# --- every row graded; the judge's own window (issue 9) -----------------------------------------
def judge_model(server, context_window=8192, max_output_tokens=64, tokens_per_cl100k=1.0):
    from pipelines.models.chat import ChatModel

    return ChatModel("fake-judge", "openai", "fake", context_window, max_output_tokens,
                     {"input_cache_miss": 1.0, "input_cache_hit": 0.1, "output": 2.0}, base_url=server.base_url, api_key_env=None,
                     tokens_per_cl100k=tokens_per_cl100k, max_retries=0, stream=False)


def item(record, question, context=("The Kelvane river is 212 kilometres long.",)):
    from pipelines.runner import Prepared

    return Prepared(question, record, None, "", context)


def graded(judge_reply, records_and_items, **model):
    from pipelines.budget import Budget
    from pipelines.judge import Judge

    with FakeOpenAI(judge_reply) as server:
        out = Judge(judge_model(server, **model)).grade_all(*zip(*records_and_items), None, Budget(None))
        return out, server.requests


def test_the_judge_grades_a_non_answer_incorrect_without_a_call():
    from pipelines import metrics
    from pipelines.datasets import Question
    from pipelines.record import QuestionRecord

    impossible = Question("q1", "Who?", unanswerable=True)
    rows = []
    for status in ("error", "skipped", "ok"):
        r = QuestionRecord("q1", "rag", "m", "Who?", "", status=status, answer="")
        r = r.__class__(**{**r.__dict__, "scores": metrics.score(r, impossible, metrics.get(["judge", "faithfulness"]), ("x",))})
        rows.append((r, item(r, impossible)))
    out, requests = graded(lambda q: "correct", rows)
    assert requests == []
    for r in out:
        assert r.judge_label == "incorrect" and r.scores["judge"] == 0.0 and r.scores["faithfulness"] == 0.0


def test_an_unparsed_verdict_is_missing_but_counted_on_the_row(caplog):
    from pipelines.datasets import Question
    from pipelines.record import QuestionRecord

    question = Question("q1", "How long is the Kelvane river?", answers=("212 kilometres",))
    r = QuestionRecord("q1", "rag", "m", question.text, "212 kilometres", answer="212 kilometres.")
    out, requests = graded(lambda q: "I cannot say", [(r, item(r, question))])
    [row] = out
    assert "judge" not in row.scores and row.judge_label == "unparsed"
    assert "unparsed" in row.judge_error
    assert "1 of 1 rows have no judge verdict" in caplog.text


def test_the_judges_context_is_cut_to_the_judges_own_window():
    from pipelines import tokens
    from pipelines.datasets import Question
    from pipelines.record import QuestionRecord

    question = Question("q1", "How long is the Kelvane river?", answers=("212 kilometres",))
    r = QuestionRecord("q1", "rag", "m", question.text, "212 kilometres", answer="The river is 212 kilometres long.")
    long_context = ("The Kelvane river is 212 kilometres long. " + "河流 🌊 carry sediment to deltas. " * 3000,)
    assert tokens.count(long_context[0]) > 30_000
    out, requests = graded(lambda q: "1: yes" if "Answer sentences" in q else "correct",
                           [(r, item(r, question, long_context))], context_window=2048, max_output_tokens=64,
                           tokens_per_cl100k=1.25)
    [row] = out
    faithful = requests[-1]["messages"][0]["content"]
    assert "Answer sentences" in faithful and "tokens omitted" in faithful and "\ufffd" not in faithful
    assert tokens.count(faithful) * 1.25 <= 2048 - 64
    assert row.judge_dropped_tokens > 30_000 - 2048
    assert row.scores["faithfulness"] == 1.0
