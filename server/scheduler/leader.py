"""One scheduler at a time per job.

PostgreSQL: each job run takes a session-level `pg_try_advisory_lock` keyed by a stable integer
derived from the job name, on the connection the job uses, and releases it afterwards; another
scheduler that finds it taken skips that run (a crashed holder's lock goes with its connection).
SQLite has no such lock: run one scheduler process only (the jobs stay idempotent, so a second
one produces no duplicates, but it is not a supported setup).
"""

from __future__ import annotations

import contextlib
import hashlib

from server.persistence.db import database, is_postgres


def lock_key(job: str) -> int:
    """A stable signed 64-bit key for `job` (the same in every process and release)."""
    return int.from_bytes(hashlib.sha256(f"billing-scheduler:{job}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def leadership(job: str):
    """Yields True if this process may run `job` now. Call inside db.session()."""
    if not is_postgres():
        yield True
        return
    key = lock_key(job)
    acquired = database.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
    try:
        yield bool(acquired)
    finally:
        if acquired:
            database.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))
