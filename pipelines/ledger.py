"""The spend ledger: one SQLite file that every process of a command shares, so `budget.max_usd`
bounds the sum over all jobs of a sweep and the judge (basic and joblib launchers alike) and
survives a crash.

A *scope* names everything one command started (its Hydra sweep or run folder). Each call inserts a
reservation (its worst case) before it is sent and settles it with the billed cost when it returns,
in one transaction each (`BEGIN IMMEDIATE`), so concurrent processes never both take the last
dollars. A reservation left open by a process that died (kill -9) counts as spent at its worst case:
the provider may have billed it. Its request key is kept, so a rerun can say how many of those calls
it sends again.

The file serves every command run with the same cache folder, so it keeps growing: a call's work must
not grow with it. Open rows are found through an index on their state, and each scope keeps the sum of
its settled calls in `totals`, updated in the transaction that settles them, so a reservation sums only
the calls in flight and the (rare) orphaned ones. A scope written before `totals` existed (a resumed
run) gets its row from one sum over its history, when a ledger is first opened on it.

Written by hand because no maintained library offers a cross-process money counter; SQLite is
already how the response cache and MLflow store are shared."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from pathlib import Path

HOST = socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Ledger:
    def __init__(self, path: str | Path, scope: str):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.scope = scope
        self._db = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS reservations (id INTEGER PRIMARY KEY, scope TEXT, host TEXT, pid INTEGER,"
                " key TEXT, reserved REAL, actual REAL, state TEXT, created REAL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS by_scope ON reservations (scope, state)")
            self._db.execute("CREATE INDEX IF NOT EXISTS by_state ON reservations (state, host, pid)")
            self._db.execute("CREATE TABLE IF NOT EXISTS ratios (model TEXT PRIMARY KEY, ratio REAL, n INTEGER)")
            self._db.execute("CREATE TABLE IF NOT EXISTS totals (scope TEXT PRIMARY KEY, settled REAL)")
        self._tx(lambda db: db.execute(
            "INSERT OR IGNORE INTO totals SELECT ?, COALESCE(SUM(actual), 0) FROM reservations WHERE scope = ? "
            "AND state = 'settled'", (scope, scope)))

    def _tx(self, fn):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    def _reap(self, db) -> None:
        """Open reservations of dead processes on this host become spent at their worst case."""
        rows = db.execute("SELECT DISTINCT pid FROM reservations WHERE state = 'open' AND host = ?", (HOST,)).fetchall()
        dead = [pid for (pid,) in rows if pid != os.getpid() and not _alive(pid)]
        for pid in dead:
            db.execute("UPDATE reservations SET state = 'orphaned', actual = reserved WHERE state = 'open' AND host = ? "
                       "AND pid = ?", (HOST, pid))

    def committed(self, db=None) -> float:
        """Spent plus reserved in this scope."""
        db = db or self._db
        (unsettled,) = db.execute("SELECT COALESCE(SUM(reserved), 0) FROM reservations WHERE scope = ? AND state IN "
                                  "('open', 'orphaned')", (self.scope,)).fetchone()
        return self._settled(db) + unsettled

    def _settled(self, db) -> float:
        (settled,) = db.execute("SELECT settled FROM totals WHERE scope = ?", (self.scope,)).fetchone()
        return settled

    def reserve(self, usd: float, max_usd: float | None, key: str = "") -> int | None:
        """A reservation id, or None when `usd` more could pass `max_usd`."""
        def take(db):
            self._reap(db)
            if max_usd is not None and self.committed(db) + usd > max_usd:
                return None
            cur = db.execute("INSERT INTO reservations (scope, host, pid, key, reserved, actual, state, created) "
                             "VALUES (?, ?, ?, ?, ?, 0, 'open', ?)", (self.scope, HOST, os.getpid(), key, usd, time.time()))
            return cur.lastrowid

        return self._tx(take)

    def settle(self, reservation: int, actual_usd: float) -> None:
        def close(db):
            scope, state, before = db.execute("SELECT scope, state, actual FROM reservations WHERE id = ?",
                                              (reservation,)).fetchone()
            db.execute("UPDATE reservations SET actual = ?, state = 'settled' WHERE id = ?", (actual_usd, reservation))
            db.execute("UPDATE totals SET settled = settled + ? WHERE scope = ?",
                       (actual_usd - (before if state == "settled" else 0.0), scope))

        self._tx(close)

    def spent(self) -> float:
        """Settled, plus calls of dead processes at their worst case."""
        with self._lock:
            (orphaned,) = self._db.execute("SELECT COALESCE(SUM(actual), 0) FROM reservations WHERE scope = ? AND "
                                           "state = 'orphaned'", (self.scope,)).fetchone()
            return self._settled(self._db) + orphaned

    def orphaned_keys(self) -> set[str]:
        """Request keys that were in flight when some earlier process died (any scope)."""
        def find(db):
            self._reap(db)
            return {k for (k,) in db.execute("SELECT key FROM reservations WHERE state = 'orphaned' AND key != ''")}

        return self._tx(find)

    def ratio(self, model: str) -> float | None:
        """The largest billed-input / estimated-input ratio seen for this model, if any."""
        with self._lock:
            row = self._db.execute("SELECT ratio FROM ratios WHERE model = ?", (model,)).fetchone()
        return row[0] if row else None

    def observe_ratio(self, model: str, ratio: float) -> None:
        self._tx(lambda db: db.execute(
            "INSERT INTO ratios VALUES (?, ?, 1) ON CONFLICT(model) DO UPDATE SET ratio = MAX(ratio, excluded.ratio), "
            "n = n + 1", (model, ratio)))


def open_ledger(uri: str | None, path: str | Path | None, scope: str):
    """`budget.ledger_uri`: null for the SQLite file at `path` (one machine), or postgresql://... for a
    database every worker of a cluster reaches (pipelines/ledger_pg.py)."""
    if not uri:
        return Ledger(path, scope)
    return _postgres(uri, lambda pg: pg.PgLedger(uri, scope))


def check_uri(uri: str | None) -> None:
    """A bad `budget.ledger_uri` (scheme, driver, unreachable database) is one line before any work."""
    if uri:
        _postgres(uri, lambda pg: pg.connect(uri).close())


def _postgres(uri: str, use):
    from pipelines.errors import UserError
    from pipelines.secrets import redact_url

    if not uri.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        raise UserError(f"budget.ledger_uri: must be null or postgresql://..., got {redact_url(uri)!r}")
    try:
        from pipelines import ledger_pg

        return use(ledger_pg)
    except ImportError as err:
        raise UserError(f"budget.ledger_uri: needs psycopg2 (pip install -e '.[team]'): {err}") from None
    except Exception as err:  # psycopg2.OperationalError: wrong host, port, database or password
        raise UserError(f"budget.ledger_uri: cannot open {redact_url(uri)}: {str(err).strip().splitlines()[0]}") from None
