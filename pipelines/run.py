"""Hydra entry point: answer a dataset's questions under one strategy and one model, log it to MLflow.

    python -m pipelines.run                                   # one run: rag on the default data set
    python -m pipelines.run experiment=compare                # rag, hybrid and full_context (`make run`)
    python -m pipelines.run -m strategy=rag,hybrid retrieval.top_k=3,8
    python -m pipelines.run strategy=full_context run.limit=null
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from types import SimpleNamespace
from pathlib import Path

import hydra
import mlflow
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipelines import embeddings, interrupt, ledger, limits, metrics, prompts, ray_auth, resume, runner, secrets, stores, sweep, threads, traces, tracking
from pipelines.budget import Budget
from pipelines.ledger import Ledger, open_ledger
from pipelines.errors import UserError
from pipelines.estimate import run_estimate
from pipelines.judge import Judge
from pipelines.models.cache import ResponseCache
from pipelines.index import VectorIndex
from pipelines.strategies import Corpus

log = logging.getLogger("pipelines")


ray_auth.use_token_if_available()  # before the Ray launcher joins a cluster


@hydra.main(version_base="1.3", config_path="pkg://pipelines.conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    # A Ray worker starts in its node's folder: relative paths (mlruns, .cache, the dataset, .env) mean
    # the folder the command was started from, as under the basic and joblib launchers.
    if not HydraConfig.get().job.chdir:
        os.chdir(HydraConfig.get().runtime.cwd)
    secrets.load_env_file()
    try:
        return run(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except RunStopped as stop:
        print(f"error: {stop}", file=sys.stderr)
        sys.exit(stop.code)


class RunStopped(Exception):
    """The run ended without doing its work (interrupted, or too many failed questions): exit non-zero."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def run(cfg: DictConfig) -> dict:
    # Everything that can be wrong with the input is checked before the MLflow run exists.
    threads.configure(cfg.run.get("threads"), threads.hydra_parallel_jobs())  # before torch loads
    try:
        secrets.check(cfg)
    finally:  # Hydra has already written the command line to disk: mask any key in it
        secrets.scrub(_hydra_folders(), secrets.secret_values(cfg))
    check_settings(cfg)
    stores.configure(cfg.index)  # index.store/host/port checked before any work
    ledger.check_uri(cfg.budget.get("ledger_uri"))
    model = build(cfg, "model")
    if not cfg.run.dry_run:  # an estimate needs no key: it sends nothing
        model.check()
    strategy = build(cfg, "strategy")
    for step in strategy.steps():  # a plan's own models (a cascade's small one) need their keys too
        if step.model is not None and not cfg.run.dry_run:
            step.model.check()
    judge = make_judge(cfg)
    metric_list = metrics.get(list(cfg.metrics) + [n for n in (judge.metric_names if judge else []) if n not in cfg.metrics], judged=judge is not None)
    dataset = build(cfg, "dataset").load(cfg.run.cache_dir)
    questions = list(dataset.questions)
    if cfg.run.shuffle_seed is not None:
        random.Random(cfg.run.shuffle_seed).shuffle(questions)  # the same sample on every machine
    questions = questions[: cfg.run.limit] if cfg.run.limit else questions
    if not questions:
        raise UserError(f"dataset {dataset.name}: no questions to run")
    corpus = Corpus(dataset.documents, lambda: make_index(cfg, dataset.documents))
    if strategy.uses_index:
        corpus.index  # built (or loaded) now, so embedding time never counts as answer latency
        corpus.index.prime([q.text for q in questions])  # one batch, or read back from an earlier run
    cache = ResponseCache(Path(cfg.run.cache_dir) / "responses.sqlite") if cfg.run.response_cache else None
    prepared = runner.prepare_all(questions, strategy, corpus, model, cfg.prompt, cache, cfg.budget.context_tokens)
    guess = SimpleNamespace(**run_estimate(prepared, lambda p: bool(cache and cache.get(p.cache_key)), model, judge))
    row = {"strategy": strategy.name, "model": model.name, "questions": len(questions), **vars(guess),
           "overrides": list(HydraConfig.get().overrides.task)}
    log.info("%s · %s: %d questions, %d-%d calls (%d cached), about %s input + %s output tokens, estimated "
             "$%.4f-%.4f (judge $%.4f), %d prompts cut by the window guard",
             strategy.name, model.name, len(questions), guess.calls, guess.calls_max, guess.cached,
             f"{guess.input_miss + guess.input_hit:,}", f"{guess.output:,}", guess.usd, guess.usd_max, guess.judge_usd,
             guess.truncated)
    if cfg.run.dry_run:
        return {"kind": "estimate", **row}
    confirm_spend(cfg, guess)
    if guess.calls_max:
        model.client()  # starts the local server now, if the model has one (lazily otherwise)

    interrupt.reset()
    interrupt.install()
    # max_concurrency holds across a sweep's processes, and across machines when the ledger is shared
    limits.configure(Path(cfg.run.cache_dir) / "slots", cfg.budget.get("ledger_uri"))
    budget = Budget(cfg.budget.max_usd, open_ledger(cfg.budget.get("ledger_uri"), Path(cfg.run.cache_dir) / "ledger.sqlite",
                                                    _scope()))
    resend = _resent_after_crash(budget.ledger, prepared, cache)
    experiment_id = tracking.use_experiment(cfg.tracking.uri, cfg.tracking.experiment or dataset.name)
    digest = resume.config_digest(cfg)
    resume.close_orphans(experiment_id, digest)
    stopped = None
    with mlflow.start_run(run_name=f"{strategy.name}·{model.name}"):
        mlflow.set_tags({**run_tags(cfg, strategy.name, model.name, dataset), **resume.process_tags(),
                         "config_digest": digest})
        if resend:
            mlflow.set_tag("resent_after_crash", str(resend))
        scoring = metrics.scoring_version(cfg.prompt.system, cfg.prompt.template)
        mlflow.set_tag("scoring_version", scoring)
        mlflow.log_params(tracking.flatten(cfg))
        mlflow.log_params({"dataset.documents": len(dataset.documents), "dataset.questions_total": len(dataset.questions),
                           "dataset.skipped_rows": len(dataset.skipped_rows),
                           "dataset.skipped_documents": len(dataset.skipped_documents),
                           "dataset.corpus_tokens": sum(d.tokens for d in dataset.documents),
                           "scoring_version": scoring})
        mlflow.log_text(tracking.redacted_yaml(cfg), "config.yaml")
        mlflow.log_metric("estimated_usd", guess.usd)
        tracking.log_questions(questions, dataset.name, _dataset_source(cfg))
        traces.enable(mlflow.active_run().info.run_id if cfg.tracking.traces else None)
        start = time.perf_counter()
        try:
            records = runner.answer_all(prepared, model, metric_list, cache, budget, cfg.run.progress,
                                        f"{strategy.name} · {model.name}", cfg.run.interrupt_wait_s,
                                        on_progress=tracking.log_rows_so_far)
            if judge and not interrupt.requested():
                records = judge.grade_all(records, prepared, cache, budget)
            summary = tracking.log_results(records, metric_list, time.perf_counter() - start)
            view = tracking.share_view(experiment_id, summary)
            traces.assess(records, scoring)
        finally:
            traces.enable(None)
        if budget.stopped and cfg.budget.max_usd is not None:
            mlflow.set_tag("budget_stopped", f"max_usd={budget.max_usd}")
            log.warning("budget.max_usd=%s reached: %d questions not sent", budget.max_usd, summary["n_skipped"])
        if budget.overruns:
            mlflow.set_tag("budget_overruns", str(budget.overruns))
        run_id = mlflow.active_run().info.run_id
        stopped, status = _verdict(cfg, records, summary, run_id)
        if status != "FINISHED":
            mlflow.end_run(status)
    if stopped:
        _close_parent(status)
        raise stopped
    log.info("%s · %s: %d questions, %d ok, %d truncated, %d skipped, %d failed, spent $%.6f, run %s",
             strategy.name, model.name, len(records), summary["n_ok"], summary["n_truncated"],
             summary["n_skipped"], summary["n_error"], summary["spent_usd_total"], run_id)
    log.info("runs table with the headline columns: %s", tracking.ui_link(cfg.tracking.uri, view))
    return {"kind": "result", "strategy": strategy.name, "model": model.name, **summary,
            "overrides": list(HydraConfig.get().overrides.task), "run_id": run_id, "records": records}


