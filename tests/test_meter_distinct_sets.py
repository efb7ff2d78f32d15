"""A UNIQUE_COUNT meter's distinct sets as ingestion writes them (persistence/meter_rollups.py):
on PostgreSQL a batch's values go in as text arrays under their constant key, one statement per
(meter, period, segment or hour), so values an array or a string literal must escape, values of
several hours, and values already stored are checked here on both backends, and the tables'
shape after migration 0014. A database of the test's own."""

from __future__ import annotations

import datetime as dt

from factories import insert_subscription
from server.domain import meters as rules
from server.domain.access import KeyScope, Principal
from server.domain.usage import RawEvent
from server.persistence import db, meter_rollups
from server.services import meters, usage

ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
AWKWARD = ["a,b", "{x}", "it's", 'say "hi"', "back\\slash", "NULL", "ü-日本", " space ", "[]", "u1"]


def _rows(sub_id: str, window: rules.Window, group_by: list[str]) -> list[tuple[dict, str]]:
    found = meters.meter_usage(ADMIN, sub_id, "users", start=None, end=None, window=window, group_by=group_by)
    return [(row.groups, row.value) for row in found]


def test_distinct_values_are_stored_as_sent_once_each_per_segment_and_hour(own_database_url):
    now = dt.datetime.now(dt.timezone.utc).replace(minute=30, second=0, microsecond=0)
    sub = insert_subscription("distinct-sets", anchor=now - dt.timedelta(days=2))
    first_hour, second_hour = now - dt.timedelta(hours=2), now - dt.timedelta(hours=1)
    batch = [
        RawEvent(f"e{i}", "", None, first_hour, "llm", {"model": "m'1", "user": value})
        for i, value in enumerate(AWKWARD)
    ]
    batch += [  # the next hour: the same values and a new one, two groups; 7, 7.0 and "7" are one value
        RawEvent(f"f{i}", "", None, second_hour, "llm", {"model": "m,2" if i % 2 else "m'1", "user": value})
        for i, value in enumerate([*AWKWARD, 7, 7.0, "7"])
    ]
    with db.session():
        meters.create_meter(
            ADMIN, rules.validate_meter("users", "Users", "llm", "UNIQUE_COUNT", "user", ["model"], {}), now=now
        )
        assert usage.track(ADMIN, sub.id, batch, now=now).accepted == len(batch)
        retried = [RawEvent(f"g{i}", "", None, second_hour, "llm", {"user": v}) for i, v in enumerate(AWKWARD)]
        assert usage.track(ADMIN, sub.id, retried, now=now).accepted == len(AWKWARD)  # values seen, ungrouped ""

        period_start = sub.current_period_start
        stored = meter_rollups.distinct_by_segment(sub.id, "users", period_start)
        expected = {(period_start, ("m'1",), v) for v in [*AWKWARD, "7"]}
        expected |= {(period_start, ("m,2",), v) for v in [*AWKWARD[1::2], "7"]}
        expected |= {(period_start, ("",), v) for v in AWKWARD}
        assert sorted(stored) == sorted(expected)  # each once: a second insert of a value adds no row

        hours = (first_hour - dt.timedelta(hours=1), now + dt.timedelta(hours=1))
        by_hour = meter_rollups.distinct_by_hour(sub.id, "users", hours, period_start)
        first, second = (h.replace(minute=0) for h in (first_hour, second_hour))
        expected_hours = {(first, ("m'1",), v) for v in AWKWARD}
        expected_hours |= {(second, ("m'1",), v) for v in [*AWKWARD[0::2], "7"]}
        expected_hours |= {(second, ("m,2",), v) for v in [*AWKWARD[1::2], "7"]}
        expected_hours |= {(second, ("",), v) for v in AWKWARD}
        assert sorted(by_hour) == sorted(expected_hours)

        assert _rows(sub.id, rules.Window.PERIOD, []) == [({}, str(len(AWKWARD) + 1))]
        assert _rows(sub.id, rules.Window.PERIOD, ["model"]) == [
            ({"model": ""}, str(len(AWKWARD))),
            ({"model": "m'1"}, str(len(AWKWARD) + 1)),
            ({"model": "m,2"}, str(len(AWKWARD[1::2]) + 1)),
        ]


def test_distinct_sets_have_their_key_index_and_no_id_on_postgresql(own_database_url):
    with db.session():
        for table in ("meter_distinct", "meter_distinct_hour"):
            columns = {column.name for column in db.database.get_columns(table)}
            indexes = [(index.columns, index.unique) for index in db.database.get_indexes(table)]
            place = "segment_start" if table == "meter_distinct" else "hour"
            key = ["subscription_id", "meter_id", "period_start", place, "group_key", "value"]
            assert columns - {"id"} == set(key)
            assert ("id" in columns) is not db.is_postgres()  # SQLite keeps it as the rowid's name
            assert (key, True) in indexes
            assert len(indexes) == 1  # the key's (SQLite's id is the rowid, PostgreSQL's is gone with its index)
