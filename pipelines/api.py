"""The framework from Python or a notebook: one configuration, one MLflow run, the records back.

    from pipelines import api
    result = api.run(["strategy=rag", "model=deepseek-chat", "run.limit=20"])
    result.run_id, result.summary["f1"], result.records[0].answer

Overrides are the command line's (`ragbench run ...`); a sweep (`-m`) is the command line's job."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.record import QuestionRecord


@dataclass
class Result:
    run_id: str | None  # None for a dry run
    records: list[QuestionRecord]
    summary: dict = field(default_factory=dict)


def run(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> Result:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from pipelines import run as run_module

    GlobalHydra.instance().clear()
    with initialize_config_module("pipelines.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.RUN  # one configuration, even under a sweeping preset: sweeps are the command line's
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as @hydra.main hands it to the task
    out = run_module.run(cfg)
    return Result(out.get("run_id"), out.get("records", []), {k: v for k, v in out.items() if k != "records"})