def _verdict(cfg: DictConfig, records, summary: dict, run_id: str) -> tuple[RunStopped | None, str]:
    """(why the command must exit non-zero, the MLflow status the run ends with)."""
    n, errors = len(records), summary["n_error"]
    answered = summary["n_ok"] + summary["n_truncated"]
    if interrupt.requested():
        unsent = summary["n_skipped"]
        mlflow.set_tags({"interrupted": "true", "unsent": str(unsent)})
        return RunStopped(f"interrupted: {answered} of {n} questions answered, {unsent} not sent, "
                          f"{errors} failed or cut off; rows logged to run {run_id[:8]}", 130), "KILLED"
    if n and errors == n:
        first = next(r.error for r in records if r.status == "error")
        return RunStopped(f"{errors} of {n} questions failed (first: {first[:300]}); run {run_id[:8]}", 1), "FAILED"
    if n and errors / n > cfg.run.max_error_rate:
        return RunStopped(f"{errors} of {n} questions failed, more than run.max_error_rate={cfg.run.max_error_rate}; "
                          f"run {run_id[:8]} has the rows", 1), "FINISHED" if answered else "FAILED"
    return None, "FINISHED"


def _dataset_source(cfg: DictConfig) -> str:
    """Where the questions came from, for the run's input dataset."""
    for key in ("questions_file", "path", "queries_dir", "documents_dir"):
        value = cfg.dataset.get(key)
        if value:
            return str(value)
    return str(cfg.dataset.name)


