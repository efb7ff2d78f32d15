"""Endpoint 24's PERIOD reads of MAX and LATEST meters over a whole period, which the database
reduces (persistence/meter_rollups.py `extremes`): a group's greatest units held by several hours
with different nanos and by ties, another group's rows at that same units, negative values (floor
units), and LATEST events at one instant told apart by event id. Both backends, a database of the
test's own."""

from __future__ import annotations

import datetime as dt

from factories import insert_subscription
from server.domain import meters as rules
from server.domain.access import KeyScope, Principal
from server.domain.usage import RawEvent
from server.persistence import db, meter_rollups
from server.services import meters, usage

ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)


def _rows(sub_id: str, meter_id: str, group_by: list[str]) -> list[tuple[dict, str]]:
    found = meters.meter_usage(
        ADMIN, sub_id, meter_id, start=None, end=None, window=rules.Window.PERIOD, group_by=group_by
    )
    return [(row.groups, row.value) for row in found]


def test_period_max_and_latest_per_group_are_exact_over_ties_and_other_groups_rows(own_database_url):
    now = dt.datetime.now(dt.timezone.utc).replace(minute=30, second=0, microsecond=0)
    sub = insert_subscription("period-extremes", anchor=now - dt.timedelta(days=2))
    hour = [now - dt.timedelta(hours=6 - n) for n in range(6)]  # six clock hours of the period
    events = [  # (event id, at, model, v)
        ("a1", hour[0], "a", "5.2"),
        ("a2", hour[1], "a", "5.7"),  # a's greatest: units 5 as in hour 0, larger nanos
        ("a3", hour[2], "a", "5.7"),  # the same value in another hour: a tie
        ("a4", hour[3], "a", "5.25"),
        ("a5", hour[4], "a", "-3"),
        ("b1", hour[0], "b", "7.1"),  # b's greatest
        ("b2", hour[1], "b", "5.9"),  # units 5, a's greatest units, with nanos above a's: b's row, not a's
        ("b3", hour[5], "b", "7.05"),
        ("c1", hour[2], "c", "-1.5"),  # floor: units -2, nanos 5e8
        ("c2", hour[3], "c", "-1.2"),  # units -2, nanos 8e8: the greatest of c
        ("c3", hour[4], "c", "-2"),
        ("d2", hour[5], "d", "4"),  # d's two events share the latest instant: the larger id wins
        ("d1", hour[5], "d", "9"),
    ]
    batch = [RawEvent(i, "", None, at, "llm", {"model": m, "v": v}) for i, at, m, v in events]
    with db.session():
        for meter_id, aggregation in (("peak", "MAX"), ("last", "LATEST")):
            definition = rules.validate_meter(meter_id, meter_id, "llm", aggregation, "v", ["model"], {})
            meters.create_meter(ADMIN, definition, now=now)
        assert usage.track(ADMIN, sub.id, batch, now=now).accepted == len(events)

        assert _rows(sub.id, "peak", ["model"]) == [
            ({"model": "a"}, "5.7"),
            ({"model": "b"}, "7.1"),
            ({"model": "c"}, "-1.2"),
            ({"model": "d"}, "9"),
        ]
        assert _rows(sub.id, "peak", []) == [({}, "9")]
        assert _rows(sub.id, "last", ["model"]) == [
            ({"model": "a"}, "-3"),
            ({"model": "b"}, "7.05"),
            ({"model": "c"}, "-2"),
            ({"model": "d"}, "4"),
        ]
        assert _rows(sub.id, "last", []) == [({}, "4")]  # d2 and b3 share the instant: "d2" > "b3"

        extremes = meter_rollups.extremes(sub.id, "peak", sub.current_period_start, rules.Aggregation.MAX)
        assert {group: cell.value for group, cell in extremes.items()} == {
            ("a",): 5_700_000_000,
            ("b",): 7_100_000_000,
            ("c",): -1_200_000_000,
            ("d",): 9_000_000_000,
        }
