"""Meters at ingest: every event a track call (or the gateway) stores is matched to the active
meters once, and its contributions merged into the rollups in the same savepoint as the raw
event, so "nothing lost, nothing counted twice" holds for meters exactly as for requests: a
duplicate never reaches here, and a batch that fails rolls back its rollups with its events.

An event that matches a meter without a valid value for it raises INVALID_VALUE, which rolls the
whole call back. Only events actually inserted are checked: a retried batch whose events are all
recorded answers `duplicates` as it did the first time, even if a meter was defined meanwhile.

Archived meters are not aggregated; a meter counts the events stored after its creation
(`billing-server reaggregate` rebuilds one from the raw events still kept).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Sequence

from server.domain import meters as rules
from server.domain.errors import InvalidArgument, NotFound
from server.domain.invoicing import segment_key
from server.domain.periods import Period, clock_hour
from server.domain.usage import Event
from server.persistence import meter_rollups
from server.persistence.db import database, for_update
from server.persistence.models import LIVE_INVOICE, Invoice, Meter, RecordedUsageEvent, Subscription
from server.persistence.prepared import Prepared
from server.persistence.read_models import meter_definition
from server.services import segment_usage

_ACTIVE = Prepared(Meter, [], lambda: Meter.select().where(Meter.archived_at.is_null()).order_by(Meter.id))


def active_meters() -> list[rules.Meter]:
    """The meters ingestion aggregates into: every unarchived one (one small query a batch, so a
    meter defined on one replica counts on all of them from its creation)."""
    return [meter_definition(row) for row in _ACTIVE.rows()]


def properties_of(event: Event) -> dict[str, rules.Scalar]:
    """What meters read of an event: its properties, and an api_request's endpoint and count."""
    if event.event_type != rules.API_REQUEST:
        return event.properties
    return {**event.properties, rules.ENDPOINT_PROPERTY: event.endpoint, rules.COUNT_PROPERTY: event.count}


def counted(
    meters: Sequence[rules.Meter],
    events: Iterable[Event],
    periods: dict[int, Period],
    changes: Sequence[dt.datetime],
    zone: dt.tzinfo,
) -> list[rules.Counted]:
    """Each event that some meter counts, placed in its period, plan segment and clock hour of the
    subscription's zone (whose days are then whole hours, also in a zone a half hour off UTC)."""
    found = []
    for event in events:
        parts = rules.contributions(meters, event.event_type, properties_of(event), f"events[{event.index}]")
        if parts:
            period = periods[event.index]
            place = rules.Place(
                period.start, segment_key(period, changes, event.timestamp), clock_hour(event.timestamp, zone)
            )
            found.append(rules.Counted(place, event.timestamp, event.event_id, parts))
    return found


def count(
    subscription_id: str,
    events: Sequence[Event],
    periods: dict[int, Period],
    changes: Sequence[dt.datetime],
    zone: dt.tzinfo,
) -> None:
    """Aggregate the stored `events` into every active meter they match (in the caller's
    transaction); a period a SUM or COUNT meter would take past its bound refuses the batch."""
    meters = active_meters()
    aggregations = {meter.id: meter.aggregation for meter in meters}
    folded = rules.fold(aggregations, counted(meters, events, periods, changes, zone))
    held = meter_rollups.magnitudes(subscription_id, folded.magnitude)
    for (meter_id, start), added in folded.magnitude.items():
        if held.get((meter_id, start), 0) + added > rules.MAX_PERIOD_MAGNITUDE:
            raise InvalidArgument(
                f"meter {meter_id!r} would pass 10^18 units in the period starting {start.isoformat()}",
                field="events",
                reason="PERIOD_USAGE_LIMIT",
            )
    meter_rollups.add(subscription_id, aggregations, folded)


def stored_event(row: RecordedUsageEvent) -> Event:
    """A raw event as it was tracked, for counting it again."""
    properties = json.loads(row.properties) if row.properties else {}
    return Event(0, row.event_id, row.endpoint, row.count, row.occurred_at, row.event_type, properties)


