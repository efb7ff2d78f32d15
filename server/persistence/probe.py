"""Is the database there? A current answer for every health check, at a few microseconds.

Health must show a lost database at the check after the loss and a returning one at the check
after its return, and it is asked on every load-balancer probe. A fresh connection per check
(the first design) cost ~650 µs on SQLite, most of a health call. The probe keeps one connection
of its own instead (not the pool's: a check must neither wait behind calls nor take a connection
they need), used by one check at a time (see `ok` for the others):

- SQLite: the file's identity (device, inode) is compared with the one its connection opened,
  since an open connection still reads a file that was moved away or deleted; a missing file
  fails, a replaced one is reopened (mode=rw: never created). Then the schema version is read.
- PostgreSQL: `SELECT 1`. A lost server or an ended session fails there.

A check that fails on the kept connection is tried once more on a new one (connecting within
CONNECT_TIMEOUT_SECONDS), so only a database that cannot be reached now is reported lost.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import urllib.parse

import peewee
import psycopg2

from server.persistence import db

log = logging.getLogger("billing.health")

CONNECT_TIMEOUT_SECONDS = 2
APPLICATION_NAME = "billing-health-probe"  # how its session shows in pg_stat_activity


def _sqlite_path(database: peewee.SqliteDatabase) -> str | None:
    """The file behind db.connect's `file:<path>?mode=rw` URI (None for `:memory:`)."""
    name = database.database
    if database.connect_params.get("uri"):
        return urllib.parse.unquote(urllib.parse.urlparse(name).path)
    return None if name == ":memory:" else name


class DatabaseProbe:
    """Follows the database `db` is bound to (a rebinding reopens the probe's connection)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: peewee.Database | None = None
        self._conn = None
        self._identity: tuple[int, int] | None = None
        self._last = False

    def ok(self) -> bool:
        """True when the database answers; else False, with the cause in the log (never the caller's).
        A check that arrives while another is in flight takes the last answer, which is then at
        most one check old, rather than queue behind it (under a flood of checks, most do)."""
        if not self._lock.acquire(blocking=False):
            return self._last
        try:
            self._last = self._answer()
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
        if isinstance(target, peewee.SqliteDatabase):
            self._check_sqlite(target)
        elif isinstance(target, peewee.PostgresqlDatabase):
            self._check_postgres(target)
        else:  # no dedicated probe: a query in a session of its own
            with db.session():
                target.execute_sql("SELECT 1")

    def _check_sqlite(self, target: peewee.SqliteDatabase) -> None:
        path = _sqlite_path(target)
        identity = None
        if path is not None:
            stat = os.stat(path)  # FileNotFoundError: moved away or deleted
            identity = (stat.st_dev, stat.st_ino)
        if self._conn is None or identity != self._identity:
            self._drop()
            self._conn = sqlite3.connect(target.database, **{**target.connect_params, "check_same_thread": False})
            self._identity = identity
        self._conn.execute("PRAGMA schema_version").fetchone()

    def _check_postgres(self, target: peewee.PostgresqlDatabase) -> None:
        if self._conn is None:
            self._conn = psycopg2.connect(dbname=target.database, **{
                "connect_timeout": CONNECT_TIMEOUT_SECONDS, **target.connect_params,
                "application_name": APPLICATION_NAME})
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
