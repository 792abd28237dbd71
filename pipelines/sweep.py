"""Sweeps: a parent MLflow run that groups a sweep's runs in the UI, and one table for the whole
sweep at the end (the estimate of every (strategy, model) in a dry run, the measured results
otherwise), printed and logged on the parent run.

The parent is created by the first job that starts an MLflow run (so a sweep that fails on bad input
leaves no run behind), under a file lock in the sweep folder, so parallel jobs share one."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

import mlflow
from hydra.experimental.callback import Callback


def parent_run(sweep_dir: str, experiment_id: str, dataset: str) -> str:
    """The sweep's parent run in this experiment, created on first use."""
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(sweep_dir) / ".mlflow-parent.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _parents(sweep_dir, [experiment_id])
        if found:
            return found[0].info.run_id
        run = mlflow.MlflowClient().create_run(
            experiment_id, run_name=f"sweep {os.path.basename(sweep_dir)}",
            tags={"kind": "sweep", "sweep_dir": sweep_dir, "sweep_id": sweep_id(sweep_dir), "dataset": dataset,
                  **_process_tags()})
        return run.info.run_id


def _process_tags() -> dict[str, str]:
    from pipelines.resume import process_tags

    return process_tags()


def sweep_id(sweep_dir: str) -> str:
    """The sweep's identity in a shared MLflow server: Hydra's sweep folder is relative and named by the
    second it started, so two people's sweeps can share it; host and absolute path tell them apart."""
    return f"{socket.gethostname()}:{Path(sweep_dir).resolve()}"


def _parents(sweep_dir: str, experiment_ids: list[str] | None = None):
    kwargs = {"experiment_ids": experiment_ids} if experiment_ids else {"search_all_experiments": True}
    return mlflow.search_runs(filter_string=f"tags.kind = 'sweep' and tags.sweep_id = '{sweep_id(sweep_dir)}'",
                              output_format="list", **kwargs)


ESTIMATE = [("strategy", "{}"), ("model", "{}"), ("questions", "{}"), ("calls", "{}"), ("calls_max", "{}"),
            ("cached", "{}"), ("input_miss", "{:,}"), ("input_hit", "{:,}"), ("output", "{:,}"), ("truncated", "{}"),
            ("dropped", "{:,}"), ("judge_usd", "${:.4f}"), ("usd", "${:.4f}"), ("usd_max", "${:.4f}")]
RESULT = [("strategy", "{}"), ("model", "{}"), ("questions", "{:.0f}"), ("n_error", "{:.0f}"), ("n_truncated", "{:.0f}"),
          ("f1", "{:.3f}"), ("semantic_similarity", "{:.3f}"), ("latency_p50_s", "{:.2f}"),
          ("cost_usd_per_question", "${:.6f}"), ("spent_usd_total", "${:.4f}")]


class SweepSummary(Callback):
    def __init__(self):
        self.rows: list[dict] = []
        self.failed = 0

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if job_return.status.name == "COMPLETED" and isinstance(job_return.return_value, dict):
            self.rows.append({k: v for k, v in job_return.return_value.items() if k != "records"})
        elif job_return.status.name != "COMPLETED":
            self.failed += 1

    def on_run_end(self, config, **kwargs) -> None:
        self._print(self.rows)

    def on_multirun_end(self, config, **kwargs) -> None:
        parents = [] if config.run.dry_run else self._find_parents(config)
        for parent in parents:
            client = mlflow.MlflowClient()  # only now: without a tracking URI MLflow 3 creates ./mlflow.db
            children = mlflow.search_runs(experiment_ids=[parent.info.experiment_id], output_format="list",
                                          filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
            # From MLflow, not from on_job_end: with the joblib launcher the jobs ran in other processes.
            children = sorted(children, key=lambda r: r.info.start_time)
            varying = _varying_params(children)
            rows = [{"kind": "result", "strategy": r.data.tags.get("strategy"), "model": r.data.tags.get("model"),
                     "overrides": [f"{k}={r.data.params.get(k)}" for k in varying], **r.data.metrics} for r in children]
            failed = sum(r.info.status != "FINISHED" for r in children)
            text = render(rows, RESULT, total="spent_usd_total") if rows else ""
            if text:
                client.log_text(parent.info.run_id, text, "sweep_summary.txt")
                if not self.rows:  # the jobs ran in other processes (joblib): print what MLflow has
                    print(text)
            client.set_tag(parent.info.run_id, "jobs", f"{len(children) - failed} finished, {failed} failed")
            if any("budget_stopped" in r.data.tags for r in children):
                client.set_tag(parent.info.run_id, "budget_stopped", "true")
            if parent.info.status == "RUNNING":
                client.set_terminated(parent.info.run_id, "FAILED" if failed or self.failed else "FINISHED")
        self._print(self.rows)

    @staticmethod
    def _find_parents(config):
        from pipelines import tracking

        mlflow.set_tracking_uri(tracking.tracking_uri(config.tracking.uri))
        if not (Path(config.tracking.uri) / "mlflow.db").exists() and "://" not in config.tracking.uri:
            return []  # no job got as far as MLflow
        return _parents(config.hydra.sweep.dir)

    @staticmethod
    def _print(rows) -> None:
        tables = []
        for kind, columns in (("estimate", ESTIMATE), ("result", RESULT)):
            chosen = [r for r in rows if r.get("kind") == kind]
            if chosen:
                tables.append(render(chosen, columns, total="usd_max" if kind == "estimate" else "spent_usd_total"))
        if tables:
            print("\n\n".join(tables))


def _varying_params(runs) -> list[str]:
    from pipelines.report import _varying_params as varying

    return varying(runs) if runs else []


def render(rows: list[dict], columns, total: str) -> str:
    settings = _varying(rows)
    if any(settings):  # what else tells the sweep's jobs apart (e.g. budget.context_tokens=4000)
        rows = [{**r, "settings": s} for r, s in zip(rows, settings)]
        columns = columns[:2] + [("settings", "{}")] + columns[2:]
    cells = [[fmt.format(r[key]) if r.get(key) is not None else "–" for key, fmt in columns] for r in rows]
    if len(rows) > 1:
        cells.append(["total"] + [""] * (len(columns) - 2) + [dict(columns)[total].format(sum(r.get(total, 0) for r in rows))])
    header = [key for key, _ in columns]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells)]
    line = lambda values: "  ".join(str(v).rjust(w) if i > 1 else str(v).ljust(w) for i, (v, w) in enumerate(zip(values, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, cells)])


def _varying(rows: list[dict]) -> list[str]:
    """Per row, the overrides whose values differ between rows, other than strategy and model."""
    parsed = [dict(o.split("=", 1) for o in r.get("overrides", []) if "=" in o) for r in rows]
    keys = sorted({k for p in parsed for k in p} - {"strategy", "model"})
    varying = [k for k in keys if len({p.get(k) for p in parsed}) > 1]
    return [" ".join(f"{k}={p[k]}" for k in varying if k in p) for p in parsed]
