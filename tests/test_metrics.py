import pytest

from pipelines import metrics
from pipelines.datasets import Question
from pipelines.record import QuestionRecord


def rec(answer, doc_ids=(), retrieved=True):
    return QuestionRecord("q1", "rag", "m", "question?", "ref", answer=answer, doc_ids=doc_ids, retrieved=retrieved)


def q(*answers, gold=()):
    return Question("q1", "question?", answers=answers, gold_documents=gold)


def test_normalize_follows_squad_rules():
    assert metrics.normalize("The  Cat, sat. on an old-mat!") == "cat sat on oldmat"


def test_exact_match_ignores_case_articles_and_punctuation_and_takes_best_reference():
    assert metrics.exact_match(rec("the Eiffel Tower."), q("Eiffel tower")) == 1.0
    assert metrics.exact_match(rec("Eiffel"), q("Eiffel tower")) == 0.0
    assert metrics.exact_match(rec("Paris"), q("London", "paris")) == 1.0


def test_f1_hand_checked():
    # prediction tokens {cat, sat}; reference {cat, sat, on, mat}: P = 1, R = 0.5, F1 = 2/3
    assert metrics.f1(rec("The cat sat"), q("a cat sat on the mat")) == pytest.approx(2 / 3)
    # repeated tokens count by multiplicity: pred [a1 x3], ref [a1 x1]: common 1, P = 1/3, R = 1 -> 0.5
    assert metrics.f1(rec("a1 a1 a1"), q("a1")) == pytest.approx(0.5)
    assert metrics.f1(rec("dog"), q("cat")) == 0.0
    assert metrics.f1(rec(""), q("cat")) == 0.0


def test_rouge_l_hand_checked():
    # LCS of "police killed the gunman" / "police kill the gunman" with stemming: all 4 tokens -> 1.0
    assert metrics.rouge_l(rec("police kill the gunman"), q("police killed the gunman")) == pytest.approx(1.0)
    # "the cat was found under the bed" vs "the cat was under the bed": LCS 6, P = 6/7, R = 1
    assert metrics.rouge_l(rec("the cat was found under the bed"), q("the cat was under the bed")) == pytest.approx(2 * (6 / 7) / (6 / 7 + 1))


def test_semantic_similarity_orders_paraphrase_above_unrelated():
    same = metrics.semantic_similarity(rec("The river is 212 km long."), q("The river is 212 km long."))
    para = metrics.semantic_similarity(rec("It measures 212 kilometres in length."), q("The river is 212 km long."))
    other = metrics.semantic_similarity(rec("Bees make honey in summer."), q("The river is 212 km long."))
    assert same == pytest.approx(1.0, abs=1e-5)
    assert other < para < same
    assert metrics.semantic_similarity(rec(""), q("anything")) == 0.0


def test_doc_recall_only_for_strategies_that_choose_documents():
    assert metrics.doc_recall(rec("x", doc_ids=("a.pdf", "c.pdf")), q("r", gold=("a.pdf", "b.pdf"))) == 0.5
    assert metrics.doc_recall(rec("x", doc_ids=("a.pdf",), retrieved=False), q("r", gold=("a.pdf",))) is None
    assert metrics.doc_recall(rec("x", doc_ids=("a.pdf",)), q("r")) is None


def test_unknown_metric_names_the_valid_ones():
    with pytest.raises(Exception, match="unknown metric.*blue.*valid: abstained, bertscore, bleu, doc_precision, doc_recall"):
        metrics.get(["f1", "blue"])


def test_unanswerable_questions_score_one_only_for_an_abstention():
    impossible = Question("q1", "question?", unanswerable=True)
    assert metrics.exact_match(rec("I don't know."), impossible) == 1.0
    assert metrics.f1(rec("The documents do not mention it."), impossible) == 1.0
    assert metrics.exact_match(rec("Paris"), impossible) == 0.0
    # An abstention on an answerable question is simply wrong.
    assert metrics.f1(rec("I do not know"), q("Paris")) == 0.0
    assert metrics.abstained(rec("This is not stated in the documents."), q("x")) == 1.0
    assert metrics.abstained(rec("Net sales rose 8%."), q("x")) == 0.0


def test_retrieval_metrics_on_hand_made_contexts():
    question = Question("q1", "?", answers=("212 km",), gold_documents=("river.txt",),
                        evidence=("The Kelvane river is 212 kilometres long.", "Ferries cross it at three towns."))
    chunks = ("Stars shine.", "Facts: the Kelvane river is 212 kilometres long, they say.", "Bees make honey.")
    r = QuestionRecord("q1", "rag", "m", "?", "", context_ids=("stars.md#0", "river.txt#0", "orchard.md#3"),
                       doc_ids=("stars.md", "river.txt", "orchard.md"), retrieved=True,
                       context_doc_ids=("stars.md", "river.txt", "orchard.md"))
    assert metrics.evidence_recall(r, question, chunks) == 0.5  # one of two passages retrieved
    assert metrics.mrr(r, question, chunks) == 0.5  # found at rank 2
    assert metrics.doc_precision(r, question, chunks) == pytest.approx(1 / 3)
    assert metrics.doc_recall(r, question, chunks) == 1.0
    no_evidence = Question("q1", "?", gold_documents=("orchard.md",))
    assert metrics.mrr(r, no_evidence, chunks) == pytest.approx(1 / 3)  # by gold document when no evidence


