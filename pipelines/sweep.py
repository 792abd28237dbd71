"""A Hydra callback that prints one table for the whole sweep when it ends: the estimate of every
(strategy, model) in a dry run, the measured results otherwise."""

from __future__ import annotations

from hydra.experimental.callback import Callback

ESTIMATE = [("strategy", "{}"), ("model", "{}"), ("questions", "{}"), ("calls", "{}"), ("cached", "{}"),
            ("input_miss", "{:,}"), ("input_hit", "{:,}"), ("output", "{:,}"), ("usd", "${:.4f}")]
RESULT = [("strategy", "{}"), ("model", "{}"), ("questions", "{:.0f}"), ("n_error", "{:.0f}"), ("n_truncated", "{:.0f}"),
          ("f1", "{:.3f}"), ("semantic_similarity", "{:.3f}"), ("latency_p50_s", "{:.2f}"),
          ("cost_usd_per_question", "${:.6f}"), ("spent_usd_total", "${:.4f}")]


class SweepSummary(Callback):
    def __init__(self):
        self.rows: list[dict] = []

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if job_return.status.name == "COMPLETED" and isinstance(job_return.return_value, dict):
            self.rows.append(job_return.return_value)

    def on_run_end(self, config, **kwargs) -> None:
        self._print()

    def on_multirun_end(self, config, **kwargs) -> None:
        self._print()

    def _print(self) -> None:
        for kind, columns in (("estimate", ESTIMATE), ("result", RESULT)):
            rows = [r for r in self.rows if r.get("kind") == kind]
            if rows:
                print(render(rows, columns, total="usd" if kind == "estimate" else "spent_usd_total"))


def render(rows: list[dict], columns, total: str) -> str:
    cells = [[fmt.format(r[key]) if r.get(key) is not None else "–" for key, fmt in columns] for r in rows]
    if len(rows) > 1:
        cells.append(["total"] + [""] * (len(columns) - 2) + [dict(columns)[total].format(sum(r.get(total, 0) for r in rows))])
    header = [key for key, _ in columns]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells)]
    line = lambda values: "  ".join(str(v).rjust(w) if i > 1 else str(v).ljust(w) for i, (v, w) in enumerate(zip(values, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, cells)])
