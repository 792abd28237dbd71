"""A Hydra callback for sweeps: a parent MLflow run that groups the sweep's runs in the UI, and one
table for the whole sweep at the end (the estimate of every (strategy, model) in a dry run, the
measured results otherwise), printed and logged on the parent run."""

from __future__ import annotations

import os

import mlflow
from hydra.experimental.callback import Callback

PARENT = "PIPELINES_PARENT_RUN_ID"  # read by pipelines.run; env, so joblib workers inherit it
PARENT_EXPERIMENT = "PIPELINES_PARENT_EXPERIMENT_ID"

ESTIMATE = [("strategy", "{}"), ("model", "{}"), ("questions", "{}"), ("calls", "{}"), ("cached", "{}"),
            ("input_miss", "{:,}"), ("input_hit", "{:,}"), ("output", "{:,}"), ("usd", "${:.4f}")]
RESULT = [("strategy", "{}"), ("model", "{}"), ("questions", "{:.0f}"), ("n_error", "{:.0f}"), ("n_truncated", "{:.0f}"),
          ("f1", "{:.3f}"), ("semantic_similarity", "{:.3f}"), ("latency_p50_s", "{:.2f}"),
          ("cost_usd_per_question", "${:.6f}"), ("spent_usd_total", "${:.4f}")]


class SweepSummary(Callback):
    def __init__(self):
        self.rows: list[dict] = []

        self.parent_id: str | None = None
        self.failed = 0

    def on_multirun_start(self, config, **kwargs) -> None:
        if config.run.dry_run:
            return
        from pipelines import tracking

        experiment_id = tracking.use_experiment(config.tracking.uri, config.tracking.experiment)
        parent = mlflow.MlflowClient().create_run(
            experiment_id, run_name=f"sweep {os.path.basename(config.hydra.sweep.dir)}",
            tags={"kind": "sweep", "sweep_dir": config.hydra.sweep.dir, "dataset": config.dataset.name})
        self.parent_id = parent.info.run_id
        os.environ[PARENT], os.environ[PARENT_EXPERIMENT] = self.parent_id, experiment_id

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if job_return.status.name == "COMPLETED" and isinstance(job_return.return_value, dict):
            self.rows.append(job_return.return_value)
        elif job_return.status.name != "COMPLETED":
            self.failed += 1

    def on_run_end(self, config, **kwargs) -> None:
        self._print()

    def on_multirun_end(self, config, **kwargs) -> None:
        if self.parent_id and not self.rows:
            self.rows = self._children()  # jobs ran in other processes (joblib launcher)
        text = self._print()
        if self.parent_id:
            client = mlflow.MlflowClient()
            if text:
                client.log_text(self.parent_id, text, "sweep_summary.txt")
            client.set_tag(self.parent_id, "jobs", f"{len(self.rows)} finished, {self.failed} failed")
            client.set_terminated(self.parent_id, "FAILED" if self.failed else "FINISHED")
            os.environ.pop(PARENT, None)
            os.environ.pop(PARENT_EXPERIMENT, None)

    def _children(self) -> list[dict]:
        runs = mlflow.search_runs(experiment_ids=[os.environ[PARENT_EXPERIMENT]], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}'")
        return [{"kind": "result", "strategy": r.data.tags.get("strategy"), "model": r.data.tags.get("model"),
                 **r.data.metrics} for r in sorted(runs, key=lambda r: r.info.start_time)]

    def _print(self) -> str:
        tables = []
        for kind, columns in (("estimate", ESTIMATE), ("result", RESULT)):
            rows = [r for r in self.rows if r.get("kind") == kind]
            if rows:
                tables.append(render(rows, columns, total="usd" if kind == "estimate" else "spent_usd_total"))
        if tables:
            print("\n\n".join(tables))
        return "\n\n".join(tables)


def render(rows: list[dict], columns, total: str) -> str:
    cells = [[fmt.format(r[key]) if r.get(key) is not None else "–" for key, fmt in columns] for r in rows]
    if len(rows) > 1:
        cells.append(["total"] + [""] * (len(columns) - 2) + [dict(columns)[total].format(sum(r.get(total, 0) for r in rows))])
    header = [key for key, _ in columns]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells)]
    line = lambda values: "  ".join(str(v).rjust(w) if i > 1 else str(v).ljust(w) for i, (v, w) in enumerate(zip(values, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, cells)])
