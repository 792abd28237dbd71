"""A run's predictions in the official SQuAD v2.0 format, so the published evaluation script
(`evaluate-v2.0.py data.json predictions.json`) can be run on them unchanged:

    ragbench export --run RUN_ID --squad predictions.json

`{question_id: prediction}`. An answer our abstention detector recognises ("I don't know", "not in
the documents") becomes the empty prediction, as our EM/F1 count it. A question that failed or was
skipped (no answer) becomes `∅`, a token no gold answer contains, so the official script scores it 0
on every question, as ours does; the empty prediction would score 1 on unanswerable ones."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mlflow

from pipelines import tracking
from pipelines.errors import UserError
from pipelines.metrics import is_abstention

NO_ANSWER = "∅"


def squad_predictions(rows: list[dict]) -> dict[str, str]:
    out = {}
    for row in rows:
        answer = row.get("answer") or ""
        if row.get("status") not in ("ok", "truncated") or not answer.strip():
            out[row["question_id"]] = NO_ANSWER
        else:
            out[row["question_id"]] = "" if is_abstention(answer) else answer
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="ragbench export", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="MLflow run id")
    parser.add_argument("--squad", required=True, help="where to write the predictions JSON")
    parser.add_argument("--tracking", default="mlruns", help="MLflow store (default: mlruns)")
    args = parser.parse_args(argv)
    try:
        mlflow.set_tracking_uri(tracking.tracking_uri(args.tracking))
        from pipelines.review import _rows

        predictions = squad_predictions(_rows(args.run))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    Path(args.squad).write_text(json.dumps(predictions, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{len(predictions)} predictions: {args.squad}")


if __name__ == "__main__":
    main()
