"""Property: whatever the batches, duplicates and retries, totals equal the distinct events sent."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import insert_subscription
from server.domain.access import KeyScope, Principal
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import UsageHourly
from server.services import usage

ADMIN_PRINCIPAL = Principal(key_id=0, scope=KeyScope.ADMIN)
event_ids = st.sampled_from([f"e{n}" for n in range(40)])
batches = st.lists(
    st.lists(st.tuples(event_ids, st.integers(1, 50), st.sampled_from(["/a", "/b", "/c"])), min_size=1, max_size=30),
    min_size=1,
    max_size=6,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches, retries=st.lists(st.integers(0, 5), max_size=3))
def test_totals_equal_distinct_events_whatever_the_retries(stack, batches, retries):
    subscription = insert_subscription(f"prop-{id(batches)}-{dt.datetime.now().timestamp()}")
    now = dt.datetime.now(dt.timezone.utc)
    first_seen: dict[str, int] = {}
    sent = list(batches) + [batches[i % len(batches)] for i in retries]
    with db.session():
        for batch in sent:
            usage.track(
                ADMIN_PRINCIPAL,
                subscription.id,
                [RawEvent(event_id, endpoint, count, None) for event_id, count, endpoint in batch],
                now=now,
            )
            for event_id, count, _ in batch:
                first_seen.setdefault(event_id, count)
        expected = sum(first_seen.values())
        assert usage.period_requests(subscription.id, subscription.current_period_start) == expected
        hourly = sum(row.requests for row in UsageHourly.select().where(UsageHourly.subscription == subscription.id))
        assert hourly == expected
