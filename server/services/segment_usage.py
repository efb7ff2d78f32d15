"""Usage counters per plan segment (UsageSegment), the ones invoicing and the usage estimate read.

Keys: (subscription, period start, segment start), the segment start being
domain/invoicing.py segment_key (the latest plan change, or the trial's end, at or before the
event's timestamp, or its period's start); per-hour rollups can carry the same key. Written at ingest in the raw events'
transaction, under the subscription lock (services/usage.py). A plan change at T, in its own
transaction under the same lock, moves the events already counted whose timestamps are >= T
(an event may be dated up to FUTURE_SKEW ahead of its receipt) to the new segment: it reads only
those events, by the (subscription, occurred_at) index, never the subscription's whole history.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from server.domain import trials
from server.domain.invoicing import segment_key
from server.domain.meters import API_REQUEST
from server.persistence.bulk import add_counts
from server.persistence.models import PlanChange, RecordedUsageEvent, Subscription, UsageSegment
from server.persistence.prepared import Prepared
from server.services import metering

Key = tuple[dt.datetime, dt.datetime]  # (period start, segment start)

_CHANGES = Prepared(
    PlanChange,
    [PlanChange.subscription],
    lambda sub: (
        PlanChange.select(PlanChange.effective_at)
        .where(PlanChange.subscription == sub)
        .order_by(PlanChange.effective_at)
    ),
)


def change_instants(subscription_id: str) -> list[dt.datetime]:
    """The instants of the subscription's plan history, sorted (segment_key's `changes`)."""
    return [row.effective_at for row in _CHANGES.rows(subscription_id)]


def key_instants(subscription: Subscription) -> list[dt.datetime]:
    """The instants usage is keyed by: the plan history's and the trial's end (domain/trials.py)."""
    return trials.key_instants(change_instants(subscription.id), subscription.trial_end)


def add(subscription_id: str, totals: dict[Key, int]) -> None:
    """Add requests ({(period start, segment start): requests}, negative to take away): one upsert."""
    add_counts(
        UsageSegment,
        [UsageSegment.subscription, UsageSegment.period_start, UsageSegment.segment_start],
        UsageSegment.requests,
        [(subscription_id, period_start, start, n) for (period_start, start), n in totals.items() if n],
    )


def requests_by_segment(subscription_id: str, period_start: dt.datetime) -> dict[dt.datetime, int]:
    """{segment start: requests} of one period (invoicing.line_items' `requests_by_key`)."""
    return {
        row.segment_start: row.requests
        for row in UsageSegment.select(UsageSegment.segment_start, UsageSegment.requests).where(
            (UsageSegment.subscription == subscription_id) & (UsageSegment.period_start == period_start)
        )
    }


def split_at(subscription: Subscription, before: list[dt.datetime], at: dt.datetime) -> None:
    """After a plan change at `at` joined the history (`before`: its instants without it), move
    the counted events timestamped at or after `at` to the segment each now falls in. Call under
    the subscription lock, in the change's transaction."""
    after = sorted([*before, at])
    moved: dict[Key, int] = defaultdict(int)
    events = list(
        RecordedUsageEvent.select().where(
            (RecordedUsageEvent.subscription == subscription.id) & (RecordedUsageEvent.occurred_at >= at)
        )
    )
    for event in events:
        if event.event_type != API_REQUEST:
            continue
        period = subscription.cycle.containing(event.occurred_at)
        moved[(period.start, segment_key(period, before, event.occurred_at))] -= event.count
        moved[(period.start, segment_key(period, after, event.occurred_at))] += event.count
    add(subscription.id, moved)
    metering.rekey(subscription, events, before, after)
