"""Usage metering (endpoints 8-11): every event lands exactly once, and reads never scan raw events.

Ingestion is one savepoint per batch, in a transaction shared with the batches other threads of
this process are storing at the same moment (group commit, server/persistence/group_commit.py):
lock the subscription (PostgreSQL: FOR UPDATE, the same
lock invoice generation takes, so no event slips into a period after it is invoiced; SQLite:
BEGIN IMMEDIATE serializes writers), insert raw events with ON CONFLICT DO NOTHING RETURNING,
and add only the rows actually inserted to the counters (per hour and endpoint, per period, per
plan segment of the period: services/segment_usage.py). The unique index on (subscription,
event_id) is what makes a retried or concurrent duplicate count nothing. A period's counter is
bounded (MAX_PERIOD_REQUESTS), so no counter, total or amount computed from it can overflow a
64-bit column on either backend.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections import defaultdict

import peewee as pw

from server.domain import rating, trials, webhooks
from server.domain import usage as rules
from server.domain.access import SYSTEM, Principal, require_admin
from server.domain.errors import InvalidArgument
from server.domain.invoicing import is_seed_shape, segment_key, segment_requests
from server.domain.meters import API_REQUEST
from server.domain.periods import Period, date_of, start_of_day
from server.domain.subscriptions import SubscriptionStatus
from server.observability import metrics
from server.persistence import plan_versions
from server.persistence.bulk import add_counts, insert_ignore_returning
from server.persistence.db import is_postgres
from server.persistence.group_commit import GroupCommit
from server.persistence.models import (
    LIVE_INVOICE,
    Invoice,
    RecordedUsageEvent,
    Subscription,
    UsageHourly,
    UsagePeriod,
)
from server.persistence.prepared import Prepared
from server.resources import threshold_message
from server.services import events as webhook_events
from server.services import metering, segment_usage, spend_control
from server.services.invoices import period_of, rated_period, subscription_currency
from server.services.subscriptions import find_subscription

# 10^15 requests in one period (~385 million a second for a month); x the largest per-1,000 price
# the catalogue allows, / 1000, stays far below 2^63 cents.
MAX_PERIOD_REQUESTS = 10**15
_writes = GroupCommit()  # this process's concurrent track calls, committed together
_INVOICED = Prepared(
    Invoice,
    [Invoice.subscription, Invoice.period_start],
    lambda sub, starts: Invoice.select(Invoice.period_start).where(
        (Invoice.subscription == sub) & Invoice.period_start.in_(starts) & LIVE_INVOICE
    ),
)
_COUNTED = Prepared(
    UsagePeriod,
    [UsagePeriod.subscription, UsagePeriod.period_start],
    lambda sub, starts: UsagePeriod.select().where(
        (UsagePeriod.subscription == sub) & UsagePeriod.period_start.in_(starts)
    ),
)


@dataclasses.dataclass(frozen=True)
class Rejection:
    index: int
    event_id: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class TrackResult:
    accepted: int
    duplicates: int
    rejections: list[Rejection]


@dataclasses.dataclass(frozen=True)
class UsageSummary:
    subscription_id: str
    period_start: dt.datetime
    period_end: dt.datetime
    currency: str
    total_requests: int
    included_requests: int
    remaining_included: int
    overage_requests: int
    estimated_overage_cents: int
    accrued_cents: int = 0
    credit_balance_cents: int = 0


def _rejections(subscription: Subscription, events: list[rules.Event]) -> tuple[list[Rejection], dict[int, Period]]:
    """Events that may not count, with reasons, and the period of each event that may."""
    if subscription.status == SubscriptionStatus.CANCELED:
        return [
            Rejection(e.index, e.event_id, "SUBSCRIPTION_CANCELED", f"subscription {subscription.id} is canceled")
            for e in events
        ], {}
    periods = {}
    found = None
    rejections = []
    cycle = subscription.cycle
    for event in events:  # a batch mostly falls in one period: reuse it rather than recompute
        if event.timestamp < subscription.anchor_at:  # no period to look for (year 1 has none before it)
            rejections.append(
                Rejection(
                    event.index,
                    event.event_id,
                    "BEFORE_SUBSCRIPTION",
                    f"timestamp is before the subscription started ({subscription.anchor_at.isoformat()})",
                )
            )
            continue
        if found is None or not found.contains(event.timestamp):
            found = cycle.containing(event.timestamp)
        periods[event.index] = found
    starts = {p.start for p in periods.values()}
    invoiced = {row.period_start for row in _INVOICED.rows(subscription.id, list(starts))}
    for event in events:
        period = periods.get(event.index)
        if period is not None and period.start in invoiced:
            rejections.append(
                Rejection(
                    event.index,
                    event.event_id,
                    "PERIOD_INVOICED",
                    f"the period starting {period.start.isoformat()} is already invoiced",
                )
            )
    rejections.sort(key=lambda r: r.index)
    rejected = {r.index for r in rejections}
    return rejections, {i: p for i, p in periods.items() if i not in rejected}


def _add(counter: type[UsageHourly | UsagePeriod], subscription_id: str, keys: tuple[str, ...], totals: dict) -> None:
    """Add `totals` ({key values: requests}) to a counter table, one upsert for all rows."""
    add_counts(
        counter,
        [counter.subscription, *(getattr(counter, k) for k in keys)],
        counter.requests,
        [(subscription_id, *(key if isinstance(key, tuple) else (key,)), requests) for key, requests in totals.items()],
    )


def _add_to_counters(
    subscription_id: str,
    events: list[rules.Event],
    periods: dict[int, Period],
    changes: list[dt.datetime],
    zone: dt.tzinfo,
) -> dict[dt.datetime, tuple[int, int]]:
    """Count the api_request events as requests (each in the plan segment its timestamp falls in);
    returns each touched period's requests before and after."""
    per_period: dict[dt.datetime, int] = defaultdict(int)
    per_segment: dict[segment_usage.Key, int] = defaultdict(int)
    for event in events:
        period = periods[event.index]
        per_period[period.start] += event.count
        per_segment[(period.start, segment_key(period, changes, event.timestamp))] += event.count
    counted = _check_bound(subscription_id, per_period)
    _add(UsageHourly, subscription_id, ("hour", "endpoint"), rules.hourly_totals(events, zone))
    _add(UsagePeriod, subscription_id, ("period_start",), per_period)
    segment_usage.add(subscription_id, per_segment)
    return {start: (counted.get(start, 0), counted.get(start, 0) + n) for start, n in per_period.items()}


