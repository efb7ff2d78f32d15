"""server/persistence/bulk.py on each backend: the multi-row INSERTs store rows exactly as Peewee
would (read back through the models), skip what hits a unique index, and say which rows went in."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from factories import insert_subscription
from server.persistence import db
from server.persistence.bulk import add_counts, insert_ignore, insert_ignore_returning, upsert
from server.persistence.models import OutboxMessage, UsagePeriod
from stores import own_database

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
COLUMNS = [
    OutboxMessage.dedup_key,
    OutboxMessage.template,
    OutboxMessage.recipient,
    OutboxMessage.payload,
    OutboxMessage.created_at,
    OutboxMessage.next_attempt_at,
    OutboxMessage.attempts,
]


@pytest.fixture(scope="module", autouse=True, params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def bulk_database(request, tmp_path_factory):
    with own_database(request.param, tmp_path_factory.mktemp("bulk")), db.session():
        yield


def row(key: str, at: dt.datetime = T0, attempts: int = 0) -> tuple:
    return (key, "usage_alert", "a@example.com", "{}", at, at, attempts)


def test_insert_ignore_returning_names_the_rows_that_went_in_and_stores_them_as_peewee_does():
    a, b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    first = insert_ignore_returning(OutboxMessage, COLUMNS, [row(a)], returning=OutboxMessage.id)
    again = insert_ignore_returning(
        OutboxMessage, COLUMNS, [row(a, attempts=7), row(b, T0 + dt.timedelta(hours=1))], returning=OutboxMessage.id
    )
    stored = {m.dedup_key: m for m in OutboxMessage.select().where(OutboxMessage.dedup_key.in_([a, b]))}
    assert first == [stored[a].id] and again == [stored[b].id]
    assert (stored[a].attempts, stored[a].created_at, stored[a].next_attempt_at) == (0, T0, T0)
    assert stored[b].created_at == T0 + dt.timedelta(hours=1)
    assert (stored[b].template, stored[b].recipient, stored[b].payload) == ("usage_alert", "a@example.com", "{}")
    assert insert_ignore_returning(OutboxMessage, COLUMNS, [], returning=OutboxMessage.id) == []


def test_insert_ignore_skips_rows_that_hit_a_unique_index_and_keeps_the_rest():
    a, b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    insert_ignore(OutboxMessage, COLUMNS, [row(a, attempts=1)])
    insert_ignore(OutboxMessage, COLUMNS, [row(a, attempts=2), row(b, attempts=3)])
    insert_ignore(OutboxMessage, COLUMNS, [])
    stored = {m.dedup_key: m.attempts for m in OutboxMessage.select().where(OutboxMessage.dedup_key.in_([a, b]))}
    assert stored == {a: 1, b: 3}


def test_a_non_text_value_in_a_text_column_is_converted_by_the_field():
    key = f"c-{uuid.uuid4().hex}"
    insert_ignore(OutboxMessage, COLUMNS, [(key, "usage_alert", "a@example.com", 42, T0, T0, 0)])
    assert OutboxMessage.get(OutboxMessage.dedup_key == key).payload == "42"


def test_upsert_sets_what_it_is_told_and_add_counts_adds():
    sub = insert_subscription(f"bulk-{uuid.uuid4().hex[:8]}").id
    keys = [UsagePeriod.subscription, UsagePeriod.period_start]
    add_counts(UsagePeriod, keys, UsagePeriod.requests, [(sub, T0, 5), (sub, T0 + dt.timedelta(days=1), 1)])
    add_counts(UsagePeriod, keys, UsagePeriod.requests, [(sub, T0, 7)])
    counts = {p.period_start: p.requests for p in UsagePeriod.select().where(UsagePeriod.subscription == sub)}
    assert counts == {T0: 12, T0 + dt.timedelta(days=1): 1}
    upsert(UsagePeriod, keys, [UsagePeriod.requests], [(sub, T0, 3)], {"requests": "EXCLUDED.requests * 10"})
    upsert(UsagePeriod, keys, [UsagePeriod.requests], [], {"requests": "0"})
    assert UsagePeriod.get((UsagePeriod.subscription == sub) & (UsagePeriod.period_start == T0)).requests == 30
    upsert(UsagePeriod, keys, [UsagePeriod.requests], [(sub, T0, 1)], {"requests": "{t}.requests - EXCLUDED.requests"})
    assert UsagePeriod.get((UsagePeriod.subscription == sub) & (UsagePeriod.period_start == T0)).requests == 29


def test_rows_that_do_not_match_the_fields_are_refused_before_any_sql():
    key = f"d-{uuid.uuid4().hex}"
    with pytest.raises(ValueError):
        insert_ignore(OutboxMessage, COLUMNS, [row(key), row(key)[:-1]])  # rows of unequal length
    with pytest.raises(ValueError):
        insert_ignore(OutboxMessage, COLUMNS, [row(key)[:-1]])  # one value fewer than the fields
    assert not OutboxMessage.select().where(OutboxMessage.dedup_key == key).exists()
