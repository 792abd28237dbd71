"""One question, many configurations: the engine of the interactive app (`ragbench app`, pipelines/app.py).

A `Session` holds a document set (a data set from conf/dataset/, a folder, or uploaded files), parsed
and indexed by the same code as experiments (caches included), one spend ledger with its cap, the
response cache, and one MLflow run for everything asked in it (tag `kind=ask`, in the data set's
experiment, so asks sit beside experiment runs without entering their reports). Each (strategy, model)
cell is composed from the same Hydra configs as `python -m pipelines.run`, its prompt built by
`runner.prepare_all`, its cost estimated by `estimate.run_estimate`, and answered by
`runner.answer_all`: the calls, cost, cap, traces and scores are the experiments' own code."""

from __future__ import annotations

import hashlib
import json
import uuid
import queue
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import mlflow
import pandas as pd

from pipelines import metrics, runner, secrets, traces, tracking
from pipelines.budget import Budget
from pipelines.datasets import Question
from pipelines.documents import load_documents
from pipelines.errors import UserError
from pipelines.estimate import run_estimate
from pipelines.ledger import open_ledger
from pipelines.models.cache import ResponseCache
from pipelines.record import QuestionRecord
from pipelines.strategies import Corpus

STRATEGIES = ("rag", "hybrid", "full_context", "self_route", "no_context")
LOCAL_MODEL = "smollm2-135m"
DEFAULT_DATASET = "sec10q_apple"
# Data sets the app can open by name alone (the others need paths: use the folder choice).
NEEDS_PATHS = ("folder", "inline", "lara")
STREAM_EVERY_S = 0.1  # how often a streaming cell's text is redrawn


def _into(grown: queue.Queue, cell):
    return lambda question_id, answer, reasoning: grown.put((cell, answer, reasoning))


def options(group: str) -> list[str]:
    """The config names of a group (conf/<group>/*.yaml), as `group=NAME` takes them."""
    folder = resources.files("pipelines.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from hydra.errors import HydraException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("pipelines.conf", version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))
    except HydraException as err:  # a typo in an override: one line, as on the command line
        raise UserError(f"overrides: {str(err).strip().splitlines()[0]}") from None


@dataclass(frozen=True)
class Cell:
    strategy: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.strategy} · {self.model}"


@dataclass
class ModelChoice:
    name: str
    available: bool
    reason: str = ""  # why not, e.g. the key's variable is not set


def model_choices(model_overrides: dict[str, list[str]] | None = None) -> list[ModelChoice]:
    """Every model config, available when its key is present (the local model always is)."""
    from pipelines.run import build

    secrets.load_env_file()
    out = []
    for name in options("model"):
        try:
            model = build(compose([f"model={name}", *(model_overrides or {}).get(name, [])]), "model")
            model.check()
            out.append(ModelChoice(name, True))
        except UserError as err:
            out.append(ModelChoice(name, False, str(err)))
    return out


