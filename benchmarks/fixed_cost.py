"""Warm-cache fixed cost of a run, from the command's start to the first model call (issue 16).

    nice -n 19 .venv/bin/python benchmarks/fixed_cost.py --rounds 3

A real `python -m pipelines.run` subprocess (`run.limit=3`, `model=openai-compatible` pointed at the
scripted server of `tests/fakes.py` in a process of its own, `run.response_cache=false`,
`run.confirm=false`, a temporary MLflow store) on two corpora whose index is already cached:

- builtin: `dataset=sec10q_apple` (the default; 375 chunks), cache `.cache/bench_fixed_cost`;
- 8k: the 8,627-chunk corpus of `benchmarks/per_question.py` (`dataset=folder`, its `overrides()`),
  cache `.cache/bench_per_question` (must be built already: `per_question.py` builds it).

"First call" is the wall-clock time the server receives the first chat request; "start" is just before
the subprocess is spawned. `import pipelines.run` is timed in a subprocess of its own and given apart.
One untimed run per corpus first (it builds the built-in index if missing and creates the MLflow store);
then rounds interleaved, medians. Peak RSS of each run from `wait4`. Breakdown, one run per corpus each:
`-X importtime` up to the first call (all imports, and those `run()` triggers lazily), and cProfile of
`pipelines.run.run` up to `runner.answer_all` (inflated by the profiler; read as proportions).

Internal modes: --serve STAMPS QFILE..., --until-first-call PROFILE -- OVERRIDES...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import per_question as pq

ROOT = pq.ROOT
PY = sys.executable
BUILTIN_CACHE = ROOT / ".cache/bench_fixed_cost"
PQ_CACHE = ROOT / ".cache/bench_per_question"


# --- the scripted server, which notes when each chat request arrives ---------------------------------
def serve(stamps: Path, qfiles: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes import FakeOpenAI

    replies = {}
    for qfile in qfiles:
        for line in Path(qfile).read_text().splitlines():
            row = json.loads(line)
            replies[row["question"]] = pq.reply_for(row)
    holder = {}
    out = stamps.open("a", buffering=1)

    def answer_for(question: str) -> str:
        out.write(f"{time.time()}\n")
        holder["server"].requests.clear()
        holder["server"].headers.clear()
        return replies.get(question.split("\nAnswer:")[0].strip(), "I do not know")

    with FakeOpenAI(answer_for, latency_s=0.0) as server:
        holder["server"] = server
        print(server.base_url, flush=True)
        sys.stdin.read()


class Server:
    def __init__(self, qfiles: list[Path]):
        self.stamps = Path(tempfile.mkstemp(prefix="fixed-cost-stamps-")[1])
        self.proc = subprocess.Popen([PY, __file__, "--serve", str(self.stamps), *map(str, qfiles)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.base_url = self.proc.stdout.readline().strip()

    def first_after(self, t: float) -> float | None:
        times = [float(x) for x in self.stamps.read_text().split()]
        later = [x for x in times if x >= t]
        return min(later) if later else None

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --- cases ------------------------------------------------------------------------------------------
def replace(overrides: list[str], extra: list[str]) -> list[str]:
    """`extra` wins over `overrides` key by key (Hydra refuses a key given twice)."""
    keys = {e.split("=", 1)[0] for e in extra}
    return [o for o in overrides if o.split("=", 1)[0] not in keys] + extra


def common(work: Path, cache: Path, base_url: str) -> list[str]:
    return ["model=openai-compatible", "model.model_id=fake", f"model.base_url={base_url}",
            "model.prices.input_cache_miss=0", "model.prices.output=0", "model.prices.as_of=bench",
            "run.limit=3", "run.response_cache=false", "run.confirm=false", "run.progress=false",
            f"run.cache_dir={cache}", f"tracking.uri={work / 'mlruns'}", f"hydra.run.dir={work / 'hydra'}"]


def builtin_case(work: Path, base_url: str) -> list[str]:
    return common(work, BUILTIN_CACHE, base_url)  # dataset=sec10q_apple, strategy=rag: the defaults


def folder_case(work: Path, base_url: str, docs: Path, qfile: Path, cache: Path) -> list[str]:
    base = pq.overrides(docs, qfile, cache, base_url, "rag", work / "mlruns")
    return replace(base, common(work, cache, base_url))


def run_once(server: Server, overrides: list[str], work: Path, log: Path) -> dict:
    """One `python -m pipelines.run`: seconds to the first call, in all, peak RSS (MB)."""
    with log.open("w") as out:
        start = time.time()
        proc = subprocess.Popen([PY, "-m", "pipelines.run", *overrides], cwd=work, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        end = time.time()
    rc = os.waitstatus_to_exitcode(status)
    if rc:
        raise SystemExit(f"pipelines.run failed (exit {rc}), log {log}:\n{log.read_text()[-3000:]}")
    first = server.first_after(start)
    return {"first_call_s": first - start, "total_s": end - start, "rss_mb": usage.ru_maxrss / 1024}


def import_s(cwd: Path) -> dict:
    code = "import time; t = time.perf_counter(); import pipelines.run; print(time.perf_counter() - t)"
    t = time.perf_counter()
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True, cwd=cwd).stdout
    whole = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([PY, "-c", "pass"], check=True, cwd=cwd)
    return {"import_s": float(out), "python_s": time.perf_counter() - t, "process_s": whole}


# --- breakdown: the run up to the first call ---------------------------------------------------------
def until_first_call(profile_out: str, overrides: list[str]) -> None:
    """Run pipelines.run in this process and stop where `runner.answer_all` is entered."""
    start = time.perf_counter()
    import pipelines.run as pr
    from pipelines import runner

    profiler = None
    if profile_out != "-":
        import cProfile

        profiler = cProfile.Profile()
    inner = pr.run

    def run(cfg):
        print("### run() starts", file=sys.stderr, flush=True)
        if profiler:
            profiler.enable()
        return inner(cfg)

    def stop(*_, **__):
        reached = time.perf_counter() - start
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile_out)
        print(f"### answer_all reached {reached:.3f}", file=sys.stderr, flush=True)
        os._exit(0)

    pr.run, runner.answer_all = run, stop
    sys.argv = ["pipelines/run.py", *overrides]
    pr.main()


def importtime_summary(stderr: str, top: int = 12) -> dict:
    """Import seconds before `run()` and inside it (lazy), and the largest top-level imports."""
    before, lazy, inside, reached = [], [], False, None
    for line in stderr.splitlines():
        if line.startswith("### run() starts"):
            inside = True
        elif line.startswith("### answer_all reached"):
            reached = float(line.split()[-1])
        elif line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cum, name = line[len("import time:"):].split("|")
            if not name.startswith("  "):  # top level: its cumulative time holds its children
                (lazy if inside else before).append((int(cum) / 1e6, name.strip()))
    return {"before_run_s": sum(s for s, _ in before), "lazy_in_run_s": sum(s for s, _ in lazy), "reached_s": reached,
            "top_lazy": sorted(lazy, reverse=True)[:top], "top_before": sorted(before, reverse=True)[:top]}


def breakdown(case: list[str], work: Path, tag: str, raw: Path) -> tuple[dict, str]:
    proc = subprocess.run([PY, "-X", "importtime", __file__, "--until-first-call", "-", "--", *case],
                          cwd=work, capture_output=True, text=True)
    (raw / f"importtime-{tag}.txt").write_text(proc.stderr)
    imports = importtime_summary(proc.stderr)
    prof = raw / f"profile-{tag}.pstats"
    subprocess.run([PY, __file__, "--until-first-call", str(prof), "--", *case], cwd=work, check=True,
                   capture_output=True)
    import io
    import pstats

    text = io.StringIO()
    stats = pstats.Stats(str(prof), stream=text)
    stats.sort_stats("cumulative").print_callees(r"pipelines/run.py:\d+\(run\)")
    stats.sort_stats("cumulative").print_stats(40)
    (raw / f"profile-{tag}.txt").write_text(text.getvalue())
    return imports, callees(stats)


def callees(stats) -> str:
    """The framework's functions by cumulative seconds, largest first (markdown rows)."""
    rows = [(v[3], f"{f[0].split('/pipelines/')[-1]}:{f[1]}({f[2]})") for f, v in stats.stats.items()
            if "/pipelines/" in f[0] and f[2] != "run"]
    return "\n".join(f"| {name} | {cum:.2f} |" for cum, name in sorted(rows, reverse=True)[:16])