def rekey(
    subscription: Subscription,
    rows: Sequence[RecordedUsageEvent],
    before: Sequence[dt.datetime],
    after: Sequence[dt.datetime],
) -> None:
    """A plan change at T re-keys the events already stored that are timestamped at or after T
    (dated up to FUTURE_SKEW ahead of their receipt) from the segment they were counted in to the
    new one, for the meters that counted them (those defined before they were received). SUM and
    COUNT figures move exactly; MAX, LATEST and UNIQUE_COUNT cannot give a value back, so the
    earlier segment keeps what these events showed it, and the new one gets them too."""
    if not rows:
        return
    meters = _ACTIVE.rows()
    aggregations = {row.id: rules.Aggregation(row.aggregation) for row in meters}
    taken, given = [], []
    for row in rows:
        event = stored_event(row)
        counting = [meter_definition(m) for m in meters if m.created_at <= row.received_at]
        parts = _counted_by(counting, event)
        period = subscription.cycle.containing(event.timestamp)
        hour = clock_hour(event.timestamp, subscription.cycle.zone)
        old = rules.Place(period.start, segment_key(period, before, event.timestamp), hour)
        new = rules.Place(period.start, segment_key(period, after, event.timestamp), hour)
        additive = [
            dataclasses.replace(part, value=-part.value)
            for part in parts
            if aggregations[part.meter_id] in (rules.Aggregation.SUM, rules.Aggregation.COUNT)
        ]
        taken.append(rules.Counted(old, event.timestamp, event.event_id, additive))
        given.append(rules.Counted(new, event.timestamp, event.event_id, parts))
    meter_rollups.add(subscription.id, aggregations, rules.fold(aggregations, taken))
    meter_rollups.add(subscription.id, aggregations, rules.fold(aggregations, given))


def _counted_by(meters: Sequence[rules.Meter], event: Event) -> list[rules.Contribution]:
    """The contributions the event made to these meters at ingest. A meter it has no valid value
    for never counted it (ingestion would have refused the batch), though it may have been
    defined, by its clock, before the event was received: it is left out, so a plan change is
    never refused for an event it does not concern."""
    properties = properties_of(event)
    parts = []
    for meter in meters:
        try:
            parts += rules.contributions([meter], event.event_type, properties, "event")
        except InvalidArgument:
            continue
    return parts


@dataclasses.dataclass(frozen=True)
class Reaggregated:
    periods: int  # (subscription, period) pairs rebuilt
    events: int  # raw events the meter counted
    skipped: int  # raw events it matched without a valid value (left out, as ingestion would refuse them)


def reaggregate(meter_id: str, *, now: dt.datetime, retention_days: int) -> Reaggregated:
    """Rebuild one meter's figures for every open period (no live invoice) that began within the
    retention window, so all its raw events are still kept: the period's rollups of the meter are
    dropped and folded again from those events, each subscription in one transaction under its
    lock (ingestion waits meanwhile). Running it twice gives the same figures."""
    row = Meter.get_or_none(Meter.id == meter_id)
    if row is None:
        raise NotFound(f"meter {meter_id!r} not found", reason="METER_NOT_FOUND")
    meter = meter_definition(row)
    aggregations = {meter.id: meter.aggregation}
    cutoff = now - dt.timedelta(days=retention_days)
    periods = events = skipped = 0
    for subscription_id in [s.id for s in Subscription.select(Subscription.id)]:
        with database.atomic():
            subscription = for_update(Subscription.select().where(Subscription.id == subscription_id)).get()
            invoiced = {
                i.period_start
                for i in Invoice.select(Invoice.period_start).where(
                    (Invoice.subscription == subscription.id) & LIVE_INVOICE
                )
            }
            changes = segment_usage.key_instants(subscription)
            found: dict[dt.datetime, list[rules.Counted]] = {}
            for stored in RecordedUsageEvent.select().where(
                (RecordedUsageEvent.subscription == subscription.id)
                & (RecordedUsageEvent.event_type == meter.event_type)
                & (RecordedUsageEvent.occurred_at >= max(cutoff, subscription.anchor_at))
            ):
                event = stored_event(stored)
                period = subscription.cycle.containing(event.timestamp)
                if period.start < cutoff or period.start in invoiced:
                    continue
                found.setdefault(period.start, [])
                try:
                    parts = rules.contributions([meter], event.event_type, properties_of(event), "event")
                except InvalidArgument:
                    skipped += 1
                    continue
                if parts:
                    place = rules.Place(
                        period.start,
                        segment_key(period, changes, event.timestamp),
                        clock_hour(event.timestamp, subscription.cycle.zone),
                    )
                    found[period.start].append(rules.Counted(place, event.timestamp, event.event_id, parts))
            for start, counted_events in found.items():
                meter_rollups.clear(subscription.id, meter.id, start)
                meter_rollups.add(subscription.id, aggregations, rules.fold(aggregations, counted_events))
                periods += 1
                events += len(counted_events)
    return Reaggregated(periods, events, skipped)
