"""Raw ingestion ceiling: batched inserts of 1,000 rows straight into the same database, into a
scratch table with the real usage_event's shape, read from the migrated database itself: the
same columns and types, the foreign key to a subscription table (ON DELETE CASCADE), the unique
index on (subscription_id, event_id), the index on received_at and the foreign key's own index
on subscription_id. The parent is a scratch table holding the 16 subscription ids the batches
use, so the foreign-key check is a primary-key lookup as in the service. SQLite runs with the
server's pragmas (WAL, synchronous=NORMAL, foreign_keys=ON). Both scratch tables are dropped."""

from __future__ import annotations

import datetime as dt
import re
import statistics
import time
import urllib.parse
import uuid

TABLE = "bench_scratch_usage_event"
PARENT = "bench_scratch_subscription"
REAL, REAL_PARENT = "usage_event", "subscription"
BATCH = 1000
SUBSCRIPTIONS = [f"sub_bench_{i}" for i in range(16)]


def _rows(batch_no: int, now: str):
    """One batch as a client would send it: random (uuid4) event ids, so index inserts land
    anywhere in the unique index, as real ones do; generating them is inside the timing.
    Timestamps as the service stores them (naive UTC)."""
    sub = SUBSCRIPTIONS[batch_no % len(SUBSCRIPTIONS)]
    return [(sub, uuid.uuid4().hex, f"/v1/endpoint/{j % 7}", 1, now, now) for j in range(BATCH)]


def _measure(insert_batch, seconds: float) -> float:
    now = str(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
    rows, batch_no, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        batch_no += 1
        insert_batch(_rows(batch_no, now))
        rows += BATCH
    return rows / (time.perf_counter() - t0)


def sqlite_scratch_ddl(statements: list[str]) -> list[str]:
    """The real usage_event's CREATE TABLE / CREATE INDEX statements (from sqlite_master),
    renamed to the scratch table and pointing their foreign key at the scratch parent."""
    out = []
    for sql in statements:
        sql = sql.replace(f'REFERENCES "{REAL_PARENT}" ("id")', f'REFERENCES "{PARENT}" ("id")')
        sql = re.sub(rf'"{REAL}(_?)', rf'"{TABLE}\1', sql)
        out.append(sql)
    return out


def _sqlite(path: str, seconds: float, repeats: int) -> tuple[list[float], list[str]]:
    import sqlite3

    conn = sqlite3.connect(path, timeout=15)
    for pragma in ("journal_mode=wal", "synchronous=normal", "busy_timeout=15000", "foreign_keys=on"):
        conn.execute(f"PRAGMA {pragma}")
    real = [
        sql
        for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type DESC, name", (REAL,)
        )
    ]
    if not real:
        raise RuntimeError(f"no {REAL} table in {path}: the ceiling needs the migrated database")
    parent_id = conn.execute(f'SELECT type FROM pragma_table_info("{REAL_PARENT}") WHERE name = "id"').fetchone()[0]
    ddl = [f'CREATE TABLE "{PARENT}" ("id" {parent_id} NOT NULL PRIMARY KEY)', *sqlite_scratch_ddl(real)]
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute(f"DROP TABLE IF EXISTS {PARENT}")
    for sql in ddl:
        conn.execute(sql)
    conn.executemany(f"INSERT INTO {PARENT} VALUES (?)", [(s,) for s in SUBSCRIPTIONS])
    conn.commit()
    sql = (
        f"INSERT OR IGNORE INTO {TABLE} (subscription_id, event_id, endpoint, count, occurred_at, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )

    def insert(rows):
        with conn:
            conn.executemany(sql, rows)

    runs = []
    try:
        for _ in range(repeats):
            conn.execute(f"DELETE FROM {TABLE}")
            conn.commit()
            runs.append(_measure(insert, seconds))
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"DROP TABLE IF EXISTS {PARENT}")
        conn.commit()
        conn.close()
    return runs, ddl


def _postgres(url: str, seconds: float, repeats: int) -> tuple[list[float], list[str]]:
    import psycopg2
    from psycopg2.extras import execute_values

    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'id'",
            (REAL_PARENT,),
        )
        parent_id = cur.fetchone()[0]
        cur.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            (REAL,),
        )
        fks = [row[0] for row in cur.fetchall()]
        # LIKE copies columns, types, NOT NULL and every index; not the foreign key (added below
        # from the real one) and, without INCLUDING DEFAULTS, not the id sequence (its own here).
        ddl = [
            f"DROP TABLE IF EXISTS {TABLE}",
            f"DROP TABLE IF EXISTS {PARENT}",
            f"DROP SEQUENCE IF EXISTS {TABLE}_id_seq",
            f"CREATE TABLE {PARENT} (id {parent_id} PRIMARY KEY)",
            f"CREATE TABLE {TABLE} (LIKE {REAL} INCLUDING INDEXES)",
            f"CREATE SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id",
            f"ALTER TABLE {TABLE} ALTER COLUMN id SET DEFAULT nextval('{TABLE}_id_seq')",
        ]
        ddl += [
            f"ALTER TABLE {TABLE} ADD " + fk.replace(f"REFERENCES {REAL_PARENT}(", f"REFERENCES {PARENT}(")
            for fk in fks
        ]
        for sql in ddl:
            cur.execute(sql)
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", (TABLE,))
        ddl = ddl[3:] + [row[0] for row in cur.fetchall()]  # the shape, without the DROPs
        execute_values(cur, f"INSERT INTO {PARENT} VALUES %s", [(s,) for s in SUBSCRIPTIONS])
    sql = (
        f"INSERT INTO {TABLE} (subscription_id, event_id, endpoint, count, occurred_at, received_at) "
        "VALUES %s ON CONFLICT DO NOTHING"
    )

    def insert(rows):
        with conn, conn.cursor() as cur:
            execute_values(cur, sql, rows, page_size=BATCH)

    runs = []
    try:
        for _ in range(repeats):
            with conn, conn.cursor() as cur:
                cur.execute(f"TRUNCATE {TABLE}")
            runs.append(_measure(insert, seconds))
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cur.execute(f"DROP TABLE IF EXISTS {PARENT}")
        conn.close()
    return runs, ddl


def raw_insert_ceiling(database_url: str, seconds: float, repeats: int = 3) -> dict:
    """Rows/s, median of `repeats` runs of `seconds` each; needs the migrated database."""
    parsed = urllib.parse.urlparse(database_url)
    if parsed.scheme.startswith("sqlite"):
        runs, ddl = _sqlite(parsed.path[1:], seconds, repeats)
        backend, how = "sqlite", "sqlite3 executemany, WAL, synchronous=NORMAL, foreign_keys=ON"
    else:
        runs, ddl = _postgres(parsed._replace(scheme="postgresql").geturl(), seconds, repeats)
        backend, how = "postgresql", "psycopg2 execute_values"
    return {
        "backend": backend,
        "method": how,
        "batch": BATCH,
        "rows_per_s": round(statistics.median(runs), 1),
        "runs": [round(r, 1) for r in runs],
        "scratch_ddl": ddl,
    }
