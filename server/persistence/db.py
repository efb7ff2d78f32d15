"""The database handle: one proxy, bound at start-up from DATABASE_URL via playhouse.db_url.

SQLite runs in WAL mode and opens every transaction with BEGIN IMMEDIATE, its writers queueing
on locks within and across processes (QueuedWritersSqliteDatabase). The file is created once,
at connect; later connections open it with mode=rw, so a file moved away is an error (the
database is lost) rather than a new empty database created in its place; each thread keeps its
connection while the file at the path is the one it opened (see `session`). PostgreSQL is pooled, with a wait timeout:
a full pool makes a caller wait rather than fail at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

import peewee
from playhouse import db_url

database = peewee.DatabaseProxy()
_Select = TypeVar("_Select", bound="peewee.ModelSelect[Any]")

BUSY_TIMEOUT_MS = 15000
# busy_timeout first: pragmas apply in order, and switching a new file to WAL while another
# process opens it too must wait for the lock, not fail with "database is locked".
SQLITE_PRAGMAS = {
    "busy_timeout": BUSY_TIMEOUT_MS,
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
}
WRITER_LOCK_SUFFIX = "-writer-lock"  # beside the database, as SQLite's own "-wal" and "-shm"
POOLED_SCHEMES = {"postgres": "postgres+pool", "postgresql": "postgresql+pool"}


class QueuedWritersSqliteDatabase(peewee.SqliteDatabase):
    """SQLite whose write transactions wait their turn on a lock: a thread lock within the
    process, then an exclusive flock on a file beside the database across processes.

    SQLite admits one writer at a time; a writer that finds the write lock taken retries in its
    busy handler, sleeping between tries, so under load a few writes waited far longer than the
    rest (and with two server processes, writers of one process kept sleeping while the other's
    ran). Queuing writers on locks that wake the
    next waiter the moment they are released hands the database over at once. Readers are not
    queued (WAL lets them run beside the writer). A process that writes without this class (the
    sqlite3 shell) still meets the busy handler, which is correct, only slower.

    Every write transaction of the process runs on one connection, lent to the thread that holds
    the writer locks for the length of its transaction. SQLite keeps a page cache per connection
    and drops it when another connection has written, so writes that went round the threads'
    own connections (group commit's leader is whichever caller gets the turn) began with a cold
    cache and read the indexes' pages again, a visible share of a large batch's CPU.
    """

    def __init__(self, *args, path: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._writer = threading.Lock()
        self._holding = threading.local()
        self.path = path
        self._lock_file = open(path + WRITER_LOCK_SUFFIX, "a+b") if path else None  # noqa: SIM115 - the process's
        self._writer_conn: sqlite3.Connection | None = None  # guarded by the writer locks
        self._writer_file: tuple[int, int] | None = None

    def _connect(self):
        connection = super()._connect()  # type: ignore[misc]  # the stubs leave out peewee's private _connect
        self._state.file = self.file_identity()  # type: ignore[attr-defined]  # nor its per-thread _state
        return connection

    def file_identity(self) -> tuple[int, int] | None:
        """The file now at the database's path (device, inode), None if there is none (or no
        path: an in-memory database)."""
        if self.path is None:
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def new_session(self) -> None:
        """Check the file at the session's first query on this thread's own connection (`cursor`;
        a write transaction runs on the writer connection, checked when lent), not at its start:
        a call answered from caches makes no system call, which under load also hands the
        interpreter lock over and back."""
        self._state.check_file = True  # type: ignore[attr-defined]

    def cursor(self, named_cursor=None):
        if getattr(self._holding, "own", None) is None:  # not while the writer connection is lent
            self._check_file_once()
        return super().cursor(named_cursor)

    def _check_file_once(self) -> None:
        if getattr(self._state, "check_file", False):  # type: ignore[attr-defined]
            self._state.check_file = False  # type: ignore[attr-defined]
            self._reuse_or_close()

    def _reuse_or_close(self) -> None:
        """Keep this thread's connection if the file it opened is still the one at the path, else
        close it, so that the next query reconnects and a file moved away shows as lost (an open
        connection would go on using the moved file)."""
        opened = getattr(self._state, "file", None)  # type: ignore[attr-defined]
        if self.path and not self.is_closed() and opened != self.file_identity():
            self.close()

    def begin(self, lock_type=None):
        self._writer.acquire()
        self._holding.value = True
        try:
            if self._lock_file:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            # In memory, every connection is a database of its own: nothing to lend.
            if self.path and getattr(self._holding, "lend", True):
                self._lend_writer_connection()
            super().begin(lock_type)
        except BaseException:
            self._release()
            raise

    def commit(self):
        super().commit()
        # A failed COMMIT leaves the transaction to the ROLLBACK that follows it (peewee's
        # transactions always roll back after one): that releases, on the same connection.
        self._release()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self._release()

    @contextlib.contextmanager
    def writes_on_own_connection(self):
        """This thread's write transactions on its own connection, for work that sets the
        connection's state first (migrations turn foreign keys off, a per-connection pragma)."""
        self._holding.lend = False
        try:
            yield
        finally:
            self._holding.lend = True

    def _lend_writer_connection(self) -> None:
        """Make the process's writer connection this thread's until `_release`, opening it
        afresh when the file at the path is not the one it opened (moved away: lost)."""
        if self._writer_conn is not None and self._writer_file != self.file_identity():
            self._writer_conn.close()
            self._writer_conn = None
        if self._writer_conn is None:
            self._writer_conn = super()._connect()  # type: ignore[misc]  # not ours: the thread's file stays
            self._writer_file = self.file_identity()
        state = self._state  # type: ignore[attr-defined]
        self._holding.own = (state.conn, state.closed)
        state.conn, state.closed = self._writer_conn, False

    def _release(self) -> None:
        if getattr(self._holding, "value", False):
            self._holding.value = False
            own = getattr(self._holding, "own", None)
            if own is not None:
                self._holding.own = None
                self._state.conn, self._state.closed = own  # type: ignore[attr-defined]
            if self._lock_file:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._writer.release()

    def close_all(self) -> None:
        """This thread's connection and the writer connection (at shutdown)."""
        with self._writer:
            if self._writer_conn is not None:
                self._writer_conn.close()
                self._writer_conn = None
        self.close()