# --- orchestration ----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--raw", default="/tmp/helper_raw/fixed_cost", help="logs, profiles, results.json")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--table", action="store_true", help="print the table of the results in --raw again")
    ap.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--until-first-call", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(Path(args.serve[0]), args.serve[1:])
    if args.until_first_call:
        return until_first_call(args.until_first_call, args.rest)

    raw = Path(args.raw)
    if args.table:
        return print(table(json.loads((raw / "results.json").read_text())))
    raw.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    docs, qfile = pq.prepare_data(PQ_CACHE, 100)
    assert (PQ_CACHE / "build.json").exists(), "build the 8k index first: benchmarks/per_question.py"
    work = Path(tempfile.mkdtemp(prefix="fixed-cost-"))
    server = Server([qfile])
    cases = {"builtin": builtin_case(work, server.base_url),
             "8k": folder_case(work, server.base_url, docs, qfile, PQ_CACHE)}
    results = {"load_start": load_start, "first": {}, "rounds": []}
    try:
        for name, case in cases.items():  # untimed: builds a missing index, creates the MLflow store
            results["first"][name] = run_once(server, case, work, raw / f"first-{name}.log")
        for r in range(args.rounds):
            order = list(cases) if r % 2 == 0 else list(reversed(cases))
            row = {"imports": import_s(work)}
            for name in order:
                row[name] = run_once(server, cases[name], work, raw / f"round{r + 1}-{name}.log")
            row["load"] = os.getloadavg()[0]
            results["rounds"].append(row)
        if not args.no_breakdown:
            results["breakdown"] = {name: breakdown(case, work, name, raw) for name, case in cases.items()}
    finally:
        server.close()
    results["load_end"] = os.getloadavg()
    (raw / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results))