def test_lexical_faithfulness_counts_supported_sentences():
    context = ("The Kelvane river is 212 kilometres long and runs north to the sea.",)
    answer = rec("The Kelvane river is 212 kilometres long. It is famous for purple dolphins.")
    assert metrics.faithfulness_lexical(answer, q("212 km"), context) == 0.5


def test_score_skips_metrics_that_do_not_apply():
    scores = metrics.score(rec("4,812 apples"), q("4,812 apples"), metrics.get(["exact_match", "doc_recall"]))
    assert scores == {"exact_match": 1.0}


# --- non-answers never score well (issue 9) -------------------------------------------------------
QUALITY = ["exact_match", "f1", "rouge_l", "semantic_similarity", "faithfulness_lexical", "judge"]


@pytest.mark.parametrize("status, answer", [("error", ""), ("skipped", ""), ("ok", ""), ("ok", "   ")])
def test_a_non_answer_gets_every_quality_metrics_worst_value(status, answer):
    # An unanswerable question rewards the empty prediction (EM = F1 = 1) - but only when the model
    # actually answered with an abstention; a failure, a skip or an empty reply is no abstention.
    impossible = Question("q1", "question?", unanswerable=True)
    answerable = q("Paris")
    record = QuestionRecord("q1", "rag", "m", "question?", "", status=status, answer=answer)
    for question in (impossible, answerable):
        scores = metrics.score(record, question, metrics.get(QUALITY), ("Paris is the capital.",))
        for metric in metrics.get(QUALITY):
            if metric.name in ("rouge_l", "semantic_similarity") and not question.answers:
                continue  # no reference text: these metrics do not apply
            assert scores[metric.name] == (0.0 if metric.higher_is_better else 1.0), (metric.name, question)
    assert "abstained" not in metrics.score(record, answerable, metrics.get(["abstained"]))


def test_every_metric_declares_its_direction_and_worst_value():
    for metric in metrics.REGISTRY.values():
        assert metric.worst == (0.0 if metric.higher_is_better else 1.0)
    assert metrics.REGISTRY["abstained"].higher_is_better is False


def test_a_real_abstention_on_an_unanswerable_question_still_scores_one():
    impossible = Question("q1", "question?", unanswerable=True)
    scores = metrics.score(rec("I don't know."), impossible, metrics.get(["exact_match", "f1", "abstained"]))
    assert scores == {"exact_match": 1.0, "f1": 1.0, "abstained": 1.0}


# --- mrr by the document of each context item, never by parsing ids -----------------------------
def test_mrr_uses_the_document_of_each_context_item_when_ids_contain_hashes():
    # LaRA document ids contain '#': "paper#32k#1"; its chunks are "paper#32k#1#0", ...
    question = Question("q1", "?", gold_documents=("paper#32k#1",))
    r = QuestionRecord("q1", "rag", "m", "?", "", context_ids=("novel#32k#2#4", "paper#32k#1#7"),
                       context_doc_ids=("novel#32k#2", "paper#32k#1"), doc_ids=("novel#32k#2", "paper#32k#1"),
                       retrieved=True)
    assert metrics.mrr(r, question, ("a", "b")) == 0.5


# --- lexical faithfulness against a bounded span ------------------------------------------------
FILLER = [
    "The committee met on Tuesday to discuss the budget for next year and agreed on most points.",
    "Several members said the new schedule would help the town plan its roads and public works.",
    "A famous singer visited the school and talked with students about music and hard work.",
    "Prices at the market rose slightly during the winter, according to the local traders.",
    "The library opened a new reading room with long tables, good light and quiet corners.",
    "Children painted the fence purple for the spring fair, which drew a large crowd.",
    "Farmers reported a good harvest of wheat and barley after a mild and rainy summer.",
    "The old railway station now houses a small museum about the history of the valley.",
    "Dolphins were seen near the harbour by a fishing crew early on Sunday morning.",
    "Volunteers cleaned the park and planted trees along the path that leads to the lake.",
    "An ancient coin was found by a farmer while he was digging a new well near his house.",
    "The council voted to repair two bridges before the heavy rains of the autumn season.",
]


def filled(passage: str, n_tokens: int) -> str:
    from pipelines import tokens

    parts, total = [], 0
    while total < n_tokens:
        parts.append(FILLER[len(parts) % len(FILLER)])
        total += tokens.count(" " + parts[-1])
    middle = len(parts) // 2
    return " ".join(parts[:middle] + [passage] + parts[middle:])


