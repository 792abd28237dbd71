"""Every config group option and experiment preset composes and builds, so a broken YAML fails CI."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

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


@pytest.mark.parametrize("name", options("model"))
def test_each_model_builds_with_dated_prices(name):
    cfg = compose_with(f"model={name}")
    model = instantiate(cfg.model, _convert_="all")
    assert model.name == name
    assert model.prices.as_of and model.prices.source
    assert model.prompt_window > 0
    assert (model.api_key_env is None) == (model.local_server is not None)  # remote models name a key variable


@pytest.mark.parametrize("name", options("experiment") + options("debug"))
def test_each_preset_composes(name):
    group = "experiment" if (CONF / "experiment" / f"{name}.yaml").exists() else "debug"
    cfg = compose_with(f"{group}={name}")
    assert instantiate(cfg.strategy).name == "rag"
    assert cfg.dataset.name == "sec10q_apple"


def test_default_config_sweeps_the_three_strategies():
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params.strategy == "rag,hybrid,full_context"
    assert cfg.run.limit == 3


def test_deepseek_prices_are_the_v3_2_ones():
    prices = compose_with("model=deepseek-chat").model.prices
    assert (prices.input_cache_miss, prices.input_cache_hit, prices.output) == (0.28, 0.028, 0.42)
