"""Every config group option and experiment preset composes and builds, so a broken YAML fails CI."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipelines.strategies import Strategy

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_with(*overrides):
    with initialize_config_module("conf", version_base="1.3"):
        return compose("config", list(overrides))


@pytest.mark.parametrize("name", options("strategy"))
def test_each_strategy_builds(name):
    strategy = instantiate(compose_with(f"strategy={name}").strategy)
    assert isinstance(strategy, Strategy) and strategy.name == name


# The generic host config needs what only the user knows.
GENERIC = ["model.model_id=qwen3-8b", "model.base_url=http://127.0.0.1:8000/v1", "model.prices.input_cache_miss=0.1",
           "model.prices.output=0.2", "model.prices.as_of=2026-11-22"]


@pytest.mark.parametrize("name", options("model"))
def test_each_model_builds_with_dated_prices(name):
    cfg = compose_with(f"model={name}", *(GENERIC if name == "openai-compatible" else []))
    model = instantiate(cfg.model, _convert_="all")
    assert model.name == ("qwen3-8b" if name == "openai-compatible" else name)
    assert model.prices.as_of and model.prices.source
    assert model.prompt_window > 0 and model.max_concurrency >= 1
    assert model.max_tokens_param in ("max_tokens", "max_completion_tokens")
    if model.provider not in ("llama-cpp", "openai-compatible"):
        assert model.api_key_env and model.api_key_env.endswith("_API_KEY")  # remote models name a key variable


def test_generic_host_prices_default_the_hit_price_to_the_miss_price():
    model = instantiate(compose_with("model=openai-compatible", *GENERIC).model, _convert_="all")
    assert (model.prices.input_cache_miss, model.prices.input_cache_hit, model.prices.output) == (0.1, 0.1, 0.2)


@pytest.mark.parametrize("name", options("experiment") + options("debug"))
def test_each_preset_composes_and_builds(name):
    group = "experiment" if (CONF / "experiment" / f"{name}.yaml").exists() else "debug"
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", [f"{group}={name}"], return_hydra_config=True)
    # Every strategy the preset sweeps builds with the preset's settings.
    swept = str((cfg.hydra.sweeper.params or {}).get("strategy", "rag")).split(",")
    for strategy in swept:
        with initialize_config_module("conf", version_base="1.3"):
            job = compose("config", [f"{group}={name}", f"strategy={strategy}"])
        assert instantiate(job.strategy, _convert_="all").name == strategy
        assert instantiate(job.dataset).name == job.dataset.name


def test_lara_preset_sweeps_budgets_orders_and_four_strategies():
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", ["experiment=lara_budget_sweep"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params.strategy == "rag,hybrid,full_context,self_route"
    assert params["retrieval.order"] == "relevance,document" and params["budget.context_tokens"] == "1000,2000,4000,8000"
    assert cfg.dataset.name == "lara_paper" and cfg.run.shuffle_seed == 0


def test_the_default_is_one_run_and_the_comparison_is_a_preset():
    with initialize_config_module("conf", version_base="1.3"):
        plain = compose("config", return_hydra_config=True)
        compare = compose("config", ["experiment=compare"], return_hydra_config=True)
        everything = compose("config", ["experiment=all_questions"], return_hydra_config=True)
    assert plain.hydra.mode is None and not plain.hydra.sweeper.params
    assert plain.hydra.runtime.choices.strategy == "rag"
    for preset in (compare, everything):
        assert preset.hydra.mode.name == "MULTIRUN"
        assert preset.hydra.sweeper.params.strategy == "rag,hybrid,full_context"
    assert compare.run.limit == 3 and everything.run.limit is None


def test_deepseek_prices_are_the_v3_2_ones():
    prices = compose_with("model=deepseek-chat").model.prices
    assert (prices.input_cache_miss, prices.input_cache_hit, prices.output) == (0.28, 0.028, 0.42)


@pytest.mark.parametrize("choice", sorted(json.loads((Path(__file__).parent / "fixtures" / "composed_models.json").read_text())))
def test_model_and_judge_configs_compose_to_the_values_they_had_before_sharing_a_base(choice):
    """tests/fixtures/composed_models.json was written from the configs before their shared keys moved
    to conf/base/model.yaml: every model and judge must still resolve to exactly those values."""
    reference = json.loads((Path(__file__).parent / "fixtures" / "composed_models.json").read_text())[choice]
    group, name = choice.split("=")
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", [choice])
    assert OmegaConf.to_container(cfg[group], resolve=False) == reference
