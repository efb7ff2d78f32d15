"""Raw ingestion ceiling: batched inserts of 1,000 rows straight into the same database, into a
scratch table shaped like usage_event (unique index on subscription and event id)."""

from __future__ import annotations

import datetime as dt
import statistics
import time
import urllib.parse
import uuid

TABLE = "bench_scratch_usage_event"
BATCH = 1000


def _rows(batch_no: int, now: str):
    """One batch as a client would send it: random (uuid4) event ids, so index inserts land
    anywhere in the unique index, as real ones do; generating them is inside the timing."""
    return [(f"sub_bench_{batch_no % 16}", uuid.uuid4().hex, f"/v1/endpoint/{j % 7}", 1, now, now)
            for j in range(BATCH)]


def _measure(insert_batch, seconds: float) -> float:
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    rows, batch_no, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        batch_no += 1
        insert_batch(_rows(batch_no, now))
        rows += BATCH
    return rows / (time.perf_counter() - t0)


def raw_insert_ceiling(database_url: str, seconds: float, repeats: int = 3) -> dict:
    """Rows/s, median of `repeats` runs of `seconds` each."""
    scheme = urllib.parse.urlparse(database_url).scheme
    runs = []
    if scheme.startswith("sqlite"):
        import sqlite3
        conn = sqlite3.connect(urllib.parse.urlparse(database_url).path[1:], timeout=15)
        for pragma in ("journal_mode=wal", "synchronous=normal", "busy_timeout=15000"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, subscription_id TEXT NOT NULL, "
                     "event_id TEXT NOT NULL, endpoint TEXT NOT NULL, count INTEGER NOT NULL, "
                     "occurred_at TEXT NOT NULL, received_at TEXT NOT NULL)")
        conn.execute(f"CREATE UNIQUE INDEX {TABLE}_uq ON {TABLE} (subscription_id, event_id)")
        conn.execute(f"CREATE INDEX {TABLE}_rx ON {TABLE} (received_at)")
        conn.commit()
        sql = (f"INSERT OR IGNORE INTO {TABLE} (subscription_id, event_id, endpoint, count, occurred_at, received_at) "
               "VALUES (?, ?, ?, ?, ?, ?)")

        def insert(rows):
            with conn:
                conn.executemany(sql, rows)
        try:
            for r in range(repeats):
                conn.execute(f"DELETE FROM {TABLE}")
                conn.commit()
                runs.append(_measure(insert, seconds))
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
            conn.commit()
            conn.close()
        backend, how = "sqlite", "sqlite3 executemany, WAL, synchronous=NORMAL"
    else:
        import psycopg2
        from psycopg2.extras import execute_values
        conn = psycopg2.connect(urllib.parse.urlparse(database_url)._replace(scheme="postgresql").geturl())
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cur.execute(f"CREATE TABLE {TABLE} (id BIGSERIAL PRIMARY KEY, subscription_id TEXT NOT NULL, "
                        "event_id TEXT NOT NULL, endpoint TEXT NOT NULL, count BIGINT NOT NULL, "
                        "occurred_at TIMESTAMPTZ NOT NULL, received_at TIMESTAMPTZ NOT NULL)")
            cur.execute(f"CREATE UNIQUE INDEX {TABLE}_uq ON {TABLE} (subscription_id, event_id)")
            cur.execute(f"CREATE INDEX {TABLE}_rx ON {TABLE} (received_at)")
        sql = (f"INSERT INTO {TABLE} (subscription_id, event_id, endpoint, count, occurred_at, received_at) "
               "VALUES %s ON CONFLICT DO NOTHING")

        def insert(rows):
            with conn, conn.cursor() as cur:
                execute_values(cur, sql, rows, page_size=BATCH)
        try:
            for r in range(repeats):
                with conn, conn.cursor() as cur:
                    cur.execute(f"TRUNCATE {TABLE}")
                runs.append(_measure(insert, seconds))
        finally:
            with conn, conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
            conn.close()
        backend, how = "postgresql", "psycopg2 execute_values"
    return {"backend": backend, "method": how, "batch": BATCH, "rows_per_s": round(statistics.median(runs), 1),
            "runs": [round(r, 1) for r in runs]}
