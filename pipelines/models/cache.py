"""Responses on disk, keyed by (base URL, request): an identical rerun makes no call and pays nothing.

SQLite, so parallel sweep jobs and threads can share one file. Only successful answers are stored;
a failed call is tried again next time. A request being paid for is claimed in a side file, so a job
that needs the same answer at the same moment waits for it instead of paying for it again."""

from __future__ import annotations

import hashlib
import logging
import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

from pipelines.ledger import HOST, _alive as pid_alive
from pipelines.models import body
from pipelines.models.chat import Completion
from pipelines.models.usage import Usage

log = logging.getLogger(__name__)


def key(base_url: str, request: dict, parts: tuple[str, ...] = ()) -> str:
    """sha256 of the request as JSON. `parts`: the last message's content in pieces (prompts.Prompt.parts),
    whose long ones (documents) are escaped once per process (pipelines/models/body.py); same digest."""
    holed = body.holed(request, parts)
    pieces = body.spliced(holed and {"base_url": base_url, "request": holed}, parts, sort_keys=True)
    if pieces is None:
        pieces = [json.dumps({"base_url": base_url, "request": request}, sort_keys=True, ensure_ascii=False).encode()]
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


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
        self._claims = _Claims(f"{path}.claims")

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

    def claim(self, key: str, stale_s: float = 3600.0) -> bool:
        """True when this thread may pay for `key`: no one else is asking for it now. A claim whose
        owner died (same host, pid gone) or that is older than `stale_s` is taken over."""
        return self._claims.take(key, stale_s)

    def release(self, key: str) -> None:
        try:
            self._claims.drop(key)
        except sqlite3.OperationalError as err:
            # The answer is paid and stored; failing here would turn it into an error row.
            log.warning("could not release the claim on a request (%s): a job asking for the same request "
                        "waits for its stored answer, or until the claim is stale", err)


def _owner() -> str:
    return f"{HOST}:{os.getpid()}:{threading.get_ident()}"


def _alive(owner: str) -> bool:
    host, pid, _ = owner.rsplit(":", 2)
    # Another machine's process cannot be checked: only age frees its claim.
    return host != HOST or not pid.isdigit() or pid_alive(int(pid))


class _Claims:
    """Who is paying for which request right now, across processes. Hand-written: no maintained
    library offers a cross-process single-flight lock keyed by string over a shared file. Its own file,
    written without fsync: a claim needs no durability (a lost one costs at most a duplicate call), and
    the answers' file keeps its full guarantees."""

    def __init__(self, path: str):
        self._lock = threading.Lock()
        try:
            self._open(path)
        except sqlite3.DatabaseError:
            Path(path).unlink()  # a damaged claims file holds nothing worth keeping: at worst a call is paid twice
            self._open(path)

    def _open(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT, since REAL)")
        self._db.execute("SELECT count(*) FROM claims").fetchone()

    def take(self, key: str, stale_s: float) -> bool:
        me, now = _owner(), time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT owner, since FROM claims WHERE key = ?", (key,)).fetchone()
                free = row is None or row[0] == me or not _alive(row[0]) or now - row[1] > stale_s
                if free:
                    self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (key, me, now))
            finally:
                self._db.execute("COMMIT")
        return free

    def drop(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, _owner()))
