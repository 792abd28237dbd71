"""Provider response shapes replayed through a local HTTP server and parsed by the one client path,
with the cost checked to the cent-fraction against hand arithmetic on the config's prices."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from fakes import FakeOpenAI

FIXTURES = Path(__file__).parent / "fixtures" / "responses"


@pytest.fixture
def replay():
    """Starts the test fake replaying one recorded body (tests/fixtures/responses/NAME.json)."""
    servers = []

    def start(name: str) -> FakeOpenAI:
        servers.append(FakeOpenAI(recorded=(FIXTURES / f"{name}.json").read_bytes()).__enter__())
        return servers[-1]

    yield start
    for server in servers:
        server.__exit__()


def model_from_config(name: str, base_url: str, monkeypatch):
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", [f"model={name}", f"model.base_url={base_url}", "model.stream=false"])
    model = instantiate(cfg.model, _convert_="all")
    if model.api_key_env:
        monkeypatch.setenv(model.api_key_env, "sk-test-not-a-key")
    return model


# (model config, input miss, input hit, output, reasoning, expected USD worked by hand)
CASES = [
    # 250 x 0.28 + 56,960 x 0.028 + 187 x 0.42 = 70 + 1,594.88 + 78.54 = 1,743.42 per million
    ("deepseek-chat", 250, 56960, 187, 0, 0.00174342),
    # 12,000 x 0.28 + 950 x 0.42 = 3,360 + 399
    ("deepseek-reasoner", 12000, 0, 950, 880, 0.003759),
    # 890 x 1.25 + 56,320 x 0.125 + 1,450 x 10 = 1,112.5 + 7,040 + 14,500 (reasoning billed as output)
    ("gpt-5", 890, 56320, 1450, 1408, 0.0226525),
    # 57,210 x 3 + 210 x 15 = 171,630 + 3,150: the compatible endpoint reports no cache reads
    ("claude-sonnet-4-5", 57210, 0, 210, 0, 0.17478),
]


@pytest.mark.parametrize("name, miss, hit, output, reasoning, usd", CASES)
def test_exact_cost_from_each_providers_usage(name, miss, hit, output, reasoning, usd, monkeypatch, replay):
    server = replay(f"{name}")
    model = model_from_config(name, server.base_url, monkeypatch)
    done = model.complete([{"role": "user", "content": "Documents: ...\n\nQuestion: how?"}])
    u = done.usage
    assert (u.cache_miss_tokens, u.cache_hit_tokens, u.output_tokens, u.reasoning_tokens) == (miss, hit, output, reasoning)
    assert done.cost_usd == pytest.approx(usd, abs=1e-12)
    assert done.attempts == 1 and done.attempt_log == "200"


def test_cache_hits_are_priced_at_the_hit_price(monkeypatch, replay):
    server = replay("deepseek-chat")
    model = model_from_config("deepseek-chat", server.base_url, monkeypatch)
    done = model.complete([{"role": "user", "content": "q"}])
    all_miss = (done.usage.input_tokens * 0.28 + 187 * 0.42) / 1e6
    assert done.cost_usd == pytest.approx(0.00174342, abs=1e-12)
    assert all_miss / done.cost_usd > 9  # the cached prefix is what makes long context cheap on V3.2


def test_reasoner_content_is_kept_apart_from_the_answer(monkeypatch, replay):
    server = replay("deepseek-reasoner")
    model = model_from_config("deepseek-reasoner", server.base_url, monkeypatch)
    done = model.complete([{"role": "user", "content": "q"}])
    assert done.answer == "Services revenue grew each quarter."
    assert done.reasoning.startswith("The filings list Services net sales")
    assert "19,604" not in done.answer


@pytest.mark.parametrize("name, present, absent", [
    ("deepseek-chat", {"max_tokens": 1024, "temperature": 0.0}, ["max_completion_tokens"]),
    ("deepseek-reasoner", {"max_tokens": 8192}, ["temperature", "top_p", "max_completion_tokens"]),
    ("gpt-5", {"max_completion_tokens": 8192}, ["max_tokens", "temperature"]),
    ("claude-sonnet-4-5", {"max_tokens": 1024, "temperature": 0.0}, []),
])
def test_each_provider_gets_only_the_parameters_it_accepts(name, present, absent, monkeypatch, replay):
    server = replay(f"{name}")
    model = model_from_config(name, server.base_url, monkeypatch)
    model.complete([{"role": "user", "content": "q"}])
    sent = server.requests[0]
    assert sent["model"] == model.model_id
    assert {k: sent.get(k) for k in present} == present
    assert not [k for k in absent if k in sent]


def test_prices_are_dated_and_overridable_from_the_command_line():
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", ["model=deepseek-chat", "model.prices.input_cache_miss=0.5"])
    assert cfg.model.prices.input_cache_miss == 0.5 and cfg.model.prices.as_of == "2025-09-29"
    with initialize_config_module("conf", version_base="1.3"):
        terminus = compose("config", ["model=deepseek-v3.1-terminus"]).model
    assert terminus.expired is True
    assert (terminus.prices.input_cache_miss, terminus.prices.input_cache_hit, terminus.prices.output) == (0.56, 0.07, 1.68)


def test_usage_shapes_parse_without_a_server():
    from pipelines.models.usage import Prices, Usage, cost_usd

    gateway = Usage.from_response({"prompt_tokens": 1000, "completion_tokens": 10, "cache_read_input_tokens": 800})
    assert (gateway.cache_hit_tokens, gateway.cache_miss_tokens) == (800, 200)
    claude = Prices(3.0, 0.30, 15.0)
    assert cost_usd(gateway, claude) == pytest.approx((200 * 3 + 800 * 0.30 + 10 * 15) / 1e6)
    assert Usage.from_response(None) == Usage()


def test_anthropic_native_usage_behind_a_gateway_counts_cache_reads_and_writes():
    from pipelines.models.usage import Prices, Usage, cost_usd

    # Anthropic's Messages API usage (docs.anthropic.com, prompt caching): input_tokens EXCLUDES the
    # cache reads and writes, which are reported apart and billed at 0.1x and 1.25x the input price.
    usage = Usage.from_response({"input_tokens": 21, "cache_creation_input_tokens": 188086,
                                 "cache_read_input_tokens": 1000, "output_tokens": 393})
    assert (usage.input_tokens, usage.cache_hit_tokens, usage.cache_write_tokens, usage.output_tokens) == (
        21 + 188086 + 1000, 1000, 188086, 393)
    prices = Prices(input_cache_miss=3.0, input_cache_hit=0.30, output=15.0, input_cache_write=3.75)
    # 21 x 3 + 1,000 x 0.30 + 188,086 x 3.75 + 393 x 15 = 63 + 300 + 705,322.5 + 5,895 per million
    assert cost_usd(usage, prices) == pytest.approx(0.7115805)


def test_cost_is_never_negative_even_when_a_gateway_reports_more_hits_than_prompt_tokens():
    from pipelines.models.usage import Prices, Usage, cost_usd

    # A gateway passing Anthropic's cache_read_input_tokens beside an OpenAI-style prompt_tokens that
    # excludes them: 1,200 read, 50 uncached.
    usage = Usage.from_response({"prompt_tokens": 50, "completion_tokens": 10, "cache_read_input_tokens": 1200})
    assert usage.cache_miss_tokens >= 0 and usage.input_tokens == 1250
    assert cost_usd(usage, Prices(3.0, 0.3, 15.0)) == pytest.approx((50 * 3.0 + 1200 * 0.3 + 10 * 15.0) / 1e6)
