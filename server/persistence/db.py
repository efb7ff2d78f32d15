"""The database handle: one proxy, bound at start-up from DATABASE_URL via playhouse.db_url.

SQLite runs in WAL mode and opens every transaction with BEGIN IMMEDIATE, so concurrent
writers queue on the busy timeout instead of failing on a lock upgrade. PostgreSQL is pooled,
with a wait timeout: a full pool makes a caller wait rather than fail at once.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlparse

import peewee
from playhouse import db_url

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": 15000,
    "foreign_keys": 1,
}
POOLED_SCHEMES = {"postgres": "postgres+pool", "postgresql": "postgresql+pool"}


def connect(url: str, *, max_connections: int = 32) -> peewee.Database:
    """Open the database named by `url` and bind the proxy to it."""
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        db = db_url.connect(url, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE", check_same_thread=False)
    elif scheme in POOLED_SCHEMES or scheme.endswith("+pool"):
        url = url.replace(f"{scheme}://", f"{POOLED_SCHEMES.get(scheme, scheme)}://", 1)
        db = db_url.connect(url, max_connections=max_connections, timeout=30, stale_timeout=300)
    else:
        db = db_url.connect(url)
    database.initialize(db)
    return db


def is_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


@contextlib.contextmanager
def session():
    """A connection for one unit of work (one RPC, one job step), returned to the pool after."""
    with database.connection_context():
        yield


def close() -> None:
    if database.obj is not None:
        if hasattr(database.obj, "close_all"):
            database.obj.close_all()
        else:
            database.obj.close()
