"""`model.max_concurrency`: at most that many calls in flight per endpoint, across the threads of a
process and, once `configure(folder)` names a shared folder, across every process of a sweep on this
machine (joblib workers each used to have their own limit). With `budget.ledger_uri` naming a
PostgreSQL database, the slots are held there instead, so the limit holds across the machines of a
cluster too.

Across processes the slots are lock files held with `flock`: the kernel releases them when a process
dies, so a killed worker never leaks a slot. Hand-written: no maintained library offers a
cross-process counting semaphore that survives kill -9 without a server."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
import time
from pathlib import Path

_folder: Path | None = None
_database = None  # _Database, when slots are held in PostgreSQL
_semaphores: dict[tuple, threading.BoundedSemaphore] = {}
_lock = threading.Lock()
POLL_S = 0.02


def configure(folder: str | Path | None, database_uri: str | None = None) -> None:
    global _folder, _database
    _folder = Path(folder) if folder else None
    _database = _Database(database_uri) if database_uri else None


@contextlib.contextmanager
def slot(endpoint: str, n: int):
    key = (endpoint, n)
    with _lock:
        semaphore = _semaphores.setdefault(key, threading.BoundedSemaphore(n))
    with semaphore:  # first among this process's threads, without touching the disk
        if _database is not None:
            with _database.slot(endpoint, n):
                yield
            return
        if _folder is None:
            yield
            return
        folder = _folder / hashlib.sha256(endpoint.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        handle = _take(folder, n)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def _take(folder: Path, n: int):
    while True:
        for i in range(n):
            handle = open(folder / f"slot-{i}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                handle.close()
        time.sleep(POLL_S)


class _Database:
    """Slots as PostgreSQL advisory locks keyed (endpoint, slot number). One connection per process: a
    session may take a lock it already holds, so the process tracks which slots its threads hold."""

    def __init__(self, uri: str):
        from pipelines.ledger_pg import connect

        self._db = connect(uri)
        self._db.autocommit = True
        self._lock = threading.Lock()
        self._held: set[tuple[int, int]] = set()

    @contextlib.contextmanager
    def slot(self, endpoint: str, n: int):
        key = int.from_bytes(hashlib.sha256(endpoint.encode()).digest()[:4], "big", signed=True)
        taken = None
        while taken is None:
            with self._lock, self._db.cursor() as cur:
                for i in range(n):
                    if (key, i) in self._held:
                        continue
                    cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (key, i))
                    if cur.fetchone()[0]:
                        taken = (key, i)
                        self._held.add(taken)
                        break
            if taken is None:
                time.sleep(POLL_S)
        try:
            yield
        finally:
            with self._lock, self._db.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", taken)
                self._held.discard(taken)
