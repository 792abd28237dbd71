"""`hybrid` (pre-filtered long context): rank documents by their chunks' scores for the question
(dense, BM25, fused, or dense within a metadata filter), keep the best ones that fit a token budget,
and give them to the model whole."""

from __future__ import annotations

from collections import defaultdict

from pipelines import retrieval
from pipelines.strategies import Block, Context, Corpus, Strategy

PREFILTERS = ("dense", "bm25", "fused", "metadata")

AGGREGATIONS = {
    "max": lambda scores: max(scores),
    # Rewards documents with several relevant passages, not one lucky chunk.
    "sum_top3": lambda scores: sum(sorted(scores, reverse=True)[:3]),
}


class Hybrid(Strategy):
    name = "hybrid"
    uses_index = True

    def __init__(self, candidates: int, doc_score: str = "max", token_budget: int | None = None,
                 max_documents: int | None = None, order: str = "corpus", prefilter: str = "dense",
                 fusion: dict | None = None, budget_tokens: int | None = None):
        if prefilter not in PREFILTERS:
            raise ValueError(f"strategy.prefilter must be one of {', '.join(PREFILTERS)}, got {prefilter!r}")
        self.prefilter = prefilter
        self.fusion = retrieval.Fusion(**(fusion or {}))
        token_budget = budget_tokens or token_budget  # a matched budget replaces the strategy's own
        if doc_score not in AGGREGATIONS:
            raise ValueError(f"strategy.doc_score must be one of {sorted(AGGREGATIONS)}, got {doc_score!r}")
        if order not in ("corpus", "relevance"):
            raise ValueError(f"strategy.order must be corpus or relevance, got {order!r}")
        self.order = order
        self.candidates = candidates
        self.aggregate = AGGREGATIONS[doc_score]
        self.token_budget = token_budget
        self.max_documents = max_documents

    def rank(self, question, corpus: Corpus) -> list[tuple[str, float]]:
        scope = question.scope
        if self.prefilter == "metadata" and question.filters:
            # Only documents whose name carries one of the question's filter values (a ticker, a date...).
            pool = scope or tuple(d.doc_id for d in corpus.documents)
            scope = tuple(d for d in pool if any(f.lower() in d.lower() for f in question.filters)) or pool
        method = "dense" if self.prefilter == "metadata" else self.prefilter
        per_doc = defaultdict(list)
        for hit in retrieval.search(corpus.index, question.text, self.candidates, scope, method, self.fusion):
            per_doc[hit.chunk.doc_id].append(hit.score)
        ranked = [(doc_id, self.aggregate(s)) for doc_id, s in per_doc.items()]
        return sorted(ranked, key=lambda pair: (-pair[1], pair[0]))

    def build(self, question, corpus: Corpus, budget: int) -> Context:
        budget = min(budget, self.token_budget) if self.token_budget else budget
        ranked = self.rank(question, corpus)
        if ranked and corpus.by_id[ranked[0][0]].tokens > budget:
            # The best document does not fit whole: its best parts, not a less relevant document instead.
            return self._best_parts(question, corpus, ranked[0], budget)
        chosen, used, over = [], 0, []
        for doc_id, score in ranked:
            if self.max_documents and len(chosen) >= self.max_documents:
                break
            tokens = corpus.by_id[doc_id].tokens
            if used + tokens <= budget:
                chosen.append((doc_id, score))
                used += tokens
            else:
                over.append(doc_id)
        if self.order == "corpus":
            # The same documents in the same order for every question that picks them: a cacheable prefix.
            position = {d.doc_id: i for i, d in enumerate(corpus.documents)}
            chosen.sort(key=lambda pair: position[pair[0]])
        # Documents that ranked but did not fit: whole documents are never cut, so say which were left out.
        cut = f"left out for the {budget:,}-token budget: {', '.join(over)}" if over else ""
        return Context(
            blocks=tuple(Block(d, corpus.by_id[d].text, corpus.by_id[d].tokens) for d, _ in chosen),
            context_ids=tuple(d for d, _ in chosen),
            doc_ids=tuple(d for d, _ in chosen),
            scores=tuple(round(s, 4) for _, s in chosen),
            context_doc_ids=tuple(d for d, _ in chosen),
            cut=cut,
        )

    def _best_parts(self, question, corpus: Corpus, best: tuple[str, float], budget: int) -> Context:
        """The best document alone is over budget: send its best chunks, in document order, up to the
        budget (rather than the whole document cut in the middle by the window guard), and say so."""
        from pipelines.strategies.rag import block, fill

        doc_id, score = best
        chunks = [c for c in corpus.index.chunks if c.doc_id == doc_id]
        hits = retrieval.search(corpus.index, question.text, len(chunks), (doc_id,), "dense" if self.prefilter == "metadata"
                                else self.prefilter, self.fusion)
        hits = sorted(fill(hits, budget), key=lambda h: h.chunk.position)
        kept = sum(h.chunk.tokens for h in hits)
        return Context(
            blocks=tuple(block(h) for h in hits),
            context_ids=tuple(h.chunk.chunk_id for h in hits),
            doc_ids=(doc_id,),
            scores=(round(score, 4),),
            context_doc_ids=tuple(h.chunk.doc_id for h in hits),
            cut=f"{doc_id}: best {len(hits)} of {len(chunks)} chunks, {kept:,} of {corpus.by_id[doc_id].tokens:,} tokens "
                f"(the document alone is over the {budget:,}-token budget)",
        )
