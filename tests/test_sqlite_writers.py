"""SQLite writers of different processes queue on a lock file beside the database (taken at BEGIN,
released at COMMIT or ROLLBACK) instead of meeting SQLite's sleeping busy handler."""

from __future__ import annotations

import fcntl
import threading

import pytest

from server.persistence import db
from server.persistence.models import Plan
from stores import own_database


@pytest.fixture()
def lock_path(tmp_path):
    with own_database("sqlite", tmp_path) as url:
        yield url.removeprefix("sqlite:///") + db.WRITER_LOCK_SUFFIX


def write(done: threading.Event) -> None:
    with db.session(), db.database.atomic():
        Plan.update(name=Plan.name).where(Plan.id == "standard").execute()
    done.set()


def test_a_writer_waits_while_another_process_holds_the_lock_and_goes_once_released(lock_path):
    done = threading.Event()
    with open(lock_path, "a+b") as other_process:  # another open file: flock conflicts as across processes
        fcntl.flock(other_process, fcntl.LOCK_EX)
        writer = threading.Thread(target=write, args=(done,))
        writer.start()
        assert not done.wait(0.3), "the write began while another process held the writer lock"
        fcntl.flock(other_process, fcntl.LOCK_UN)
        assert done.wait(10)
    writer.join(10)


def test_the_lock_is_released_at_commit_and_at_rollback(lock_path):
    write(threading.Event())
    with pytest.raises(RuntimeError), db.session(), db.database.atomic():
        Plan.update(name=Plan.name).where(Plan.id == "standard").execute()
        raise RuntimeError("rolled back")
    with open(lock_path, "a+b") as other_process:
        fcntl.flock(other_process, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held


def test_write_transactions_of_every_thread_run_on_one_connection(lock_path):
    """So SQLite's page cache, which a connection drops when another one writes, stays warm from
    one write to the next whichever thread writes (QueuedWritersSqliteDatabase)."""
    seen: dict[str, int] = {}

    def note(name: str) -> None:
        with db.session():
            seen[f"{name} reads"] = id(db.database.connection())
            with db.database.atomic():
                Plan.update(name=Plan.name).where(Plan.id == "standard").execute()
                seen[f"{name} writes"] = id(db.database.connection())
            seen[f"{name} reads after"] = id(db.database.connection())

    for name in ("first", "second"):
        thread = threading.Thread(target=note, args=(name,))
        thread.start()
        thread.join(10)
    assert seen["first writes"] == seen["second writes"]
    assert seen["first reads"] == seen["first reads after"] != seen["first writes"]
    assert seen["second reads"] == seen["second reads after"] != seen["second writes"]


def test_an_in_memory_database_writes_where_it_reads():
    """In memory every connection is a database of its own: no writer connection is lent."""
    memory = db.QueuedWritersSqliteDatabase(":memory:", pragmas=db.SQLITE_PRAGMAS, lock_type="IMMEDIATE")
    with memory.atomic():
        memory.execute_sql("CREATE TABLE t (x INTEGER)")
        memory.execute_sql("INSERT INTO t VALUES (1)")
    assert memory.execute_sql("SELECT count(*) FROM t").fetchone() == (1,)
    memory.close()
