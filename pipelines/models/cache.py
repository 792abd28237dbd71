"""Responses on disk, keyed by (base URL, request): an identical rerun makes no call and pays nothing.

SQLite, so parallel sweep jobs and threads can share one file. Only successful answers are stored;
a failed call is tried again next time."""

from __future__ import annotations

import hashlib
import logging
import json
import sqlite3
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

from pipelines.models.chat import Completion
from pipelines.models.usage import Usage

log = logging.getLogger(__name__)


def key(base_url: str, request: dict) -> str:
    blob = json.dumps({"base_url": base_url, "request": request}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._open(path)
        except sqlite3.DatabaseError as err:
            # A damaged cache must not stop a run (nor be deleted: it may hold paid answers).
            aside = Path(f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            Path(path).replace(aside)
            log.warning("response cache %s is unreadable (%s): moved aside to %s, starting an empty one", path, err, aside)
            self._open(path)

    def _open(self, path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, created REAL, body TEXT)")
            self._db.execute("CREATE TABLE IF NOT EXISTS served (who TEXT PRIMARY KEY, model TEXT, seen REAL)")
            self._db.execute("SELECT count(*) FROM responses").fetchone()
        self._warned: set[tuple] = set()

    def get(self, key: str, who: str = "") -> Completion | None:
        """The stored answer; None when absent, or when `who` (endpoint + model id) was last seen
        answering as another model than the one that produced it (an alias moved on: ask again)."""
        with self._lock:
            row = self._db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
            now = self._db.execute("SELECT model FROM served WHERE who = ?", (who,)).fetchone() if who else None
        if row is None:
            return None
        body = json.loads(row[0])
        body["usage"] = Usage(**body["usage"])
        done = Completion(**body)
        if now and now[0] and done.response_model and now[0] != done.response_model:
            if (who, done.response_model) not in self._warned:
                self._warned.add((who, done.response_model))
                log.warning("cached answers from %s are not reused: this endpoint now answers as %s", done.response_model, now[0])
            return None
        # The original latency and usage stay: the row says what the answer cost when it was produced.
        return replace(done, cached=True)

    def note_served(self, who: str, model: str) -> None:
        """The model a live response said answered for `who`: what cached answers must match."""
        if who and model:
            with self._lock, self._db:
                self._db.execute("INSERT OR REPLACE INTO served VALUES (?, ?, ?)", (who, model, time.time()))

    def put(self, key: str, completion: Completion) -> None:
        body = json.dumps(asdict(completion), ensure_ascii=False)
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, time.time(), body))