def _create_in_wal_mode(path: str) -> None:
    """Create the file if it is new and switch it to WAL, once per process at start-up, under the
    writers' file lock: two processes switching a new file at once can both hold a shared lock and
    want the exclusive one, and SQLite answers one of them "database is locked" at once, without
    its busy handler (it would deadlock). Later connections find the file in WAL already."""
    sqlite3.connect(path).close()  # a path that cannot hold a database fails here, as sqlite3 says it
    with open(path + WRITER_LOCK_SUFFIX, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute("PRAGMA journal_mode = wal")
        finally:
            conn.close()


def connect(url: str, *, max_connections: int = 32) -> peewee.Database:
    """Open the database named by `url` and bind the proxy to it."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        params = db_url.parse(url)
        path = None
        if params["database"] != ":memory:":
            path = params["database"]
            _create_in_wal_mode(path)
            params.update(database=f"file:{quote(path)}?mode=rw", uri=True)
        db = QueuedWritersSqliteDatabase(
            **params, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE", check_same_thread=False, path=path
        )
    elif scheme in POOLED_SCHEMES or scheme.endswith("+pool"):
        url = url.replace(f"{scheme}://", f"{POOLED_SCHEMES.get(scheme, scheme)}://", 1)
        db = db_url.connect(url, max_connections=max_connections, timeout=30, stale_timeout=300)
    else:
        db = db_url.connect(url)
    database.initialize(db)
    return db


def is_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


def unique_violation(error: peewee.IntegrityError, index: str, *columns: peewee.Field) -> bool:
    """Whether `error` is the unique index `index` (on `columns`) refusing a row, not another
    constraint: PostgreSQL names the index, SQLite the indexed columns."""
    cause = getattr(error, "orig", None)
    diagnostics = getattr(cause, "diag", None)
    if diagnostics is not None:
        return diagnostics.constraint_name == index
    names = ", ".join(f"{column.model._meta.table_name}.{column.column_name}" for column in columns)
    return str(cause) == f"UNIQUE constraint failed: {names}"


def for_update(query: _Select, **options) -> _Select:
    """Lock the selected rows for the transaction: FOR UPDATE on PostgreSQL (options such as
    skip_locked pass through); SQLite needs none, its BEGIN IMMEDIATE already serializes writers."""
    return query.for_update(**options) if is_postgres() else query


@contextlib.contextmanager
def session():
    """One unit of work (one RPC, one job step). PostgreSQL: its pooled connection is taken by the
    first query (peewee's autoconnect) and returned after, so a call answered from caches takes
    none. SQLite: each thread keeps its connection from one session to the next, re-opened (at the
    session's first query) when the file at the path is no longer the one it opened (moved away:
    lost). Opening one with its
    pragmas is dear, and closing the last connection to a WAL database checkpoints it (an fsync):
    under single-event tracking that close was most of a write's wall time."""
    if isinstance(database.obj, QueuedWritersSqliteDatabase):
        database.obj.new_session()
        yield
        return
    try:
        yield
    finally:
        if not database.is_closed():
            database.close()


def close() -> None:
    if database.obj is not None:
        if hasattr(database.obj, "close_all"):
            database.obj.close_all()
        else:
            database.obj.close()
