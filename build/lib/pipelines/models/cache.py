"""Responses on disk, keyed by (base URL, request): an identical rerun makes no call and pays nothing.

SQLite, so parallel sweep jobs and threads can share one file. Only successful answers are stored;
a failed call is tried again next time."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

from pipelines.models.chat import Completion
from pipelines.models.usage import Usage


def key(base_url: str, request: dict) -> str:
    blob = json.dumps({"base_url": base_url, "request": request}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, created REAL, body TEXT)")

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