def parse_model_overrides(text: str) -> dict[str, list[str]]:
    """`deepseek-chat: model.base_url=http://... model.max_retries=0`, one line per model."""
    out: dict[str, list[str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        if not sep or not name.strip():
            raise UserError(f"per-model overrides, line {n}: write `MODEL: key=value ...`, got {line.strip()!r}")
        out.setdefault(name.strip(), []).extend(rest.split())
    return out


def save_uploads(files: list[tuple[str, bytes]], cache_dir: str | Path) -> Path:
    """Uploaded files into a folder named by their content, so the same upload is parsed and indexed once."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    folder = Path(cache_dir) / "uploads" / digest.hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files:
        (folder / Path(name).name).write_bytes(data)
    return folder


class Session:
    """What the app holds between questions: documents, index, caches, the cap and the MLflow run."""

    def __init__(self, dataset: str | None = None, folder: str | Path | None = None, overrides: list[str] = (),
                 model_overrides: dict[str, list[str]] | None = None, max_usd: float | None = None):
        from pipelines.run import build, check_settings, make_index

        secrets.load_env_file()
        self.overrides = [*overrides, *([f"dataset={dataset}"] if dataset else [])]
        self.model_overrides = model_overrides or {}
        self.cfg = compose(self.overrides)
        check_settings(self.cfg)
        if folder is not None:
            self.documents, skipped = load_documents(folder, self.cfg.run.cache_dir, skip_unreadable=True,
                                                     pdf_parser=self.cfg.dataset.get("pdf_parser") or "pdfium")
            self.examples: list[Question] = []
            self.name = Path(folder).name
            self.skipped = skipped
        else:
            loaded = build(self.cfg, "dataset").load(self.cfg.run.cache_dir)
            self.documents, self.examples, self.name = loaded.documents, list(loaded.questions), loaded.name
            self.skipped = loaded.skipped_documents
        if not self.documents:
            raise UserError(f"{folder or dataset}: no readable documents")
        self.corpus = Corpus(self.documents, lambda: make_index(self.cfg, self.documents))
        cache_dir = Path(self.cfg.run.cache_dir)
        self.cache = ResponseCache(cache_dir / "responses.sqlite") if self.cfg.run.response_cache else None
        self.budget = Budget(max_usd, open_ledger(None, cache_dir / "ledger.sqlite", f"app:{uuid.uuid4().hex}"))
        self.records: list[QuestionRecord] = []
        self.run_id: str | None = None
        self._models: dict[tuple, object] = {}
        self._planned: dict[tuple, tuple] = {}

    def document_tokens(self) -> pd.DataFrame:
        return pd.DataFrame({"document": [d.doc_id for d in self.documents], "tokens": [d.tokens for d in self.documents]})

    def question(self, text: str) -> Question:
        """The data set's question (with its reference and gold documents) when the text is one of them."""
        text = text.strip()
        known = next((q for q in self.examples if q.text.strip() == text), None)
        return known or Question(f"ask-{hashlib.sha256(text.encode()).hexdigest()[:10]}", text, ())

    def _parts(self, cell: Cell, settings: list[str]):
        from pipelines.run import build

        cfg = compose([*self.overrides, f"strategy={cell.strategy}", f"model={cell.model}",
                       *self.model_overrides.get(cell.model, []), *settings])
        key = (cell.model, tuple(self.model_overrides.get(cell.model, [])))
        if key not in self._models:  # one client (and one local llama.cpp server) per model for the session
            self._models[key] = build(cfg, "model")
        return cfg, build(cfg, "strategy"), self._models[key]

    def plan(self, text: str, cells: list[Cell], settings: list[str] = ()):
        """Per cell: the prepared question (prompt built, nothing sent) and its estimate. Prompts are built
        once per (question, cell, settings): the page asks for the estimate on every rerun. The estimate
        is redone each time, since the response cache may answer a prompt now."""
        question = self.question(text)
        out = {}
        for cell in cells:
            key = (question.text, cell, tuple(settings))
            if key not in self._planned:
                cfg, strategy, model = self._parts(cell, list(settings))
                if strategy.uses_index:
                    self.corpus.index  # built (or loaded from its cache) once for the session
                self._planned[key] = (cfg, model, runner.prepare_all([question], strategy, self.corpus, model,
                                                                      cfg.prompt, self.cache, cfg.budget.context_tokens))
            cfg, model, prepared = self._planned[key]
            guess = run_estimate(prepared, lambda p: bool(self.cache and self.cache.get(p.cache_key)), model, None)
            out[cell] = (cfg, model, prepared, guess)
        return out

    def estimate(self, text: str, cells: list[Cell], settings: list[str] = ()) -> tuple[float, float]:
        """(expected, at most) USD for the whole grid, before anything is sent."""
        planned = self.plan(text, cells, settings)
        return (sum(g["usd"] for *_, g in planned.values()), sum(g["usd_max"] for *_, g in planned.values()))

    def ask(self, text: str, cells: list[Cell], settings: list[str] = (), on_record=None,
            on_text=None) -> dict[Cell, QuestionRecord]:
        """Every cell answered (in parallel); `on_text(cell, answer_so_far, reasoning_so_far)` as a streamed
        answer grows (at most every `STREAM_EVERY_S` per cell), `on_record(cell, record)` as each finishes,
        both in the caller's thread (Streamlit's elements belong to the script's thread). A failed call
        is that cell's error row; the others go on."""
        planned = self.plan(text, cells, settings)
        question = self.question(text)
        # A typed question has no reference or gold documents: only what needs neither (faithfulness to the context)
        metric_list = metrics.applicable(metrics.get(list(self.cfg.metrics), judged=False), question)
        self._open_run()
        traces.enable(self.run_id if self.cfg.tracking.traces else None)
        out: dict[Cell, QuestionRecord] = {}
        try:
            grown: queue.Queue = queue.Queue()  # (cell, text, reasoning) from the call threads
            with ThreadPoolExecutor(max_workers=max(1, len(planned))) as pool:
                futures = {pool.submit(runner.answer_all, prepared, model, metric_list, self.cache, self.budget, False,
                                       on_text=_into(grown, cell)): cell
                           for cell, (cfg, model, prepared, guess) in planned.items()}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=STREAM_EVERY_S, return_when=FIRST_COMPLETED)
                    latest = {}
                    while not grown.empty():  # only the newest text per cell: the page redraws it whole
                        cell, *texts = grown.get_nowait()
                        latest[cell] = texts
                    for cell, (answer, reasoning) in latest.items():
                        if on_text and cell not in out:
                            on_text(cell, answer, reasoning)
                    for future in done:
                        cell = futures[future]
                        [record] = future.result()
                        out[cell] = record
                        if on_record:
                            on_record(cell, record)
            traces.assess(list(out.values()), metrics.scoring_version(self.cfg.prompt.system, self.cfg.prompt.template))
        finally:
            traces.enable(None)
        ordered = {cell: out[cell] for cell in cells if cell in out}
        self.records.extend(ordered.values())
        self._log()
        return ordered

    def _open_run(self) -> None:
        if self.run_id:
            return
        experiment_id = tracking.use_experiment(self.cfg.tracking.uri, self.cfg.tracking.experiment or self.name)
        run = mlflow.MlflowClient().create_run(experiment_id, run_name=f"ask·{self.name}",
                                               tags={"kind": "ask", "dataset": self.name})
        self.run_id = run.info.run_id

    def _log(self) -> None:
        """The session's rows so far, and its totals; the run is closed after every ask (never left
        RUNNING by a browser tab that goes away) and logged to again by the next one."""
        client = mlflow.MlflowClient()
        rows = [r.row() for r in self.records]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        client.log_text(self.run_id, json.dumps({"columns": columns, "data": [[row.get(c) for c in columns] for row in rows]},
                                                default=str), "asks.json")
        client.log_text(self.run_id, pd.DataFrame(rows, columns=columns).to_csv(index=False), "asks.csv")
        for key, value in {"questions_asked": len({r.question_id for r in self.records}), "calls_answered": len(self.records),
                           "spent_usd_total": sum(r.spent_usd for r in self.records)}.items():
            client.log_metric(self.run_id, key, value)
        client.set_terminated(self.run_id, "FINISHED")


def quality_names() -> list[str]:
    """The declared ranking, best first, read when asked: a plugin metric registers after this module loads."""
    return [m.name for m in metrics.headline() if m.higher_is_better]


def quality_name(records) -> str | None:
    """The best-ranked quality metric that any of these records has."""
    return next((n for n in quality_names() if any(n in r.scores for r in records)), None)


def table(records: dict[Cell, QuestionRecord]) -> pd.DataFrame:
    """One row per cell: what the charts and highlights read."""
    rows, name = [], quality_name(records.values())  # one metric for the whole column
    for cell, r in records.items():
        quality = r.scores.get(name) if name else None
        rows.append({"config": cell.label, "strategy": cell.strategy, "model": cell.model, "status": r.status,
                     "input_miss": r.prompt_tokens - r.cache_hit_tokens, "input_hit": r.cache_hit_tokens,
                     "output": r.completion_tokens, "cost_usd": r.cost_usd, "latency_s": r.latency_s or 0.0,
                     "ttft_s": r.ttft_s, "quality": quality, "answered": r.answered})
    return pd.DataFrame(rows)


def highlights(frame: pd.DataFrame) -> dict[str, str]:
    """Cheapest, fastest and best quality per dollar among the answered cells."""
    done = frame[frame["answered"]]
    if done.empty:
        return {}
    out = {"cheapest": done.loc[done["cost_usd"].idxmin(), "config"],
           "fastest": done.loc[done["latency_s"].idxmin(), "config"]}
    rated = done[done["quality"].notna()]
    if not rated.empty:
        paid = rated[rated["cost_usd"] > 0]
        free = rated[rated["cost_usd"] == 0]
        if not free.empty:  # a free answer of any quality beats every paid one per dollar
            out["best quality per dollar"] = free.loc[free["quality"].idxmax(), "config"]
        else:
            out["best quality per dollar"] = paid.loc[(paid["quality"] / paid["cost_usd"]).idxmax(), "config"]
    return out
