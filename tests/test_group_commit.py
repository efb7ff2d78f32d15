"""Group commit of concurrent track calls, on each backend: calls of one group each run
in their own savepoint (one failing leaves the others stored), duplicates across calls count once,
and no caller hears "accepted" unless the group's COMMIT succeeded.

A group is made deterministic by holding the commit turn while the calls queue up: the first to
get the turn after it is released runs them all in one transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time

import peewee
import pytest

from factories import insert_subscription
from server.bootstrap import prepare
from server.config import Settings
from server.domain.access import KeyScope, Principal
from server.domain.errors import InvalidArgument, NotFound
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.group_commit import GroupCommit
from server.persistence.models import RecordedUsageEvent, UsagePeriod
from server.services import usage
from stores import new_database

ADMIN_KEY = Principal(key_id=0, scope=KeyScope.ADMIN)
NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request, tmp_path_factory):
    saved = db.database.obj
    with new_database(request.param, tmp_path_factory.mktemp("group")) as url:
        prepare(dataclasses.replace(Settings(), database_url=url))
        try:
            yield request.param
        finally:
            db.close()
            db.database.initialize(saved)


def one_group(calls: list[tuple[str, list[RawEvent]]]) -> list:
    """Run the track calls concurrently, all queued before any runs: one group. Returns each
    call's TrackResult or the exception it raised, in order."""
    outcomes: list = [None] * len(calls)

    def call(i: int, subscription_id: str, events: list[RawEvent]) -> None:
        with db.session():
            try:
                outcomes[i] = usage.track(ADMIN_KEY, subscription_id, events, now=NOW)
            except Exception as error:  # noqa: BLE001 - the outcome under test
                outcomes[i] = error

    threads = [threading.Thread(target=call, args=(i, *c)) for i, c in enumerate(calls)]
    with usage._writes._turn:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(usage._writes._queue) < len(calls):
            assert time.monotonic() < deadline, "the calls did not queue"
            time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    return outcomes


def event(event_id: str, count: int = 1) -> RawEvent:
    return RawEvent(event_id, "/v1/x", count, NOW - dt.timedelta(seconds=1))


def stored(subscription_id: str) -> int:
    with db.session():
        return RecordedUsageEvent.select().where(RecordedUsageEvent.subscription == subscription_id).count()


def requests(sub) -> int:
    with db.session():
        return usage.period_requests(sub.id, sub.current_period_start)


def test_a_failing_call_in_a_group_leaves_the_others_committed(backend):
    ok, full = (insert_subscription(f"group-{name}-{backend}") for name in ("ok", "full"))
    canceled = insert_subscription(f"group-gone-{backend}", status="CANCELED", canceled_at=NOW)
    with db.session():  # bring `full` to one request under the bound
        usage.track(ADMIN_KEY, full.id, [event("fill")], now=NOW)
        UsagePeriod.update(requests=usage.MAX_PERIOD_REQUESTS - 1).where(UsagePeriod.subscription == full.id).execute()

    outcomes = one_group(
        [
            (ok.id, [event("a")]),
            (full.id, [event("over", 2)]),  # PERIOD_USAGE_LIMIT, after its raw event was inserted
            ("sub_missing", [event("b")]),  # NOT_FOUND
            (canceled.id, [event("c")]),  # rejected, not an error
            (ok.id, [event("d", 5)]),
        ]
    )

    assert isinstance(outcomes[1], InvalidArgument) and outcomes[1].reason == "PERIOD_USAGE_LIMIT"
    assert isinstance(outcomes[2], NotFound)
    assert [r.reason for r in outcomes[3].rejections] == ["SUBSCRIPTION_CANCELED"]
    assert (outcomes[0].accepted, outcomes[4].accepted) == (1, 1)
    assert requests(ok) == 6 and stored(ok.id) == 2
    assert requests(full) == usage.MAX_PERIOD_REQUESTS - 1 and stored(full.id) == 1  # "over" rolled back


def test_duplicates_across_the_calls_of_a_group_count_once(backend):
    sub = insert_subscription(f"group-dup-{backend}")
    outcomes = one_group([(sub.id, [event("same", 3)]) for _ in range(4)] + [(sub.id, [event("other", 1)])])
    assert sum(o.accepted for o in outcomes[:4]) == 1 and sum(o.duplicates for o in outcomes[:4]) == 3
    assert outcomes[4].accepted == 1
    assert requests(sub) == 4 and stored(sub.id) == 2


def test_a_group_whose_commit_fails_tells_no_caller_accepted(backend, monkeypatch):
    sub = insert_subscription(f"group-crash-{backend}")
    real = db.database.obj.commit
    failed = []

    def commit_once_failing():
        if not failed:
            failed.append(True)
            raise peewee.OperationalError("disk I/O error")
        return real()

    monkeypatch.setattr(db.database.obj, "commit", commit_once_failing)
    outcomes = one_group([(sub.id, [event(f"e{i}")]) for i in range(3)])
    assert failed and all(isinstance(o, peewee.OperationalError) for o in outcomes), outcomes
    assert requests(sub) == 0 and stored(sub.id) == 0

    outcomes = one_group([(sub.id, [event(f"e{i}")]) for i in range(3)])  # retried: stored now, once each
    assert [o.accepted for o in outcomes] == [1, 1, 1]
    assert requests(sub) == 3 and stored(sub.id) == 3


def test_a_lone_caller_commits_its_own_work_and_gets_its_own_error(backend):
    """A GroupCommit of its own (the service's is built at import), used by one caller at a time."""
    group = GroupCommit()
    sub = insert_subscription(f"lone-{backend}-{time.monotonic_ns()}")

    def count(n: int) -> int:
        UsagePeriod.create(subscription=sub.id, period_start=NOW + dt.timedelta(days=n), requests=n)
        return n

    def fail() -> None:
        count(99)
        raise InvalidArgument("no")

    with db.session():
        assert group.run(sub.id, lambda: count(1)) == 1
        with pytest.raises(InvalidArgument):
            group.run(sub.id, fail)
        assert group.run(sub.id, lambda: count(2)) == 2
        stored = sorted(p.requests for p in UsagePeriod.select().where(UsagePeriod.subscription == sub.id))
    assert stored == [1, 2]  # the failing caller's row rolled back with its savepoint
