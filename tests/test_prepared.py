"""Prepared queries (the per-call write path's selects): composed once per database and IN-list
length, they return what the same Peewee query returns, with values converted by their fields and
the query's own literals kept."""

from __future__ import annotations

import datetime as dt

import pytest

from factories import insert_subscription
from server.domain.subscriptions import SubscriptionStatus
from server.persistence import db
from server.persistence.models import Subscription
from server.persistence.prepared import Prepared
from stores import own_database

UTC = dt.timezone.utc
BY_STATUS_AND_IDS = Prepared(
    Subscription,
    [Subscription.id],
    lambda ids: Subscription.select().where(
        Subscription.id.in_(ids) & (Subscription.status == SubscriptionStatus.ACTIVE)
    ),
)
SINCE = Prepared(
    Subscription,
    [Subscription.tenant_id, Subscription.anchor_at],
    lambda tenant, since: Subscription.select().where(
        (Subscription.tenant_id == tenant) & (Subscription.anchor_at >= since)
    ),
)


@pytest.fixture(scope="module", autouse=True)
def database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("prepared")), db.session():
        yield


def test_a_prepared_query_returns_what_peewee_returns_for_each_list_length():
    subs = [
        insert_subscription(f"prep-{i}", status=SubscriptionStatus.CANCELED if i == 2 else SubscriptionStatus.ACTIVE)
        for i in range(4)
    ]
    for ids in ([subs[0].id], [s.id for s in subs], [], [subs[2].id, subs[3].id], [subs[0].id]):
        expected = list(
            Subscription.select().where(Subscription.id.in_(ids) & (Subscription.status == SubscriptionStatus.ACTIVE))
        )
        found = BY_STATUS_AND_IDS.rows(ids)
        assert sorted(s.id for s in found) == sorted(s.id for s in expected)
        assert [s.__data__ for s in sorted(found, key=lambda s: s.id)] == [
            s.__data__ for s in sorted(expected, key=lambda s: s.id)
        ]


def test_values_are_converted_by_their_fields():
    anchor = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
    sub = insert_subscription("prep-time", anchor=anchor)
    same_instant_elsewhere = anchor.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert [s.id for s in SINCE.rows("prep-time", same_instant_elsewhere)] == [sub.id]
    assert SINCE.rows("prep-time", anchor + dt.timedelta(microseconds=1)) == []
    assert SINCE.rows("prep-time", anchor)[0].anchor_at == anchor


def test_a_value_the_query_does_not_use_as_given_is_refused():
    unused = Prepared(Subscription, [Subscription.id], lambda id_: Subscription.select().where(Subscription.id == "x"))
    with pytest.raises(ValueError, match="did not reach its SQL"):
        unused.rows("sub_1")
