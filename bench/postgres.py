"""A scratch PostgreSQL database: created for one run and dropped after it, for the bench
(BENCH_POSTGRES=1) and for the test suite (one per backend session, and per test where counts
must be exact). It lives here, not under tests/, because the bench must not import the tests;
the tests already import the bench.

Created through a maintenance database (the bench's is BENCH_POSTGRES_ADMIN_URL, default
postgresql://postgres@127.0.0.1:5432/test) as <prefix>_<random hex>. Dropped WITH (FORCE) at the
end, so a crashed server's connections cannot keep it alive."""

from __future__ import annotations

import contextlib
import os
import secrets
import urllib.parse
from typing import ClassVar

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _admin_sql(admin_url: str, statement: str) -> None:
    """Run one statement on the maintenance database (CREATE/DROP DATABASE cannot run in a transaction)."""
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@contextlib.contextmanager
def scratch_database(admin_url: str | None = None, prefix: str = "bench", template: str = "template1"):
    """Yields the URL of a fresh database on the server of `admin_url` (default: the bench's), a
    copy of the database `template` (default: empty); drops it afterwards."""
    admin_url = admin_url or os.environ.get("BENCH_POSTGRES_ADMIN_URL", DEFAULT_ADMIN_URL)
    name = f"{prefix}_{secrets.token_hex(6)}"
    _admin_sql(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield urllib.parse.urlparse(admin_url)._replace(path=f"/{name}").geturl()
    finally:
        _admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgresUse:
    """What PostgreSQL spends, read on this machine: CPU seconds from /proc (the backends connected
    to one database, plus the WAL writer, checkpointer and background writer, which every write
    pays) and WAL bytes from the current WAL position. Both are shared with any other database on
    the server (noise, noted in BENCHMARKS.md).

    `cpu_seconds()` is a running total: each call adds what every process seen so far has used
    since the last call; a backend first seen counts from its start (the pools connect during the
    load window), one that has gone since loses its last interval."""

    AUXILIARY: ClassVar[list[str]] = ["walwriter", "checkpointer", "background writer"]  # an array for ANY(%s)

    def __init__(self, database_url: str):
        import psycopg2

        scheme, rest = database_url.split("://", 1)
        self.conn = psycopg2.connect(f"{scheme.removesuffix('+pool')}://{rest}")  # libpq knows no '+pool'
        self.conn.autocommit = True
        self.seen: dict[int, float] = {}
        self.total = 0.0

    def cpu_seconds(self) -> float:
        from bench.stack import proc_cpu_seconds

        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE (datname = current_database() "
                "AND pid <> pg_backend_pid()) OR backend_type = ANY(%s)",
                (self.AUXILIARY,),
            )
            pids = [pid for (pid,) in cur.fetchall()]
        for pid in pids:
            try:
                now = proc_cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited between the query and the read
            self.total += now - self.seen.get(pid, 0.0)
            self.seen[pid] = now
        return self.total

    def wal_bytes(self) -> int:
        """The WAL position as a byte count: its difference over a window is the WAL written."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
            return int(cur.fetchone()[0])

    def close(self):
        self.conn.close()
