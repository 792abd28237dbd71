"""Our EM/F1 equal the official SQuAD v2.0 evaluation on all 6,078 questions of the dev file.

The reference below is written independently from the rules of the official script
(`evaluate-v2.0.py`: normalize_answer, compute_exact, compute_f1, empty gold for unanswerable),
not copied from ours, and both score the same synthetic predictions: exact golds, golds with case,
punctuation and article noise, random spans of the paragraph, empty answers and plausible answers."""

import json
import random
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from pipelines.metrics import squad_scores

DEV = Path(__file__).resolve().parents[1] / "experiments" / "squad2" / "dev-v2.0.json"


def official_normalize(s):
    def remove_articles(text):
        return re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def official_tokens(s):
    return official_normalize(s).split() if s else []


def official_exact(gold, pred):
    return int(official_normalize(gold) == official_normalize(pred))


def official_f1(gold, pred):
    gold_toks, pred_toks = official_tokens(gold), official_tokens(pred)
    common = Counter(gold_toks) & Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def official_scores(qa, pred):
    gold_answers = [a["text"] for a in qa["answers"] if official_normalize(a["text"])]
    if not gold_answers:
        gold_answers = [""]
    return max(official_exact(a, pred) for a in gold_answers), max(official_f1(a, pred) for a in gold_answers)


def predictions(qa, context, rng):
    golds = [a["text"] for a in qa["answers"]] + [a["text"] for a in qa.get("plausible_answers", [])]
    words = context.split()
    start = rng.randrange(len(words))
    out = ["", " ".join(words[start:start + rng.randint(1, 6)])]
    for gold in golds[:2]:
        out += [gold, f"The {gold.upper()}!", f"{gold}, an answer", f"  a {gold.lower()} ."]
    return out


def test_em_and_f1_equal_the_official_rules_on_the_whole_dev_file():
    data = json.loads(DEV.read_text(encoding="utf-8"))["data"]
    rng = random.Random(2018)
    n_questions, n_predictions, mismatches = 0, 0, []
    total_ours, total_official = [0.0, 0.0], [0.0, 0.0]
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                n_questions += 1
                answers = tuple(a["text"] for a in qa["answers"])
                for pred in predictions(qa, paragraph["context"], rng):
                    n_predictions += 1
                    ours = squad_scores(pred, answers, qa["is_impossible"])
                    official = official_scores(qa, pred)
                    if ours[0] != official[0] or ours[1] != pytest.approx(official[1], abs=1e-12):
                        mismatches.append((qa["id"], pred, ours, official))
                    total_ours = [total_ours[0] + ours[0], total_ours[1] + ours[1]]
                    total_official = [total_official[0] + official[0], total_official[1] + official[1]]
    assert n_questions == 6078
    assert n_predictions > 30_000
    assert mismatches == []
    assert total_ours[0] == total_official[0] and total_ours[1] == pytest.approx(total_official[1])


def test_exported_predictions_score_under_the_official_rules_as_the_run_scored_them(tmp_path):
    """A real run on SQuAD (one article, against a scripted server), exported in the official format,
    then scored by the independent implementation of evaluate-v2.0.py above: equal to the run's EM/F1."""
    import mlflow

    from conftest import fake_model_overrides, run_pipeline, table
    from pipelines import export, tracking
    from fakes import FakeOpenAI

    data = json.loads(DEV.read_text(encoding="utf-8"))["data"]
    qas = {qa["id"]: qa for p in data[0]["paragraphs"] for qa in p["qas"]}
    texts = {qa["question"]: qa for qa in qas.values()}

    def answer(question):  # gold for some, an abstention for some, noise for the rest, one failure
        qa = next((q for text, q in texts.items() if text.strip() in question), None)
        n = sorted(qas).index(qa["id"]) if qa else 0
        if n % 4 == 0 and qa["answers"]:
            return qa["answers"][0]["text"]
        return ["I don't know", "the Normans in France", "1066"][n % 3]

    with FakeOpenAI(answer) as server:
        result = run_pipeline(["dataset=squad2", "dataset.max_articles=1", "strategy=no_context", "run.limit=12",
                               "run.shuffle_seed=3", *fake_model_overrides(server)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    [run] = mlflow.search_runs(experiment_names=["squad2"], filter_string="tags.kind = 'run'", output_format="list")
    out = tmp_path / "predictions.json"
    export.main(["--run", run.info.run_id, "--squad", str(out), "--tracking", str(tmp_path / "mlruns")])
    predictions = json.loads(out.read_text(encoding="utf-8"))
    rows = table(run)
    assert set(predictions) == {r["question_id"] for r in rows}
    assert any(p == "" for p in predictions.values())  # abstentions became the empty prediction
    for row in rows:
        em, f1 = official_scores(qas[row["question_id"]], predictions[row["question_id"]])
        assert (row["exact_match"], row["f1"]) == (em, pytest.approx(f1, abs=1e-6)), row["question_id"]


def test_a_failed_question_exports_as_a_prediction_the_official_script_scores_zero():
    from pipelines.export import squad_predictions

    unanswerable = {"id": "x", "answers": [], "is_impossible": True}
    predictions = squad_predictions([{"question_id": "x", "status": "error", "answer": ""},
                                     {"question_id": "y", "status": "ok", "answer": "I don't know"}])
    assert official_scores(unanswerable, predictions["x"]) == (0, 0)  # "" would have scored (1, 1)
    assert predictions["y"] == ""
