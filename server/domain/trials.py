"""Free trials: a plan's `trial_days` give a new subscription a `trial_end`, and nothing timestamped
before it is charged. Pure.

How a trial clips billing, with the machinery plan changes already use (domain/invoicing.py):
- trial_end is a segment boundary like a plan change: usage is counted at ingest under the latest
  boundary at or before its timestamp (key_instants), so what happened before trial_end and what
  happened from it on are counted apart, and never need moving (the boundary is fixed at creation);
- the segment holding trial_end is split there (split);
- a segment ending at or before trial_end is free: a fee share of 0, no included units, no usage
  rated (billed_share, billed_quantities). Its usage is still counted, and shown by the usage
  endpoints; it is only not billed.
So trial_end is the first instant charged: an event at trial_end is billed, one a microsecond
earlier is not. A segment after it bills its exact share of the period, as any segment does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from server.domain.periods import Period
from server.domain.rating import Share

NOTICE = dt.timedelta(days=3)  # subscription.trial_will_end goes out this long before trial_end


class Span(Protocol):
    @property
    def start(self) -> dt.datetime: ...

    @property
    def end(self) -> dt.datetime: ...


S = TypeVar("S", bound=Span)


def trial_end(start: dt.datetime, trial_days: int) -> dt.datetime | None:
    """The end of a trial starting at `start` (the subscription's creation); None without one."""
    return start + dt.timedelta(days=trial_days) if trial_days > 0 else None


def key_instants(changes: Sequence[dt.datetime], end: dt.datetime | None) -> list[dt.datetime]:
    """The instants usage is keyed by (invoicing.segment_key's `changes`): the plan history's,
    sorted, and the trial's end."""
    return sorted([*changes, end] if end is not None else changes)


def split(segments: Sequence[S], end: dt.datetime | None) -> list[S]:
    """The segments with the one strictly holding the trial's end cut in two there."""
    cut: list[S] = []
    for segment in segments:
        if end is not None and segment.start < end < segment.end:
            cut += [dataclasses.replace(segment, end=end), dataclasses.replace(segment, start=end)]  # type: ignore[type-var]
        else:
            cut.append(segment)
    return cut


def free(segment: Span, end: dt.datetime | None) -> bool:
    """Whether the segment lies in the trial (it ends at or before the trial's end)."""
    return end is not None and segment.end <= end


def billed_share(segment: Span, period: Period, end: dt.datetime | None) -> Share:
    """The share of the period the segment bills (fee and included units): none in the trial."""
    share = Share.of(segment.start, segment.end, period)
    return Share(0, share.whole) if free(segment, end) else share


def billed_quantities(segment: Span, quantities: Mapping[str, int], end: dt.datetime | None) -> Mapping[str, int]:
    """The segment's figures rated: none in the trial (nothing used then is charged)."""
    return {} if free(segment, end) else quantities


def notice_due(end: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether subscription.trial_will_end is due: within NOTICE of the trial's end, not after it."""
    return end is not None and end - NOTICE <= now < end
