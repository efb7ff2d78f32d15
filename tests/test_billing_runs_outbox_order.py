"""The tie-breaks of services/billing_runs.py and services/outbox.py, and the alert query's
bound. SQLite hands rows of equal sort keys back in id order whatever the query asks (an integer
id is the rowid its scans and sorts follow; the alert query scans usage by its primary key, whose
first column is the subscription), and even PRAGMA reverse_unordered_selects leaves those ties
alone; PostgreSQL promises no order for ties at all. So each test checks the rows on SQLite and
the ORDER BY of the statement the service sent (peewee logs each one it executes): the clause
PostgreSQL receives too. Each test on a SQLite database of its own, with an explicit `now`."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest

from factories import insert_subscription
from server.domain.access import KeyScope, Principal
from server.domain.emails import EmailTemplate
from server.domain.periods import period
from server.persistence import db
from server.persistence.models import OutboxMessage, UsagePeriod
from server.services import billing_runs, outbox, plans
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)


@pytest.fixture(autouse=True)
def order_database(tmp_path):
    with own_database("sqlite", tmp_path), db.session():
        yield


@pytest.fixture
def selects(caplog):
    """The SELECT statements run from a table (as peewee sent them), oldest first."""
    caplog.set_level(logging.DEBUG, logger="peewee")

    def of(table: str) -> list[str]:
        sent = [record.msg[0] for record in caplog.records if record.name == "peewee" and isinstance(record.msg, tuple)]
        return [sql for sql in sent if sql.startswith("SELECT") and f'FROM "{table}" AS "t1"' in sql]

    return of


def message(message_id: int, *, due: dt.datetime = T0, dead_at: dt.datetime | None = None) -> None:
    """An outbox row with the id given (so that the order of the inserts need not be the ids')."""
    OutboxMessage.create(
        id=message_id,
        dedup_key=f"k-{message_id}",
        template=EmailTemplate.USAGE_ALERT,
        recipient="a@example.com",
        payload="{}",
        created_at=T0 - dt.timedelta(days=1),
        next_attempt_at=due,
        dead_at=dead_at,
    )


# --- outbox.claim_next -----------------------------------------------------------------------------


def test_claim_next_takes_the_lowest_id_among_rows_due_at_the_same_instant(selects):
    for message_id in (7, 3, 9, 5):  # inserted out of id order, all due at T0
        message(message_id)
    message(1, due=T0 + US)  # the lowest id, due a microsecond later
    claimed = [outbox.claim_next(T0) for _ in range(4)]
    assert [row.id if row else None for row in claimed] == [3, 5, 7, 9]
    assert outbox.claim_next(T0) is None
    [*_, sql] = selects("outbox_message")
    assert sql.endswith('ORDER BY "t1"."next_attempt_at", "t1"."id" LIMIT ?')


# --- outbox.dead_letters ---------------------------------------------------------------------------


def test_dead_letters_latest_death_first_ties_by_id(selects):
    late, early = T0, T0 - US
    for message_id, dead_at in ((8, early), (6, late), (2, early), (9, late), (4, late)):
        message(message_id, dead_at=dead_at)
    assert [row.id for row in outbox.dead_letters()] == [4, 6, 9, 2, 8]
    assert [row.id for row in outbox.dead_letters(limit=2)] == [4, 6]
    [*_, sql] = selects("outbox_message")
    assert sql.endswith('ORDER BY "t1"."dead_at" DESC, "t1"."id" LIMIT ?')


# --- billing_runs.over_alert_threshold -------------------------------------------------------------


def one_request_plan() -> str:
    """A plan whose requests charge includes a single request: one request is past 80% of it."""
    plan_id = f"one-{uuid.uuid4().hex[:8]}"
    charge = {
        "id": "calls",
        "meter_id": "requests",
        "model": "PER_UNIT",
        "included": 1,
        "unit_price": "1",
        "unit_size": 1000,
    }
    raw = {"id": plan_id, "name": "One", "monthly_fee_cents": 0, "rate_limit_per_minute": 60, "charges": [charge]}
    plans.create_plan(ADMIN, raw, now=ANCHOR)
    return plan_id


def test_over_alert_threshold_in_id_order_whatever_the_scan_order(selects):
    for subscription_id in ("sub_c", "sub_a", "sub_d", "sub_b"):
        insert_subscription(subscription_id[-1], subscription_id=subscription_id, anchor=ANCHOR)
        UsagePeriod.create(subscription=subscription_id, period_start=FIRST.start, requests=100_000)
    assert [c.id for c in billing_runs.over_alert_threshold()] == ["sub_a", "sub_b", "sub_c", "sub_d"]
    [sql] = selects("subscription")
    assert sql.endswith(' ORDER BY "t1"."id"')


def test_a_single_request_reaches_the_threshold_of_a_plan_including_one():
    plan_id = one_request_plan()
    insert_subscription("one", subscription_id="sub_one", plan=plan_id, anchor=ANCHOR)
    UsagePeriod.create(subscription="sub_one", period_start=FIRST.start, requests=1)
    insert_subscription("none", subscription_id="sub_none", plan=plan_id, anchor=ANCHOR)
    UsagePeriod.create(subscription="sub_none", period_start=FIRST.start, requests=0)
    [candidate] = billing_runs.over_alert_threshold()
    assert (candidate.id, candidate.included, candidate.requests) == ("sub_one", 1, 1)