def _scope() -> str:
    """Everything one command starts shares one budget: its sweep folder (or run folder)."""
    hydra_cfg = HydraConfig.get()
    return str(Path(hydra_cfg.sweep.dir if _multirun(hydra_cfg) else hydra_cfg.run.dir).resolve())


def _multirun(hydra_cfg) -> bool:
    return hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN"  # None: composed, not launched


def _hydra_folders() -> list[Path]:
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return []
    output = OmegaConf.select(hydra_cfg, "runtime.output_dir", throw_on_missing=False)
    folders = [Path(output)] if output else []
    if _multirun(hydra_cfg):
        folders.append(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
    return folders


def _resent_after_crash(ledger: Ledger, prepared, cache) -> int:
    """Calls that were in flight when an earlier process died and are not in the cache: sent again."""
    orphaned = ledger.orphaned_keys()
    if not orphaned:
        return 0
    keys = [step.cache_key for p in prepared for step in (p, *p.then) if step.cache_key]
    resend = sum(k in orphaned and not (cache and cache.get(k)) for k in keys)
    if resend:
        log.warning("%d call(s) were in flight when an earlier run died and are sent again: the provider may "
                    "bill them twice", resend)
    return resend


def _close_parent(status: str) -> None:
    """A sweep that stops early still closes its parent run (the end-of-sweep callback never runs)."""
    hydra_cfg = HydraConfig.get()
    if not _multirun(hydra_cfg):
        return
    for parent in sweep._parents(hydra_cfg.sweep.dir):
        if parent.info.status == "RUNNING":
            mlflow.MlflowClient().set_terminated(parent.info.run_id, "KILLED" if status == "KILLED" else "FAILED")


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
    """Every bad setting is one line naming it, before any file is read or any model started."""
    for group in ("dataset", "index", "strategy", "model", "judge"):
        check_types(cfg, group)
    if cfg.prompt.overflow not in prompts.POLICIES:
        raise UserError(f"prompt.overflow: must be one of {', '.join(prompts.POLICIES)}, got {cfg.prompt.overflow!r}")
    limit = cfg.run.limit
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UserError(f"run.limit: must be a positive whole number or null, got {limit!r}")
    _number(cfg, "budget.max_usd", low=0, optional=True)
    _number(cfg, "budget.context_tokens", low=1, optional=True, whole=True)
    _number(cfg, "run.max_error_rate", low=0, high=1)
    _number(cfg, "run.interrupt_wait_s", low=0)
    _number(cfg, "index.chunk_size", low=1, whole=True)
    _number(cfg, "index.chunk_overlap", low=0, whole=True)
    if cfg.index.chunk_overlap >= cfg.index.chunk_size:
        raise UserError(f"index.chunk_overlap: must be smaller than index.chunk_size ({cfg.index.chunk_size}), "
                        f"got {cfg.index.chunk_overlap}")
    for group in ("model", "judge"):
        if not cfg.get(group):
            continue
        _number(cfg, f"{group}.max_retries", low=0, whole=True)
        _number(cfg, f"{group}.timeout_s", low=0, exclusive=True)
        _number(cfg, f"{group}.max_concurrency", low=1, whole=True)
        _number(cfg, f"{group}.max_output_tokens", low=1, whole=True)
        for price in ("input_cache_miss", "input_cache_hit", "input_cache_write", "output", "gpu_usd_per_hour"):
            if _value(cfg, f"{group}.prices.{price}") is not None:
                _number(cfg, f"{group}.prices.{price}", low=0)


def check_types(cfg: DictConfig, group: str) -> None:
    """A setting of the wrong type (`model.context_window=1e9x`) is one line naming it. The types are the
    annotations of the class or function the group's `_target_` names, so the code is the schema and
    no hand-kept list falls behind it; other keys (nested tables, paths) are left to that code."""
    import inspect
    import typing

    from hydra.utils import get_object

    node = cfg.get(group)
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not target:
        return
    try:
        obj = get_object(target)
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except Exception:  # an unknown target is build()'s one-line error; unresolvable hints: nothing to check
        return
    for key, hint in hints.items():
        value = _value(cfg, f"{group}.{key}") if key in node else None
        if value is None:
            continue
        kinds = set(typing.get_args(hint) or (hint,))
        if float in kinds and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{group}.{key}: must be a number, got {value!r}")
        if int in kinds and float not in kinds and (isinstance(value, bool) or not isinstance(value, int)):
            raise UserError(f"{group}.{key}: must be a whole number, got {value!r}")
        if kinds == {bool} or kinds == {bool, type(None)}:
            if not isinstance(value, bool):
                raise UserError(f"{group}.{key}: must be true or false, got {value!r}")


def _value(cfg: DictConfig, key: str):
    """The setting's value; None when unset or left `???` (build() names those)."""
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=False)
    except OmegaConfBaseException:
        return None