def _announce_thresholds(subscription: Subscription, before: int, after: int, now: dt.datetime) -> None:
    """usage.threshold_reached when this batch took the current period across 80% or 100% of the
    included requests of the plan version it is pinned to (the rule of the usage_alert e-mail);
    once per period and threshold, by dedup key. A tenant without a listening endpoint costs one read."""
    targets = webhook_events.listeners(subscription.tenant_id, webhooks.EventType.USAGE_THRESHOLD_REACHED)
    if not targets:
        return
    included, _ = rating.legacy_terms(plan_versions.terms_of(plan_versions.pinned(subscription)).charges)
    period = period_of(subscription, subscription.current_period_start)
    for percent in webhooks.crossed_thresholds(before, after, included):
        data = threshold_message(
            subscription_id=subscription.id,
            tenant_id=subscription.tenant_id,
            plan_id=subscription.plan_id,
            percent=percent,
            requests=after,
            included=included,
            period=period,
        )
        key = f"{webhooks.EventType.USAGE_THRESHOLD_REACHED}:{subscription.id}:{period.start.isoformat()}:{percent}"
        webhook_events.emit(
            webhooks.EventType.USAGE_THRESHOLD_REACHED,
            subscription.tenant_id,
            data,
            now=now,
            endpoint_ids=targets,
            dedup_key=key,
        )


