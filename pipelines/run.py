"""Hydra entry point: answer a dataset's questions under one strategy and one model, log it to MLflow.

    python -m pipelines.run                                   # the default sweep: rag, hybrid, full_context
    python -m pipelines.run -m strategy=rag,hybrid retrieval.top_k=3,8
    python -m pipelines.run strategy=full_context run.limit=null
"""

from __future__ import annotations

import logging
import sys
import time

import hydra
import mlflow
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pipelines import embeddings, metrics, prompts, runner, tracking
from pipelines.errors import UserError
from pipelines.index import VectorIndex
from pipelines.strategies import Corpus

log = logging.getLogger("pipelines")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        return run(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def run(cfg: DictConfig) -> float | None:
    # Everything that can be wrong with the input is checked before the MLflow run exists.
    model = build(cfg, "model")
    model.check()
    strategy = build(cfg, "strategy")
    metric_list = metrics.get(list(cfg.metrics))
    if cfg.prompt.overflow not in prompts.POLICIES:
        raise UserError(f"prompt.overflow: must be one of {', '.join(prompts.POLICIES)}, got {cfg.prompt.overflow!r}")
    limit = cfg.run.limit
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UserError(f"run.limit: must be a positive whole number or null, got {limit!r}")
    dataset = build(cfg, "dataset").load(cfg.run.cache_dir)
    questions = dataset.questions[:limit] if limit else dataset.questions
    corpus = Corpus(dataset.documents, lambda: make_index(cfg, dataset.documents))
    if strategy.uses_index:
        corpus.index  # built (or loaded) now, so embedding time never counts as answer latency
    model.client()  # starts the local server, if the model has one

    tracking.use_experiment(cfg.tracking.uri, cfg.tracking.experiment)
    with mlflow.start_run(run_name=f"{strategy.name}·{model.name}"):
        mlflow.set_tags(run_tags(cfg, strategy.name, model.name, dataset))
        mlflow.log_params(tracking.flatten(cfg))
        mlflow.log_params({"dataset.documents": len(dataset.documents), "dataset.questions_total": len(dataset.questions),
                           "dataset.corpus_tokens": sum(d.tokens for d in dataset.documents)})
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        start = time.perf_counter()
        records = runner.answer_all(questions, strategy, corpus, model, cfg.prompt, metric_list, cfg.run.progress)
        summary = tracking.log_results(records, metric_list, time.perf_counter() - start)
        run_id = mlflow.active_run().info.run_id
    log.info("%s · %s: %d questions, %d ok, %d truncated, %d skipped, %d failed, $%.6f, run %s",
             strategy.name, model.name, len(records), summary["n_ok"], summary["n_truncated"],
             summary["n_skipped"], summary["n_error"], summary["cost_usd_total"], run_id)
    return summary.get("f1")  # the value a Hydra optimising sweeper would maximise


def build(cfg: DictConfig, group: str):
    """Instantiate a config group's `_target_`; a bad setting becomes a one-line error naming the group."""
    try:
        obj = instantiate(cfg[group], _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise UserError(f"{group} ({cfg[group].get('_target_')}): {cause}") from None
    log.info("%s: %s", group, cfg[group]._target_)
    return obj


def make_index(cfg: DictConfig, documents) -> VectorIndex:
    embedder = embeddings.load(cfg.index.embedding_path)
    return VectorIndex(documents, embedder, cfg.run.cache_dir, cfg.index.chunk_size, cfg.index.chunk_overlap,
                       cfg.index.embedding_model)


def run_tags(cfg: DictConfig, strategy: str, model: str, dataset) -> dict[str, str]:
    tags = {"strategy": strategy, "model": model, "dataset": dataset.name, "tags": ",".join(cfg.get("tags") or [])}
    if dataset.skipped_documents:
        tags["skipped_documents"] = " | ".join(dataset.skipped_documents)[:5000]
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode.name == "MULTIRUN":
        tags["sweep_dir"] = hydra_cfg.sweep.dir  # groups the runs of one sweep
    return tags


if __name__ == "__main__":
    main()
