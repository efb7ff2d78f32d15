"""The stores tests run against: a new database per backend (SQLite always, PostgreSQL when
reachable, else a visible skip), bound as the process's handle where tests call services
directly; Redis when reachable."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import urllib.parse

import pytest
import redis

from bench.postgres import scratch_database
from processes import free_port
from server.bootstrap import prepare
from server.config import Settings
from server.persistence import db

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def postgres_unreachable_reason() -> str | None:
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_URL, connect_timeout=2).close()
    except Exception as error:  # noqa: BLE001 - any failure means skip, with the reason shown
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {error}".strip()
    return None


def redis_unreachable_reason() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as error:  # noqa: BLE001 - any failure means skip, with the reason shown
        return f"Redis not reachable at {REDIS_URL}: {error}"
    return None


_REDIS_UNREACHABLE = redis_unreachable_reason()
needs_redis = pytest.mark.skipif(_REDIS_UNREACHABLE is not None, reason=_REDIS_UNREACHABLE or "")


def closed_port_url() -> str:
    """A Redis URL nobody listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


@contextlib.contextmanager
def new_database(backend: str, folder: pathlib.Path, template: str | None = None):
    """A new database of `backend` ("sqlite" in `folder`, or "postgresql": skipped with the reason
    when unreachable), empty or a copy of `template` (a URL this function gave, no longer in use),
    dropped after. A copy is cheaper than migrating again."""
    source = urllib.parse.urlparse(template).path if template else None
    if backend == "sqlite":
        path = folder / "billing.db"
        if source:
            shutil.copyfile(source, path)
        yield f"sqlite:///{path}"
        return
    reason = postgres_unreachable_reason()
    if reason:
        pytest.skip(reason)
    with scratch_database(POSTGRES_URL, prefix="billing_test", template=(source or "/template1")[1:]) as url:
        yield url


@contextlib.contextmanager
def prepared(url: str):
    """The database at `url` migrated and seeded, bound as the process's handle for the block,
    the previous handle restored after: for tests that call services directly and count what they
    see (the stack, if running, is idle meanwhile)."""
    saved = db.database.obj
    prepare(dataclasses.replace(Settings(), database_url=url))
    try:
        yield url
    finally:
        db.close()
        db.database.initialize(saved)


@contextlib.contextmanager
def own_database(backend: str, folder: pathlib.Path):
    """A new database of `backend`, prepared and bound for the block."""
    with new_database(backend, folder) as url, prepared(url):
        yield url


@contextlib.contextmanager
def bound(url: str):
    """Point the process's database handle at `url` for the block, in a session (the stack's
    in-process server must be idle meanwhile), then back."""
    saved = db.database.obj
    db.connect(url)
    try:
        with db.session():
            yield
    finally:
        db.close()
        db.database.initialize(saved)
