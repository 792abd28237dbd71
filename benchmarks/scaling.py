"""How the framework's costs grow with the corpus: 1x, 4x and 16x (issue 16).

    nice -n 19 .venv/bin/python benchmarks/scaling.py build                 # cold builds of 1x and 4x, once
    nice -n 19 .venv/bin/python benchmarks/scaling.py fixed --rounds 3      # warm fixed cost, as fixed_cost.py
    nice -n 19 .venv/bin/python benchmarks/scaling.py questions --rounds 3  # per-question CPU
    nice -n 19 .venv/bin/python benchmarks/scaling.py table                 # the table, from the saved results

16x is the 8,627-chunk corpus of `benchmarks/per_question.py` (`.cache/bench_per_question`, not rebuilt:
its cold build figure is its `build.json`). The questions, the same at every size: the 4 warm-up rows of
its `questions_100.jsonl` and its 19 rows about 4 documents (two SQuAD articles, two LaRA filings) chosen
because they fit, with the warm-up rows' 4 documents, in about 1/16 of the tokens. 1x = exactly the
documents these questions need; 4x = those plus others in a seeded shuffle (seed 16) while they fit in
1/4 of the 16x tokens; so 1x is in 4x is in 16x. Each is copied to `.cache/bench_scaling/x1|x4/docs`
and indexed there by the framework (`per_question.py --worker build`).

- build: cold index build (split + embed + store), wall and CPU-s, peak RSS of the build process;
- fixed: start to first call of `python -m pipelines.run` minus `import pipelines.run`
  (`fixed_cost.py`'s measurement), peak RSS of that run (3 questions, default metrics);
- questions: `per_question.framework_pass` with the default metrics, rag and hybrid, over the 19
  questions (after an untimed pass over the warm-up rows), a fresh process per size and round; CPU ms
  per question, and the worker's peak RSS (VmHWM).
Rounds interleaved (1x, 4x, 16x, then 16x, 4x, 1x, ...), medians. Raw results in --raw.

Internal mode: --worker SIZE.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fixed_cost as fc
import per_question as pq

ROOT = pq.ROOT
DIR = ROOT / ".cache/bench_scaling"
QUESTION_DOCS = ("squad_Harvard_University.txt", "squad_European_Union_law.txt",
                 "lara_2024-Can B Corp-j.txt", "lara_2024-Chosen, Inc.-j.txt")
SIZES = ("x1", "x4", "x16")
FACTOR = {"x1": 1, "x4": 4, "x16": 16}


def questions() -> Path:
    qfile = DIR / "questions.jsonl"
    if not qfile.exists():
        rows = [json.loads(line) for line in (fc.PQ_CACHE / "questions_100.jsonl").read_text().splitlines()]
        kept = [r for r in rows if r["id"].startswith("warm") or r["gold_documents"][0] in QUESTION_DOCS]
        qfile.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return qfile


def corpora() -> dict[str, dict]:
    """{size: {docs, cache, names}}; copies the 1x and 4x documents on first use."""
    from pipelines.documents import load_documents

    docs_all, qfile = pq.prepare_data(fc.PQ_CACHE, 100)
    documents, _ = load_documents(docs_all, fc.PQ_CACHE, pdf_parser="pdfium")
    size = {d.doc_id: d.tokens for d in documents}
    total = sum(size.values())
    needed = sorted({g for line in questions().read_text().splitlines() for g in json.loads(line)["gold_documents"]})
    others = sorted(set(size) - set(needed))
    random.Random(16).shuffle(others)
    four, used = list(needed), sum(size[n] for n in needed)
    for name in others:
        if used + size[name] <= total / 4:
            four.append(name)
            used += size[name]
    out = {"x16": {"docs": docs_all, "cache": fc.PQ_CACHE, "names": sorted(size)}}
    for key, names in (("x1", needed), ("x4", four)):
        folder = DIR / key / "docs"
        if not folder.is_dir():
            tmp = DIR / key / "docs.tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            for name in names:
                shutil.copy2(docs_all / name, tmp / name)
            tmp.rename(folder)
        assert sorted(p.name for p in folder.iterdir()) == sorted(names)
        out[key] = {"docs": folder, "cache": DIR / key, "names": sorted(names)}
    for c in out.values():
        c["tokens"] = sum(size[n] for n in c["names"])
    return out


def spawn(cmd: list[str], log: Path, cwd: Path = ROOT) -> tuple[float, float]:
    """Run to the end; (wall s, peak RSS MB of that process)."""
    with log.open("w") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{cmd[:4]} failed, log {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t, usage.ru_maxrss / 1024


# --- parts ------------------------------------------------------------------------------------------
def build(raw: Path) -> None:
    qfile = questions()
    for key, c in corpora().items():
        target = c["cache"] / "build.json"
        if key == "x16" or (DIR / key / "build_scaling.json").exists():
            continue
        out = raw / f"build-{key}.json"
        _, rss = spawn([fc.PY, pq.__file__, "--worker", "build", "--out", str(out), "--cache", str(c["cache"]),
                        "--docs", str(c["docs"]), "--qfile", str(qfile)], raw / f"build-{key}.log")
        built = json.loads(out.read_text())
        assert built["embedded"], f"{key}: the index was already cached, not a cold build"
        built["rss_mb"] = rss
        target.write_text(json.dumps(built))
        (DIR / key / "build_scaling.json").write_text(json.dumps(built))


def fixed(raw: Path, rounds: int) -> None:
    qfile = questions()
    cs = corpora()
    work = Path(tempfile.mkdtemp(prefix="scaling-fixed-"))
    server = fc.Server([qfile])
    cases = {k: fc.folder_case(work, server.base_url, c["docs"], qfile, c["cache"]) for k, c in cs.items()}
    res = {"load_start": os.getloadavg(), "rounds": []}
    try:
        for k, case in cases.items():  # untimed: the MLflow store, the parsed-text cache
            fc.run_once(server, case, work, raw / f"fixed-first-{k}.log")
        for r in range(rounds):
            row = {"imports": fc.import_s(work)}
            for k in (SIZES if r % 2 == 0 else SIZES[::-1]):
                row[k] = fc.run_once(server, cases[k], work, raw / f"fixed-round{r + 1}-{k}.log")
            res["rounds"].append(row)
    finally:
        server.close()
    res["load_end"] = os.getloadavg()
    (raw / "fixed.json").write_text(json.dumps(res, indent=1))


def questions_part(raw: Path, rounds: int) -> None:
    qfile = questions()
    cs = corpora()
    server = subprocess.Popen([fc.PY, pq.__file__, "--serve", str(qfile)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    res = {"load_start": os.getloadavg(), "git": git_head(), "rounds": []}
    try:
        base_url = server.stdout.readline().strip()
        for r in range(rounds):
            row = {}
            for k in (SIZES if r % 2 == 0 else SIZES[::-1]):
                out = raw / f"questions-round{r + 1}-{k}.json"
                spawn([fc.PY, __file__, "--worker", k, "--out", str(out), "--cache", str(cs[k]["cache"]),
                       "--docs", str(cs[k]["docs"]), "--qfile", str(qfile), "--base-url", base_url],
                      raw / f"questions-round{r + 1}-{k}.log")
                row[k] = json.loads(out.read_text())
            res["rounds"].append(row)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    res["load_end"] = os.getloadavg()
    (raw / "questions.json").write_text(json.dumps(res, indent=1))


def git_head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "log", "--oneline", "-1"], capture_output=True, text=True).stdout.strip()


def questions_worker(args) -> dict:
    """`per_question.framework_pass` with the default metrics, rag and hybrid, on one size."""
    from pipelines import threads

    threads.configure(None, 1)
    from pipelines.ask import compose
    from pipelines.run import build as build_group, make_index
    from pipelines.strategies import Corpus

    cache, docs, qfile = Path(args.cache), Path(args.docs), Path(args.qfile)
    tmp = Path(tempfile.mkdtemp(prefix="scaling-q-"))
    cfgs = {s: compose(pq.overrides(docs, qfile, cache, args.base_url, s, tmp / "mlruns")) for s in pq.STRATEGIES}
    cfg0 = cfgs["rag"]
    dataset = build_group(cfg0, "dataset").load(cfg0.run.cache_dir)
    corpus = Corpus(dataset.documents, lambda: make_index(cfg0, dataset.documents))
    assert corpus.index.embedder.texts_embedded == 0, "the index was not in the cache: run `scaling.py build`"
    warm = [q for q in dataset.questions if q.qid.startswith("warm")]
    asked = [q for q in dataset.questions if not q.qid.startswith("warm")]
    for s in pq.STRATEGIES:
        pq.framework_pass(cfgs[s], corpus, warm, tmp, f"warm-{s}")
    out = {"chunks": len(corpus.index.chunks), "n": len(asked), "results": {}}
    for s in pq.STRATEGIES:
        r = pq.framework_pass(cfgs[s], corpus, asked, tmp, s)
        out["results"][s] = {k: r[k] for k in ("cpu_s", "wall_s", "n", "prompt_tokens", "phases")}
    status = Path("/proc/self/status").read_text()
    out["vmhwm_mb"] = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
    shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- the table --------------------------------------------------------------------------------------
def table(raw: Path) -> str:
    cs = corpora()
    builds = {k: json.loads(((DIR / k / "build_scaling.json") if k != "x16" else fc.PQ_CACHE / "build.json").read_text())
              for k in SIZES}
    fx = json.loads((raw / "fixed.json").read_text()) if (raw / "fixed.json").exists() else None
    qs = json.loads((raw / "questions.json").read_text()) if (raw / "questions.json").exists() else None

    def ratio(vals: dict, k: str, fmt: str) -> str:
        v = vals.get(k)
        if v is None:
            return "-"
        return f"{v:{fmt}} ({v / vals['x1']:.2f}x)"

    cols = {"tokens": {k: cs[k]["tokens"] for k in SIZES}, "chunks": {k: builds[k]["chunks"] for k in SIZES},
            "build": {k: builds[k]["index_s"][1] for k in SIZES}, "build_cpu": {k: builds[k]["index_s"][0] for k in SIZES},
            "build_rss": {k: builds[k]["rss_mb"] for k in SIZES if "rss_mb" in builds[k]}}
    lines = []
    if fx:
        imp = statistics.median(r["imports"]["import_s"] for r in fx["rounds"])
        cols["fixed"] = {k: statistics.median(r[k]["first_call_s"] for r in fx["rounds"]) - imp for k in SIZES}
        cols["run_rss"] = {k: statistics.median(r[k]["rss_mb"] for r in fx["rounds"]) for k in SIZES}
        lines.append(f"fixed cost: {len(fx['rounds'])} rounds, import pipelines.run {imp:.2f} s (subtracted), load average "
                     f"{tuple(round(x, 2) for x in fx['load_start'])} -> {tuple(round(x, 2) for x in fx['load_end'])}; start to first call s, rounds "
                     + "; ".join(f"{k} " + " / ".join(f"{r[k]['first_call_s']:.2f}" for r in fx["rounds"])
                                 for k in SIZES))
    if qs:
        for s in pq.STRATEGIES:
            cols[s] = {k: 1000 * statistics.median(r[k]["results"][s]["cpu_s"] / r[k]["results"][s]["n"] for r in qs["rounds"])
                       for k in SIZES}
        cols["q_rss"] = {k: statistics.median(r[k]["vmhwm_mb"] for r in qs["rounds"]) for k in SIZES}
        n = qs["rounds"][0]["x1"]["n"]
        lines.append(f"per question: {n} questions, {len(qs['rounds'])} rounds, tree {qs['git']}, load average "
                     f"{tuple(round(x, 2) for x in qs['load_start'])} -> {tuple(round(x, 2) for x in qs['load_end'])}; rounds (ms/q) "
                     + "; ".join(f"{k} {s} " + " / ".join(f"{1000 * r[k]['results'][s]['cpu_s'] / n:.0f}" for r in qs["rounds"])
                                 for k in SIZES for s in pq.STRATEGIES)
                     + "; median prompt tokens hybrid " + ", ".join(
                         f"{k} {qs['rounds'][0][k]['results']['hybrid']['prompt_tokens']:.0f}" for k in SIZES))
    head = [("tokens", "corpus cl100k tokens", ",.0f"), ("chunks", "chunks", ",.0f"), ("build", "cold build wall s", ".0f"),
            ("build_cpu", "cold build CPU-s", ".0f"), ("fixed", "warm fixed cost s (minus import)", ".2f"),
            ("rag", "rag CPU ms/q", ".0f"), ("hybrid", "hybrid CPU ms/q", ".0f"), ("run_rss", "peak RSS, warm run MB", ".0f"),
            ("q_rss", "peak RSS, per-question worker MB", ".0f"), ("build_rss", "peak RSS, cold build MB", ".0f")]
    out = ["| | " + " | ".join(SIZES) + " |", "|---|" + "---|" * len(SIZES)]
    for key, label, fmt in head:
        if key in cols:
            out.append(f"| {label} | " + " | ".join(ratio(cols[key], k, fmt) for k in SIZES) + " |")
    return "\n".join(out + [""] + lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", nargs="?", choices=("build", "fixed", "questions", "table"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--raw", default="/tmp/helper_raw/scaling")
    ap.add_argument("--worker", choices=SIZES, help=argparse.SUPPRESS)
    for name in ("--out", "--cache", "--docs", "--qfile", "--base-url"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, str(ROOT))
        Path(args.out).write_text(json.dumps(questions_worker(args)))
        return
    sys.path.insert(0, str(ROOT))
    raw = Path(args.raw)
    raw.mkdir(parents=True, exist_ok=True)
    DIR.mkdir(parents=True, exist_ok=True)
    if args.part == "build":
        build(raw)
    elif args.part == "fixed":
        fixed(raw, args.rounds)
    elif args.part == "questions":
        questions_part(raw, args.rounds)
    print(table(raw))


if __name__ == "__main__":
    main()
