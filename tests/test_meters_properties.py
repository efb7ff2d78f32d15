"""Property: whatever the event stream (duplicates, retries, late and out-of-order timestamps),
each meter's figures from the rollups equal a straight computation over the distinct events,
in HOUR and PERIOD windows, grouped or not. Both backends (the stack's database)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import insert_subscription
from server.domain import meters as rules
from server.domain.access import KeyScope, Principal
from server.domain.usage import RawEvent
from server.persistence import db
from server.services import meters, usage

ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
HOUR = dt.timedelta(hours=1)
values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.decimals(min_value=-(10**6), max_value=10**6, places=9, allow_nan=False, allow_infinity=False).map(
        lambda d: format(d, "f")
    ),
)
events = st.tuples(
    st.sampled_from([f"e{n}" for n in range(25)]),  # event ids: repeats are duplicates
    st.integers(0, 60 * 60 * 50),  # seconds after the anchor: out of order, some hours apart
    st.sampled_from(["m-large", "m-small", None]),  # model (None: absent)
    values,
    st.sampled_from(["u1", "u2", "u3", "u4"]),
)
streams = st.lists(st.lists(events, min_size=1, max_size=20), min_size=1, max_size=5)


def _nanos(value) -> int:
    return int(Decimal(str(value)) * 10**9)


def _reference(kind: str, distinct: list[tuple]) -> dict[tuple, str]:
    """{(hour or None, model or None): figure} straight from the distinct events."""
    figures: dict[tuple, list] = {}
    for event_id, at, model, value, user in distinct:
        for key in (
            (at.replace(minute=0, second=0), model or ""),
            (None, model or ""),
            (at.replace(minute=0, second=0), None),
            (None, None),
        ):
            figures.setdefault(key, []).append((at, event_id, _nanos(value), user))
    out = {}
    for key, seen in figures.items():
        if kind == "SUM":
            out[key] = sum(v for _, _, v, _ in seen)
        elif kind == "COUNT":
            out[key] = len(seen) * 10**9
        elif kind == "MAX":
            out[key] = max(v for _, _, v, _ in seen)
        elif kind == "LATEST":
            out[key] = max(seen)[2]
        else:
            out[key] = len({u for _, _, _, u in seen}) * 10**9
    return {key: rules.decimals.format_nanos(n) for key, n in out.items()}


def _figures(sub_id: str, meter_id: str, window: rules.Window, grouped: bool) -> dict[tuple, str]:
    rows = meters.meter_usage(
        ADMIN, sub_id, meter_id, start=None, end=None, window=window, group_by=["model"] if grouped else []
    )
    return {
        (row.window_start if window is rules.Window.HOUR else None, row.groups["model"] if grouped else None): row.value
        for row in rows
    }


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams, retries=st.lists(st.integers(0, 4), max_size=2))
def test_rollups_equal_a_straight_computation_over_the_distinct_events(stack, stream, retries):
    tag = uuid.uuid4().hex[:8]
    kinds = {"SUM": "v", "MAX": "v", "LATEST": "v", "UNIQUE_COUNT": "user", "COUNT": ""}
    with db.session():
        for kind, prop in kinds.items():
            meters.create_meter(
                ADMIN,
                rules.validate_meter(f"{kind.lower()}-{tag}", kind, f"t_{tag}", kind, prop, ["model"], {}),
                now=dt.datetime.now(dt.timezone.utc),
            )
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    anchor = now - dt.timedelta(days=3)
    sub = insert_subscription(f"meterprop-{tag}", anchor=anchor)
    first: dict[str, tuple] = {}
    with db.session():
        for batch in [*stream, *(stream[i % len(stream)] for i in retries)]:
            raw = []
            for event_id, seconds, model, value, user in batch:
                at = anchor + dt.timedelta(seconds=seconds)
                properties = {"v": value, "user": user} | ({"model": model} if model else {})
                raw.append(RawEvent(event_id, "", None, at, f"t_{tag}", properties))
                first.setdefault(event_id, (event_id, at, model, value, user))
            usage.track(ADMIN, sub.id, raw, now=now)
        distinct = list(first.values())
        for kind in kinds:
            expected = _reference(kind, distinct)
            got = {}
            for window in (rules.Window.HOUR, rules.Window.PERIOD):
                for grouped in (True, False):
                    got.update(_figures(sub.id, f"{kind.lower()}-{tag}", window, grouped))
            assert got == expected, kind
