"""Compare two runs on the same questions: paired differences with 95% bootstrap intervals and
permutation p-values, per metric.

    python -m pipelines.compare --experiment sec10q_apple --a strategy=hybrid --b strategy=full_context
    python -m pipelines.compare --experiment sec10q_apple --a RUN_ID --b RUN_ID --metrics f1 rouge_l

A side is a run id or `tag=value` filters (strategy, model, dataset); the newest finished run wins.
"""

from __future__ import annotations

import argparse
import json
import sys

import mlflow

from pipelines import stats, tracking
from pipelines.errors import UserError
from pipelines.metrics import REGISTRY


def find_run(experiment: str, side: list[str]):
    if len(side) == 1 and "=" not in side[0]:
        try:
            return mlflow.get_run(side[0])
        except mlflow.exceptions.MlflowException:
            raise UserError(f"--a/--b: no run with id {side[0]!r}") from None
    filters = ["attributes.status = 'FINISHED'"]
    for item in side:
        key, _, value = item.partition("=")
        if not value:
            raise UserError(f"--a/--b: expected tag=value or a run id, got {item!r}")
        filters.append(f"tags.{key} = '{value}'")
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string=" and ".join(filters),
                              order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    if not runs:
        raise UserError(f"no finished run in experiment {experiment!r} with {' '.join(side)}")
    return runs[0]


def question_scores(run) -> dict[str, dict[str, float]]:
    """metric -> {question_id: score} from the run's per-question table."""
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="questions.json")
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        for name in REGISTRY:
            if row.get(name) is not None:
                out.setdefault(name, {})[row["question_id"]] = float(row[name])
        out.setdefault("cost_usd", {})[row["question_id"]] = float(row["cost_usd"])
        if row.get("latency_s") is not None:
            out.setdefault("latency_s", {})[row["question_id"]] = float(row["latency_s"])
    return out


def compare(run_a, run_b, metrics: list[str] | None = None) -> dict[str, stats.Paired]:
    a, b = question_scores(run_a), question_scores(run_b)
    names = metrics or [m for m in a if m in b]
    return {m: stats.paired(a[m], b[m]) for m in names if m in a and m in b and set(a[m]) & set(b[m])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--a", nargs="+", required=True)
    parser.add_argument("--b", nargs="+", required=True)
    parser.add_argument("--metrics", nargs="*")
    parser.add_argument("--tracking", default="mlruns", help="MLflow store (default: mlruns)")
    args = parser.parse_args(argv)
    try:
        tracking.find_experiment(args.tracking, args.experiment)
        run_a, run_b = find_run(args.experiment, args.a), find_run(args.experiment, args.b)
        results = compare(run_a, run_b, args.metrics)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    label = lambda r: f"{r.data.tags.get('strategy')}·{r.data.tags.get('model')}"
    print(f"A = {label(run_a)} ({run_a.info.run_id[:8]}), B = {label(run_b)} ({run_b.info.run_id[:8]})")
    print(f"{'metric':22} {'n':>4} {'A':>9} {'B':>9} {'A-B':>9} {'95% CI':>21} {'p':>7}")
    for name, r in results.items():
        interval = f"inconclusive (n<{stats.MIN_PAIRED})" if r.inconclusive else f"[{r.ci_low:>+8.4f}, {r.ci_high:>+8.4f}]"
        print(f"{name:22} {r.n:>4} {r.mean_a:>9.4f} {r.mean_b:>9.4f} {r.diff:>+9.4f} {interval:>21} {r.p_value:>7.4f}")


if __name__ == "__main__":
    main()
