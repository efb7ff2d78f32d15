"""Is the database there? An answer at most FRESH_SECONDS old for every health check.

Health must show a lost database, and a returning one, within a fraction of a second, and it is
asked on every load-balancer probe and sometimes flooded. A fresh connection per check (the
first design) was most of a health call's cost on SQLite, and each blocking call in it hands
the GIL over, which under load stalls the server's other calls. So the probe asks the database
at most once per FRESH_SECONDS (a load balancer probing every second is answered afresh each
time; a flood shares answers), on one connection of its own that it keeps open (not the pool's:
a check must neither wait behind calls nor take a connection they need):

- SQLite: the file's identity (device, inode) is compared with the one its connection opened,
  since an open connection still reads a file that was moved away or deleted; a missing file
  fails, a replaced one is reopened (mode=rw: never created). Then the schema version is read.
- PostgreSQL: `SELECT 1`. A lost server or an ended session fails there.

A check that fails on the kept connection is tried once more on a new one (connecting within
CONNECT_TIMEOUT_SECONDS), so only a database that cannot be reached now is reported lost.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import peewee
import psycopg2

from server.persistence import db

log = logging.getLogger("billing.health")

FRESH_SECONDS = 0.1  # how old an answer may be; docs/api.md's Errors and limits says so
CONNECT_TIMEOUT_SECONDS = 2
APPLICATION_NAME = "billing-health-probe"  # how its session shows in pg_stat_activity


class DatabaseProbe:
    """Follows the database `db` is bound to (a rebinding reopens the probe's connection)."""

    def __init__(self, fresh_seconds: float = FRESH_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._fresh_seconds, self._clock = fresh_seconds, clock
        self._asked_at = -math.inf
        self._lock = threading.Lock()
        self._target: peewee.Database | None = None
        self._conn: Any = None  # a sqlite3 or a psycopg2 connection (psycopg2 has no types)
        self._identity: tuple[int, int] | None = None
        self._last = False

    def ok(self) -> bool:
        """True when the database answered, at most `fresh_seconds` ago or now; else False, with the
        cause in the log (never the caller's). A check that arrives while the database is being
        asked takes the last answer rather than queue behind a connection attempt."""
        now = self._clock()
        if now - self._asked_at < self._fresh_seconds or not self._lock.acquire(blocking=False):
            return self._last
        try:
            self._last, self._asked_at = self._answer(), now
            return self._last
        finally:
            self._lock.release()

    def _answer(self) -> bool:
        try:
            self._check(db.database.obj)
            return True
        except Exception:  # noqa: BLE001 - the kept connection may be what failed (an ended session)
            self._drop()
        try:
            self._check(db.database.obj)
            return True
        except Exception as error:  # noqa: BLE001 - any failure means not ready; report it, don't crash
            log.warning("database check failed: %s: %s", type(error).__name__, str(error).splitlines()[:1])
            self._drop()
            return False

    def _check(self, target: peewee.Database) -> None:
        if target is not self._target:
            self._drop()
            self._target = target
        if isinstance(target, db.QueuedWritersSqliteDatabase):
            self._check_sqlite(target)
        elif isinstance(target, peewee.PostgresqlDatabase):
            self._check_postgres(target)
        else:  # no dedicated probe: a query in a session of its own
            with db.session():
                target.execute_sql("SELECT 1")

    def _check_sqlite(self, target: db.QueuedWritersSqliteDatabase) -> None:
        identity = target.file_identity()
        if target.path is not None and identity is None:
            raise FileNotFoundError(f"{target.path} was moved away or deleted")
        if self._conn is None or identity != self._identity:
            self._drop()
            self._conn = sqlite3.connect(target.database, **{**target.connect_params, "check_same_thread": False})
            self._identity = identity
        self._conn.execute("PRAGMA schema_version").fetchone()

    def _check_postgres(self, target: peewee.PostgresqlDatabase) -> None:
        if self._conn is None:
            self._conn = psycopg2.connect(
                dbname=target.database,
                **{
                    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                    **target.connect_params,
                    "application_name": APPLICATION_NAME,
                },
            )
            self._conn.autocommit = True
        with self._conn.cursor() as cursor:
            cursor.execute("SELECT 1")

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - a connection already broken closes as far as it can
                pass
        self._conn, self._identity = None, None
