"""CPU per question of each default metric, alone, over the per-question benchmark's 40 questions
(issue 16): which part of the scoring is the libraries' own work.

    nice .venv/bin/python benchmarks/metric_cost.py

Needs `benchmarks/per_question.py --questions 40` to have run once (its documents and questions in
`.cache/bench_per_question`). Each row's answer is what the scripted server answers there ("The answer
is <first reference>."); contexts are 5 slices of 1,200 characters of the gold document (rag-sized) or
the gold document and 3 others whole (hybrid-sized). One thread, as a 2-core run with 2 jobs has; the
second of two passes is reported (the first pays the models' loading)."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = ROOT / ".cache/bench_per_question"
METRICS = ["exact_match", "f1", "rouge_l", "semantic_similarity", "bertscore", "bleu", "abstained", "doc_recall",
           "doc_precision", "evidence_recall", "mrr", "faithfulness_lexical"]


def rows(kind: str, questions: list[dict], docs: dict[str, str], rng: random.Random) -> list[tuple]:
    from pipelines.datasets import Question
    from pipelines.record import QuestionRecord

    out = []
    for r in questions:
        gold = r["gold_documents"][0]
        text = docs.get(gold, "")
        context = (tuple(text[j:j + 1200] for j in range(0, 6000, 1200)) if kind == "rag"
                   else (text, *rng.sample(list(docs.values()), 3)))
        record = QuestionRecord(r["id"], kind, "m", r["question"], "", answer=f"The answer is {r['answers'][0]}.",
                                retrieved=True, context_ids=tuple(f"{gold}#{k}" for k in range(len(context))),
                                context_doc_ids=(gold,) * len(context), doc_ids=(gold,))
        out.append((record, Question(r["id"], r["question"], tuple(r["answers"]), gold_documents=tuple(r["gold_documents"])),
                    context))
    return out


def main() -> None:
    from pipelines import threads

    threads.configure(1, 1)
    from pipelines import metrics

    qfile = CACHE / "questions_40.jsonl"
    if not qfile.exists():
        raise SystemExit(f"{qfile} is missing: run benchmarks/per_question.py --questions 40 first")
    questions = [json.loads(line) for line in qfile.read_text().splitlines()]
    docs = {p.name: p.read_text(errors="ignore") for p in (CACHE / "docs").iterdir() if p.suffix in (".txt", ".md")}
    print("| metric | rag-sized context, CPU ms/q | hybrid-sized context, CPU ms/q |\n|---|---|---|")
    cost = {}
    for kind in ("rag", "hybrid"):
        batch = rows(kind, questions, docs, random.Random(1))
        for _ in range(2):
            for name in METRICS:
                metric = metrics.get([name], judged=False)
                metrics._normalized.cache_clear()
                metrics._word_positions.cache_clear()
                t = time.process_time()
                metrics.score_all(batch, metric)
                cost[kind, name] = (time.process_time() - t) / len(batch) * 1000
    for name in METRICS:
        print(f"| {name} | {cost['rag', name]:.1f} | {cost['hybrid', name]:.1f} |")
    print(f"| all | {sum(cost['rag', n] for n in METRICS):.1f} | {sum(cost['hybrid', n] for n in METRICS):.1f} |")


if __name__ == "__main__":
    main()
