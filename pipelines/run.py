"""Hydra entry point: answer a dataset's questions under one strategy and one model, log it to MLflow.

    python -m pipelines.run                                   # the default sweep: rag, hybrid, full_context
    python -m pipelines.run -m strategy=rag,hybrid retrieval.top_k=3,8
    python -m pipelines.run strategy=full_context run.limit=null
"""

from __future__ import annotations

import logging
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import hydra
import mlflow
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pipelines import embeddings, metrics, prompts, runner, sweep, threads, tracking
from pipelines.budget import Budget
from pipelines.errors import UserError
from pipelines.estimate import estimate
from pipelines.judge import Judge
from pipelines.models.cache import ResponseCache
from pipelines.index import VectorIndex
from pipelines.strategies import Corpus

log = logging.getLogger("pipelines")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    try:
        return run(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def run(cfg: DictConfig) -> dict:
    # Everything that can be wrong with the input is checked before the MLflow run exists.
    threads.configure(cfg.run.get("threads"), threads.hydra_parallel_jobs())  # before torch loads
    model = build(cfg, "model")
    if not cfg.run.dry_run:  # an estimate needs no key: it sends nothing
        model.check()
    strategy = build(cfg, "strategy")
    judge = make_judge(cfg)
    metric_list = metrics.get(list(cfg.metrics) + (["judge"] if judge and "judge" not in cfg.metrics else []))
    check_settings(cfg)
    dataset = build(cfg, "dataset").load(cfg.run.cache_dir)
    questions = list(dataset.questions)
    if cfg.run.shuffle_seed is not None:
        random.Random(cfg.run.shuffle_seed).shuffle(questions)  # the same sample on every machine
    questions = questions[: cfg.run.limit] if cfg.run.limit else questions
    corpus = Corpus(dataset.documents, lambda: make_index(cfg, dataset.documents))
    if strategy.uses_index:
        corpus.index  # built (or loaded) now, so embedding time never counts as answer latency
        corpus.index.embedder.prime([q.text for q in questions])  # one batch, not one encode per question
    cache = ResponseCache(Path(cfg.run.cache_dir) / "responses.sqlite") if cfg.run.response_cache else None
    prepared = runner.prepare_all(questions, strategy, corpus, model, cfg.prompt, cache, cfg.budget.context_tokens)
    guess = estimate([p.prompt for p in prepared], [bool(cache and cache.get(p.cache_key)) for p in prepared], model)
    row = {"strategy": strategy.name, "model": model.name, "questions": len(questions), **asdict(guess),
           "overrides": list(HydraConfig.get().overrides.task)}
    log.info("%s · %s: %d questions, %d calls (%d cached), about %s input + %s output tokens, estimated $%.4f",
             strategy.name, model.name, len(questions), guess.calls, guess.cached,
             f"{guess.input_miss + guess.input_hit:,}", f"{guess.output:,}", guess.usd)
    if cfg.run.dry_run:
        return {"kind": "estimate", **row}
    confirm_spend(cfg, guess)
    if guess.calls:
        model.client()  # starts the local server now, if the model has one (lazily otherwise)

    budget = Budget(cfg.budget.max_usd)
    tracking.use_experiment(cfg.tracking.uri, cfg.tracking.experiment)
    with mlflow.start_run(run_name=f"{strategy.name}·{model.name}"):
        mlflow.set_tags(run_tags(cfg, strategy.name, model.name, dataset))
        mlflow.log_params(tracking.flatten(cfg))
        mlflow.log_params({"dataset.documents": len(dataset.documents), "dataset.questions_total": len(dataset.questions),
                           "dataset.skipped_rows": len(dataset.skipped_rows),
                           "dataset.corpus_tokens": sum(d.tokens for d in dataset.documents)})
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        mlflow.log_metric("estimated_usd", guess.usd)
        start = time.perf_counter()
        records = runner.answer_all(prepared, model, metric_list, cache, budget, cfg.run.progress,
                                    f"{strategy.name} · {model.name}")
        if judge:
            records = judge.grade_all(records, prepared, cache, budget)
        summary = tracking.log_results(records, metric_list, time.perf_counter() - start)
        if cfg.tracking.traces:
            active = mlflow.active_run().info
            tracking.log_traces(records, active.run_id, active.experiment_id)
        if budget.stopped:
            mlflow.set_tag("budget_stopped", f"max_usd={budget.max_usd}")
            log.warning("budget.max_usd=%s reached: %d questions not sent", budget.max_usd, summary["n_skipped"])
        run_id = mlflow.active_run().info.run_id
    log.info("%s · %s: %d questions, %d ok, %d truncated, %d skipped, %d failed, spent $%.6f, run %s",
             strategy.name, model.name, len(records), summary["n_ok"], summary["n_truncated"],
             summary["n_skipped"], summary["n_error"], summary["spent_usd_total"], run_id)
    return {"kind": "result", "strategy": strategy.name, "model": model.name, **summary,
            "overrides": list(HydraConfig.get().overrides.task)}


def make_judge(cfg: DictConfig) -> Judge | None:
    if not cfg.get("judge"):
        return None
    settings = OmegaConf.to_container(cfg.judge, resolve=True)
    faithful = settings.pop("faithfulness", True)
    model = build(OmegaConf.create({"judge": settings}), "judge")
    if not cfg.run.dry_run:
        model.check()
    return Judge(model, faithful)


def check_settings(cfg: DictConfig) -> None:
    if cfg.prompt.overflow not in prompts.POLICIES:
        raise UserError(f"prompt.overflow: must be one of {', '.join(prompts.POLICIES)}, got {cfg.prompt.overflow!r}")
    limit = cfg.run.limit
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UserError(f"run.limit: must be a positive whole number or null, got {limit!r}")
    cap = cfg.budget.max_usd
    if cap is not None and (not isinstance(cap, (int, float)) or cap < 0):
        raise UserError(f"budget.max_usd: must be a non-negative number or null, got {cap!r}")


def confirm_spend(cfg: DictConfig, guess) -> None:
    """Ask before paid calls only when a person is there to answer; scripts and CI are never asked."""
    if guess.usd <= 0 or not cfg.run.confirm or not sys.stdin.isatty():
        return
    reply = input(f"About ${guess.usd:.4f} for {guess.calls} calls. Send them? [y/N] ")
    if reply.strip().lower() not in ("y", "yes"):
        raise UserError("stopped before any call (answered no); run.dry_run=true shows the estimate alone")


def build(cfg: DictConfig, group: str):
    """Instantiate a config group's `_target_`; a bad setting becomes a one-line error naming the group."""
    missing = sorted(_missing(OmegaConf.to_container(cfg[group], resolve=False)))
    if missing:
        keys = ", ".join(f"{group}.{k}" for k in missing)
        raise UserError(f"{group}: no value given for {keys} (set on the command line, e.g. {group}.{missing[0]}=...)")
    try:
        obj = instantiate(cfg[group], _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise UserError(f"{group} ({cfg[group].get('_target_')}): {cause}") from None

    log.info("%s: %s", group, cfg[group]._target_)
    return obj


def _missing(node, prefix: str = "") -> list[str]:
    """Keys left as `???`, without resolving interpolations (which would fail on them first)."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _missing(value, f"{prefix}{key}.")]
    return [prefix[:-1]] if node == "???" else []


def make_index(cfg: DictConfig, documents) -> VectorIndex:
    embedder = embeddings.load(cfg.index.embedding_path)
    return VectorIndex(documents, embedder, cfg.run.cache_dir, cfg.index.chunk_size, cfg.index.chunk_overlap,
                       cfg.index.embedding_model)


def run_tags(cfg: DictConfig, strategy: str, model: str, dataset) -> dict[str, str]:
    tags = {"kind": "run", "strategy": strategy, "model": model, "dataset": dataset.name,
            "tags": ",".join(cfg.get("tags") or [])}
    if dataset.skipped_documents:
        tags["skipped_documents"] = " | ".join(dataset.skipped_documents)[:5000]
    if dataset.skipped_rows:
        tags["skipped_rows"] = f"{len(dataset.skipped_rows)}: " + " | ".join(dataset.skipped_rows)[:5000]
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode.name == "MULTIRUN":
        tags["sweep_dir"] = hydra_cfg.sweep.dir  # groups the runs of one sweep
        experiment_id = mlflow.active_run().info.experiment_id
        tags["mlflow.parentRunId"] = sweep.parent_run(hydra_cfg.sweep.dir, experiment_id, dataset.name)
    return tags


if __name__ == "__main__":
    main()
