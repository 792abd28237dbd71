"""Context building under a matched token budget (issue 16): `rag` with `budget.context_tokens` ranks
every chunk of the corpus for every question and fills the budget from them; `hybrid` fills it with
whole documents (or the best one's chunks). CPU ms per question for `Strategy.build` alone (retrieval
and counting; no calls), on the per-question benchmark's 8,627-chunk corpus and questions.

    .venv/bin/python benchmarks/per_question.py --rounds 1 --questions 40   # builds the cache once
    .venv/bin/python benchmarks/matched_budget.py [--repo PATH] [--questions 10] [--budget 8000]

`--repo` runs another checkout's `pipelines` (e.g. a `git worktree` of an older commit) on the same
cache, to compare commits in interleaved processes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(HERE.parent))
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--budget", type=int, default=8000)
    parser.add_argument("--cache", default=str(HERE.parent / ".cache" / "bench_per_question"))
    args = parser.parse_args()
    sys.path[:0] = [args.repo, str(HERE)]
    from pipelines import threads

    threads.configure(None, 1)
    import per_question as pq
    from pipelines.ask import compose
    from pipelines.run import build, make_index
    from pipelines.strategies import Corpus
    from pipelines.strategies.hybrid import Hybrid
    from pipelines.strategies.rag import Rag

    cache = Path(args.cache)
    cfg = compose(pq.overrides(cache / "docs", cache / f"questions_{40}.jsonl", cache, "http://127.0.0.1:9/v1", "rag",
                               cache / "mlruns-unused"))
    dataset = build(cfg, "dataset").load(cfg.run.cache_dir)
    corpus = Corpus(dataset.documents, lambda: make_index(cfg, dataset.documents))
    assert corpus.index.embedder.texts_embedded == 0, "the index was not in the cache: run per_question.py first"
    asked = [q for q in dataset.questions if not q.qid.startswith("warm")][:args.questions]
    corpus.index.embedder.prime([q.text for q in asked])  # as the runner does; not what is measured
    out = {"repo": args.repo, "chunks": len(corpus.index.chunks)}
    for name, strategy in [("rag", Rag(top_k=5, budget_tokens=args.budget)),
                           ("hybrid", Hybrid(candidates=50, budget_tokens=args.budget))]:
        times = []
        for q in asked:
            t = time.process_time()
            strategy.build(q, corpus, 10 * args.budget)
            times.append(time.process_time() - t)
        out[name] = {"median_ms": 1000 * statistics.median(times), "first_ms": 1000 * times[0]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