def _check_bound(subscription_id: str, added: dict[dt.datetime, int]) -> dict[dt.datetime, int]:
    """Refuse the batch (rolling it back whole) if a period would pass MAX_PERIOD_REQUESTS;
    returns the periods' requests counted so far."""
    counted = {row.period_start: row.requests for row in _COUNTED.rows(subscription_id, list(added))}
    for start, requests in added.items():
        if counted.get(start, 0) + requests > MAX_PERIOD_REQUESTS:
            raise InvalidArgument(
                f"the period starting {start.isoformat()} would exceed {MAX_PERIOD_REQUESTS:,} requests",
                field="events",
                reason="PERIOD_USAGE_LIMIT",
            )
    return counted


def _store(subscription_id: str, events: list[rules.Event], now: dt.datetime) -> tuple[int, list[Rejection]]:
    """One call's writes (in its savepoint of a group's transaction); returns (accepted, rejections)."""
    subscription = find_subscription(subscription_id, principal=SYSTEM, lock=True)  # track() checked the caller
    rejections, periods = _rejections(subscription, events)
    candidates = rules.first_of_each_id([e for e in events if e.index in periods])
    inserted = set(
        insert_ignore_returning(
            RecordedUsageEvent,
            [
                RecordedUsageEvent.subscription,
                RecordedUsageEvent.event_id,
                RecordedUsageEvent.endpoint,
                RecordedUsageEvent.count,
                RecordedUsageEvent.occurred_at,
                RecordedUsageEvent.received_at,
                RecordedUsageEvent.event_type,
                RecordedUsageEvent.properties,
            ],
            [
                (subscription.id, e.event_id, e.endpoint, e.count, e.timestamp, now, e.event_type, _json(e.properties))
                for e in candidates
            ],
            returning=RecordedUsageEvent.event_id,
        )
    )
    accepted = [e for e in candidates if e.event_id in inserted]
    if accepted:
        changes = segment_usage.key_instants(subscription)
        metering.count(subscription.id, accepted, periods, changes, subscription.cycle.zone)
        requests = [e for e in accepted if e.event_type == API_REQUEST]
        totals = (
            _add_to_counters(subscription.id, requests, periods, changes, subscription.cycle.zone) if requests else {}
        )
        current = totals.get(subscription.current_period_start)
        if current:
            _announce_thresholds(subscription, *current, now)
    return len(accepted), rejections


def _json(properties: dict) -> str | None:
    return json.dumps(properties, ensure_ascii=False, separators=(",", ":")) if properties else None


def track(principal: Principal, subscription_id: str, raw: list[rules.RawEvent], *, now: dt.datetime) -> TrackResult:
    """Validate here, in the caller's thread; store with the concurrent calls of this process in
    one transaction (group commit), answering only once it is committed."""
    require_admin(principal, "tracking usage")
    events = rules.validate_batch(raw, now)
    events = [e if e.event_id else dataclasses.replace(e, event_id=uuid.uuid4().hex) for e in events]
    try:
        accepted, rejections = _writes.run(subscription_id, lambda: _store(subscription_id, events, now))
    except InvalidArgument as error:
        if error.reason == "INVALID_VALUE":
            metrics.record_rejections([error.reason] * len(events), error.metadata["meter_id"])
        raise
    result = TrackResult(accepted=accepted, duplicates=len(events) - len(rejections) - accepted, rejections=rejections)
    metrics.record_usage(result.accepted, result.duplicates, len(rejections))
    metrics.record_rejections(r.reason for r in rejections)
    return result


def period_requests(subscription_id: str, period_start: dt.datetime) -> int:
    row = UsagePeriod.get_or_none(
        (UsagePeriod.subscription == subscription_id) & (UsagePeriod.period_start == period_start)
    )
    return row.requests if row else 0


