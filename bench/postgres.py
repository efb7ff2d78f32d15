"""BENCH_POSTGRES=1: a scratch PostgreSQL database created for the run and dropped after it.

Created through the maintenance database named by BENCH_POSTGRES_ADMIN_URL (default
postgresql://postgres@127.0.0.1:5432/test) as bench_<random hex>; the run's DATABASE_URL points
at it. Dropped WITH (FORCE) at the end, so a crashed server's connections cannot keep it alive."""

from __future__ import annotations

import contextlib
import os
import secrets
import urllib.parse

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _admin_sql(statement: str) -> None:
    """Run one statement on the maintenance database (CREATE/DROP DATABASE cannot run in a transaction)."""
    import psycopg2
    conn = psycopg2.connect(os.environ.get("BENCH_POSTGRES_ADMIN_URL", DEFAULT_ADMIN_URL))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@contextlib.contextmanager
def scratch_database():
    """Yields the URL of a fresh, empty database; drops it afterwards."""
    name = f"bench_{secrets.token_hex(4)}"
    admin_url = os.environ.get("BENCH_POSTGRES_ADMIN_URL", DEFAULT_ADMIN_URL)
    _admin_sql(f"CREATE DATABASE {name}")
    try:
        yield urllib.parse.urlparse(admin_url)._replace(path=f"/{name}").geturl()
    finally:
        _admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
