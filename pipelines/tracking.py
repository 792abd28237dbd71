"""Write one MLflow run per (strategy, model) configuration: the flattened config as params, aggregated
metrics, the per-question table and the resolved config. The store is SQLite inside `mlruns/`
(MLflow's file store is in maintenance mode), with artifacts beside it in `mlruns/artifacts/`."""

from __future__ import annotations

import contextlib
import json
import fcntl
import logging
import math
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipelines import secrets, stats
from pipelines.errors import UserError
from pipelines.metrics import Metric
from pipelines.record import STATUSES, QuestionRecord

log = logging.getLogger(__name__)


def tracking_uri(store: str) -> str:
    """`mlruns` (a folder) becomes a SQLite store inside it; a URI with a scheme is used as given."""
    if "://" in store:
        return store
    folder = Path(store).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def use_experiment(store: str, name: str) -> str:
    uri = tracking_uri(store)
    mlflow.set_tracking_uri(uri)
    # Parallel sweep jobs must not create the SQLite tables or the experiment twice.
    with _lock(store):
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            artifacts = Path(store).resolve() / "artifacts" if "://" not in store else None
            try:
                experiment_id = mlflow.create_experiment(name, artifact_location=artifacts.as_uri() if artifacts else None)
            except mlflow.exceptions.MlflowException:
                # A server has no file lock: another process created it between our lookup and create.
                experiment = mlflow.get_experiment_by_name(name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def find_experiment(store: str, name: str) -> str:
    """The id of an existing experiment; an unknown name is an error, never a new empty experiment."""
    mlflow.set_tracking_uri(tracking_uri(store))
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        known = sorted(e.name for e in mlflow.search_experiments() if e.name != "Default")
        raise UserError(f"--experiment {name!r}: no such experiment in {store} (known: {', '.join(known) or 'none'})")
    return experiment.experiment_id


@contextlib.contextmanager
def _lock(store: str):
    if "://" in store:  # a server handles its own concurrency
        yield
        return
    with open(Path(store).resolve() / ".init.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def flatten(cfg: DictConfig) -> dict[str, str]:
    """`a.b.c: value` params; lists as their YAML-ish text. Long values are cut to MLflow's limit;
    anything that looks like a key inside a URL is masked."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = secrets.redact_url(str(node))[:6000]

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def redacted_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML, with keys inside URLs masked."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    for value in secrets.secret_values(cfg):
        text = text.replace(value, "***")
    return text


def aggregate(records: list[QuestionRecord], metrics: list[Metric]) -> dict[str, float]:
    out: dict[str, float] = {"questions": len(records)}
    for status in STATUSES:
        out[f"n_{status}"] = sum(r.status == status for r in records)
    for metric in metrics:
        values = [r.scores[metric.name] for r in records if metric.name in r.scores]
        # The rows the mean covers and its interval bounds in their own namespaces (n/, ci/): MLflow
        # groups metrics by prefix, so the runs table's top level keeps the headline figures.
        out[f"n/{metric.name}"] = len(values)
        if values:  # the metric's declared aggregation (mean unless it says otherwise)
            out[metric.name], out[f"ci/{metric.name}_low"], out[f"ci/{metric.name}_high"] = stats.aggregate(
                metric.aggregation, values)
    for name, field in (("latency", "latency_s"), ("ttft", "ttft_s")):
        values = [getattr(r, field) for r in records if getattr(r, field) is not None]
        if values:
            out[f"{name}_p50_s"] = float(np.percentile(values, 50))
            out[f"{name}_p95_s"] = float(np.percentile(values, 95))
            out[f"{name}_mean_s"] = float(np.mean(values))
            out[f"ci/{name}_p50_s_low"], out[f"ci/{name}_p50_s_high"] = stats.bootstrap_ci(values, statistic=np.median)
    speeds = [r.output_tokens_per_s for r in records if r.output_tokens_per_s]
    if speeds:
        out["output_tokens_per_s_p50"] = float(np.median(speeds))
    cost = sum(r.cost_usd for r in records)
    out["cost_usd_total"] = cost  # what the answers cost, cached ones included: comparable across reruns
    # Per ANSWERED question: a budget-stopped run must not look cheaper for the questions it never sent.
    answered = [r for r in records if r.answered]
    out["cost_usd_per_question"] = cost / len(answered) if answered else 0.0
    if answered:
        out["ci/cost_usd_per_question_low"], out["ci/cost_usd_per_question_high"] = stats.bootstrap_ci(
            [r.cost_usd for r in answered])
    out["spent_usd_total"] = sum(r.spent_usd for r in records)  # what this run paid
    out["n_cached"] = sum(r.cached for r in records)
    out["attempts_total"] = sum(r.attempts for r in records)
    out["retries_total"] = sum(max(0, r.attempts - 1) for r in records)
    for field in ("prompt_tokens", "cache_hit_tokens", "completion_tokens", "reasoning_tokens", "context_tokens",
                  "dropped_tokens", "judge_prompt_tokens", "judge_completion_tokens"):
        out[f"{field}_total"] = sum(getattr(r, field) for r in records)
    routed = [r for r in records if r.route]
    if routed:
        out["routed_share"] = sum(r.escalated for r in routed) / len(routed)
        # Against sending the fallback's context on every question: the context tokens not sent
        # (a routed question sent both routes' contexts).
        out["context_tokens_saved_vs_fallback"] = sum(r.fallback_context_tokens - r.context_tokens for r in routed)
        # Against always sending the last step (full context, the large model), estimated from its prompts.
        out["cost_usd_saved_vs_last_step"] = sum(r.fallback_usd_estimate for r in routed) - sum(r.cost_usd for r in routed)
    if any(r.judge_latency_s is not None for r in records):
        out["judge_cost_usd_total"] = sum(r.judge_cost_usd for r in records)
        out["judge_spent_usd_total"] = sum(r.judge_spent_usd for r in records)
        out["judge_latency_p50_s"] = float(np.median([r.judge_latency_s for r in records if r.judge_latency_s is not None]))
    return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}


def log_results(records: list[QuestionRecord], metrics: list[Metric], wall_s: float) -> dict[str, float]:
    summary = aggregate(records, metrics)
    summary["wall_time_s"] = wall_s
    mlflow.log_metrics(summary)
    rows = [r.row() for r in records]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    # Every row has every column, so questions without a metric show an empty cell, not a shifted one.
    table = {c: [row.get(c) for row in rows] for c in columns}
    mlflow.log_table(table, artifact_file="questions.json")
    mlflow.log_text(pd.DataFrame(table).to_csv(index=False), "questions.csv")  # for spreadsheets
    return summary


VIEW_KEY = "ragbench"  # ?viewStateShareKey=ragbench opens the runs table with the headline columns
HEADLINE = ("cost_usd_per_question", "latency_p50_s", "n_error")


def share_view(experiment_id: str, logged: dict) -> str:
    """Save the runs table's columns as one of MLflow's shared views (the experiment tag its UI reads
    for `?viewStateShareKey=`): MLflow keeps a person's own column choice in the browser, so without
    this the table opens on Source/Models/Dataset. Returns the page's path under the UI's address."""
    from pipelines import metrics

    quality = [m.name for m in metrics.headline() if m.name in logged][:2]
    columns = (["attributes.`Dataset`"] + [f"metrics.`{name}`" for name in (*quality, *HEADLINE) if name in logged]
               + ["tags.`strategy`", "tags.`model`"])
    state = {"selectedColumns": columns, "orderByKey": "attributes.start_time", "orderByAsc": False}
    client = mlflow.MlflowClient()
    _again_if_raced(lambda: client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(state)))
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


def ui_link(store: str, page: str) -> str:
    """A page of the UI on this store: on the tracking server itself, or on `mlflow ui`'s default address."""
    uri = tracking_uri(store)
    if uri.startswith("http"):
        return uri.rstrip("/") + "/" + page
    return f"http://127.0.0.1:5000/{page} (start the UI with `mlflow ui --backend-store-uri {uri}`)"


def log_questions(questions, name: str, source: str) -> None:
    """The question set as the run's input dataset: runs over the same questions share its digest."""
    frame = pd.DataFrame([{"question_id": q.qid, "question": q.text, "reference": " | ".join(q.answers),
                           "gold_documents": "; ".join(q.gold_documents), "unanswerable": q.unanswerable,
                           "scope": "; ".join(q.scope)} for q in questions])
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a local path either way
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_pandas(frame, source=source, name=name, targets="reference")
    _again_if_raced(lambda: mlflow.log_input(dataset, context="questions"))


def _again_if_raced(write) -> None:
    """The server looks a dataset or an experiment tag up, then inserts it: two sweeps writing the same
    one at once both miss, and the second insert breaks the unique key. Asked again, it finds the first
    one's (and updates a tag)."""
    try:
        write()
    except mlflow.exceptions.RestException as error:
        if "UniqueViolation" not in str(error) and "UNIQUE constraint" not in str(error):
            raise
        write()


def log_rows_so_far(records: list[QuestionRecord]) -> None:
    """The rows finished so far, so a long run shows progress in the UI and a crash keeps them. Written
    whole each time (log_text replaces; log_table would append), apart from the final questions.json."""
    rows = [r.row() for r in records]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = {"columns": columns, "data": [[row.get(c) for c in columns] for row in rows]}
    mlflow.log_text(json.dumps(table, default=str), "questions_so_far.json")
