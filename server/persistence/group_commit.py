"""Group commit: concurrent short write transactions of one process share one COMMIT.

A single-event `track` is a few statements and one COMMIT; the commit (and on SQLite the writer
lock and BEGIN IMMEDIATE, on PostgreSQL the WAL flush) is most of its cost. Callers that arrive
while a transaction is running queue up, and the next one to get the turn commits all of them in
one transaction, each caller's work in its own savepoint: a caller's failure rolls back its
savepoint only, and the others commit.

Leader/follower rather than a committer thread: the first queued caller that takes the turn
(`_turn`) runs the whole queue in its own thread (on the connection its thread writes with: on
SQLite the process's one writer connection, on PostgreSQL its pooled one), so there is no
thread to start, stop or hand results across besides the callers themselves, and a lone caller
(no contention) commits its own work at once with no extra hop. A caller whose work a previous
leader already ran finds it done when it gets the turn and returns at once.

Every caller returns (or raises) only after the group's COMMIT: if the COMMIT fails, or the
transaction breaks in a way a savepoint cannot undo, every caller of the group gets that error
and none was told its work was stored. A group runs its callers ordered by `key` (the row each
locks, e.g. the subscription id), so two groups of different processes take row locks (FOR
UPDATE) in the same order and cannot deadlock each other.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from server.persistence.db import database


@dataclasses.dataclass
class _Call:
    key: str
    work: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None
    done: bool = False


class GroupCommit:
    def __init__(self):
        self._queue: list[_Call] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()  # held by the leader for the length of one group

    def run(self, key: str, work: Callable[[], Any]) -> Any:
        """Run `work()` in a savepoint of a shared transaction; returns its result once committed."""
        call = _Call(key, work)
        with self._queue_lock:
            self._queue.append(call)
        with self._turn:
            if not call.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit(sorted(group, key=lambda c: c.key))
        if call.error is not None:
            raise call.error
        return call.result

    @staticmethod
    def _commit(group: list[_Call]) -> None:
        try:
            with database.atomic():
                for call in group:
                    try:
                        with database.atomic():
                            call.result = call.work()
                    except Exception as error:  # noqa: BLE001 - this caller's failure, raised in its own thread
                        call.error = error
        except BaseException as error:  # noqa: BLE001 - the group's transaction is lost: every caller gets the error
            for call in group:
                call.result, call.error = None, error
        finally:
            for call in group:
                call.done = True
