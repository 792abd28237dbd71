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
    with pytest.raises(Exception, match="unknown metric.*bleu.*valid: abstained, doc_precision, doc_recall, evidence_recall, exact_match, f1"):
        metrics.get(["f1", "bleu"])


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
                       doc_ids=("stars.md", "river.txt", "orchard.md"), retrieved=True)
    assert metrics.evidence_recall(r, question, chunks) == 0.5  # one of two passages retrieved
    assert metrics.mrr(r, question, chunks) == 0.5  # found at rank 2
    assert metrics.doc_precision(r, question, chunks) == pytest.approx(1 / 3)
    assert metrics.doc_recall(r, question, chunks) == 1.0
    no_evidence = Question("q1", "?", gold_documents=("orchard.md",))
    assert metrics.mrr(r, no_evidence, chunks) == pytest.approx(1 / 3)  # by gold document when no evidence


def test_lexical_faithfulness_counts_supported_sentences():
    context = ("The Kelvane river is 212 kilometres long and runs north to the sea.",)
    answer = rec("The Kelvane river is 212 kilometres long. It is famous for purple dolphins.")
    assert metrics.faithfulness(answer, q("212 km"), context) == 0.5


def test_score_skips_metrics_that_do_not_apply():
    scores = metrics.score(rec("4,812 apples"), q("4,812 apples"), metrics.get(["exact_match", "doc_recall"]))
    assert scores == {"exact_match": 1.0}