def test_lexical_faithfulness_does_not_rise_with_context_length():
    passage = "The Kelvane river is 212 kilometres long and runs north to the sea."
    # Sentence 2 is unsupported, but every one of its words occurs somewhere in ordinary filler text.
    answer = rec("The Kelvane river is 212 kilometres long. The river is famous for purple dolphins, ancient bridges and a museum.")
    short, long = filled(passage, 1_000), filled(passage, 80_000)
    from pipelines import tokens

    assert tokens.count(short) < 1_200 and tokens.count(long) >= 80_000
    assert metrics.faithfulness_lexical(answer, q("212 km"), (short,)) == 0.5
    assert metrics.faithfulness_lexical(answer, q("212 km"), (long,)) == 0.5
    assert metrics.faithfulness_lexical(answer, q("212 km"), (passage,)) == 0.5


def test_faithfulness_is_the_judges_verdict_only():
    context = ("The Kelvane river is 212 kilometres long.",)
    assert metrics.REGISTRY["faithfulness"].fn(rec("The Kelvane river is 212 kilometres long."), q("x"), context) is None


# --- scoring_version ----------------------------------------------------------------------------
def test_scoring_version_changes_when_the_rubric_or_the_template_changes(monkeypatch):
    from pipelines import judge

    base = metrics.scoring_version("Answer briefly.", "{context}\n\nQ: {question}")
    assert base == metrics.scoring_version("Answer briefly.", "{context}\n\nQ: {question}")
    assert metrics.scoring_version("Answer briefly.", "{context}\nQuestion: {question}") != base
    assert metrics.scoring_version("Answer in one word.", "{context}\n\nQ: {question}") != base
    monkeypatch.setattr(judge, "RUBRIC", judge.RUBRIC.replace("Reply with one word", "Reply with a single word"))
    assert metrics.scoring_version("Answer briefly.", "{context}\n\nQ: {question}") != base
    monkeypatch.undo()
    monkeypatch.setattr(metrics, "FAITHFULNESS_METHOD", "other")
    assert metrics.scoring_version("Answer briefly.", "{context}\n\nQ: {question}") != base


def test_prepare_copies_the_document_of_each_context_item():
    from types import SimpleNamespace

    from pipelines import runner
    from pipelines.strategies import Block, Context, Strategy

    class TwoChunks(Strategy):
        name = "two"

        def build(self, question, corpus, budget):
            return Context((Block("a", "x"), Block("b", "y")), ("p#1#0", "p#1#3"), ("p#1",),
                           context_doc_ids=("p#1", "p#1"))

    model = SimpleNamespace(name="m", prompt_window=4000, tokens_per_cl100k=1.0)
    prompt_cfg = SimpleNamespace(system="", template="{context}\n{question}", question_reserve=0, overflow="truncate")
    record, _, _ = runner.prepare(Question("q1", "?", gold_documents=("p#1",)), TwoChunks(), None, model, prompt_cfg)
    assert record.context_doc_ids == ("p#1", "p#1") and record.context_ids == ("p#1#0", "p#1#3")
    with pytest.raises(ValueError, match="2 context_ids but 1 context_doc_ids"):
        Context((), ("a#0", "a#1"), ("a",), context_doc_ids=("a",))


def test_the_judges_metrics_need_a_judge():
    # Without a judge they would hold values only for non-answers (0): a mean of failures.
    with pytest.raises(Exception, match="metrics: faithfulness need a judge.*faithfulness_lexical"):
        metrics.get(["f1", "faithfulness"], judged=False)
    assert [m.name for m in metrics.get(["f1", "faithfulness"], judged=True)] == ["f1", "faithfulness"]


def test_bleu_matches_a_hand_computed_sentence_bleu():
    from pipelines.metrics import REGISTRY

    q = Question("q", "?", ("a b c e",))
    # n-gram precisions 3/4, 2/3, 1/2 and 0/1, the last smoothed to 1/2 (sacrebleu's default "exp"
    # smoothing); same length, so no brevity penalty: (3/4 * 2/3 * 1/2 * 1/2) ** (1/4) = 0.5946.
    assert REGISTRY["bleu"].fn(QuestionRecord("q", "rag", "m", "?", "", answer="a b c d"), q) == pytest.approx(0.5946, abs=1e-4)
    assert REGISTRY["bleu"].fn(QuestionRecord("q", "rag", "m", "?", "", answer="a b c e"), q) == pytest.approx(1.0)


def test_bertscore_is_offline_and_orders_answers_by_meaning():
    from pipelines.metrics import REGISTRY

    q = Question("q", "How long is the river?", ("The river is 212 kilometres long.",))
    score = lambda answer: REGISTRY["bertscore"].fn(QuestionRecord("q", "rag", "m", "?", "", answer=answer), q)
    same, close, unrelated = score("The river is 212 kilometres long."), score("It is 212 km long."), score("Bananas are yellow.")
    assert same == pytest.approx(1.0, abs=1e-4)
    assert 1.0 > close > unrelated > 0