def usage(principal: Principal, subscription_id: str, *, now: dt.datetime | None = None) -> UsageSummary:
    """The current period as the invoice would rate it (the same rating, the same figures): the
    estimate is every usage line of every segment; the request figures are each segment's
    requests against the included requests of its `requests` charge (0 where it has none).
    Remaining is what the segment in force has left."""
    subscription = find_subscription(subscription_id, principal=principal)
    period = period_of(subscription, subscription.current_period_start)
    segments_, ratings = rated_period(subscription, period)
    requests = segment_requests(segments_, segment_usage.requests_by_segment(subscription.id, period.start))
    included = [_included_requests(rated) for rated in ratings]
    currency = subscription_currency(subscription)
    balance = spend_control.credit_balance(subscription.tenant_id, currency, now or dt.datetime.now(dt.timezone.utc))
    return UsageSummary(
        subscription_id=subscription.id,
        period_start=subscription.current_period_start,
        period_end=subscription.current_period_end,
        currency=currency,
        total_requests=sum(requests),
        included_requests=sum(included),
        remaining_included=max(0, included[-1] - requests[-1]),
        overage_requests=sum(
            max(0, n - i)
            for segment, n, i in zip(segments_, requests, included, strict=True)
            if not trials.free(segment, subscription.trial_end)  # a trial's usage is not billed
        ),
        estimated_overage_cents=sum(rated.total_cents - rated.fee.amount_cents for rated in ratings),
        accrued_cents=sum(rated.total_cents for rated in ratings),  # spend_control's figure, the same rating
        credit_balance_cents=balance,
    )


def _included_requests(rated: rating.SegmentRating) -> int:
    """The segment's included requests: its `requests` charge's share (the seed plans' one)."""
    for charged in rated.charges:
        if is_seed_shape(charged.charge):
            return charged.included
    return 0


def _range(subscription: Subscription, start: str, end: str, zone: dt.tzinfo) -> tuple[dt.date, dt.date]:
    """The days asked for, by default those of the current period: days of the subscription's zone."""
    last_instant = subscription.current_period_end - dt.timedelta(microseconds=1)
    return rules.date_range(start, end, date_of(subscription.current_period_start, zone), date_of(last_instant, zone))


def _hourly(subscription_id: str, first: dt.date, last: dt.date, zone: dt.tzinfo) -> pw.ModelSelect[UsageHourly]:
    """The hourly counters of the zone's days first..last (the counters are the zone's clock hours)."""
    since, until = start_of_day(first, zone), start_of_day(last + dt.timedelta(days=1), zone)
    return UsageHourly.select().where(
        (UsageHourly.subscription == subscription_id) & (UsageHourly.hour >= since) & (UsageHourly.hour < until)
    )


def _per_hour(subscription_id: str, first: dt.date, last: dt.date, zone: dt.tzinfo) -> dict[dt.datetime, int]:
    total = pw.fn.SUM(UsageHourly.requests)
    query = (
        _hourly(subscription_id, first, last, zone)
        .select(UsageHourly.hour, total.alias("requests"))
        .group_by(UsageHourly.hour)
    )
    return {row.hour: int(row.requests) for row in query}


def daily(principal: Principal, subscription_id: str, start: str = "", end: str = "") -> list[tuple[dt.date, int]]:
    subscription = find_subscription(subscription_id, principal=principal)
    zone = subscription.cycle.zone
    first, last = _range(subscription, start, end, zone)
    return rules.daily_series(first, last, _per_hour(subscription.id, first, last, zone), zone)


def analytics(
    principal: Principal, subscription_id: str, start: str = "", end: str = ""
) -> tuple[dt.date, dt.date, rules.Analytics]:
    subscription = find_subscription(subscription_id, principal=principal)
    zone = subscription.cycle.zone
    first, last = _range(subscription, start, end, zone)
    total = pw.fn.SUM(UsageHourly.requests)
    # Ties at the 10th place go to the smaller name by code point, as the domain sorts: PostgreSQL's
    # default collation may be a locale's, so ask for "C" (SQLite's BINARY already is).
    by_name = UsageHourly.endpoint.collate('"C"') if is_postgres() else UsageHourly.endpoint
    top = (
        _hourly(subscription.id, first, last, zone)
        .select(UsageHourly.endpoint, total.alias("requests"))
        .group_by(UsageHourly.endpoint)
        .order_by(total.desc(), by_name)
        .limit(rules.TOP_ENDPOINTS)
    )
    endpoints = {row.endpoint: int(row.requests) for row in top}
    hourly = _per_hour(subscription.id, first, last, zone)
    return first, last, rules.analytics(first, last, hourly, endpoints, zone)
