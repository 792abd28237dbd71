"""`model.max_concurrency`: at most that many calls in flight per endpoint, across the threads of a
process and, once `configure(folder)` names a shared folder, across every process of a sweep on this
machine (joblib workers each used to have their own limit).

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
_semaphores: dict[tuple, threading.BoundedSemaphore] = {}
_lock = threading.Lock()
POLL_S = 0.02


def configure(folder: str | Path | None) -> None:
    global _folder
    _folder = Path(folder) if folder else None


@contextlib.contextmanager
def slot(endpoint: str, n: int):
    key = (endpoint, n)
    with _lock:
        semaphore = _semaphores.setdefault(key, threading.BoundedSemaphore(n))
    with semaphore:  # first among this process's threads, without touching the disk
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
