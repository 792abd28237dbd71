"""The spend ledger in PostgreSQL (`budget.ledger_uri=postgresql://...`), for sweeps whose workers do
not share a disk (a Ray cluster): same tables and semantics as the SQLite ledger (pipelines/ledger.py).

Each reservation is one transaction that locks its scope's row (`SELECT ... FOR UPDATE`), sums what
the scope has committed and inserts only if the cap still holds, so workers on any machine never both
take the last dollars. Open reservations of dead processes are reaped by a later process on the same
host (only that host can tell whether a pid is alive), as in the SQLite ledger, which also says why
each scope keeps the sum of its settled calls (`scopes.settled`)."""

from __future__ import annotations

import os
import threading
import time

from pipelines.ledger import HOST, _alive

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS scopes (scope TEXT PRIMARY KEY, settled DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS reservations (id BIGSERIAL PRIMARY KEY, scope TEXT, host TEXT, pid INTEGER,"
    " key TEXT, reserved DOUBLE PRECISION, actual DOUBLE PRECISION, state TEXT, created DOUBLE PRECISION)",
    "CREATE INDEX IF NOT EXISTS by_scope ON reservations (scope, state)",
    "CREATE INDEX IF NOT EXISTS by_state ON reservations (state, host, pid)",
    "CREATE TABLE IF NOT EXISTS ratios (model TEXT PRIMARY KEY, ratio DOUBLE PRECISION, n INTEGER)",
]


def connect(uri: str):
    import psycopg2

    # SQLAlchemy-style URIs (postgresql+psycopg2://, as MLflow takes them) name the driver; libpq does not.
    return psycopg2.connect(uri.replace("+psycopg2", "", 1), connect_timeout=10)


class PgLedger:
    def __init__(self, uri: str, scope: str):
        self.scope = scope
        self._db = connect(uri)
        self._lock = threading.Lock()
        with self._lock, self._db, self._db.cursor() as cur:
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog: serialize it.
            cur.execute("SELECT pg_advisory_xact_lock(7201)")
            # A ledger made before `scopes.settled`: ALTER TABLE locks the table whole even when the column is
            # there (and, after the index statements' lock on reservations, deadlocked with reservations in
            # flight), so it runs only when the column is missing, before anything else.
            cur.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'scopes'")
            if cur.fetchone()[0] == 1:
                cur.execute("ALTER TABLE scopes ADD COLUMN settled DOUBLE PRECISION")
            for statement in SCHEMA:
                cur.execute(statement)
            cur.execute("INSERT INTO scopes VALUES (%s, 0) ON CONFLICT DO NOTHING", (scope,))
            # A scope written before `settled` existed (a resumed run) gets it from one sum over its history.
            cur.execute("UPDATE scopes SET settled = (SELECT COALESCE(SUM(actual), 0) FROM reservations WHERE "
                        "scope = %s AND state = 'settled') WHERE scope = %s AND settled IS NULL", (scope, scope))

    def _tx(self, fn):
        with self._lock, self._db, self._db.cursor() as cur:  # commits, or rolls back on an exception
            return fn(cur)

    def _reap(self, cur) -> None:
        cur.execute("SELECT DISTINCT pid FROM reservations WHERE state = 'open' AND host = %s", (HOST,))
        dead = [pid for (pid,) in cur.fetchall() if pid != os.getpid() and not _alive(pid)]
        for pid in dead:
            cur.execute("UPDATE reservations SET state = 'orphaned', actual = reserved WHERE state = 'open' "
                        "AND host = %s AND pid = %s", (HOST, pid))

    def committed(self, cur=None) -> float:
        """Spent plus reserved in this scope."""
        if cur is None:
            return self._tx(self.committed)
        cur.execute("SELECT COALESCE(SUM(reserved), 0) FROM reservations WHERE scope = %s AND state IN "
                    "('open', 'orphaned')", (self.scope,))
        (unsettled,) = cur.fetchone()
        return self._settled(cur) + unsettled

    def _settled(self, cur) -> float:
        cur.execute("SELECT settled FROM scopes WHERE scope = %s", (self.scope,))
        return cur.fetchone()[0]

    def reserve(self, usd: float, max_usd: float | None, key: str = "") -> int | None:
        """A reservation id, or None when `usd` more could pass `max_usd`."""
        def take(cur):
            cur.execute("SELECT scope FROM scopes WHERE scope = %s FOR UPDATE", (self.scope,))
            self._reap(cur)
            if max_usd is not None and self.committed(cur) + usd > max_usd:
                return None
            cur.execute("INSERT INTO reservations (scope, host, pid, key, reserved, actual, state, created) "
                        "VALUES (%s, %s, %s, %s, %s, 0, 'open', %s) RETURNING id",
                        (self.scope, HOST, os.getpid(), key, usd, time.time()))
            return cur.fetchone()[0]

        return self._tx(take)

    def settle(self, reservation: int, actual_usd: float) -> None:
        def close(cur):
            cur.execute("SELECT scope, state, actual FROM reservations WHERE id = %s", (reservation,))
            scope, state, before = cur.fetchone()
            cur.execute("UPDATE reservations SET actual = %s, state = 'settled' WHERE id = %s", (actual_usd, reservation))
            cur.execute("UPDATE scopes SET settled = settled + %s WHERE scope = %s",
                        (actual_usd - (before if state == "settled" else 0.0), scope))

        self._tx(close)

    def spent(self) -> float:
        """Settled, plus calls of dead processes at their worst case."""
        def total(cur):
            cur.execute("SELECT COALESCE(SUM(actual), 0) FROM reservations WHERE scope = %s AND state = 'orphaned'",
                        (self.scope,))
            (orphaned,) = cur.fetchone()
            return self._settled(cur) + orphaned

        return self._tx(total)

    def orphaned_keys(self) -> set[str]:
        """Request keys that were in flight when some earlier process died (any scope)."""
        def find(cur):
            self._reap(cur)
            cur.execute("SELECT key FROM reservations WHERE state = 'orphaned' AND key != ''")
            return {k for (k,) in cur.fetchall()}

        return self._tx(find)

    def ratio(self, model: str) -> float | None:
        def get(cur):
            cur.execute("SELECT ratio FROM ratios WHERE model = %s", (model,))
            row = cur.fetchone()
            return row[0] if row else None

        return self._tx(get)

    def observe_ratio(self, model: str, ratio: float) -> None:
        self._tx(lambda cur: cur.execute(
            "INSERT INTO ratios VALUES (%s, %s, 1) ON CONFLICT (model) DO UPDATE SET "
            "ratio = GREATEST(ratios.ratio, excluded.ratio), n = ratios.n + 1", (model, ratio)))
