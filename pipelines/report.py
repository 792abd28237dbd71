"""Turn the runs of one MLflow experiment (or one sweep) into a report folder a colleague can open
offline: report.md, report.html (images embedded), the charts as PNG and the tables as CSV; then log
the folder to MLflow as a `report` run, so the UI links to it.

    python -m pipelines.report --experiment sec10q_apple
    python -m pipelines.report --experiment sec10q_apple --sweep-dir multirun/2026-11-22/09-51-32 --metric judge
"""

from __future__ import annotations

import argparse
import base64
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
from omegaconf import OmegaConf

from pipelines import charts, metrics, package_dir, projection, stats, tracking
from pipelines.errors import UserError



def quality_names() -> list[str]:
    """The quality metrics, in the order their declarations rank them (pipelines/metrics.py)."""
    return [m.name for m in metrics.headline()]


def higher_is_better(metric: str) -> bool:
    declared = metrics.REGISTRY.get(metric)
    return declared.higher_is_better if declared else True


def load_configs(experiment: str, sweep_dir: str | None, store: str | None = None,
                 latest_sweep: bool = True) -> list[dict]:
    """The finished runs to report: one sweep's (the latest, unless `sweep_dir` names one or
    `latest_sweep` is off); a configuration run again counts once, by its latest run."""
    if store:
        tracking.find_experiment(store, experiment)
    if sweep_dir is None and latest_sweep:
        sweeps = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.kind = 'sweep'",
                                    order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
        sweep_dir = sweeps[0].data.tags.get("sweep_dir") if sweeps else None
    filters = ["tags.kind = 'run'", "attributes.status = 'FINISHED'"]
    if sweep_dir:
        filters.append(f"tags.sweep_dir = '{sweep_dir}'")
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string=" and ".join(filters),
                              order_by=["attributes.start_time ASC"], output_format="list")
    if not runs:
        raise UserError(f"no finished runs in experiment {experiment!r}" + (f" with sweep_dir {sweep_dir}" if sweep_dir else ""))
    varying = _varying_params(runs)
    latest = {}
    for run in runs:  # a rerun of a configuration replaces it: never compared with itself
        latest[(run.data.tags.get("strategy"), run.data.tags.get("model"),
                tuple(run.data.params.get(k) for k in varying))] = run
    runs = sorted(latest.values(), key=lambda r: r.info.start_time)
    configs = []
    for run in runs:
        m, p, t = run.data.metrics, run.data.params, run.data.tags
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="questions.json")
        table = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = [dict(zip(table["columns"], r)) for r in table["data"]]
        n = max(1, m.get("questions", len(rows)))
        extra = ", ".join(f"{k.split('.')[-1]}={p[k]}" for k in varying if k in p)
        configs.append({
            "run_id": run.info.run_id, "strategy": t.get("strategy"), "model": t.get("model"),
            "label": f"{t.get('strategy')}·{t.get('model')}" + (f" ({extra})" if extra else ""),
            "metrics": m, "params": p, "rows": rows, "questions": int(m.get("questions", len(rows))),
            "cost_per_question": m.get("cost_usd_per_question", 0.0), "latency_p50": m.get("latency_p50_s"),
            "latency_p95": m.get("latency_p95_s"), "ttft_p50": m.get("ttft_p50_s"),
            "latencies": [r["latency_s"] for r in rows if r.get("latency_s") is not None],
            "tokens_per_question": {
                "input_miss": (m.get("prompt_tokens_total", 0) - m.get("cache_hit_tokens_total", 0)) / n,
                "input_hit": m.get("cache_hit_tokens_total", 0) / n, "output": m.get("completion_tokens_total", 0) / n},
        })
    return configs


def _varying_params(runs) -> list[str]:
    """Params that differ between the runs (besides strategy and model): they name the configurations."""
    keys = set().union(*(r.data.params for r in runs))
    skip = ("strategy._target_", "model.", "dataset.", "judge.", "tracking.", "hydra.", "scoring_version")

    def differs(key: str) -> bool:
        if not key.startswith("strategy."):
            return len({r.data.params.get(key) for r in runs}) > 1
        # A strategy's own settings name configurations only among runs of that strategy (rag has a
        # top_k, full_context none: that is the strategy, already in the label).
        by_strategy: dict[str, set] = {}
        for r in runs:
            by_strategy.setdefault(r.data.tags.get("strategy"), set()).add(r.data.params.get(key))
        return any(len(values) > 1 for values in by_strategy.values())

    return sorted(k for k in keys if not k.startswith(skip) and differs(k))