def values(rounds: list[dict], *keys) -> list[float]:
    out = []
    for r in rounds:
        for k in keys:
            r = r[k]
        out.append(r)
    return out


def med(rounds: list[dict], *keys) -> float:
    return statistics.median(values(rounds, *keys))


def joined(xs: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in xs)


def table(res: dict) -> str:
    rounds, n = res["rounds"], len(res["rounds"])
    imp = med(rounds, "imports", "import_s")
    start, end = (tuple(round(x, 2) for x in res[k]) for k in ("load_start", "load_end"))
    lines = [f"load average {start} at the start, {end} at the end; medians of {n} interleaved rounds", "",
             f"import pipelines.run (subprocess): {imp:.2f} s (rounds {joined(values(rounds, 'imports', 'import_s'))}); "
             f"bare interpreter start `python -c pass`: {med(rounds, 'imports', 'python_s'):.2f} s", "",
             "| corpus | start → first call s (rounds) | **median** | minus import | goal | whole run s | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for name, goal in (("builtin", 5.0), ("8k", 10.0)):
        first = med(rounds, name, "first_call_s")
        fixed = first - imp
        verdict = "met" if fixed <= goal else "not met"
        lines.append(f"| {name} | {joined(values(rounds, name, 'first_call_s'))} | **{first:.2f}** | **{fixed:.2f}** | "
                     f"<= {goal:.0f} s: {verdict} | {med(rounds, name, 'total_s'):.1f} | {med(rounds, name, 'rss_mb'):.0f} |")
    lines += ["", "untimed first run (fresh MLflow store): "
              + ", ".join(f"{k} {v['first_call_s']:.2f} s to the first call" for k, v in res["first"].items())]
    for name, (imports, calls) in res.get("breakdown", {}).items():
        lazy = ", ".join(f"{m} {s:.2f}" for s, m in imports["top_lazy"][:6])
        lines += ["", f"{name}, one run stopped where `answer_all` is entered ({imports['reached_s']:.2f} s in-process "
                  f"under -X importtime): imports before `run()` {imports['before_run_s']:.2f} s, imports inside "
                  f"`run()` (lazy) {imports['lazy_in_run_s']:.2f} s, the rest (not imports) "
                  f"{imports['reached_s'] - imports['before_run_s'] - imports['lazy_in_run_s']:.2f} s; largest lazy: {lazy}",
                  "", "| pipelines/ function (cProfile, cumulative, up to answer_all) | s |", "|---|---|", calls]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
