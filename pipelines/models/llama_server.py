"""`python -m pipelines.models.llama_server ARGS`: llama-cpp-python's OpenAI-compatible server (same
arguments), with prompt-prefix reuse cut back to a multiple of n_batch.

Why: Llama.generate keeps the KV cache of the longest token prefix shared with the previous request and
evaluates the rest in n_batch batches starting there. Batch boundaries then differ from a fresh
evaluation of the same prompt, the floating-point sums differ, and a greedy answer could change with
the question order (issue 9: seen for SmolLM2). Reusing only whole batches keeps every boundary where a
fresh evaluation puts it, so a prompt gets the same answer wherever it falls in a run."""

from __future__ import annotations

import runpy

from llama_cpp import Llama

_generate = Llama.generate


def aligned_prefix(cached: list[int], tokens: list[int], n_batch: int) -> int:
    """How many cached tokens may be kept: the shared prefix, rounded down to whole batches, and
    always leaving at least one batch-aligned token to evaluate (so the logits are fresh)."""
    shared = 0
    for a, b in zip(cached, tokens):
        if a != b:
            break
        shared += 1
    keep = shared - shared % n_batch
    if keep >= len(tokens):  # the whole prompt is cached: re-evaluate its last batch as a fresh run would
        keep = (len(tokens) - 1) // n_batch * n_batch
    return keep


def generate(self: Llama, tokens, *args, **kwargs):
    tokens = list(tokens)
    if kwargs.get("reset", True) and self.n_tokens > 0:
        keep = aligned_prefix(self._input_ids.tolist(), tokens, self.n_batch)
        if keep < self.n_tokens:
            if keep == 0 or not self._ctx.kv_cache_seq_rm(-1, keep, -1):
                self.reset()  # nothing reusable (or partial removal unsupported): evaluate from scratch
            else:
                self.n_tokens = keep
    return _generate(self, tokens, *args, **kwargs)


Llama.generate = generate

if __name__ == "__main__":
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