def primary_metric(configs, wanted: str | None) -> str:
    if wanted:
        if not all(wanted in c["metrics"] for c in configs):
            raise UserError(f"--metric {wanted}: not logged by every run")
        return wanted
    return next((q for q in quality_names() if all(q in c["metrics"] for c in configs)), "f1")


def summary_rows(configs, metric: str) -> list[dict]:
    out = []
    for c in configs:
        m = c["metrics"]
        row = {"configuration": c["label"], "questions": c["questions"]}
        for q in quality_names():
            if q in m:  # numbers, one column per bound, and the rows the mean covers
                row[q] = round(m[q], 4)
                row[f"{q} low"], row[f"{q} high"] = round(m.get(f"ci/{q}_low", m[q]), 4), round(m.get(f"ci/{q}_high", m[q]), 4)
                if f"n/{q}" in m:
                    row[f"{q} n"] = int(m[f"n/{q}"])
        row.update({
            "USD / question": f"{c['cost_per_question']:.6f}", "USD / 1k questions": f"{c['cost_per_question'] * 1000:.2f}",
            "input miss": int(m.get("prompt_tokens_total", 0) - m.get("cache_hit_tokens_total", 0)),
            "input hit": int(m.get("cache_hit_tokens_total", 0)), "output": int(m.get("completion_tokens_total", 0)),
            "reasoning": int(m.get("reasoning_tokens_total", 0)),
            "p50 s": _fmt(c["latency_p50"]), "p95 s": _fmt(c["latency_p95"]), "TTFT p50 s": _fmt(c["ttft_p50"]),
            "failed": int(m.get("n_error", 0)), "truncated": int(m.get("n_truncated", 0)), "skipped": int(m.get("n_skipped", 0)),
        })
        out.append(row)
    return out


