"""Each charge's figure of each plan segment, read from the counters kept at ingest, for rating:
the invoice and the usage estimate both take their figures here, so they cannot disagree.

`requests` without a filter reads the per-segment request counters (UsageSegment, what the seed
plans always billed on); any other charge reads its meter's rollups of the period (keyed by
segment start) with the charge's filter applied on the group, and UNIQUE_COUNT its distinct sets.
A meter's rollups are read once per period however many charges price it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from server.domain import decimals
from server.domain.invoicing import Segment, segment_distinct_counts, segment_figures, segment_requests
from server.domain.meters import REQUESTS_METER, Aggregation
from server.domain.periods import Period
from server.persistence import meter_rollups as rollups
from server.persistence.models import Meter
from server.persistence.read_models import meter_definition
from server.services import segment_usage


def quantities(subscription_id: str, period: Period, segments_: Sequence[Segment]) -> list[dict[str, int]]:
    """[{charge id: nanos}] per segment, for the charges of each segment's plan version."""
    requests = segment_requests(list(segments_), segment_usage.requests_by_segment(subscription_id, period.start))
    per_segment: list[dict[str, int]] = [{} for _ in segments_]

    @functools.cache
    def meter(meter_id: str):
        return meter_definition(Meter.get_by_id(meter_id))

    @functools.cache
    def cells(meter_id: str) -> list:
        return [
            (segment, group, cell)
            for segment, _, group, cell in rollups.cells(subscription_id, meter_id, period_start=period.start)
        ]

    @functools.cache
    def distinct(meter_id: str) -> list:
        return rollups.distinct_by_segment(subscription_id, meter_id, period.start)

    for index, segment in enumerate(segments_):
        for charge in getattr(segment.plan, "charges", ()):
            if charge.meter_id == REQUESTS_METER and not charge.filter:
                per_segment[index][charge.id] = requests[index] * decimals.SCALE
                continue
            definition = meter(charge.meter_id)
            if definition.aggregation is Aggregation.UNIQUE_COUNT:
                figures = segment_distinct_counts(segments_, definition, charge, distinct(charge.meter_id))
            else:
                figures = segment_figures(segments_, definition, charge, cells(charge.meter_id))
            per_segment[index][charge.id] = figures[index]
    return per_segment
