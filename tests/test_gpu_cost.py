"""A self-hosted model priced by the GPU-hour (`prices.gpu_usd_per_hour`): each call pays the GPU time
it used, overlapping calls split the overlap, so a run's costs add up to the time the server was busy,
measured by the server itself (the fake's own request log), times the hourly rate."""

import pytest

from fakes import FakeOpenAI, prepared_questions
from pipelines.budget import Budget, worst_case_usd
from pipelines.models.chat import ChatModel
from pipelines.runner import answer_all

RATE = 3600.0  # $/GPU-hour: one dollar per busy second, so the arithmetic reads in seconds


def gpu_model(server, concurrency: int) -> ChatModel:
    prices = {"input_cache_miss": 0.0, "input_cache_hit": 0.0, "output": 0.0, "gpu_usd_per_hour": RATE,
              "as_of": "2026-11-23", "source": "test"}
    return ChatModel(name="gpu", provider="openai-compatible", model_id="qwen", context_window=4096,
                     max_output_tokens=32, prices=prices, base_url=server.base_url, max_retries=1, timeout_s=5,
                     stream=False, max_concurrency=concurrency)


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of the server's request intervals (worked independently of the code under test)."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(spans):
        if s > end:
            total, end = total + (e - s), e
        elif e > end:
            total, end = total + (e - end), e
    return total


@pytest.mark.parametrize("concurrency", [1, 4])
def test_gpu_hour_costs_add_up_to_the_servers_busy_time(concurrency):
    with FakeOpenAI(lambda q: "blue", latency_s=0.3) as server:
        model = gpu_model(server, concurrency)
        records = answer_all(prepared_questions([f"q{i}" for i in range(8)], model), model, [], None, Budget(None),
                             progress=False)
        busy = busy_seconds(server.busy)
    assert [r.status for r in records] == ["ok"] * 8
    total = sum(r.cost_usd for r in records)
    # The client times each call from send to last byte, so it also sees the HTTP round trip on
    # 127.0.0.1 and the SDK's own work (tens of ms per call on a loaded 2-core machine): never less than
    # the server's busy time, and not more than that plus 0.1 s per call.
    assert busy * RATE / 3600 <= total <= (busy + 8 * 0.1) * RATE / 3600
    assert sum(r.spent_usd for r in records) == pytest.approx(total)
    if concurrency == 4:  # four calls shared each 0.3 s: each paid about a quarter of it, not all of it
        assert max(r.cost_usd for r in records) < 0.3 * 0.6


def test_the_reservation_for_a_gpu_call_bounds_its_longest_possible_run():
    with FakeOpenAI() as server:
        model = gpu_model(server, 1)
    # timeout 5 s, 1 retry: at most 2 attempts of 5 s each on the GPU
    assert worst_case_usd([{"role": "user", "content": "q"}], model, None, 1) == pytest.approx(10 * RATE / 3600)