def _fmt(value, digits=2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _by_question(configs):
    """Question ids in first-seen order, and each configuration's row per question."""
    ids = list(dict.fromkeys(r["question_id"] for c in configs for r in c["rows"]))
    return ids, {c["label"]: {r["question_id"]: r for r in c["rows"]} for c in configs}


def _correct(row, metric: str, threshold: float) -> bool:
    """At or past the threshold in the metric's declared direction (at or below it when lower is better)."""
    if row is None or row.get(metric) is None:
        return False
    return row[metric] >= threshold if higher_is_better(metric) else row[metric] <= threshold


def _cheapest_correct(configs, rows: dict, metric: str, threshold: float):
    """The configuration whose correct answer to one question cost least (None if none was correct)."""
    correct = [(rows[c["label"]]["cost_usd"], i) for i, c in enumerate(configs)
               if _correct(rows[c["label"]], metric, threshold)]
    return configs[min(correct)[1]] if correct else None


def per_question(configs, metric: str, threshold: float) -> tuple[list[dict], dict[str, int]]:
    """Which configurations answered each question correctly, and the cheapest that did."""
    ids, by = _by_question(configs)
    out, wins = [], {}
    for qid in ids:
        rows = {c["label"]: by[c["label"]].get(qid) for c in configs}
        row = {"question_id": qid, **{label: "yes" if _correct(r, metric, threshold) else "no" for label, r in rows.items()}}
        cheapest = _cheapest_correct(configs, rows, metric, threshold)
        row["cheapest correct"] = cheapest["label"] if cheapest else "none"
        if cheapest:
            wins[cheapest["strategy"]] = wins.get(cheapest["strategy"], 0) + 1
        out.append(row)
    return out, wins


def paired_differences(configs, metric: str) -> list[dict]:
    out = []
    for a, b in itertools.combinations(configs, 2):
        if a["model"] != b["model"]:
            continue
        if {r["question_id"] for r in a["rows"]} != {r["question_id"] for r in b["rows"]} or a["label"] == b["label"]:
            continue  # different question sets, or the same configuration: not a comparison
        sa = {r["question_id"]: r[metric] for r in a["rows"] if r.get(metric) is not None}
        sb = {r["question_id"]: r[metric] for r in b["rows"] if r.get(metric) is not None}
        if len(set(sa) & set(sb)) < 2:
            continue
        p = stats.paired(sa, sb)
        interval = f"inconclusive (n<{stats.MIN_PAIRED})" if p.inconclusive else f"[{p.ci_low:+.3f}, {p.ci_high:+.3f}]"
        out.append({"A": a["label"], "B": b["label"], "n": p.n, f"{metric} A-B": f"{p.diff:+.3f}",
                    "95% CI": interval, "p": f"{p.p_value:.3f}"})
    return out


def highlights(configs, metric: str) -> list[str]:
    up = higher_is_better(metric)
    q = lambda c: c["metrics"].get(metric, 0.0 if up else float("inf"))
    best = max(configs, key=q) if up else min(configs, key=q)
    cheapest = min(configs, key=lambda c: c["cost_per_question"])
    fastest = min((c for c in configs if c["latency_p50"] is not None), key=lambda c: c["latency_p50"], default=None)
    paid = [c for c in configs if c["cost_per_question"] > 0]
    lines = [f"Best quality: **{best['label']}** ({metric} {q(best):.3f}).",
             f"Cheapest: **{cheapest['label']}** (${cheapest['cost_per_question']:.6f} per question)."]
    if fastest:
        lines.append(f"Fastest: **{fastest['label']}** (p50 {fastest['latency_p50']:.2f} s).")
    if paid and not up:
        lines.append(f"Lower {metric} is better, so no quality-per-dollar ratio: read the quality against cost chart.")
    elif paid:
        value = max(paid, key=lambda c: q(c) / c["cost_per_question"])
        lines.append(f"Best quality per dollar: **{value['label']}** ({q(value) / value['cost_per_question']:.1f} {metric} per USD per question).")
        if q(best) > 0 and best["cost_per_question"] > 0 and value is not best:
            lines.append(f"{value['label']} reaches {q(value) / q(best):.0%} of the best quality at "
                         f"{value['cost_per_question'] / best['cost_per_question']:.0%} of its cost.")
    else:
        lines.append("All runs used a free model: cost comparisons need a paid model (see the break-even projection).")
    return lines


def model_pricings() -> list[projection.Pricing]:
    out = []
    for path in sorted((package_dir("conf") / "model").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        prices = cfg.get("prices", {})
        if not isinstance(prices.get("output"), (int, float)) or not prices.get("output") or cfg.get("expired"):
            continue  # free, user-priced (`???`) or expired
        out.append(projection.Pricing(cfg.name, prices.input_cache_miss, prices.input_cache_hit, prices.output,
                                      cfg.context_window, cfg.max_output_tokens, cfg.tokens_per_cl100k,
                                      bool(cfg.get("prefix_cache"))))
    return out


def profiles(configs) -> list[projection.Profile]:
    out = {}
    for c in configs:
        m, p = c["metrics"], c["params"]
        if c["strategy"] in out or c["strategy"] == "no_context":
            continue
        n = max(1, c["questions"])
        context = m.get("context_tokens_total", 0) / n
        ratio = float(p.get("model.tokens_per_cl100k", 1.0))
        overhead = max(0.0, m.get("prompt_tokens_total", 0) / n / ratio - context)
        budget = p.get("strategy.token_budget")
        out[c["strategy"]] = projection.Profile(
            c["strategy"], context, float(p.get("dataset.corpus_tokens", context) or context), overhead,
            m.get("completion_tokens_total", 0) / n, float(budget) if budget not in (None, "None") else None,
            float(m.get("routed_share", 0.0)), str(p.get("strategy.fallback", "full_context")))
    return list(out.values())


def to_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def md_table(rows: list[dict]) -> str:
    if not rows:
        return "_none_\n"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def build(experiment: str, out: Path, sweep_dir: str | None = None, metric: str | None = None,
          threshold: float = 0.5, every_run: bool = False) -> Path:
    configs = load_configs(experiment, sweep_dir, latest_sweep=not every_run)
    metric = primary_metric(configs, metric)
    out.mkdir(parents=True, exist_ok=True)
    for c in configs:
        c["quality"] = c["metrics"].get(metric)
        c["quality_low"], c["quality_high"] = c["metrics"].get(f"ci/{metric}_low"), c["metrics"].get(f"ci/{metric}_high")
    summary = summary_rows(configs, metric)
    questions, wins = per_question(configs, metric, threshold)
    paired = paired_differences(configs, metric)
    pricings, profs = model_pricings(), profiles(configs)
    projected = projection.table(profs, pricings)
    limits = {p.name: projection.fit_limit(next((f for f in profs if f.strategy == "full_context"), profs[0]), p)
              for p in pricings} if profs else {}
    free = all(c["cost_per_question"] == 0 for c in configs)
    up = higher_is_better(metric)
    declared = metrics.REGISTRY.get(metric)
    aggregation = (declared.aggregation if declared else "mean").capitalize()
    charted = [  # (key, title, caption, draw): each chart says what it shows and how to read it
        ("cost", "Cost per question", "Mean USD per question for each configuration, from the usage the provider "
         "billed and the configured prices. Shorter is cheaper.",
         lambda: charts.bars(configs, "cost_per_question", "Cost per question", "USD", out / "cost_per_configuration.png")),
        ("time", "Response time", "Median seconds per answer (bar) with the 95th percentile (whisker). Shorter is faster.",
         lambda: charts.bars(configs, "latency_p50", "Response time (p50, whisker to p95)", "seconds",
                             out / "response_time.png", err_key="latency_p95")),
        ("tokens", "Token usage", "Mean tokens per question: input billed at the full price (miss), input served "
         "from the provider's prefix cache (hit), and output.",
         lambda: charts.token_usage(configs, out / "token_usage.png")),
        ("cost_time", "Cost against time", "Each point is a configuration; lower left is cheap and fast.",
         lambda: charts.scatter(configs, "latency_p50", "cost_per_question", "p50 latency (s)", "USD per question",
                                "Cost vs time", out / "cost_vs_time.png")),
        ("quality_cost", f"Quality against cost", f"{aggregation} {metric} with its 95% interval against USD per question; the "
         "line joins the Pareto frontier (no other configuration is both cheaper and better). "
         + ("Up and left is better." if up else f"Lower {metric} is better: down and left is better."),
         lambda: charts.scatter(configs, "cost_per_question", "quality", "USD per question", metric,
                                f"Quality ({metric}, 95% CI) vs cost", out / "quality_vs_cost.png",
                                pareto=True, y_ci=("quality_low", "quality_high"), higher_is_better=up)),
        ("latency", "Latency distribution", "Every answer's seconds per configuration: the spread behind the medians.",
         lambda: charts.distributions(configs, out / "latency_distribution.png")),
    ]
    notes = []
    if free:  # an all-zero cost chart carries no information
        charted = [c for c in charted if c[0] not in ("cost", "cost_time")]
        notes.append("Every run used a free model (cost 0): no cost charts. Run a paid model, or read the "
                     "break-even projection below for what the same token profile costs on each priced model.")
    images = {key: (title, caption, draw()) for key, title, caption, draw in charted}
    if projected:
        images["break_even"] = ("Break-even projection", "", charts.break_even(projected, limits, out / "break_even.png"))
    to_csv(summary, out / "summary.csv")
    to_csv(questions, out / "per_question.csv")
    if paired:
        to_csv(paired, out / "paired_differences.csv")
    if projected:
        to_csv(projected, out / "break_even.csv")
    front = [c["label"] for c in charts.pareto_front(configs, "cost_per_question", "quality", higher_is_better=up)]
    lines = highlights(configs, metric)
    wins_text = ", ".join(f"{k} {v}" for k, v in sorted(wins.items()))
    fits = ", ".join(f"{name} at ~{limit / 1000:,.0f}k tokens" for name, limit in limits.items())
    projection_text = (f"Estimated USD per question as the corpus grows, from the measured token profile and each "
                       f"model's configured prices. Assumptions: {projection.ASSUMPTIONS} Full context stops fitting: {fits}.")
    sections = [
        ("Highlights", "\n".join(f"- {line}" for line in lines)),
        ("Summary", f"Quality is the mean over questions with a 95% interval. Tokens are totals.\n\n{md_table(summary)}"),
        ("Charts", "\n\n".join(notes + [f"![{k}]({p.name})" for k, (_, _, p) in images.items() if k != "break_even"])
         + f"\n\nPareto frontier (no configuration is both cheaper and better): {', '.join(front) or 'none'}."),
        ("Paired differences", f"Same questions, same model; {metric}, 95% CI, p-value.\n\n{md_table(paired)}"),
        ("Per question", f"Correct = {metric} ≥ {threshold}. Cheapest correct configuration per question; "
                         f"times each strategy was the cheapest correct: {wins_text or 'none'}.\n\n{md_table(questions)}"),
    ]
    if projected:
        sections.append(("Break-even projection", f"{projection_text}\n\n![break_even](break_even.png)"))
    title = f"Report: {experiment}" + (f" (sweep {sweep_dir})" if sweep_dir else "")
    meta = f"{len(configs)} configurations, generated {time.strftime('%Y-%m-%d %H:%M')} from MLflow runs {', '.join(c['run_id'][:8] for c in configs)}."
    markdown = f"# {title}\n\n{meta}\n\n" + "\n\n".join(f"## {h}\n\n{body}" for h, body in sections) + "\n"
    (out / "report.md").write_text(markdown, encoding="utf-8")
    page = render_html(
        title=title, meta=meta, highlights=[line.replace("**", "") for line in lines], setup=setup(configs),
        summary=summary, metric=metric, threshold=threshold, notes=notes, front=front, paired=paired,
        min_paired=stats.MIN_PAIRED, wins=wins_text, questions=drill_down(configs, metric, threshold),
        charts=[{"title": t, "caption": c, "data": _base64(p)} for k, (t, c, p) in images.items() if k != "break_even"],
        break_even={"text": projection_text, "data": _base64(images["break_even"][2]),
                    "caption": "USD per question (log scale) for each strategy and priced model as the corpus grows; "
                               "dotted lines mark where full context no longer fits a model's window."}
        if "break_even" in images else None)
    (out / "report.html").write_text(page, encoding="utf-8")
    return out


def render_html(**page) -> str:
    """The report page from its Jinja2 template (pipelines/templates/report.html.j2), images inline."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("pipelines", "templates"), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("report.html.j2").render(**page)


def _base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def setup(configs) -> dict:
    """What was run: data set, questions, models with their dated prices, each configuration's settings."""
    first = configs[0]["params"]
    models = {}
    for c in configs:
        p = c["params"]
        models[c["model"]] = {"name": c["model"], "model_id": p.get("model.model_id", ""),
                              **{k: p.get(f"model.prices.{k}", "") for k in ("input_cache_miss", "input_cache_hit",
                                                                              "output", "as_of", "source")}}
    common = ("index.chunk_size", "index.chunk_overlap", "index.embedding_model", "retrieval.top_k", "retrieval.method",
              "retrieval.order", "budget.context_tokens", "prompt.overflow")
    own = lambda c: ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in sorted(c["params"].items())
                              if k.startswith("strategy.") and not k.endswith("_target_") and v not in ("None", "", None))
    return {"dataset": first.get("dataset.name", ""), "documents": first.get("dataset.documents", ""),
            "corpus_tokens": int(float(first.get("dataset.corpus_tokens", 0) or 0)),
            "questions": max(c["questions"] for c in configs), "scoring_version": first.get("scoring_version", ""),
            "shared": ", ".join(f"{k}={first[k]}" for k in common if k in first),
            "models": list(models.values()),
            "configurations": [{"label": c["label"], "run_id": c["run_id"], "settings": own(c) or "none"} for c in configs]}


def drill_down(configs, metric: str, threshold: float) -> list[dict]:
    """Per question: the reference and every configuration's answer with its score, cost and latency;
    the cheapest correct one flagged."""
    ids, by = _by_question(configs)
    out = []
    for qid in ids:
        rows = {c["label"]: by[c["label"]].get(qid) for c in configs}
        cheapest = _cheapest_correct(configs, rows, metric, threshold)
        first = next(r for r in rows.values() if r is not None)
        out.append({"question_id": qid, "question": first.get("question", ""), "reference": first.get("reference", ""),
                    "answers": [{"label": label, "answer": (r or {}).get("answer", ""), "error": (r or {}).get("error", ""),
                                 "score": _fmt((r or {}).get(metric), 3), "cost": f"{(r or {}).get('cost_usd') or 0:.6f}",
                                 "latency": _fmt((r or {}).get("latency_s")),
                                 "cheapest": cheapest is not None and label == cheapest["label"]}
                                for label, r in rows.items()]})
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="sec10q_apple")
    parser.add_argument("--sweep-dir", help="only the runs of this Hydra sweep (default: the latest sweep)")
    parser.add_argument("--all", action="store_true", help="every finished run of the experiment, not one sweep")
    parser.add_argument("--metric", help="quality metric to rank by (default: the best-ranked declared quality metric every run logged: "
                        "human, judge, f1, ...)")
    parser.add_argument("--correct-threshold", type=float, default=0.5, help="a question counts as correct at or above this (at or below for a lower-is-better metric)")
    parser.add_argument("--out", help="report folder (default: reports/<experiment>-<time>)")
    parser.add_argument("--tracking", default="mlruns", help="MLflow store (default: mlruns)")
    args = parser.parse_args(argv)
    out = Path(args.out or f"reports/{args.experiment}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        experiment_id = tracking.find_experiment(args.tracking, args.experiment)
        build(args.experiment, out, args.sweep_dir, args.metric, args.correct_threshold, args.all)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"report {out.name}",
                          tags={"kind": "report", "sweep_dir": args.sweep_dir or ""}):
        mlflow.log_artifacts(str(out), artifact_path="report")
    print(f"report: {out / 'report.html'} (also logged to MLflow as run 'report {out.name}')")


if __name__ == "__main__":
    main()
