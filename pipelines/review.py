"""Human review: export a run's answers for rating, import the ratings back as MLflow assessments on
each question's trace (source HUMAN) and as the run's `human` metric.

    ragbench review export --run RUN_ID --out ratings.csv      # fill the `rating` column: 0..1, or
    ragbench review import --run RUN_ID ratings.csv            # correct / partial / incorrect

Ratings: a number from 0 to 1, or correct / partial / incorrect (1 / 0.5 / 0), the judge's scale. A
blank rating is not imported. Every row is checked before anything is written; a bad one stops the
import naming the file, the line and the column."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import mlflow
from mlflow.entities import AssessmentSource, AssessmentSourceType

from pipelines import tracking
from pipelines.errors import UserError

COLUMNS = ["question_id", "trace_id", "question", "reference", "answer", "status", "rating", "reviewer", "comment"]
LABELS = {"correct": 1.0, "partial": 0.5, "incorrect": 0.0}


def _rows(run_id: str) -> list[dict]:
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="questions.json")
    except Exception as err:  # an unknown id and a run without the table read the same to a user
        raise UserError(f"--run {run_id}: no such run with a questions table ({type(err).__name__})") from None
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    return [dict(zip(table["columns"], row)) for row in table["data"]]


def export(run_id: str, out: Path) -> int:
    rows = _rows(run_id)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**{c: row.get(c, "") for c in COLUMNS}, "rating": "", "reviewer": "", "comment": ""})
    return len(rows)


def parse_rating(text: str, where: str) -> float | None:
    text = (text or "").strip().lower()
    if not text:
        return None
    if text in LABELS:
        return LABELS[text]
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: rating: expected 0..1 or correct/partial/incorrect, got {text!r}") from None
    if not 0 <= value <= 1:
        raise UserError(f"{where}: rating: expected a number from 0 to 1, got {value}")
    return value


def load(run_id: str, path: Path) -> list[tuple[dict, float]]:
    """(table row, rating) for every rated line, all checked before anything is logged."""
    if not path.is_file():
        raise UserError(f"ratings file not found: {path}")
    by_id = {r["question_id"]: r for r in _rows(run_id)}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("question_id", "rating") if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
        out = []
        for line, row in enumerate(reader, 2):
            where = f"{path}:{line}"
            rating = parse_rating(row.get("rating", ""), where)
            if rating is None:
                continue
            if row["question_id"] not in by_id:
                raise UserError(f"{where}: question_id: {row['question_id']!r} is not in run {run_id}")
            out.append(({**by_id[row["question_id"]], "reviewer": row.get("reviewer") or "reviewer",
                         "comment": row.get("comment") or None}, rating))
    return out


def import_ratings(run_id: str, path: Path) -> dict:
    rated = load(run_id, path)
    if not rated:
        raise UserError(f"{path}: no ratings filled in")
    for row, rating in rated:
        if row.get("trace_id"):
            mlflow.log_feedback(trace_id=row["trace_id"], name="human", value=rating, rationale=row["comment"],
                                source=AssessmentSource(AssessmentSourceType.HUMAN, row["reviewer"]))
    client = mlflow.MlflowClient()
    mean = sum(r for _, r in rated) / len(rated)
    client.log_metric(run_id, "human", mean)
    client.log_metric(run_id, "n/human", len(rated))
    client.log_text(run_id, path.read_text(encoding="utf-8"), "human_ratings.csv")
    return {"rated": len(rated), "human": mean}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="ragbench review", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["export", "import"])
    parser.add_argument("file", nargs="?", help="ratings CSV to import")
    parser.add_argument("--run", required=True, help="MLflow run id")
    parser.add_argument("--out", default="ratings.csv", help="where export writes (default: ratings.csv)")
    parser.add_argument("--tracking", default="mlruns", help="MLflow store (default: mlruns)")
    args = parser.parse_args(argv)
    try:
        mlflow.set_tracking_uri(tracking.tracking_uri(args.tracking))
        if args.action == "export":
            n = export(args.run, Path(args.out))
            print(f"{n} answers to rate: {args.out} (fill the rating column, then `ragbench review import`)")
        else:
            if not args.file:
                raise UserError("review import: name the ratings CSV")
            done = import_ratings(args.run, Path(args.file))
            print(f"{done['rated']} ratings imported to run {args.run[:8]}: human = {done['human']:.3f}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