def _number(cfg: DictConfig, key: str, low=None, high=None, optional=False, whole=False, exclusive=False) -> None:
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException:
        return  # left `???`: build() names every missing value in one line
    if value is None and optional:
        return
    kind = int if whole else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    ok = ok and (low is None or (value > low if exclusive else value >= low)) and (high is None or value <= high)
    if not ok:
        bounds = (f"greater than {low}" if exclusive else f"at least {low}") if low is not None else ""
        bounds += f"{' and ' if bounds else ''}at most {high}" if high is not None else ""
        what = "a whole number" if whole else "a number"
        raise UserError(f"{key}: must be {what}{' ' + bounds if bounds else ''}{' or null' if optional else ''}, got {value!r}")


def confirm_spend(cfg: DictConfig, guess) -> None:
    """Ask before paid calls only when a person is there to answer; scripts and CI are never asked."""
    if guess.usd_max <= 0 or not cfg.run.confirm or not sys.stdin.isatty():
        return
    spread = f"${guess.usd:.4f}" if guess.usd_max == guess.usd else f"${guess.usd:.4f} to ${guess.usd_max:.4f}"
    reply = input(f"About {spread} for {guess.calls}-{guess.calls_max} calls (judge included). Send them? [y/N] ")
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
    if _multirun(hydra_cfg):
        tags["sweep_dir"] = hydra_cfg.sweep.dir  # groups the runs of one sweep
        experiment_id = mlflow.active_run().info.experiment_id
        tags["mlflow.parentRunId"] = sweep.parent_run(hydra_cfg.sweep.dir, experiment_id, dataset.name)
    return tags


if __name__ == "__main__":
    main()
