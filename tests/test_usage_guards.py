"""Calls that report no usage or no choices are errors, never free `ok` rows; cost is never negative;
the BM25 cache follows the index content, not the Python object."""

from types import SimpleNamespace

import pytest

from fakes import FakeOpenAI
from pipelines.models.chat import CallFailed, ChatModel, Unbilled
from pipelines.models.usage import Prices, Usage, cost_usd

PRICES = {"input_cache_miss": 1.0, "input_cache_hit": 0.1, "output": 2.0}


def _served(server, stream=True) -> ChatModel:
    return ChatModel("m", "p", "m-id", 1000, 10, PRICES, base_url=server.base_url, stream=stream, max_retries=0)


def test_whole_response_without_usage_is_an_error():
    with FakeOpenAI(lambda q: "hi", usage_for=lambda prompt, answer: None) as server:
        with pytest.raises(CallFailed, match="no usage") as caught:
            _served(server, stream=False).complete([{"role": "user", "content": "Question: q"}])
    assert isinstance(caught.value.cause, Unbilled)  # settled at its reservation, not at 0


@pytest.mark.parametrize("stream", [True, False])
def test_anthropic_native_usage_from_a_gateway_is_billed_whole_streamed_or_not(stream):
    """Anthropic's own usage shape (input_tokens without the cache reads) passed through by a gateway.
    Unstreamed, the SDK's model added `prompt_tokens: None`, which hid the shape: 800 of 900 input
    tokens and every output token went unbilled. By hand: (100 x 1.0 + 800 x 0.1 + 10 x 2.0) / 1e6."""
    usage = {"input_tokens": 100, "output_tokens": 10, "cache_read_input_tokens": 800}
    with FakeOpenAI(lambda q: "hi", usage_for=lambda prompt, answer: usage) as server:
        done = _served(server, stream=stream).complete([{"role": "user", "content": "Question: q"}])
    assert (done.usage.input_tokens, done.usage.cache_hit_tokens, done.usage.output_tokens) == (900, 800, 10)
    assert done.cost_usd == pytest.approx(200e-6)


def test_whole_response_without_choices_is_a_clear_error():
    with FakeOpenAI(lambda q: "hi") as server, pytest.raises(CallFailed, match="no choices"):
        _served(server, stream=False).complete([{"role": "user", "content": "Question: NOCHOICE q"}])


def test_stream_without_choices_is_a_clear_error():
    with FakeOpenAI(lambda q: "hi") as server, pytest.raises(CallFailed, match="no choices"):
        _served(server).complete([{"role": "user", "content": "Question: NOCHOICE q"}])


def test_stream_without_usage_does_not_advise_stream_false():
    with FakeOpenAI(lambda q: "hi", usage_for=lambda prompt, answer: None) as server:
        with pytest.raises(CallFailed) as err:
            _served(server).complete([{"role": "user", "content": "Question: q"}])
    assert "usage" in str(err.value) and "stream=false" not in str(err.value)


def test_anthropic_native_usage_behind_a_gateway():
    # Anthropic's input_tokens excludes cache reads and writes: 100 fresh + 800 read + 50 written.
    u = Usage.from_response({"prompt_tokens": 100, "completion_tokens": 10,
                             "cache_read_input_tokens": 800, "cache_creation_input_tokens": 50})
    assert (u.input_tokens, u.cache_hit_tokens, u.cache_write_tokens, u.cache_miss_tokens) == (950, 800, 50, 100)
    prices = Prices(input_cache_miss=3.0, input_cache_hit=0.3, output=15.0, input_cache_write=3.75)
    # 100*3 + 800*0.3 + 50*3.75 + 10*15 = 300 + 240 + 187.5 + 150 = 877.5 per 1M
    assert cost_usd(u, prices) == pytest.approx(877.5e-6)


def test_cache_write_defaults_to_miss_price():
    assert Prices(input_cache_miss=2.0, input_cache_hit=0.1, output=1.0).input_cache_write == 2.0


def test_cost_is_never_negative():
    with pytest.raises(ValueError):
        Usage(input_tokens=10, cache_hit_tokens=20)


def test_bm25_cache_keyed_by_index_content():
    from pipelines import retrieval

    class Idx:
        def __init__(self, key, text):
            self.key, self.chunks = key, [SimpleNamespace(text=text, doc_id="d")]

    a = retrieval.bm25_for(Idx("k1", "alpha beta"))
    assert retrieval.bm25_for(Idx("k1", "alpha beta")) is a
    assert retrieval.bm25_for(Idx("k2", "gamma")) is not a


def test_cached_answer_is_priced_at_todays_prices(tmp_path):
    # Usage is what the provider measured; prices change. A price override must apply to cached rows too.
    from pipelines.budget import Budget, paid_call
    from pipelines.models.cache import ResponseCache
    from pipelines.models.chat import Completion

    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put("k", Completion(answer="a", usage=Usage(input_tokens=1000, output_tokens=100), cost_usd=9.0, latency_s=0.1))
    model = ChatModel("m", "p", "m-id", 1000, 10, {**PRICES, "output": 0.5}, base_url="http://x")
    done = paid_call(model, [{"role": "user", "content": "q"}], "k", cache, Budget(max_usd=None))
    assert done.cached and done.cost_usd == pytest.approx((1000 * 1.0 + 100 * 0.5) / 1e6)
