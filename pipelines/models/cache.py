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
            self._db.execute("SELECT count(*) FROM responses").fetchone()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        body = json.loads(row[0])
        body["usage"] = Usage(**body["usage"])
        # The original latency and usage stay: the row says what the answer cost when it was produced.
        return replace(Completion(**body), cached=True)

    def put(self, key: str, completion: Completion) -> None:
        body = json.dumps(asdict(completion), ensure_ascii=False)
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, time.time(), body))
